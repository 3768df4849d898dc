package rollup

import (
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/tracepipe/tracepipe/model"
)

// Message is one assembled-trace message of a source partition.
type Message struct {
	Offset int64
	// Time is the message's log time (the Kafka timestamp), 0 if unknown.
	// It only bounds how far a trace's start can push event time ahead.
	Time  model.Timestamp
	Trace *model.AssembledTrace
}

// Rewind asks the caller of Partition.Add to replay the partition's
// messages with offsets in [From, To) through Replay (From 0 means the
// partition's earliest offset), between BeginRewind and EndRewind, and then
// to call Add again with the same message.
type Rewind struct {
	From, To int64
	windows  []model.Timestamp // windows to rebuild, sorted
	low      model.Timestamp   // index horizon during the replay
	saved    model.Timestamp
}

// Windows are the windows the rewind rebuilds.
func (r *Rewind) Windows() []model.Timestamp { return r.windows }

// PartitionCounters count what a Partition did, for metrics.
type PartitionCounters struct {
	Traces     int64 // trace versions that became the latest of their trace
	Replaced   int64 // of those, versions that replaced an older version
	Duplicates int64 // versions seen before (re-emissions, replays)
	Stale      int64 // versions older than one seen before
	Late       int64 // latest versions that arrived after their window closed
	CatchUp    int64 // messages re-read after a restart, below the high-water mark
	Rewinds    int64
	Replayed   int64 // messages read by rewinds
	// Dropped counts messages not aggregated, by reason: "invalid" (no trace
	// ID, no version, analysis not aligned with the spans) and "too-late"
	// (beyond Config.MaxLateness).
	Dropped          map[string]int64
	RewindIncomplete int64 // BUG-level: a rewind did not find an indexed version
	Overflowed       int64 // keys folded into Overflow at publish
	// KeyOverflow counts spans and calls counted under an overflow key
	// because their window was at Config.OperationLimit or KeyLimit.
	KeyOverflow int64
}

// entry is the index's record of a trace's latest version.
type entry struct {
	id      model.TraceID
	version uint32
	win     *window
	slot    int32
	c       *contrib // nil in index-only windows
	pending bool     // in a window being rebuilt, contribution not yet replayed
}

// famState is a family of a resident window.
type famState struct {
	fam   Family
	raw   []uint32
	dirty bool
	// changed: a message changed the family's statistics since its last
	// snapshot (dirty alone may be a rewind marking it for republication).
	changed   bool
	published bool
	digest    uint64 // of the last published snapshot
}

// window is one base window of one source partition.
type window struct {
	start    model.Timestamp
	first    int64 // lowest offset of a message routed here
	last     int64 // highest offset of a message routed here
	resident bool  // contributions kept; otherwise index-only
	revived  bool  // resident again through a rewind
	closed   bool
	entries  []*entry
	keys     keyTable
	fams     map[Family]*famState
	ops      map[string]map[string]struct{} // admitted operations per service
	dirty    bool
}

// admitOperation reports whether op of service has (or gets) its own keys
// in w: it is among the first limit operations of the service.
func (w *window) admitOperation(service, op string, limit int) bool {
	if w.ops == nil {
		w.ops = map[string]map[string]struct{}{}
	}
	set := w.ops[service]
	if _, ok := set[op]; ok {
		return true
	}
	if len(set) >= limit {
		return false
	}
	if set == nil {
		set = map[string]struct{}{}
		w.ops[service] = set
	}
	set[op] = struct{}{}
	return true
}

func (w *window) addKey(enc string, k Key) uint32 {
	if w.keys.ids == nil {
		w.keys.ids = map[string]uint32{}
		w.fams = map[Family]*famState{}
	}
	id := uint32(len(w.keys.keys))
	fs := w.fams[k.Family]
	if fs == nil {
		fs = &famState{fam: k.Family}
		w.fams[k.Family] = fs
	}
	fs.raw = append(fs.raw, id)
	w.keys.keys = append(w.keys.keys, &rawKey{Key: k, fam: fs})
	w.keys.ids[enc] = id
	return id
}

func (w *window) addEntry(e *entry) {
	e.win = w
	e.slot = int32(len(w.entries))
	w.entries = append(w.entries, e)
}

func (w *window) removeEntry(e *entry) {
	last := w.entries[len(w.entries)-1]
	w.entries[e.slot] = last
	last.slot = e.slot
	w.entries = w.entries[:len(w.entries)-1]
}

func (w *window) addContrib(c *contrib, id model.TraceID, k int) {
	c.groups(func(key uint32, rs []rec) {
		rk := w.keys.keys[key]
		addRecs(&rk.st, rs, rk.Edge, c.traceDur, id, k)
		rk.fam.dirty, rk.fam.changed = true, true
	})
	w.dirty = true
}

func (w *window) subContrib(c *contrib, id model.TraceID) {
	c.groups(func(key uint32, rs []rec) {
		rk := w.keys.keys[key]
		if subRecs(&rk.st, rs, rk.Edge, c.traceDur, id) {
			rk.stale = true
		}
		rk.fam.dirty, rk.fam.changed = true, true
	})
	w.dirty = true
}

// demote drops the window's contributions, keeping its index entries.
func (w *window) demote() {
	w.resident, w.revived = false, false
	w.keys = keyTable{}
	w.fams = nil
	w.ops = nil
	w.dirty = false
	for _, e := range w.entries {
		e.c = nil
		e.pending = false
	}
}

// Partition aggregates the assembled traces of one source partition. It is
// a deterministic state machine over the partition's log: given the same
// messages (and the same Config) it publishes the same partials, whatever
// restarts and rewinds happened on the way. See the package documentation
// for the argument.
//
// A Partition is not safe for concurrent use; one goroutine owns it.
type Partition struct {
	cfg    Config
	source int32
	x      *extractor
	fold   *folder

	pos      int64           // next offset to read
	hw       int64           // high-water mark: offsets below were processed (maybe by a predecessor)
	maxEvent model.Timestamp // M: highest event time seen (clamped by MaxFuture)
	hor      model.Timestamp // windows before hor have no resident contributions
	idxHor   model.Timestamp // windows before idxHor are not indexed
	ckHor    model.Timestamp // hor of the last committed checkpoint
	hist     history
	// seen are the forgotten windows that had messages: all of them at or
	// after unseenBefore (a checkpoint of version 1 did not record them).
	seen         seenRuns
	unseenBefore model.Timestamp
	prevCk       int64 // position at the previous Checkpoint

	windows map[model.Timestamp]*window
	index   map[model.TraceID]*entry
	rw      *Rewind
	sb      []byte
	last    Outcome

	counters PartitionCounters
}

// Outcome says what Add did with its last message.
type Outcome int8

const (
	OutcomeNone      Outcome = iota
	OutcomeLatest            // the first version of its trace seen
	OutcomeReplaced          // a newer version replaced an older one
	OutcomeDuplicate         // a version seen before
	OutcomeStale             // older than a version seen before
	OutcomeDropped           // invalid or too late
	OutcomeCatchUp           // below the high-water mark: rebuilt, already published
	OutcomeRewind            // not processed: rewind first
)

// LastOutcome is what the last Add did.
func (p *Partition) LastOutcome() Outcome { return p.last }

// Skip advances past an offset whose message cannot be added (it could not
// be decoded, say), so that the next commit moves past it.
func (p *Partition) Skip(offset int64) error {
	if p.rw != nil {
		return errors.New("BUG: Skip during a rewind")
	}
	if offset < p.pos {
		return fmt.Errorf("offset %d is before position %d", offset, p.pos)
	}
	p.advance(&Message{Offset: offset})
	return nil
}

// ErrConfigChanged reports a checkpoint written with another window length
// or other dimensions: the partials would not merge. Use a new group.
var ErrConfigChanged = errors.New("checkpoint was written with another window or dimensions")

// NewPartition restores the state of source partition source from its
// committed offset and checkpoint metadata (nil for a fresh start at
// offset). Messages must then be added from offset on.
func NewPartition(cfg Config, source int32, offset int64, meta []byte) (*Partition, error) {
	cfg = cfg.Normalized()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("aggregate config: %w", err)
	}
	p := &Partition{
		cfg: cfg, source: source, x: newExtractor(&cfg), fold: newFolder(len(cfg.Dimensions), cfg.DimensionLimit),
		pos: offset, hw: offset,
		maxEvent: math.MinInt64, hor: math.MinInt64, idxHor: math.MinInt64, ckHor: math.MinInt64,
		windows: map[model.Timestamp]*window{}, index: map[model.TraceID]*entry{},
		unseenBefore: math.MinInt64,
	}
	p.counters.Dropped = map[string]int64{}
	if len(meta) > 0 {
		ck, err := decodeCheckpoint(meta)
		if err != nil {
			return nil, fmt.Errorf("partition %d checkpoint: %w", source, err)
		}
		if ck.fingerprint != cfg.fingerprint() {
			return nil, fmt.Errorf("partition %d: %w", source, ErrConfigChanged)
		}
		if ck.hw < offset {
			return nil, fmt.Errorf("partition %d checkpoint: high-water mark %d below the committed offset %d", source, ck.hw, offset)
		}
		p.hw, p.maxEvent, p.hor, p.idxHor, p.ckHor, p.hist = ck.hw, ck.maxEvent, ck.hor, ck.idxHor, ck.hor, ck.hist
		p.seen, p.unseenBefore = ck.seen, ck.unseenBefore
	}
	// The committed offset itself is a history point: every window at or
	// after idxHor has its first message at or after it.
	p.hist.add(offset, p.idxHor)
	return p, nil
}

// Position is the next offset the partition expects.
func (p *Partition) Position() int64 { return p.pos }

// HighWater is the offset below which every message has been processed, by
// this Partition or a predecessor; publishing waits until Position reaches it.
func (p *Partition) HighWater() int64 { return p.hw }

// MaxEventTime is the highest trace start seen (math.MinInt64 before any).
func (p *Partition) MaxEventTime() model.Timestamp { return p.maxEvent }

// Counters returns a copy of the counters.
func (p *Partition) Counters() PartitionCounters {
	c := p.counters
	c.Dropped = make(map[string]int64, len(p.counters.Dropped))
	for k, v := range p.counters.Dropped {
		c.Dropped[k] = v
	}
	return c
}

// Windows returns the number of resident windows and of those still open
// (not yet closed by a watermark).
func (p *Partition) Windows() (resident, open int) {
	for _, w := range p.windows {
		if w.resident {
			resident++
			if !w.closed {
				open++
			}
		}
	}
	return
}

// MaxWindowKeys is the largest number of keys a resident window holds
// (bounded by Config.KeyLimit plus the overflow keys).
func (p *Partition) MaxWindowKeys() int {
	n := 0
	for _, w := range p.windows {
		if w.resident {
			n = max(n, len(w.keys.keys))
		}
	}
	return n
}

// ResidentTraces is the number of trace versions with contributions in memory.
func (p *Partition) ResidentTraces() int {
	n := 0
	for _, w := range p.windows {
		if w.resident {
			n += len(w.entries)
		}
	}
	return n
}

func traceIDOf(at *model.AssembledTrace) model.TraceID {
	if !at.Trace.TraceID.IsZero() {
		return at.Trace.TraceID
	}
	return at.Analysis.TraceID
}

// valid reports whether at can be aggregated.
func valid(at *model.AssembledTrace) bool {
	return at != nil && !traceIDOf(at).IsZero() && at.Version > 0 &&
		len(at.Analysis.Spans) == len(at.Trace.Spans)
}

func (p *Partition) drop(reason string) { p.counters.Dropped[reason]++ }

func (p *Partition) advance(m *Message) {
	p.pos = m.Offset + 1
	if p.pos > p.hw {
		p.hw = p.pos
	}
}

// eventTime is the trace start used for windows and the watermark.
func (p *Partition) noteEventTime(m *Message) {
	t := m.Trace.Analysis.Start
	if m.Time != 0 && t > m.Time.Add(p.cfg.MaxFuture) {
		t = m.Time.Add(p.cfg.MaxFuture)
	}
	if t > p.maxEvent {
		p.maxEvent = t
	}
}

// Add processes the next message of the partition (offsets must increase).
// It returns a non-nil Rewind when the message concerns windows whose
// contributions are no longer in memory; the message is then not processed
// and must be added again after the rewind.
func (p *Partition) Add(m Message) (*Rewind, error) {
	if p.rw != nil {
		return nil, errors.New("BUG: Add during a rewind")
	}
	if m.Offset < p.pos {
		return nil, fmt.Errorf("offset %d is before position %d", m.Offset, p.pos)
	}
	catchUp := m.Offset < p.hw
	p.last = OutcomeCatchUp
	if catchUp {
		p.counters.CatchUp++
	}
	at := m.Trace
	if !valid(at) {
		if !catchUp {
			p.drop("invalid")
			p.last = OutcomeDropped
		}
		p.advance(&m)
		return nil, nil
	}
	id := traceIDOf(at)
	w := windowOf(at.Analysis.Start, p.cfg.Window)
	e := p.index[id]
	if e != nil && e.version >= at.Version {
		if !catchUp {
			if e.version == at.Version {
				p.counters.Duplicates++
				p.last = OutcomeDuplicate
			} else {
				p.counters.Stale++
				p.last = OutcomeStale
			}
		}
		p.advance(&m)
		return nil, nil
	}
	tw := p.windows[w]
	resident := tw != nil && tw.resident
	if catchUp {
		// Already reflected in published partials; rebuild memory only.
		if tw == nil && w < p.idxHor {
			// A forgotten window: it had a message, which neverSeen must
			// know (a predecessor may have published it before the
			// checkpoint recorded it).
			p.seen.add(w, p.cfg.Window, m.Offset)
			p.advance(&m)
			return nil, nil
		}
	} else {
		if tw == nil && w >= p.hor {
			resident = true // a new window
		}
		// Too late whether or not the window is resident: a revived window
		// may still be in memory, but whether it is depends on when
		// checkpoints ran, and the outcome must depend on the log alone.
		// (Windows at or after hor are never too late: Config.Validate.)
		if p.maxEvent != math.MinInt64 && w.Add(p.cfg.Window) < p.maxEvent.Add(-p.cfg.MaxLateness) {
			p.drop("too-late")
			p.last = OutcomeDropped
			p.advance(&m)
			return nil, nil
		}
		var need []model.Timestamp
		if !resident {
			if tw == nil && p.neverSeen(w) {
				// Late data for a window that never had a message (a
				// backfill): it starts resident, empty, with no re-read.
				tw = &window{start: w, first: m.Offset, resident: true, revived: true}
				p.windows[w] = tw
				resident = true
			} else {
				need = append(need, w)
			}
		}
		if e != nil && !e.win.resident {
			need = append(need, e.win.start)
		}
		if len(need) > 0 {
			p.last = OutcomeRewind
			return p.rewindFor(m.Offset, need), nil
		}
		p.noteEventTime(&m)
		p.last = OutcomeLatest
		if e != nil {
			p.last = OutcomeReplaced
		}
	}
	p.apply(&m, id, w, tw, e, catchUp)
	p.advance(&m)
	return nil, nil
}

// apply makes (id, m.Trace.Version) the latest version of the trace, in
// window w.
func (p *Partition) apply(m *Message, id model.TraceID, w model.Timestamp, tw *window, e *entry, quiet bool) {
	if e != nil {
		p.removeEntry(e)
		if !quiet {
			p.counters.Replaced++
		}
	}
	if tw == nil {
		tw = &window{start: w, first: m.Offset, resident: w >= p.hor || p.rw != nil && p.rw.rebuilds(w)}
		p.windows[w] = tw
	}
	if m.Offset < tw.first {
		tw.first = m.Offset
	}
	tw.last = max(tw.last, m.Offset)
	ne := &entry{id: id, version: m.Trace.Version}
	tw.addEntry(ne)
	p.index[id] = ne
	if tw.resident {
		ne.c = p.x.extract(m.Trace, tw)
		tw.addContrib(ne.c, id, p.cfg.Exemplars)
		if !quiet {
			p.counters.KeyOverflow += int64(p.x.overflowed)
		}
	}
	if !quiet {
		p.counters.Traces++
		if tw.closed {
			p.counters.Late++
		}
	}
}

func (p *Partition) removeEntry(e *entry) {
	if e.c != nil {
		e.win.subContrib(e.c, e.id)
	}
	e.win.removeEntry(e)
	delete(p.index, e.id)
}

func (r *Rewind) rebuilds(w model.Timestamp) bool {
	i := sort.Search(len(r.windows), func(i int) bool { return r.windows[i] >= w })
	return i < len(r.windows) && r.windows[i] == w
}

// neverSeen reports whether window w, not in memory, never had a message,
// nor did any forgotten window within VersionSpread of it (which could hold
// another version of a trace of w): every window that had a message is
// either in p.windows (and indexed) or in p.seen.
func (p *Partition) neverSeen(w model.Timestamp) bool {
	lo := windowOf(w.Add(-p.cfg.VersionSpread), p.cfg.Window)
	return lo >= p.unseenBefore && !p.seen.overlaps(lo, w.Add(p.cfg.VersionSpread))
}

// rewindFor plans a rewind rebuilding windows need before offset to. It
// starts at the first message of every window at or after the index
// horizon low it needs: from the history of checkpoints, tightened by the
// windows in memory and the seen runs when those are complete.
func (p *Partition) rewindFor(to int64, need []model.Timestamp) *Rewind {
	sort.Slice(need, func(i, j int) bool { return need[i] < need[j] })
	need = compactTimestamps(need)
	low := windowOf(need[0].Add(-p.cfg.VersionSpread), p.cfg.Window)
	from := p.hist.lowerBound(low)
	if low >= p.unseenBefore {
		tight := min(p.seen.firstFrom(low), to)
		for t, w := range p.windows {
			if t >= low && w.first < tight {
				tight = w.first
			}
		}
		from = max(from, tight)
	}
	return &Rewind{From: from, To: to, windows: need, low: low}
}

func compactTimestamps(ts []model.Timestamp) []model.Timestamp {
	out := ts[:0]
	for i, t := range ts {
		if i == 0 || t != ts[i-1] {
			out = append(out, t)
		}
	}
	return out
}

// BeginRewind prepares to replay for r: the windows r rebuilds become
// resident (their indexed versions wait for their messages), and the index
// reaches VersionSpread below them so that the replay sees every version of
// their traces.
func (p *Partition) BeginRewind(r *Rewind) {
	p.rw = r
	r.saved = p.idxHor
	if r.low < p.idxHor {
		p.idxHor = r.low
	}
	for _, w := range r.windows {
		win := p.windows[w]
		if win == nil {
			win = &window{start: w, first: math.MaxInt64}
			p.windows[w] = win
		}
		if !win.resident {
			win.resident = true
			for _, e := range win.entries {
				e.pending = true
			}
		}
		win.revived = true
	}
	p.counters.Rewinds++
}

// Replay processes a message of a rewind (offsets from r.From up to r.To,
// increasing). Messages outside the rebuilt range are skipped.
func (p *Partition) Replay(m Message) error {
	r := p.rw
	if r == nil {
		return errors.New("BUG: Replay outside a rewind")
	}
	if m.Offset >= r.To {
		return fmt.Errorf("replayed offset %d is not before %d", m.Offset, r.To)
	}
	p.counters.Replayed++
	at := m.Trace
	if !valid(at) {
		return nil
	}
	w := windowOf(at.Analysis.Start, p.cfg.Window)
	if w < r.low {
		return nil
	}
	id := traceIDOf(at)
	e := p.index[id]
	if e != nil && e.version > at.Version {
		return nil
	}
	if e != nil && e.version == at.Version {
		if e.pending && e.win.start == w {
			e.pending = false
			e.c = p.x.extract(at, e.win)
			e.win.addContrib(e.c, id, p.cfg.Exemplars)
			if m.Offset < e.win.first {
				e.win.first = m.Offset
			}
		}
		return nil
	}
	tw := p.windows[w]
	p.apply(&m, id, w, tw, e, true)
	return nil
}

// EndRewind finishes a rewind: the rebuilt windows are published at the
// next Collect and evicted again at the next Checkpoint.
func (p *Partition) EndRewind() {
	r := p.rw
	if r == nil {
		return
	}
	for _, w := range r.windows {
		win := p.windows[w]
		for i := 0; i < len(win.entries); {
			e := win.entries[i]
			if e.pending {
				// The indexed version's message was not in the replayed
				// range: cannot happen when the history is right.
				p.counters.RewindIncomplete++
				win.removeEntry(e)
				delete(p.index, e.id)
				continue
			}
			i++
		}
		win.dirty = true
		for _, fs := range win.fams {
			fs.dirty = true
		}
	}
	p.idxHor = r.saved
	p.rw = nil
}
