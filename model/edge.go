package model

import (
	"encoding/binary"
	"encoding/hex"
	"hash/fnv"
	"strconv"
	"time"
)

// EdgeRollup is the statistics of the calls from one service to another in
// one event-time window: every span whose parent span (in the same trace)
// belongs to a different service is a call from the parent's service (the
// caller) to the span's service (the callee). Latency is the distribution
// of those spans' durations; Errors counts the failed ones.
//
// The key is (Resolution, WindowStart, Caller, Callee); like Rollup, a later
// write of the same key replaces the earlier one, under ID().
type EdgeRollup struct {
	Resolution  time.Duration
	WindowStart Timestamp
	Caller      string
	Callee      string
	Calls       int64
	Errors      int64
	Latency     Distribution
	// Exemplars are the slowest calls of the window, slowest first.
	Exemplars []Exemplar
	// Version orders writes of the same ID, as Rollup.Version.
	Version int64 `json:",omitempty"`
}

// WindowEnd is WindowStart+Resolution (exclusive).
func (e *EdgeRollup) WindowEnd() Timestamp { return e.WindowStart.Add(e.Resolution) }

// ID is the edge rollup's deterministic identity, e.g.
// "edge-1m-1700000000000000000-9f3c...", from the resolution, the window
// start and a 64-bit FNV-1a hash of caller and callee.
func (e *EdgeRollup) ID() string {
	h := fnv.New64a()
	var lenBuf [8]byte
	for _, s := range []string{e.Caller, e.Callee} {
		binary.BigEndian.PutUint64(lenBuf[:], uint64(len(s)))
		h.Write(lenBuf[:])
		h.Write([]byte(s))
	}
	var sum [8]byte
	binary.BigEndian.PutUint64(sum[:], h.Sum64())
	return "edge-" + ResolutionName(e.Resolution) + "-" + strconv.FormatInt(int64(e.WindowStart), 10) + "-" + hex.EncodeToString(sum[:])
}
