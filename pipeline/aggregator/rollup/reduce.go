package rollup

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// ChildSource reads back stored outputs of one family at one resolution
// whose windows start in [from, to): the rollups (or edge rollups) written
// earlier. A Reducer reads them to rebuild a coarse window after a restart
// or a rewind, instead of keeping every base window in memory. Reads must
// see every write acknowledged before; a store whose writes become visible
// later (Elasticsearch) also implements Syncer.
type ChildSource interface {
	Children(ctx context.Context, res time.Duration, fam Family, from, to model.Timestamp) ([]Output, error)
}

// Syncer is implemented by a ChildSource that must be told to make
// acknowledged writes readable; the Reducer calls Sync before each batch
// of reads.
type Syncer interface {
	Sync(ctx context.Context) error
}

// PartialMessage is one message of a partials-topic partition.
type PartialMessage struct {
	Offset int64
	// Time is the message's log time; a source that published nothing for
	// SourceIdle of it stops holding back eviction.
	Time    model.Timestamp
	Partial Partial
}

// ReduceCounters count what a Reducer did, for metrics.
type ReduceCounters struct {
	Partials    int64 // partials that replaced an older one of their source
	Stale       int64 // partials older than one seen before
	CatchUp     int64
	Rewinds     int64
	Replayed    int64
	Outputs     int64 // rollups emitted (retractions included)
	Retractions int64
	Loads       int64 // ChildSource reads
	Dropped     map[string]int64
}

// snap is a family snapshot of one source (see Partial).
type snap struct {
	hi   int64
	keys map[string]*Stats
}

// srcFam is what a reducer holds of one source's family in one window: the
// newest complete snapshot, and the newer one being received.
type srcFam struct {
	cur     snap
	pending *snap
	total   uint32
}

// rfam is a family of a base window in a reducer.
type rfam struct {
	srcs map[int32]*srcFam
	out  map[string]*Stats // last computed merged, folded stats
	pub  map[string]uint64 // digests of the outputs written (nil: none yet)
	// ghost: keys of partials below the barrier, which a predecessor may
	// still write (see Reducer.SetBarrier); the next Flush rewrites or
	// retracts them.
	ghost map[string]struct{}
	dirty bool
}

type rwin struct {
	start   model.Timestamp
	first   int64
	revived bool // resident again (a rewind, or a backfill's new window) before the horizon
	// mayBeStored: a predecessor (or this reducer before a rewind) may have
	// written outputs of this window, so the first Flush reads them to
	// retract keys that are gone.
	mayBeStored bool
	fams        map[Family]*rfam
	dirty       bool
}

// cfam is a family of a coarse window.
type cfam struct {
	// summary merges the outputs of the window's children that are not
	// resident: loaded from the ChildSource, or folded in when evicted.
	summary   map[string]*Stats
	inSummary map[model.Timestamp]bool
	loaded    bool
	out       map[string]*Stats
	pub       map[string]uint64
	dirty     bool
	// mayBeStored: some child may have been written by a predecessor (or
	// before a rewind), so this window's stored rollups and children are
	// read back; pubRead records that the stored rollups were.
	mayBeStored, pubRead bool
	ghost                map[string]struct{} // the children's ghosts (see rfam)
}

type cwin struct {
	start model.Timestamp
	fams  map[Family]*cfam
	dirty bool
}

type level struct {
	res  time.Duration
	wins map[model.Timestamp]*cwin
}

type sourceState struct {
	hor  model.Timestamp
	seen model.Timestamp
}

// Reducer merges the partials of one partials-topic partition into rollups
// at every resolution. Like Partition, it is a deterministic function of its
// log: restarts and rewinds change when it writes, not what.
//
// A Reducer is not safe for concurrent use.
type Reducer struct {
	cfg   Config
	names []string
	fold  *folder
	// SourceIdle: a source with no partial for this long (log time against
	// Checkpoint's now) no longer holds back eviction (default 10m).
	SourceIdle time.Duration

	pos, hw int64
	barrier int64           // partials below may have been processed by a predecessor
	fenced  bool            // SetBarrier was called: fence off a predecessor still writing
	crossed bool            // a Flush at or past the barrier has rewritten everything
	hor0    model.Timestamp // horizon restored from the checkpoint
	hor     model.Timestamp
	hist    history
	// seen are the evicted base windows that had partials (all of them at
	// or after unseenBefore): late partials for a window that never had one
	// (a backfill) start it without a rewind, and a rewind starts at the
	// first partial of its window rather than at a coarse history bound.
	seen         seenRuns
	unseenBefore model.Timestamp
	base         map[model.Timestamp]*rwin
	levels       []*level
	sources      map[int32]*sourceState
	rw           *Rewind
	sb           []byte

	counters ReduceCounters
}

// NewReducer restores a partials-topic partition's reducer from its
// committed offset and checkpoint metadata (nil for a fresh start).
func NewReducer(cfg Config, offset int64, meta []byte) (*Reducer, error) {
	cfg = cfg.Normalized()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("aggregate config: %w", err)
	}
	r := &Reducer{cfg: cfg, names: cfg.Dimensions, fold: newFolder(len(cfg.Dimensions), cfg.DimensionLimit),
		SourceIdle: 10 * time.Minute,
		pos:        offset, hw: offset, barrier: math.MaxInt64, hor: math.MinInt64, unseenBefore: math.MinInt64,
		base: map[model.Timestamp]*rwin{}, sources: map[int32]*sourceState{}}
	r.counters.Dropped = map[string]int64{}
	for _, res := range cfg.Coarse {
		r.levels = append(r.levels, &level{res: res, wins: map[model.Timestamp]*cwin{}})
	}
	if len(meta) > 0 {
		ck, err := decodeCheckpoint(meta)
		if err != nil {
			return nil, fmt.Errorf("reducer checkpoint: %w", err)
		}
		if ck.fingerprint != cfg.fingerprint() {
			return nil, fmt.Errorf("reducer: %w", ErrConfigChanged)
		}
		if ck.hw < offset {
			return nil, fmt.Errorf("reducer checkpoint: high-water mark %d below the committed offset %d", ck.hw, offset)
		}
		r.hw, r.hor, r.hist = ck.hw, ck.hor, ck.hist
		// Reducer checkpoints record seen windows from version 3 on;
		// before, every window before the horizon may have had partials.
		r.seen, r.unseenBefore = ck.seen, ck.unseenBefore
		if ck.version < 3 {
			r.seen, r.unseenBefore = nil, r.hor
		}
	}
	r.hor0 = r.hor
	r.hist.add(offset, r.hor)
	return r, nil
}

// SetBarrier tells the reducer the end offset of its partition when it
// started: a predecessor may have processed partials up to there and written
// rollups for them, which the reducer then reads back before overwriting, to
// retract keys that are gone. Without a barrier every window is read back.
//
// A predecessor may also still be writing (a paused process that lost its
// partition without knowing it). Its outputs carry versions at most
// 2 × end + 1 (Reducer.version), so the reducer fences them off (see the
// package doc, Claim 6): its own outputs carry at least 2 × end as their
// version; the first Flush at or past
// end rewrites every resident output (so that none the predecessor wrote
// meanwhile remains), and until then Checkpoint evicts and commits nothing
// (up to heldBeforeBarrier windows); and each Flush also rewrites or
// retracts every key of the partials below end that it read, which a
// predecessor may write.
func (r *Reducer) SetBarrier(end int64) { r.barrier, r.fenced = end, true }

// Position is the next offset the reducer expects.
func (r *Reducer) Position() int64 { return r.pos }

// HighWater is the offset below which a predecessor processed everything.
func (r *Reducer) HighWater() int64 { return r.hw }

// Skip advances past an offset whose partial cannot be decoded.
func (r *Reducer) Skip(offset int64) error {
	if r.rw != nil {
		return errors.New("BUG: Skip during a rewind")
	}
	if offset < r.pos {
		return fmt.Errorf("offset %d is before position %d", offset, r.pos)
	}
	r.advance(offset)
	return nil
}

// Counters returns a copy of the counters.
func (r *Reducer) Counters() ReduceCounters {
	c := r.counters
	c.Dropped = make(map[string]int64, len(r.counters.Dropped))
	for k, v := range r.counters.Dropped {
		c.Dropped[k] = v
	}
	return c
}

// Windows returns the number of resident base windows.
func (r *Reducer) Windows() int { return len(r.base) }

func (r *Reducer) advance(off int64) {
	r.pos = off + 1
	if r.pos > r.hw {
		r.hw = r.pos
	}
}

func (r *Reducer) accepts(pt *Partial, names []string) string {
	if windowOf(pt.Window, r.cfg.Window) != pt.Window {
		return "misaligned"
	}
	if !pt.Key.Edge && !slices.Equal(names, r.names) {
		return "other-dimensions"
	}
	if pt.Key.Edge && r.cfg.NoEdges {
		return "edges-disabled"
	}
	return ""
}

// Add processes the next partial (offsets must increase); names are the
// dimension names the partial carried. Like Partition.Add, it may return a
// Rewind instead of processing the partial.
func (r *Reducer) Add(m PartialMessage, names []string) (*Rewind, error) {
	if r.rw != nil {
		return nil, errors.New("BUG: Add during a rewind")
	}
	if m.Offset < r.pos {
		return nil, fmt.Errorf("offset %d is before position %d", m.Offset, r.pos)
	}
	pt := &m.Partial
	catchUp := m.Offset < r.hw
	if catchUp {
		r.counters.CatchUp++
	}
	if why := r.accepts(pt, names); why != "" {
		if !catchUp {
			r.counters.Dropped[why]++
		}
		r.advance(m.Offset)
		return nil, nil
	}
	s := r.sources[pt.Source]
	if s == nil {
		s = &sourceState{hor: math.MinInt64}
		r.sources[pt.Source] = s
	}
	s.hor = max(s.hor, pt.Horizon)
	s.seen = max(s.seen, m.Time)
	w := r.base[pt.Window]
	if w == nil && pt.Window < r.hor {
		if catchUp {
			// An evicted window had a partial: neverSeen must know.
			r.seen.add(pt.Window, r.cfg.Window, m.Offset)
			r.advance(m.Offset)
			return nil, nil
		}
		if !r.neverSeen(pt.Window) {
			return &Rewind{From: r.rewindFrom(pt.Window), To: m.Offset, windows: []model.Timestamp{pt.Window}, low: pt.Window}, nil
		}
		// Late partials of a window that never had one (a backfill): there
		// is nothing to rebuild. It starts resident, and, as after a
		// rewind, its stored rollups and its coarse parents' stored
		// children are read back before it is written.
		r.base[pt.Window] = &rwin{start: pt.Window, first: m.Offset, fams: map[Family]*rfam{}, mayBeStored: true, revived: true}
	}
	r.apply(m.Offset, pt, !catchUp)
	r.advance(m.Offset)
	return nil, nil
}

func (r *Reducer) apply(off int64, pt *Partial, count bool) {
	w := r.base[pt.Window]
	if w == nil {
		w = &rwin{start: pt.Window, first: off, fams: map[Family]*rfam{}, mayBeStored: off < r.barrier}
		r.base[pt.Window] = w
	}
	if off < w.first {
		w.first = off
	}
	f := w.fams[pt.Key.Family]
	if f == nil {
		f = &rfam{srcs: map[int32]*srcFam{}}
		w.fams[pt.Key.Family] = f
	}
	if r.fenced && off < r.barrier && pt.Total > 0 {
		if f.ghost == nil {
			f.ghost = map[string]struct{}{}
		}
		f.ghost[pt.Key.Dims] = struct{}{}
	}
	sf := f.srcs[pt.Source]
	if sf == nil {
		sf = &srcFam{cur: snap{hi: -1}}
		f.srcs[pt.Source] = sf
	}
	if pt.Hi <= sf.cur.hi || sf.pending != nil && pt.Hi < sf.pending.hi {
		if count {
			r.counters.Stale++
		}
		return
	}
	if sf.pending == nil || sf.pending.hi < pt.Hi {
		sf.pending = &snap{hi: pt.Hi, keys: map[string]*Stats{}}
		sf.total = pt.Total
	}
	if pt.Total > 0 {
		st := pt.Stats
		sf.pending.keys[pt.Key.Dims] = &st
	}
	if uint32(len(sf.pending.keys)) >= sf.total {
		sf.cur, sf.pending = *sf.pending, nil
		f.dirty, w.dirty = true, true
		if count {
			r.counters.Partials++
		}
	}
}

// Extend widens rw, which Add returned and which has not begun, to also
// rebuild the window of m, a partial that follows rw's trigger, if m will
// need that window rebuilt. Rebuilding a window earlier than needed is
// exact (the replay reads every partial of it before rw.To), so a caller
// that extends a rewind with the partials it already holds re-reads the log
// once instead of once per late partial. It reports whether rw changed.
func (r *Reducer) Extend(rw *Rewind, m PartialMessage, names []string) bool {
	pt := &m.Partial
	if r.rw != nil || m.Offset < rw.To || m.Offset < r.hw || r.accepts(pt, names) != "" {
		return false
	}
	if r.base[pt.Window] != nil || pt.Window >= r.hor || rw.rebuilds(pt.Window) || r.neverSeen(pt.Window) {
		return false
	}
	i, _ := slices.BinarySearch(rw.windows, pt.Window)
	rw.windows = slices.Insert(rw.windows, i, pt.Window)
	rw.From = min(rw.From, r.rewindFrom(pt.Window))
	rw.low = min(rw.low, pt.Window)
	return true
}

// BeginRewind starts replaying for rw (see Partition.BeginRewind).
func (r *Reducer) BeginRewind(rw *Rewind) {
	r.rw = rw
	for _, t := range rw.windows {
		if r.base[t] == nil {
			r.base[t] = &rwin{start: t, first: math.MaxInt64, fams: map[Family]*rfam{}, mayBeStored: true}
		}
		r.base[t].revived = true
	}
	r.counters.Rewinds++
}

// Replay processes a partial of a rewind.
func (r *Reducer) Replay(m PartialMessage, names []string) error {
	if r.rw == nil {
		return errors.New("BUG: Replay outside a rewind")
	}
	if m.Offset >= r.rw.To {
		return fmt.Errorf("replayed offset %d is not before %d", m.Offset, r.rw.To)
	}
	r.counters.Replayed++
	if r.accepts(&m.Partial, names) != "" || !r.rw.rebuilds(m.Partial.Window) {
		return nil
	}
	r.apply(m.Offset, &m.Partial, false)
	return nil
}

// EndRewind finishes a rewind; the rebuilt windows are written at the next
// Flush.
func (r *Reducer) EndRewind() {
	if r.rw == nil {
		return
	}
	for _, t := range r.rw.windows {
		w := r.base[t]
		w.dirty = true
		for _, f := range w.fams {
			f.dirty = true
		}
	}
	r.rw = nil
}

func sortedFams[V any](m map[Family]V) []Family {
	fs := make([]Family, 0, len(m))
	for f := range m {
		fs = append(fs, f)
	}
	sort.Slice(fs, func(i, j int) bool { return familyLess(fs[i], fs[j]) })
	return fs
}

func sortedTimes[V any](m map[model.Timestamp]V) []model.Timestamp {
	ts := make([]model.Timestamp, 0, len(m))
	for t := range m {
		ts = append(ts, t)
	}
	slices.Sort(ts)
	return ts
}

// readStoredBase initializes, with one read per family, the written-output
// digests of every dirty base window family that a predecessor may have
// written and this Reducer has not written yet.
func (r *Reducer) readStoredBase(ctx context.Context, src ChildSource) error {
	pf := &prefetch{need: map[resFam]*tspan{}}
	for t, w := range r.base {
		if !w.dirty || !w.mayBeStored {
			continue
		}
		for fam, f := range w.fams {
			if f.dirty && f.pub == nil {
				pf.add(r.cfg.Window, fam, t, t.Add(r.cfg.Window))
			}
		}
	}
	if len(pf.need) == 0 {
		return nil
	}
	if err := pf.fetch(ctx, src, &r.counters); err != nil {
		return err
	}
	for t, w := range r.base {
		if !w.dirty || !w.mayBeStored {
			continue
		}
		for fam, f := range w.fams {
			if f.dirty && f.pub == nil {
				f.pub = r.storedPub(pf.get(r.cfg.Window, fam, t, t.Add(r.cfg.Window)))
			}
		}
	}
	return nil
}

// storedPub turns stored outputs into written-output digests, so that the
// first write of a window in this Reducer retracts keys that are gone.
func (r *Reducer) storedPub(stored []Output) map[string]uint64 {
	pub := map[string]uint64{}
	var z Stats
	var zero uint64
	zero, r.sb = z.digest(r.sb)
	for i := range stored {
		h := uint64(0) // unknown: rewrite unless retracted
		if stored[i].Stats.IsZero() {
			h = zero
		}
		pub[stored[i].Key.Dims] = h
	}
	return pub
}

type resFam struct {
	res time.Duration
	fam Family
}

type tspan struct{ lo, hi model.Timestamp } // [lo, hi)

// prefetch batches ChildSource reads: ranges are registered with add,
// read with one call per (resolution, family) by fetch, and filtered by get.
type prefetch struct {
	need map[resFam]*tspan
	got  map[resFam][]Output
}

func (p *prefetch) add(res time.Duration, fam Family, lo, hi model.Timestamp) {
	k := resFam{res, fam}
	if sp := p.need[k]; sp != nil {
		sp.lo, sp.hi = min(sp.lo, lo), max(sp.hi, hi)
	} else {
		p.need[k] = &tspan{lo, hi}
	}
}

func (p *prefetch) fetch(ctx context.Context, src ChildSource, c *ReduceCounters) error {
	p.got = map[resFam][]Output{}
	if src == nil || len(p.need) == 0 {
		return nil
	}
	if sy, ok := src.(Syncer); ok {
		if err := sy.Sync(ctx); err != nil {
			return fmt.Errorf("sync stored rollups: %w", err)
		}
	}
	keys := make([]resFam, 0, len(p.need))
	for k := range p.need {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].res != keys[j].res {
			return keys[i].res < keys[j].res
		}
		return familyLess(keys[i].fam, keys[j].fam)
	})
	for _, k := range keys {
		sp := p.need[k]
		c.Loads++
		outs, err := src.Children(ctx, k.res, k.fam, sp.lo, sp.hi)
		if err != nil {
			return fmt.Errorf("read stored %s rollups of %s/%s: %w", model.ResolutionName(k.res), k.fam.Service, k.fam.Operation, err)
		}
		p.got[k] = outs
	}
	return nil
}

// get returns the fetched outputs of (res, fam) with windows in [lo, hi).
func (p *prefetch) get(res time.Duration, fam Family, lo, hi model.Timestamp) []Output {
	var out []Output
	for _, o := range p.got[resFam{res, fam}] {
		if o.Resolution == res && o.Key.Family == fam && o.Window >= lo && o.Window < hi {
			out = append(out, o)
		}
	}
	return out
}

// diffOut emits outputs for keys whose folded stats changed.
func (r *Reducer) diffOut(res time.Duration, win model.Timestamp, fam Family, out map[string]*Stats, pub *map[string]uint64, dst []Output) []Output {
	if *pub == nil {
		*pub = map[string]uint64{}
	}
	keys := make([]string, 0, len(out)+len(*pub))
	for d := range out {
		keys = append(keys, d)
	}
	for d := range *pub {
		if out[d] == nil {
			keys = append(keys, d)
		}
	}
	sort.Strings(keys)
	for _, d := range keys {
		o := Output{Resolution: res, Window: win, Key: Key{Family: fam, Dims: d}}
		if s := out[d]; s != nil {
			var h uint64
			h, r.sb = s.digest(r.sb)
			if old, ok := (*pub)[d]; ok && old == h {
				continue
			}
			(*pub)[d] = h
			o.Stats = s.Clone()
		} else {
			var z Stats
			h, _ := z.digest(r.sb)
			if (*pub)[d] == h {
				continue // stored as retracted already
			}
			(*pub)[d] = h
			r.counters.Retractions++
		}
		r.counters.Outputs++
		dst = append(dst, o)
	}
	return dst
}

// Flush returns the outputs that changed since the last Flush: base
// windows, and with coarse also every coarse level (coarse windows merge
// many children, so callers refresh them less often). It reads stored
// rollups from src where needed. It returns nothing while catching up or
// rewinding. The outputs must be durably written before Checkpoint, which
// needs a Flush with coarse first; if writing fails, discard the Reducer.
func (r *Reducer) Flush(ctx context.Context, src ChildSource, coarse bool) ([]Output, error) {
	if r.rw != nil || r.pos < r.hw {
		return nil, nil
	}
	if r.fenced && !r.crossed && r.pos >= r.barrier {
		r.rewriteAll()
	}
	if err := r.readStoredBase(ctx, src); err != nil {
		return nil, err
	}
	var out []Output
	for _, t := range sortedTimes(r.base) {
		w := r.base[t]
		if !w.dirty {
			continue
		}
		for _, fam := range sortedFams(w.fams) {
			f := w.fams[fam]
			if !f.dirty {
				continue
			}
			in := map[string]*Stats{}
			for _, sf := range f.srcs {
				for d, st := range sf.cur.keys {
					if s := in[d]; s != nil {
						s.Merge(st, r.cfg.Exemplars)
					} else {
						c := st.Clone()
						in[d] = &c
					}
				}
			}
			if f.ghost != nil {
				r.addGhosts(&f.pub, f.ghost, in)
			}
			f.out, _ = r.fold.foldStats(in, r.cfg.Exemplars, true)
			out = r.diffOut(r.cfg.Window, t, fam, f.out, &f.pub, out)
			f.dirty = false
			r.markParent(0, t, fam, w.mayBeStored, f.ghost)
			f.ghost = nil
		}
		w.dirty = false
	}
	for lv, l := range r.levels {
		if !coarse {
			break
		}
		// Read what this level needs from storage, one query per
		// (resolution, family).
		pf := &prefetch{need: map[resFam]*tspan{}}
		for t, cw := range l.wins {
			if !cw.dirty {
				continue
			}
			for fam, cf := range cw.fams {
				if !cf.dirty || !cf.mayBeStored {
					continue
				}
				if !cf.loaded && t < r.hor {
					pf.add(r.childRes(lv), fam, t, t.Add(l.res))
				}
				if !cf.pubRead {
					pf.add(l.res, fam, t, t.Add(l.res))
				}
			}
		}
		if err := pf.fetch(ctx, src, &r.counters); err != nil {
			return nil, err
		}
		for _, t := range sortedTimes(l.wins) {
			cw := l.wins[t]
			if !cw.dirty {
				continue
			}
			for _, fam := range sortedFams(cw.fams) {
				cf := cw.fams[fam]
				if !cf.dirty {
					continue
				}
				if !cf.loaded {
					r.load(pf, lv, cw, fam, cf)
				}
				in := map[string]*Stats{}
				merge := func(m map[string]*Stats) {
					for d, s := range m {
						if t := in[d]; t != nil {
							t.Merge(s, r.cfg.Exemplars)
						} else {
							c := s.Clone()
							in[d] = &c
						}
					}
				}
				merge(cf.summary)
				r.eachChild(lv, t, fam, merge)
				if cf.ghost != nil {
					// A coarse window also merges stored children: a
					// predecessor may have folded their keys otherwise.
					for d := range in {
						cf.ghost[d] = struct{}{}
					}
					r.addGhosts(&cf.pub, cf.ghost, in)
				}
				cf.out, _ = r.fold.foldStats(in, r.cfg.Exemplars, true)
				if cf.mayBeStored && !cf.pubRead {
					stored := r.storedPub(pf.get(l.res, fam, t, t.Add(l.res)))
					if cf.pub == nil {
						cf.pub = stored
					} else {
						for d, h := range stored {
							if _, ok := cf.pub[d]; !ok {
								cf.pub[d] = h
							}
						}
					}
					cf.pubRead = true
				}
				out = r.diffOut(l.res, t, fam, cf.out, &cf.pub, out)
				cf.dirty = false
				r.markParent(lv+1, t, fam, cf.mayBeStored, cf.ghost)
				cf.ghost = nil
			}
			cw.dirty = false
		}
	}
	for i := range out {
		out[i].Version = r.version()
	}
	return out, nil
}

// version is the version of the outputs of a Flush at the reducer's
// position (the store keeps the highest; see the package doc, Claim 6):
// 2 × the barrier before the reducer crossed it (Flush crosses it at the
// first position at or past it), 2 × its position + 1 once it has (or
// without a barrier). Before the barrier the outputs are true of
// an older prefix than their label says, as are a stale writer's that had
// not crossed the same barrier; past it an output's version says exactly
// which prefix it is true of, and always outranks those.
func (r *Reducer) version() int64 {
	if r.fenced && !r.crossed {
		return 2 * r.barrier
	}
	return 2*r.pos + 1
}

// rewriteAll marks every output written so far as unknown, so that the
// next Flush rewrites (or retracts) it: done once, at the first Flush at or
// past the barrier. Outputs written before carried 2 × the barrier as
// version, as may a predecessor's, which then may have replaced them.
func (r *Reducer) rewriteAll() {
	r.crossed = true
	unknown := func(pub map[string]uint64) {
		for d := range pub {
			pub[d] = 0
		}
	}
	for _, w := range r.base {
		for _, f := range w.fams {
			if f.pub != nil {
				unknown(f.pub)
				f.dirty, w.dirty = true, true
			}
		}
	}
	for _, l := range r.levels {
		for _, cw := range l.wins {
			for _, cf := range cw.fams {
				if cf.pub != nil {
					unknown(cf.pub)
					cf.dirty, cw.dirty = true, true
				}
			}
		}
	}
}

// addGhosts adds to *pub, as unknown (rewrite, or retract if absent), every
// key that a predecessor may have written from ghost, its keys of partials
// below the barrier; in is the family's unfolded input. A predecessor folded
// with the values it held then, so a value may have overflowed for it and
// not for this reducer: each key is added with every combination of its
// values that could overflow replaced by Overflow. A value could overflow
// only if at least DimensionLimit other values of its dimension hash below
// it, among the values of ghost and in (every value the predecessor held is
// in one of them).
func (r *Reducer) addGhosts(pub *map[string]uint64, ghost map[string]struct{}, in map[string]*Stats) {
	if *pub == nil {
		*pub = map[string]uint64{}
	}
	n := len(r.names)
	if n == 0 {
		for d := range ghost {
			if _, ok := (*pub)[d]; !ok {
				(*pub)[d] = 0
			}
		}
		return
	}
	// Per dimension, the hashes of the values seen, sorted.
	type hv struct {
		h uint64
		v string
	}
	seen := make([]map[string]struct{}, n)
	for i := range seen {
		seen[i] = map[string]struct{}{}
	}
	var vals []string
	note := func(d string) {
		vals = dimValues(d, vals)
		for i, v := range vals {
			if i < n && v != "" && v != Overflow {
				seen[i][v] = struct{}{}
			}
		}
	}
	for d := range ghost {
		note(d)
	}
	for d := range in {
		note(d)
	}
	ranked := make([][]hv, n)
	for i, set := range seen {
		if len(set) <= r.cfg.DimensionLimit {
			continue // nothing can overflow
		}
		for v := range set {
			ranked[i] = append(ranked[i], hv{valueHash(v), v})
		}
		sort.Slice(ranked[i], func(a, b int) bool {
			x, y := ranked[i][a], ranked[i][b]
			return x.h < y.h || x.h == y.h && x.v < y.v
		})
	}
	mayOverflow := func(i int, v string) bool {
		if ranked[i] == nil || v == "" || v == Overflow {
			return false
		}
		h := valueHash(v)
		k := sort.Search(len(ranked[i]), func(j int) bool {
			x := ranked[i][j]
			return x.h > h || x.h == h && x.v >= v
		})
		return k >= r.cfg.DimensionLimit
	}
	var idx []int
	for d := range ghost {
		vals = dimValues(d, vals)
		idx = idx[:0]
		for i, v := range vals {
			if i < n && mayOverflow(i, v) {
				idx = append(idx, i)
			}
		}
		base := append([]string(nil), vals...)
		for mask := 0; mask < 1<<len(idx); mask++ {
			vs := append([]string(nil), base...)
			for b, i := range idx {
				if mask&(1<<b) != 0 {
					vs[i] = Overflow
				}
			}
			k := d
			if mask != 0 {
				k = encodeDims(vs)
			}
			if _, ok := (*pub)[k]; !ok {
				(*pub)[k] = 0
			}
		}
	}
}

// childRes is the resolution of the children of level lv.
func (r *Reducer) childRes(lv int) time.Duration {
	if lv == 0 {
		return r.cfg.Window
	}
	return r.levels[lv-1].res
}

// eachChild calls fn with the current output of fam in every resident child
// of coarse window (lv, t).
func (r *Reducer) eachChild(lv int, t model.Timestamp, fam Family, fn func(map[string]*Stats)) {
	cr := r.childRes(lv)
	for c := t; c < t.Add(r.levels[lv].res); c = c.Add(cr) {
		if lv == 0 {
			if w := r.base[c]; w != nil {
				if f := w.fams[fam]; f != nil {
					fn(f.out)
				}
			}
		} else if cw := r.levels[lv-1].wins[c]; cw != nil {
			if cf := cw.fams[fam]; cf != nil {
				fn(cf.out)
			}
		}
	}
}

// childIsResident reports whether fam of child window c of level lv has
// state in memory (and so is not counted in the level's summaries).
func (r *Reducer) childIsResident(lv int, c model.Timestamp, fam Family) bool {
	if lv == 0 {
		w := r.base[c]
		return w != nil && w.fams[fam] != nil
	}
	cw := r.levels[lv-1].wins[c]
	return cw != nil && cw.fams[fam] != nil
}

// load fills a coarse family's summary from the stored outputs of its
// children that are not resident (read by pf).
func (r *Reducer) load(pf *prefetch, lv int, cw *cwin, fam Family, cf *cfam) {
	cf.summary, cf.inSummary = map[string]*Stats{}, map[model.Timestamp]bool{}
	end := cw.start.Add(r.levels[lv].res)
	if cw.start < r.hor && cf.mayBeStored {
		for _, k := range pf.get(r.childRes(lv), fam, cw.start, end) {
			if r.childIsResident(lv, k.Window, fam) || k.Stats.IsZero() {
				continue
			}
			cf.inSummary[k.Window] = true
			if s := cf.summary[k.Key.Dims]; s != nil {
				s.Merge(&k.Stats, r.cfg.Exemplars)
			} else {
				c := k.Stats.Clone()
				cf.summary[k.Key.Dims] = &c
			}
		}
	}
	cf.loaded = true
}

// markParent marks fam of the level-lv window containing t dirty, creating
// it if needed. The child (t, fam) is resident: if the parent's summary
// counted its stored output, the summary is reloaded without it.
func (r *Reducer) markParent(lv int, t model.Timestamp, fam Family, mayBeStored bool, ghost map[string]struct{}) {
	if lv >= len(r.levels) {
		return
	}
	l := r.levels[lv]
	pt := windowOf(t, l.res)
	cw := l.wins[pt]
	if cw == nil {
		cw = &cwin{start: pt, fams: map[Family]*cfam{}}
		l.wins[pt] = cw
	}
	cf := cw.fams[fam]
	if cf == nil {
		// Children before the horizon may already be evicted and stored.
		cf = &cfam{loaded: pt >= r.hor, mayBeStored: pt < r.hor0}
		if cf.loaded {
			cf.summary, cf.inSummary = map[string]*Stats{}, map[model.Timestamp]bool{}
		}
		cw.fams[fam] = cf
	}
	if cf.inSummary[t] {
		cf.loaded, cf.summary, cf.inSummary = false, nil, nil
	}
	if mayBeStored && !cf.mayBeStored {
		cf.mayBeStored, cf.pubRead = true, false
	}
	if len(ghost) > 0 {
		if cf.ghost == nil {
			cf.ghost = map[string]struct{}{}
		}
		for d := range ghost {
			cf.ghost[d] = struct{}{}
		}
	}
	cf.dirty, cw.dirty = true, true
}

// heldBeforeBarrier is how many base windows a reducer that has not
// crossed its barrier holds without evicting or committing (see
// Checkpoint): a takeover's catch-up after a rebalance or a short outage
// fits; a longer backlog evicts as if it had crossed, and keeps the
// package doc's Claim 6 gap for the windows it evicts.
const heldBeforeBarrier = 64

// Checkpoint evicts base windows before the horizon (the lowest committed
// horizon among active sources) and coarse windows whose children are all
// evicted, and returns what to commit. Every output of Flush must be durably
// written first; ErrUnpublished reports unflushed changes, and also a
// reducer with a barrier that has not crossed it yet and holds at most
// heldBeforeBarrier base windows: until then it evicts and commits nothing
// (see the package doc, Claim 6).
func (r *Reducer) Checkpoint(now model.Timestamp) (Commit, error) {
	if r.rw != nil {
		return Commit{}, errors.New("BUG: Checkpoint during a rewind")
	}
	if r.fenced && !r.crossed && len(r.base) <= heldBeforeBarrier {
		// Its outputs so far carry 2 × barrier, as do those of a stale
		// writer that took over with the same barrier and holds older
		// states of the same windows; only the rewrite at the first Flush
		// past the barrier makes them stick, and it rewrites resident
		// windows only. An evicted window would keep the tie for good, and
		// so would every window written since the last commit if a
		// successor resumed past it. Bounded: past heldBeforeBarrier
		// windows (a long backlog, a replay) it evicts as before.
		return Commit{}, ErrUnpublished
	}
	for _, w := range r.base {
		if w.dirty {
			return Commit{}, ErrUnpublished
		}
	}
	for _, l := range r.levels {
		for _, cw := range l.wins {
			if cw.dirty {
				return Commit{}, ErrUnpublished
			}
		}
	}
	hor := r.hor
	cand, any := model.Timestamp(math.MaxInt64), false
	for _, s := range r.sources {
		if now.Sub(s.seen) > r.SourceIdle {
			continue
		}
		any = true
		cand = min(cand, s.hor)
	}
	if any && cand != math.MinInt64 {
		if h := windowOf(cand, r.cfg.Window); h > hor {
			hor = h
		}
	}
	// Evict base windows, folding their outputs into their parents.
	for t, w := range r.base {
		if t >= hor {
			continue
		}
		if len(r.levels) > 0 {
			p := r.levels[0].wins[windowOf(t, r.levels[0].res)]
			for fam, f := range w.fams {
				if f.out == nil {
					continue // never flushed: no complete snapshot yet
				}
				if p == nil || p.fams[fam] == nil {
					return Commit{}, fmt.Errorf("BUG: base window %d has no parent for %v", t, fam)
				}
				foldInto(p.fams[fam], t, f.out, r.cfg.Exemplars)
			}
		}
		if w.first != math.MaxInt64 {
			r.seen.add(t, r.cfg.Window, w.first)
		}
		delete(r.base, t)
	}
	for lv, l := range r.levels {
		for t, cw := range l.wins {
			if t.Add(l.res) > hor || r.hasResidentChild(lv, t) {
				continue
			}
			if lv+1 < len(r.levels) {
				pl := r.levels[lv+1]
				p := pl.wins[windowOf(t, pl.res)]
				for fam, cf := range cw.fams {
					if p == nil || p.fams[fam] == nil {
						return Commit{}, fmt.Errorf("BUG: coarse window %d has no parent for %v", t, fam)
					}
					foldInto(p.fams[fam], t, cf.out, r.cfg.Exemplars)
				}
			}
			delete(l.wins, t)
		}
	}
	off := r.pos
	for _, w := range r.base {
		if w.first < off {
			off = w.first
		}
		w.revived = false
	}
	r.hor = hor
	r.hist.add(off, hor)
	ck := checkpoint{fingerprint: r.cfg.fingerprint(), hw: r.hw, maxEvent: math.MinInt64, hor: hor, idxHor: hor, hist: r.hist, seen: r.seen, unseenBefore: r.unseenBefore}
	return Commit{Offset: off, Metadata: ck.encode(), hor: hor}, nil
}

func (r *Reducer) hasResidentChild(lv int, t model.Timestamp) bool {
	cr := r.childRes(lv)
	for c := t; c < t.Add(r.levels[lv].res); c = c.Add(cr) {
		if lv == 0 && r.base[c] != nil || lv > 0 && r.levels[lv-1].wins[c] != nil {
			return true
		}
	}
	return false
}

func foldInto(cf *cfam, child model.Timestamp, out map[string]*Stats, k int) {
	if !cf.loaded {
		return // the next load reads the child's stored output
	}
	cf.inSummary[child] = true
	for d, s := range out {
		if t := cf.summary[d]; t != nil {
			t.Merge(s, k)
		} else {
			c := s.Clone()
			cf.summary[d] = &c
		}
	}
}

// neverSeen reports whether base window w, not in memory, never had a
// partial: every window that had one is in r.base or in r.seen (or before
// r.unseenBefore, unknown).
func (r *Reducer) neverSeen(w model.Timestamp) bool {
	return w >= r.unseenBefore && !r.seen.overlaps(w, w)
}

// rewindFrom is an offset at or before the first partial of base window w
// (a rewind rebuilds only its own windows): from the history of
// checkpoints, tightened by the seen run holding w when the runs are
// complete.
func (r *Reducer) rewindFrom(w model.Timestamp) int64 {
	from := r.hist.lowerBound(w)
	if w >= r.unseenBefore {
		if f := r.seen.firstOf(w); f != math.MaxInt64 {
			from = max(from, f)
		}
	}
	return from
}
