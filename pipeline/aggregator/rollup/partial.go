package rollup

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// Partial is the statistics of one key in one base window over one source
// partition's messages with offsets below Hi: exactly the statistics of the
// latest version of every trace of the window among those messages.
//
// Partials come in family snapshots: the Total partials with Seq 0..Total-1
// sharing (Window, Family, Source, Hi) are every key of the family in the
// window at Hi (Total 0: one partial with zero Stats, the family has no
// traces). A snapshot is a pure function of (Window, Family, Source, Hi)
// and the log, so two snapshots with the same Hi are equal, and of two the
// one with the higher Hi is the newer truth. Reducers keep the newest
// complete snapshot per source and merge across sources; a key missing from
// it is gone.
type Partial struct {
	Window model.Timestamp
	Key    Key
	Source int32
	Hi     int64
	// Horizon is the source's committed eviction horizon: the source
	// publishes no partial for a window before it except after a rewind.
	Horizon    model.Timestamp
	Seq, Total uint32
	Stats      Stats
}

// FlushPolicy says which dirty windows Collect publishes.
type FlushPolicy struct {
	// Watermark closes windows that end at or before it: they are published
	// now and whenever late traces change them. math.MinInt64 closes none.
	Watermark model.Timestamp
	// All publishes every changed window, open ones too (the partition is
	// idle, or the aggregator is stopping).
	All bool
	// Checkpoint: a checkpoint follows. Windows revived behind the horizon
	// (rebuilt by a rewind, or started by a backfill) are published only
	// then or with All: a backfill fills them for a while, and each flush
	// would republish their whole families; the checkpoint needs them
	// published.
	Checkpoint bool
}

// Collect returns the partials to publish: changes of closed windows and
// of windows about to be evicted, of revived windows when a checkpoint
// follows, or of every window with All. It returns nothing while the partition is catching up on
// offsets a predecessor processed (Position < HighWater) or rewinding.
//
// Collected changes count as published. If publishing fails, the Partition
// must be discarded and restored from the last commit.
func (p *Partition) Collect(f FlushPolicy) []Partial {
	if p.rw != nil || p.pos < p.hw {
		return nil
	}
	evict := p.nextHor()
	ws := make([]*window, 0, len(p.windows))
	for _, w := range p.windows {
		if !w.resident {
			continue
		}
		if !w.closed && w.start.Add(p.cfg.Window) <= f.Watermark {
			w.closed = true
		}
		if !w.dirty {
			continue
		}
		if w.revived {
			if f.All || f.Checkpoint {
				ws = append(ws, w)
			}
			continue
		}
		if f.All || w.closed || w.start < evict {
			ws = append(ws, w)
		}
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].start < ws[j].start })
	var out []Partial
	for _, w := range ws {
		out = p.publishWindow(w, out)
	}
	return out
}

// recompute rebuilds the maxima and exemplars of stale keys from the
// window's contributions.
func (p *Partition) recompute(w *window) {
	var stale []bool
	for i, rk := range w.keys.keys {
		if rk.stale {
			if stale == nil {
				stale = make([]bool, len(w.keys.keys))
			}
			stale[i] = true
			rk.st.Duration.Max, rk.st.Self.Max, rk.st.CriticalPath.Max = 0, 0, 0
			rk.st.Exemplars = rk.st.Exemplars[:0]
			rk.stale = false
		}
	}
	if stale == nil {
		return
	}
	for _, e := range w.entries {
		if e.c == nil {
			continue
		}
		e.c.groups(func(key uint32, rs []rec) {
			if !stale[key] {
				return
			}
			st := &w.keys.keys[key].st
			for _, r := range rs {
				st.Duration.Max = max(st.Duration.Max, r.dur)
				st.Self.Max = max(st.Self.Max, r.self)
				st.CriticalPath.Max = max(st.CriticalPath.Max, r.cp)
			}
			b := slowest(rs)
			st.Exemplars = offerExemplar(st.Exemplars, model.Exemplar{TraceID: e.id, Duration: time.Duration(b.dur), Start: model.Timestamp(b.start)}, p.cfg.Exemplars)
		})
	}
}

func (p *Partition) publishWindow(w *window, out []Partial) []Partial {
	p.recompute(w)
	fams := make([]*famState, 0, len(w.fams))
	for _, fs := range w.fams {
		if fs.dirty {
			fams = append(fams, fs)
		}
	}
	sort.Slice(fams, func(i, j int) bool { return familyLess(fams[i].fam, fams[j].fam) })
	for _, fs := range fams {
		in := make(map[string]*Stats, len(fs.raw))
		for _, id := range fs.raw {
			rk := w.keys.keys[id]
			if !rk.st.IsZero() {
				in[rk.Dims] = &rk.st
			}
		}
		folded, of := p.fold.foldStats(in, p.cfg.Exemplars, false)
		p.counters.Overflowed += int64(of)
		out = p.snapshot(w, fs, folded, out)
		fs.dirty, fs.changed = false, false
	}
	w.dirty = false
	return out
}

// snapshot emits the family's folded keys, unless nothing changed them
// since the last snapshot this Partition published and they are the same
// (a rewind marks rebuilt windows for republication). A change that comes
// back to the published keys is published again: in between, another
// instance of this source (a predecessor, a zombie) may have published the
// intermediate state at a higher Hi, which only a newer snapshot replaces.
func (p *Partition) snapshot(w *window, fs *famState, folded map[string]*Stats, out []Partial) []Partial {
	keys := make([]string, 0, len(folded))
	for d := range folded {
		keys = append(keys, d)
	}
	sort.Strings(keys)
	h := fnv.New64a()
	var b [8]byte
	for _, d := range keys {
		var kh uint64
		kh, p.sb = folded[d].digest(p.sb)
		h.Write([]byte(d))
		binary.BigEndian.PutUint64(b[:], kh)
		h.Write(b[:])
	}
	digest := h.Sum64()
	if fs.published && fs.digest == digest && !fs.changed {
		return out
	}
	fs.published, fs.digest = true, digest
	base := Partial{Window: w.start, Key: Key{Family: fs.fam}, Source: p.source, Hi: p.hw, Horizon: p.ckHor, Total: uint32(len(keys))}
	if len(keys) == 0 {
		return append(out, base)
	}
	for i, d := range keys {
		pt := base
		pt.Key.Dims = d
		pt.Seq = uint32(i)
		pt.Stats = *folded[d]
		out = append(out, pt)
	}
	return out
}

// Partial encoding: version 1.
const partialVersion = 1

// maxPartialString bounds decoded names; maxSnapshotKeys a family
// snapshot's size.
const (
	maxPartialString = 64 << 10
	maxSnapshotKeys  = 1 << 24
)

// AppendBinary appends the partial's wire form (the value of a message of
// the partials topic). dimNames are the configured dimension names, carried
// so that a reducer with other settings rejects the partial.
func (pt *Partial) AppendBinary(dst []byte, dimNames []string) []byte {
	dst = append(dst, partialVersion)
	dst = binary.AppendVarint(dst, int64(pt.Window))
	dst = binary.AppendVarint(dst, int64(pt.Source))
	dst = binary.AppendVarint(dst, pt.Hi)
	dst = binary.AppendVarint(dst, int64(pt.Horizon))
	dst = binary.AppendUvarint(dst, uint64(pt.Seq))
	dst = binary.AppendUvarint(dst, uint64(pt.Total))
	var flags byte
	if pt.Key.Edge {
		flags = 1
	}
	dst = append(dst, flags, byte(pt.Key.Kind))
	dst = appendStr(dst, pt.Key.Service)
	dst = appendStr(dst, pt.Key.Operation)
	dst = binary.AppendUvarint(dst, uint64(len(dimNames)))
	for _, n := range dimNames {
		dst = appendStr(dst, n)
	}
	dst = appendStr(dst, pt.Key.Dims)
	return pt.Stats.AppendBinary(dst)
}

// ErrBadPartial reports a partials-topic message that cannot be decoded.
var ErrBadPartial = errors.New("malformed partial")

// DecodePartial reads AppendBinary's form, returning the dimension names it
// carries.
func DecodePartial(b []byte) (Partial, []string, error) {
	var pt Partial
	if len(b) < 1 || b[0] != partialVersion {
		return pt, nil, fmt.Errorf("%w: unknown version", ErrBadPartial)
	}
	r := &reader{b: b[1:]}
	pt.Window = model.Timestamp(r.varint())
	src := r.varint()
	pt.Hi = r.varint()
	pt.Horizon = model.Timestamp(r.varint())
	seq, total := r.uvarint(), r.uvarint()
	flags := r.byte1()
	kind := r.byte1()
	pt.Key.Service = r.str(maxPartialString)
	pt.Key.Operation = r.str(maxPartialString)
	nd := r.uvarint()
	if r.err == nil && nd > maxDimensions {
		return pt, nil, fmt.Errorf("%w: %d dimensions", ErrBadPartial, nd)
	}
	var names []string
	for i := uint64(0); i < nd && r.err == nil; i++ {
		names = append(names, r.str(maxPartialString))
	}
	pt.Key.Dims = r.str(maxPartialString)
	if r.err != nil {
		return pt, nil, fmt.Errorf("%w: %v", ErrBadPartial, r.err)
	}
	if src < 0 || src > 1<<31-1 || flags > 1 || kind > byte(model.KindConsumer) || pt.Hi < 0 ||
		total > maxSnapshotKeys || seq >= max(total, 1) {
		return pt, nil, fmt.Errorf("%w: bad header", ErrBadPartial)
	}
	pt.Seq, pt.Total = uint32(seq), uint32(total)
	pt.Source = int32(src)
	pt.Key.Edge = flags == 1
	pt.Key.Kind = model.SpanKind(kind)
	if got := len(dimValues(pt.Key.Dims, nil)); pt.Total > 0 && !pt.Key.Edge && got != len(names) || (pt.Key.Edge || pt.Total == 0) && pt.Key.Dims != "" {
		return pt, nil, fmt.Errorf("%w: %d dimension values for %d names", ErrBadPartial, got, len(names))
	}
	if encodeDims(dimValues(pt.Key.Dims, nil)) != pt.Key.Dims {
		return pt, nil, fmt.Errorf("%w: bad dimension encoding", ErrBadPartial)
	}
	st, err := decodeStats(r)
	if err != nil {
		return pt, nil, fmt.Errorf("%w: stats: %v", ErrBadPartial, err)
	}
	if len(r.b) != 0 {
		return pt, nil, fmt.Errorf("%w: %d trailing bytes", ErrBadPartial, len(r.b))
	}
	if pt.Total == 0 && !st.IsZero() {
		return pt, nil, fmt.Errorf("%w: empty snapshot with statistics", ErrBadPartial)
	}
	pt.Stats = st
	return pt, names, nil
}

// PartitionKey is the partials-topic message key: the family, so that one
// reducer sees every key, window and source of a family (the cardinality
// limit and coarse windows need them together).
func (pt *Partial) PartitionKey() []byte {
	var b []byte
	if pt.Key.Edge {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = append(b, byte(pt.Key.Kind))
	b = appendStr(b, pt.Key.Service)
	return appendStr(b, pt.Key.Operation)
}
