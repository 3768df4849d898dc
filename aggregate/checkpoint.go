package aggregate

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math"

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

// checkpoint is the metadata committed with a source or partials offset.
type checkpoint struct {
	fingerprint uint64
	hw          int64
	maxEvent    model.Timestamp
	hor         model.Timestamp
	idxHor      model.Timestamp
	hist        history
}

const checkpointVersion = 1

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
	if b[0] != checkpointVersion {
		return c, fmt.Errorf("%w: version %d", errCheckpoint, b[0])
	}
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
// unpublished changes: Collect and publish first.
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
	for _, w := range p.windows {
		if w.resident && w.start < hor && w.dirty {
			return Commit{}, ErrUnpublished
		}
	}
	off := p.pos
	for t, w := range p.windows {
		switch {
		case t < idx:
			for _, e := range w.entries {
				delete(p.index, e.id)
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
	p.hist.add(off, idx)
	ck := checkpoint{fingerprint: p.cfg.fingerprint(), hw: p.hw, maxEvent: p.maxEvent, hor: hor, idxHor: idx, hist: p.hist}
	return Commit{Offset: off, Metadata: ck.encode(), hor: hor}, nil
}

// Committed tells the partition that c is durably committed; partials
// published from now on carry its horizon, which lets reducers evict.
func (p *Partition) Committed(c Commit) {
	if c.hor > p.ckHor {
		p.ckHor = c.hor
	}
}
