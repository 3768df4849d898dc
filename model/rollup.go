package model

import (
	"encoding/binary"
	"encoding/hex"
	"hash/fnv"
	"strconv"
	"time"
)

// Quantiles are points of a distribution. Max is exact; the others carry the
// relative error of the sketch they were read from (at most 1%).
type Quantiles struct {
	P50, P90, P95, P99, Max time.Duration
}

// Distribution describes a set of durations: their exact sum, quantiles, and
// the mergeable sketch the quantiles were read from, so that coarser windows
// are built by merging sketches, never by recomputing from raw data.
//
// Sketch is a serialized DDSketch in sketches-go's protobuf form
// (github.com/DataDog/sketches-go/ddsketch: (*DDSketch).ToProto, marshalled
// with google.golang.org/protobuf), over values in nanoseconds. It is bytes
// here so that model imports no sketch or protobuf package; storage keeps it
// opaque (stored, never indexed).
type Distribution struct {
	Sum time.Duration
	Quantiles
	Sketch []byte
}

// Exemplar names one request of a rollup's window, for jumping from a
// statistic to a trace.
type Exemplar struct {
	TraceID  TraceID
	Duration time.Duration
	Start    Timestamp
}

// Dimension is one extra grouping of a rollup key (shard, host, client, ...)
// with its value; the aggregator's overflow bucket uses the value
// "__overflow__".
type Dimension struct {
	Name, Value string
}

// Rollup is the statistics of one operation in one event-time window: the
// document the aggregator writes and the query side reads.
//
// The key is (Resolution, WindowStart, Service, Operation, Kind, Dimensions).
// Dimensions is sorted by Name, and names are unique. A later write of the
// same key replaces the earlier one (the aggregator rewrites a window when
// late traces arrive), so writers store it under ID().
type Rollup struct {
	Resolution  time.Duration // window length: time.Minute, time.Hour, 24*time.Hour
	WindowStart Timestamp     // aligned to Resolution, in UTC
	Service     string
	Operation   string
	Kind        SpanKind
	Dimensions  []Dimension

	Count  int64 // spans of this operation in the window
	Errors int64

	Duration     Distribution // span durations
	Self         Distribution // self times
	CriticalPath Distribution // critical-path time of each span

	// TraceDurationSum is the sum of the durations of the traces the counted
	// spans belong to, each trace counted once per key; CriticalPathShare =
	// CriticalPath.Sum / TraceDurationSum (0 when the sum is 0).
	TraceDurationSum  time.Duration
	CriticalPathShare float64

	// Exemplars are the slowest requests of the window, slowest first.
	Exemplars []Exemplar

	// Version orders writes of the same ID: the aggregator sets it to the
	// position in its partials log that the rollup reflects, and a store
	// keeps the write with the highest Version (an equal one replaces), so
	// a writer that lost its partition cannot replace newer statistics.
	// 0 means unversioned: the write always replaces. Stores do not return
	// it on reads (nor JSON, where 0 is left out).
	Version int64 `json:",omitempty"`
}

// WindowEnd is WindowStart+Resolution (exclusive).
func (r *Rollup) WindowEnd() Timestamp { return r.WindowStart.Add(r.Resolution) }

// ID is the rollup's deterministic identity: resolution, window start (in
// nanoseconds) and a 64-bit FNV-1a hash of the key's service, operation, kind
// and dimensions, e.g. "1m-1700000000000000000-9f3c...". Equal keys give equal
// IDs; the ID does not depend on the statistics.
func (r *Rollup) ID() string {
	h := fnv.New64a()
	var lenBuf [8]byte
	write := func(s string) {
		// Length-prefixed, so ("ab","c") and ("a","bc") differ.
		binary.BigEndian.PutUint64(lenBuf[:], uint64(len(s)))
		h.Write(lenBuf[:])
		h.Write([]byte(s))
	}
	write(r.Service)
	write(r.Operation)
	write(r.Kind.String())
	for _, d := range r.Dimensions {
		write(d.Name)
		write(d.Value)
	}
	var sum [8]byte
	binary.BigEndian.PutUint64(sum[:], h.Sum64())
	return ResolutionName(r.Resolution) + "-" + strconv.FormatInt(int64(r.WindowStart), 10) + "-" + hex.EncodeToString(sum[:])
}

// ResolutionName renders a window length compactly: "1m", "1h", "1d", "10s";
// lengths that are not whole seconds fall back to time.Duration's form ("1.5s").
func ResolutionName(d time.Duration) string {
	switch {
	case d > 0 && d%(24*time.Hour) == 0:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	case d > 0 && d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d > 0 && d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d > 0 && d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return d.String()
}

// ParseResolution reads ResolutionName's forms ("1m", "1h", "1d") and any
// time.ParseDuration string; the result must be positive.
func ParseResolution(s string) (time.Duration, error) {
	if n := len(s); n > 1 && s[n-1] == 'd' {
		days, err := strconv.ParseInt(s[:n-1], 10, 64)
		if err != nil || days <= 0 || days > 366 {
			return 0, &resolutionError{s}
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, &resolutionError{s}
	}
	return d, nil
}

type resolutionError struct{ s string }

func (e *resolutionError) Error() string {
	return "bad resolution " + strconv.Quote(e.s) + ": want a positive duration such as 1m, 1h or 1d"
}
