package rollup

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// histEntry records a committed checkpoint: every window at or after idxHor
// had its first message at or after offset.
type histEntry struct {
	offset int64
	idxHor model.Timestamp
}

// history is a thinned list of checkpoints, offsets and horizons both
// increasing. It tells a rewind where to start reading.
type history []histEntry

const maxHistory = 32

func (h *history) add(offset int64, idxHor model.Timestamp) {
	if n := len(*h); n > 0 {
		last := (*h)[n-1]
		if offset < last.offset || idxHor < last.idxHor {
			return // not monotone: keep the older, safer bound
		}
		if idxHor == last.idxHor {
			return // the older entry is the lower bound for the same windows
		}
	}
	*h = append(*h, histEntry{offset, idxHor})
	if len(*h) > maxHistory {
		// Drop every second entry of the older half: recent bounds stay
		// tight, old ones get coarser (but stay safe).
		old := (*h)[:maxHistory/2]
		kept := old[:0]
		for i, e := range old {
			if i%2 == 0 {
				kept = append(kept, e)
			}
		}
		*h = append(kept, (*h)[maxHistory/2:]...)
	}
}

// lowerBound returns an offset at or before the first message of every
// window at or after low (0, the log's start, when unknown).
func (h history) lowerBound(low model.Timestamp) int64 {
	var off int64
	for _, e := range h {
		if e.idxHor <= low {
			off = e.offset
		}
	}
	return off
}

// seenRun says that the windows in [from, to] are forgotten (below the
// index horizon) and may have messages, all at or after offset first.
type seenRun struct {
	from, to model.Timestamp
	first    int64
}

// seenRuns are the forgotten windows that had messages, sorted, disjoint.
// With them, late data for a window that never had a message (a backfill)
// needs no rewind, and a rewind starts at the first message of the windows
// it needs rather than at a coarse history bound.
type seenRuns []seenRun

const maxSeenRuns = 16

// add records window w (of length win) with first offset first; adjacent
// or overlapping runs merge; beyond maxSeenRuns the two runs with the
// smallest gap merge (the gap counts as seen: safe, only slower).
func (s *seenRuns) add(w model.Timestamp, win time.Duration, first int64) {
	r := seenRun{w, w, first}
	out := make(seenRuns, 0, len(*s)+1)
	placed := false
	for _, x := range *s {
		if !placed && r.from < x.from {
			out, placed = appendRun(out, r, win), true
		}
		out = appendRun(out, x, win)
	}
	if !placed {
		out = appendRun(out, r, win)
	}
	for len(out) > maxSeenRuns {
		best := 1
		for i := 2; i < len(out); i++ {
			if out[i].from-out[i-1].to < out[best].from-out[best-1].to {
				best = i
			}
		}
		out[best-1].to = out[best].to
		out[best-1].first = min(out[best-1].first, out[best].first)
		out = append(out[:best], out[best+1:]...)
	}
	*s = out
}

func appendRun(out seenRuns, r seenRun, win time.Duration) seenRuns {
	if n := len(out); n > 0 && r.from <= out[n-1].to.Add(win) {
		out[n-1].to = max(out[n-1].to, r.to)
		out[n-1].first = min(out[n-1].first, r.first)
		return out
	}
	return append(out, r)
}

// overlaps reports whether a run holds a window in [from, to].
func (s seenRuns) overlaps(from, to model.Timestamp) bool {
	for _, r := range s {
		if r.from <= to && r.to >= from {
			return true
		}
	}
	return false
}

// firstFrom is the lowest first offset of the runs with windows at or after
// low (math.MaxInt64 if none).
func (s seenRuns) firstFrom(low model.Timestamp) int64 {
	off := int64(math.MaxInt64)
	for _, r := range s {
		if r.to >= low {
			off = min(off, r.first)
		}
	}
	return off
}

// firstOf is the first offset of the run holding window w (math.MaxInt64
// if none).
func (s seenRuns) firstOf(w model.Timestamp) int64 {
	for _, r := range s {
		if r.from <= w && w <= r.to {
			return r.first
		}
	}
	return math.MaxInt64
}

// prune forgets runs entirely before t.
func (s *seenRuns) prune(t model.Timestamp) {
	out := (*s)[:0]
	for _, r := range *s {
		if r.to >= t {
			out = append(out, r)
		}
	}
	*s = out
}

// checkpoint is the metadata committed with a source or partials offset.
type checkpoint struct {
	version     byte // as decoded
	fingerprint uint64
	hw          int64
	maxEvent    model.Timestamp
	hor         model.Timestamp
	idxHor      model.Timestamp
	hist        history
	// seen: the forgotten windows that had messages, except those before
	// unseenBefore (not recorded: a version 1 checkpoint has idxHor there).
	seen         seenRuns
	unseenBefore model.Timestamp
}

// checkpointVersion 2 adds the seen runs of partitions; 3 those of
// reducers (a version 2 reducer checkpoint has none). Versions 1 and 2 are
// still read.
const checkpointVersion = 3

func (c *checkpoint) encode() []byte {
	b := []byte{checkpointVersion}
	b = binary.BigEndian.AppendUint64(b, c.fingerprint)
	b = binary.AppendVarint(b, c.hw)
	b = binary.AppendVarint(b, int64(c.maxEvent))
	b = binary.AppendVarint(b, int64(c.hor))
	b = binary.AppendVarint(b, int64(c.idxHor))
	b = binary.AppendUvarint(b, uint64(len(c.hist)))
	for _, e := range c.hist {
		b = binary.AppendVarint(b, e.offset)
		b = binary.AppendVarint(b, int64(e.idxHor))
	}
	b = binary.AppendVarint(b, int64(c.unseenBefore))
	b = binary.AppendUvarint(b, uint64(len(c.seen)))
	for _, r := range c.seen {
		b = binary.AppendVarint(b, int64(r.from))
		b = binary.AppendVarint(b, int64(r.to-r.from))
		b = binary.AppendVarint(b, r.first)
	}
	out := make([]byte, base64.RawURLEncoding.EncodedLen(len(b)))
	base64.RawURLEncoding.Encode(out, b)
	return out
}

var errCheckpoint = errors.New("malformed checkpoint metadata")

func decodeCheckpoint(text []byte) (checkpoint, error) {
	var c checkpoint
	b := make([]byte, base64.RawURLEncoding.DecodedLen(len(text)))
	n, err := base64.RawURLEncoding.Decode(b, text)
	if err != nil || n < 1 {
		return c, errCheckpoint
	}
	if b[0] < 1 || b[0] > checkpointVersion {
		return c, fmt.Errorf("%w: version %d", errCheckpoint, b[0])
	}
	c.version = b[0]
	r := &reader{b: b[1:n]}
	c.fingerprint = r.u64()
	c.hw = r.varint()
	c.maxEvent = model.Timestamp(r.varint())
	c.hor = model.Timestamp(r.varint())
	c.idxHor = model.Timestamp(r.varint())
	k := r.uvarint()
	if k > 4*maxHistory {
		return c, fmt.Errorf("%w: %d history entries", errCheckpoint, k)
	}
	for i := uint64(0); i < k && r.err == nil; i++ {
		c.hist = append(c.hist, histEntry{r.varint(), model.Timestamp(r.varint())})
	}
	c.unseenBefore = c.idxHor
	if b[0] >= 2 && r.err == nil {
		c.unseenBefore = model.Timestamp(r.varint())
		k := r.uvarint()
		if k > 4*maxSeenRuns {
			return c, fmt.Errorf("%w: %d seen runs", errCheckpoint, k)
		}
		for i := uint64(0); i < k && r.err == nil; i++ {
			from := model.Timestamp(r.varint())
			c.seen = append(c.seen, seenRun{from: from, to: from.Add(time.Duration(r.varint())), first: r.varint()})
		}
	}
	if r.err != nil {
		return c, fmt.Errorf("%w: %v", errCheckpoint, r.err)
	}
	if c.hw < 0 || c.idxHor > c.hor {
		return c, fmt.Errorf("%w: inconsistent horizons", errCheckpoint)
	}
	return c, nil
}

// fingerprint identifies the settings that partials must agree on.
func (c Config) fingerprint() uint64 {
	h := fnv.New64a()
	var b []byte
	b = binary.AppendVarint(b, int64(c.Window))
	b = binary.AppendVarint(b, int64(c.DimensionLimit))
	if c.NoEdges {
		b = append(b, 1)
	}
	for _, d := range c.Dimensions {
		b = appendStr(b, d)
	}
	// The key limits change which keys overflow; they are part of the
	// fingerprint only when not the defaults, so that checkpoints written
	// before they existed stay valid.
	if c.OperationLimit != DefaultOperationLimit || c.KeyLimit != DefaultKeyLimit {
		b = append(b, 2)
		b = binary.AppendVarint(b, int64(c.OperationLimit))
		b = binary.AppendVarint(b, int64(c.KeyLimit))
	}
	h.Write(b)
	return h.Sum64()
}

// Commit is what to commit for a source partition: the offset to resume
// from and the metadata to store with it (ASCII, a few hundred bytes).
type Commit struct {
	Offset   int64
	Metadata []byte
	hor      model.Timestamp
}

// ErrUnpublished reports a Checkpoint with windows to evict that have
// unpublished changes: Collect and publish first. A Reducer also reports it
// before it crosses its barrier (Reducer.SetBarrier): nothing to commit yet.
var ErrUnpublished = errors.New("windows to evict have unpublished changes")

// nextHor is the eviction horizon implied by the current event time.
func (p *Partition) nextHor() model.Timestamp {
	if p.maxEvent == math.MinInt64 {
		return p.hor
	}
	h := windowOf(p.maxEvent.Add(-p.cfg.AllowedLateness-p.cfg.Retention), p.cfg.Window)
	if h < p.hor {
		return p.hor
	}
	return h
}

// Checkpoint evicts what event time allows and returns what to commit.
// Every partial collected so far must be durably published first, and every
// trace below HighWater durably written wherever the caller writes traces:
// a successor resumes from Commit.Offset trusting that.
//
// Windows whose end plus AllowedLateness plus Retention is at or before the
// maximum event time lose their contributions (they keep their index
// entries for VersionSpread more); the offset is the first offset of the
// oldest window still indexed.
func (p *Partition) Checkpoint() (Commit, error) {
	if p.rw != nil {
		return Commit{}, errors.New("BUG: Checkpoint during a rewind")
	}
	hor := p.nextHor()
	idx := p.idxHor
	if hor != math.MinInt64 {
		if i := windowOf(hor.Add(-p.cfg.VersionSpread), p.cfg.Window); i > idx {
			idx = i
		}
	}
	// A window that late data revived (a rewind, or a backfill starting a
	// window that never had a message) and that received messages since
	// the previous checkpoint stays resident: a backfill is still filling
	// it, and evicting it would cost a rewind at its next message. The
	// windows within VersionSpread of it stay indexed, so that a newer
	// version of a trace there is still known (Claim 3); see "Backfills"
	// in the package documentation for why this keeps every claim. At most
	// maxKeptRevived windows stay so, the most recently filled ones.
	kept := p.keptRevived()
	span := model.Timestamp(p.cfg.VersionSpread + p.cfg.Window)
	keepIndex := func(t model.Timestamp) bool {
		for a := range kept {
			if a-t <= span && t-a <= span {
				return true
			}
		}
		return false
	}
	for _, w := range p.windows {
		if w.resident && w.start < hor && w.dirty {
			return Commit{}, ErrUnpublished
		}
	}
	off := p.pos
	for t, w := range p.windows {
		switch {
		case kept[t]: // stays resident and indexed
		case t < idx && keepIndex(t):
			if w.resident {
				w.demote()
			}
		case t < idx:
			for _, e := range w.entries {
				delete(p.index, e.id)
			}
			if w.first != math.MaxInt64 {
				p.seen.add(t, p.cfg.Window, w.first)
			}
			delete(p.windows, t)
			continue
		case w.resident && t < hor:
			w.demote() // revived windows are always before hor
		}
		if w.first < off {
			off = w.first
		}
	}
	p.hor, p.idxHor = hor, idx
	p.prevCk = p.pos
	p.hist.add(off, idx)
	if p.maxEvent != math.MinInt64 {
		p.seen.prune(windowOf(p.maxEvent.Add(-p.cfg.MaxLateness-p.cfg.VersionSpread), p.cfg.Window).Add(-p.cfg.Window))
	}
	ck := checkpoint{fingerprint: p.cfg.fingerprint(), hw: p.hw, maxEvent: p.maxEvent, hor: hor, idxHor: idx, hist: p.hist, seen: p.seen, unseenBefore: p.unseenBefore}
	return Commit{Offset: off, Metadata: ck.encode(), hor: hor}, nil
}

// Committed tells the partition that c is durably committed; partials
// published from now on carry its horizon, which lets reducers evict.
func (p *Partition) Committed(c Commit) {
	if c.hor > p.ckHor {
		p.ckHor = c.hor
	}
}

// maxKeptRevived bounds the revived windows a checkpoint keeps resident.
const maxKeptRevived = 32

// keptRevived returns the revived resident windows that received a message
// since the previous checkpoint (at most maxKeptRevived, the most recently
// filled): Checkpoint keeps them resident.
func (p *Partition) keptRevived() map[model.Timestamp]bool {
	var active []*window
	for _, w := range p.windows {
		if w.revived && w.resident && w.last >= p.prevCk {
			active = append(active, w)
		}
	}
	if len(active) > maxKeptRevived {
		sort.Slice(active, func(i, j int) bool { return active[i].last > active[j].last })
		active = active[:maxKeptRevived]
	}
	kept := make(map[model.Timestamp]bool, len(active))
	for _, w := range active {
		kept[w.start] = true
	}
	return kept
}
