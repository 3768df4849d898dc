// Package assemble groups spans into traces, decides when a trace is complete
// and explains it (dag.Analyze) before it is emitted. It does no I/O: time
// comes from an injected Clock, input is (offset, spans) of one source
// partition, output is a list of assembled trace versions. The Kafka stage
// (pipeline/ingest) owns one Assembler per partition and calls it from a
// single goroutine; an Assembler is not safe for concurrent use. Only the
// shared Budget is touched by several assemblers (atomically).
//
// # Life of a trace
//
// A trace is buffered from its first span. It is emitted when no span of it
// has arrived for Config.IdleTimeout (completion "idle") or when it has been
// buffered for Config.MaxWait (completion "max_wait"), whichever comes first.
// After emission it is retained, spans and all, for Config.LateHorizon: a span
// arriving in that time is a late span; it puts the trace back into buffering
// and the next emission is a new version carrying all known spans (completion
// "late"). After the horizon, or earlier when the instance's Budget is full
// (oldest emission first), the trace is evicted and remembered only as a
// tombstone (Config.MaxTombstones, oldest forgotten first); spans arriving for a
// tombstoned trace are dropped and counted as too late. A span of a trace that
// is neither buffered, retained nor tombstoned starts a new trace.
//
// # Versions
//
// A trace's version is the number of unique spans it carries. A copy of a span
// that is already buffered or retained (same span ID and the same content) is
// dropped and counted; two spans with the same ID and different content are
// both kept (dag.Analyze reports them). Since spans of one partition are read
// in offset order, the span set of every emission is the set of the trace's
// spans up to some offset, so two emissions with the same version carry the
// same spans in the same order — also across a crash and a replay (see
// LowestOffset). Emissions are made only when the span count grew.
// Jaeger protobuf spans are held as their messages and decoded when their
// trace is emitted: one that does not decode is taken out of the trace
// (TakeRejected), is not counted in its version, and leaves the emission
// out when it was all that was new.
//
// # Limits
//
//   - Config.MaxSpansPerTrace: further unique spans are dropped and counted;
//     the trace is marked truncated (Truncated, DroppedSpans, a warning).
//     Its version stays at the limit.
//   - Budget.MaxTraces and Budget.MaxBytes bound buffered plus retained traces
//     and their bytes per instance (all assemblers sharing the Budget). Bytes
//     are the encoded spans plus SpanOverhead per span and TraceOverhead per
//     trace. When full, MakeRoom evicts retained traces, oldest emission first;
//     if the budget is still full the caller must stop adding (backpressure:
//     pipeline/ingest stops fetching) until emissions and evictions free space.
//     Add never refuses spans, so the limits can be exceeded by at most one
//     message per assembler.
//
// # Offsets
//
// LowestOffset is the lowest source offset of any span still buffered or
// retained. The ingester commits no offset above it, so after a crash the next
// owner re-reads every span of every trace that was buffered or retained, and
// rebuilds them with the same versions. An evicted trace may still straddle
// the committed offset C (first span below it, a later message at or after
// it); Lookback(C) is the first offset of the earliest such trace (from the
// tombstones, which keep each evicted trace's offset range). The next owner
// replays from Lookback(C) with SetShadow(C): traces whose messages all lie
// below C are rebuilt but never emitted (they were emitted before), and
// straddling traces are rebuilt from all their spans, so they too come out
// with versions identical to earlier ones. This holds while the straddling
// trace's tombstone is remembered (MaxTombstones).
package assemble

import (
	"fmt"
	"hash/maphash"
	"math"
	"sync/atomic"
	"time"

	"github.com/tracepipe/tracepipe/dag"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/wire"
)

// Clock tells the time; tests inject a fake one.
type Clock interface{ Now() time.Time }

// Memory accounting constants (bytes added per buffered span and trace on top
// of the spans' encoded size); they approximate the real Go overhead.
const (
	SpanOverhead  = 48
	TraceOverhead = 320
)

// Config tunes an Assembler. Zero values mean the defaults below.
type Config struct {
	IdleTimeout      time.Duration // default 5s
	MaxWait          time.Duration // default 60s
	LateHorizon      time.Duration // default 60s; negative: no late versions, evict at emission
	MaxSpansPerTrace int           // default 5000
	MaxTombstones    int           // default 100000; negative: none
	Analyze          dag.Options
}

// Defaults.
const (
	DefaultIdleTimeout      = 5 * time.Second
	DefaultMaxWait          = 60 * time.Second
	DefaultLateHorizon      = 60 * time.Second
	DefaultMaxSpansPerTrace = 5000
	DefaultMaxTombstones    = 100_000
)

func (c Config) withDefaults() Config {
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxWait <= 0 {
		c.MaxWait = DefaultMaxWait
	}
	if c.LateHorizon == 0 {
		c.LateHorizon = DefaultLateHorizon
	}
	if c.MaxSpansPerTrace <= 0 {
		c.MaxSpansPerTrace = DefaultMaxSpansPerTrace
	}
	if c.MaxTombstones == 0 {
		c.MaxTombstones = DefaultMaxTombstones
	}
	return c
}

// Budget is the per-instance memory bound shared by all assemblers of one
// ingester. Its fields are read and updated atomically; MaxTraces or MaxBytes
// <= 0 means unlimited.
type Budget struct {
	MaxTraces int64
	MaxBytes  int64
	traces    atomic.Int64
	spans     atomic.Int64
	bytes     atomic.Int64
}

// InFlight returns the traces, spans and bytes held (buffered and retained).
func (b *Budget) InFlight() (traces, spans, bytes int64) {
	return b.traces.Load(), b.spans.Load(), b.bytes.Load()
}

// Full reports whether the budget is at or over a limit.
func (b *Budget) Full() bool {
	return (b.MaxTraces > 0 && b.traces.Load() >= b.MaxTraces) || (b.MaxBytes > 0 && b.bytes.Load() >= b.MaxBytes)
}

// Counters are cumulative counts kept by one Assembler.
type Counters struct {
	SpansIn         int64    // spans offered to Add
	DuplicateSpans  int64    // exact copies dropped
	LateSpans       int64    // unique spans added to an emitted (retained) trace
	TruncatedSpans  int64    // dropped by MaxSpansPerTrace
	TooLateSpans    int64    // dropped because their trace was evicted (tombstoned)
	TracesOut       [5]int64 // by model.Completion
	TruncatedTraces int64    // emissions with Truncated set
	EvictedEarly    int64    // retained traces evicted before their horizon for space
	ShadowTraces    int64    // traces rebuilt in a lookback replay and not emitted
	// UnencodableSpans were decoded but cannot be held in Jaeger protobuf
	// form (wire.AppendJaegerProto refused them); dropped.
	UnencodableSpans int64
	// RejectedSpans did not decode when their trace was emitted
	// (TakeRejected returns them).
	RejectedSpans int64
}

// tombstone remembers an evicted trace's offset range: spans for it are
// dropped, and while the range reaches the commit point it sets Lookback.
type tombstone struct{ min, max int64 }

// Output is one emitted trace version. Call Acked(Token) once the broker has
// acknowledged it; until then the trace stays retained and holds
// LowestOffset.
type Output struct {
	Trace *model.AssembledTrace
	Token Token
}

// Token identifies an emission for Acked.
type Token struct{ t *trace }

type stored struct {
	off  int64
	id   model.SpanID
	hash uint64
	b    []byte
}

type spanKey struct {
	id   model.SpanID
	hash uint64
}

const (
	lAll = iota // every trace, in creation (= lowest offset) order
	lIdle
	lWait
	lRetained
	nLists
)

type link struct{ prev, next *trace }

type list struct{ head, tail *trace }

type trace struct {
	id           model.TraceID
	spans        []stored
	dedupe       map[spanKey]struct{} // built when spans grows past linearDedupe
	bytes        int64
	minOffset    int64
	maxOffset    int64     // highest offset of any message touching the trace
	shadow       bool      // only spans below the shadow offset so far: never emitted
	since        time.Time // buffered since (first span of this version)
	last         time.Time // last span added
	emittedAt    time.Time
	version      uint32 // last emitted version, 0 if never
	retained     bool
	truncated    bool
	dropped      int
	pendingAcks  int
	links        [nLists]link
	inList       [nLists]bool
	emittedCount int
	seq          uint64 // order in lAll
}

const linearDedupe = 32

// Assembler assembles the traces of one partition. See the package doc.
type Assembler struct {
	cfg    Config
	clock  Clock
	budget *Budget
	seed   maphash.Seed
	traces map[model.TraceID]*trace
	lists  [nLists]list

	tomb        map[model.TraceID]*tombstone
	tombRing    []model.TraceID
	tombNext    int
	shadowBelow int64

	buffered int // traces not retained
	spans    int
	bytes    int64
	c        Counters
	enc      []byte
	dec      wire.JaegerProtoDecoder
	rejected []Rejected // since the last TakeRejected
	// unsettled is where LowestUnsettled starts: every trace before it in
	// lAll is settled (nil: every trace is). seq numbers lAll's traces.
	unsettled *trace
	seq       uint64
	free      [][]stored // span lists of evicted traces, for new ones
}

// Bounds of the free list of span lists: how many are kept and up to what
// capacity, so that it holds at most 256×64×48 B = 768 KiB per partition
// (outside the budget, which counts buffered spans).
const (
	maxFreeLists     = 256
	maxFreeListCap   = 64
	firstSpanListCap = 8
)

// New returns an empty Assembler. budget may be nil (no limits).
func New(cfg Config, clock Clock, budget *Budget) *Assembler {
	if budget == nil {
		budget = &Budget{}
	}
	cfg = cfg.withDefaults()
	a := &Assembler{cfg: cfg, clock: clock, budget: budget, seed: maphash.MakeSeed(),
		traces: make(map[model.TraceID]*trace), tomb: make(map[model.TraceID]*tombstone), shadowBelow: math.MinInt64}
	if cfg.MaxTombstones > 0 {
		a.tombRing = make([]model.TraceID, 0, min(cfg.MaxTombstones, 1024))
	}
	return a
}

// Counters returns the cumulative counts.
func (a *Assembler) Counters() Counters { return a.c }

// Stats returns this assembler's buffered traces, retained traces, spans and
// bytes.
func (a *Assembler) Stats() (buffered, retained, spans int, bytes int64) {
	return a.buffered, len(a.traces) - a.buffered, a.spans, a.bytes
}

// Lookback returns the offset a replay must start from so that every trace
// with a message at or after commit is rebuilt from all its spans: the lowest
// first offset of any evicted (tombstoned) trace whose messages reach commit,
// else commit itself. It costs a scan of the tombstones.
func (a *Assembler) Lookback(commit int64) int64 {
	l := commit
	for _, ts := range a.tomb {
		if ts.max >= commit && ts.min < l {
			l = ts.min
		}
	}
	return l
}

// SetShadow marks offsets below commit as a lookback replay: traces whose
// spans all lie below commit are rebuilt (so that traces continuing past it
// are complete) but never emitted. Call it before the first Add.
func (a *Assembler) SetShadow(commit int64) { a.shadowBelow = commit }

// LowestOffset returns the lowest source offset of any span buffered or
// retained, and false when nothing is held.
func (a *Assembler) LowestOffset() (int64, bool) {
	if t := a.lists[lAll].head; t != nil {
		return t.minOffset, true
	}
	return 0, false
}

// LowestUnsettled returns the lowest source offset of any trace that is
// not settled, and false when every held trace is settled. A trace is
// settled when it is retained (emitted, no span since) and every emission
// of it is acknowledged: a restart that starts reading after its spans
// loses nothing of it, provided it replays them from a lookback (see
// Lookback and LowestOffset) to attach late spans. It walks the held
// traces in offset order past the settled ones, from where the last walk
// stopped unless a trace before it became unsettled since (retained traces
// settle at the head of the list: walking them all again at every commit
// cost 2% of the ingester's CPU with issue 16's burst retained).
func (a *Assembler) LowestUnsettled() (int64, bool) {
	for t := a.unsettled; t != nil; t = t.links[lAll].next {
		if !t.retained || t.pendingAcks > 0 {
			a.unsettled = t
			return t.minOffset, true
		}
	}
	a.unsettled = nil
	return 0, false
}

// unsettle notes that t is not settled (any more): LowestUnsettled must not
// start past it.
func (a *Assembler) unsettle(t *trace) {
	if a.unsettled == nil || t.seq < a.unsettled.seq {
		a.unsettled = t
	}
}

// Add buffers the spans decoded from the message at source offset off.
// Spans with a zero trace ID are counted in SpansIn and dropped (the decoder
// should have rejected them). Spans are held in Jaeger protobuf form
// (wire.AppendJaegerProto) and decoded again when their trace is emitted.
func (a *Assembler) Add(off int64, spans []*model.Span) {
	now := a.clock.Now()
	for _, s := range spans {
		a.c.SpansIn++
		a.add(off, s.TraceID, s.SpanID, s, nil, now)
	}
}

// AddJaegerProto buffers the span of the Jaeger protobuf message raw, whose
// trace and span IDs the caller read (wire.ReadJaegerProtoIDs); it is
// decoded when its trace is emitted (see TakeRejected for one that does
// not decode). raw is kept as the span's stored form; the caller must not
// modify it afterwards. now is the time of its arrival,
// the Clock's time when the caller read it: a caller adding a batch of
// messages reads the clock once (per message it was a seventieth of the
// ingester's CPU).
func (a *Assembler) AddJaegerProto(off int64, traceID model.TraceID, spanID model.SpanID, raw []byte, now time.Time) {
	a.c.SpansIn++
	a.add(off, traceID, spanID, nil, raw, now)
}

// add buffers a span: raw is its Jaeger protobuf form, or nil to encode s.
func (a *Assembler) add(off int64, traceID model.TraceID, spanID model.SpanID, s *model.Span, raw []byte, now time.Time) {
	if traceID.IsZero() {
		return
	}
	t := a.traces[traceID]
	if t == nil {
		if ts := a.tomb[traceID]; ts != nil {
			a.c.TooLateSpans++
			ts.max = max(ts.max, off)
			return
		}
		t = &trace{id: traceID, minOffset: off, since: now, last: now, shadow: off < a.shadowBelow}
		if n := len(a.free); n > 0 {
			t.spans, a.free = a.free[n-1], a.free[:n-1]
		} else {
			t.spans = make([]stored, 0, firstSpanListCap)
		}
		a.traces[traceID] = t
		a.seq++
		t.seq = a.seq
		a.push(lAll, t)
		a.unsettle(t)
		a.push(lIdle, t)
		a.push(lWait, t)
		a.buffered++
		a.account(1, 0, TraceOverhead)
	}
	t.maxOffset = max(t.maxOffset, off)
	if t.shadow && off >= a.shadowBelow {
		t.shadow = false
	}
	enc := raw
	if enc == nil {
		var err error
		if a.enc, err = wire.AppendJaegerProto(a.enc[:0], s); err != nil {
			a.c.UnencodableSpans++
			return
		}
		enc = a.enc
	}
	key := spanKey{id: spanID, hash: maphash.Bytes(a.seed, enc)}
	if t.has(key) {
		a.c.DuplicateSpans++
		return
	}
	if len(t.spans) >= a.cfg.MaxSpansPerTrace {
		a.c.TruncatedSpans++
		t.truncated = true
		t.dropped++
		return
	}
	b := raw
	if b == nil {
		b = make([]byte, len(enc))
		copy(b, enc)
	}
	t.spans = append(t.spans, stored{off: off, id: spanID, hash: key.hash, b: b})
	if t.dedupe != nil {
		t.dedupe[key] = struct{}{}
	} else if len(t.spans) > linearDedupe {
		t.dedupe = make(map[spanKey]struct{}, 2*len(t.spans))
		for _, st := range t.spans {
			t.dedupe[spanKey{st.id, st.hash}] = struct{}{}
		}
	}
	n := int64(len(b) + SpanOverhead)
	t.bytes += n
	a.account(0, 1, n)
	if t.retained {
		// A late span: back to buffering; the next emission is a new version.
		a.c.LateSpans++
		t.retained = false
		a.unsettle(t)
		a.remove(lRetained, t)
		t.since = now
		a.push(lIdle, t)
		a.push(lWait, t)
		a.buffered++
	} else if t.version > 0 {
		a.c.LateSpans++ // late, while an earlier late span is buffered
	}
	t.last = now
	a.moveToBack(lIdle, t)
}

func (t *trace) has(k spanKey) bool {
	if t.dedupe != nil {
		_, ok := t.dedupe[k]
		return ok
	}
	for i := range t.spans {
		if t.spans[i].id == k.id && t.spans[i].hash == k.hash {
			return true
		}
	}
	return false
}

// Expire emits the traces that are due at the clock's time (idle or max
// wait), evicts retained traces past the late horizon, and appends the
// emissions to dst.
func (a *Assembler) Expire(dst []Output) []Output {
	dst, _ = a.ExpireUpTo(dst, -1)
	return dst
}

// ExpireUpTo is Expire handling at most n due traces (every one when n is
// negative, none when it is 0: then it only evicts). The traces left stay
// due, first in line: a later call emits them before any that falls due
// after them, so the order of emissions is Expire's. more reports whether
// due traces are left. A caller bounding its output calls it with n = 1
// until its bound is reached (pipeline/ingest does).
func (a *Assembler) ExpireUpTo(dst []Output, n int) (_ []Output, more bool) {
	now := a.clock.Now()
	for ; n != 0; n-- {
		t, c := a.due(now)
		if t == nil {
			break
		}
		dst = a.emit(dst, t, c, now)
	}
	for {
		t := a.lists[lRetained].head
		if t == nil || t.pendingAcks > 0 || now.Sub(t.emittedAt) < a.cfg.LateHorizon {
			break
		}
		a.evict(t)
	}
	t, _ := a.due(now)
	return dst, t != nil
}

// due returns the trace to emit next at now and its completion, nil when
// none is due: the longest idle one past the idle timeout first, then the
// oldest past the maximum wait.
func (a *Assembler) due(now time.Time) (*trace, model.Completion) {
	if t := a.lists[lIdle].head; t != nil && now.Sub(t.last) >= a.cfg.IdleTimeout {
		return t, model.CompletionIdle
	}
	if t := a.lists[lWait].head; t != nil && now.Sub(t.since) >= a.cfg.MaxWait {
		return t, model.CompletionMaxWait
	}
	return nil, 0
}

// NextDeadline returns when Expire will next have work (zero when nothing is
// held). Callers may use it to sleep; Expire is correct whenever it is called.
func (a *Assembler) NextDeadline() time.Time {
	var d time.Time
	consider := func(t time.Time) {
		if d.IsZero() || t.Before(d) {
			d = t
		}
	}
	if t := a.lists[lIdle].head; t != nil {
		consider(t.last.Add(a.cfg.IdleTimeout))
	}
	if t := a.lists[lWait].head; t != nil {
		consider(t.since.Add(a.cfg.MaxWait))
	}
	if t := a.lists[lRetained].head; t != nil {
		consider(t.emittedAt.Add(a.cfg.LateHorizon))
	}
	return d
}

// Recycle says that no Output returned so far is in use any more, nor its
// trace's spans (the caller encoded them and let them go): the memory of
// their decoded spans is reused by the next emissions
// (wire.JaegerProtoDecoder.Recycle). Tokens stay valid.
func (a *Assembler) Recycle() { a.dec.Recycle() }

// Flush emits every buffered trace now, with completion "shutdown", and
// appends the emissions to dst.
func (a *Assembler) Flush(dst []Output) []Output {
	now := a.clock.Now()
	for t := a.lists[lWait].head; t != nil; t = a.lists[lWait].head {
		dst = a.emit(dst, t, model.CompletionShutdown, now)
	}
	return dst
}

// Acked records that the emission identified by tok is durable.
func (a *Assembler) Acked(tok Token) {
	if tok.t == nil || tok.t.pendingAcks <= 0 {
		panic("BUG: assemble: Acked without a pending emission")
	}
	tok.t.pendingAcks--
	if tok.t.retained && a.cfg.LateHorizon < 0 && tok.t.pendingAcks == 0 {
		a.evict(tok.t)
	}
}

// MakeRoom evicts retained traces (oldest emission first, only those with no
// unacknowledged emission) while the budget is full, and reports whether it
// is still full.
func (a *Assembler) MakeRoom() (full bool) {
	for a.budget.Full() {
		t := a.lists[lRetained].head
		for t != nil && t.pendingAcks > 0 {
			t = t.links[lRetained].next
		}
		if t == nil {
			return true
		}
		a.c.EvictedEarly++
		a.evict(t)
	}
	return false
}

// Close releases everything held (the partition was revoked or the
// ingester stops) and returns its share of the budget. Unacknowledged
// emissions are forgotten.
func (a *Assembler) Close() {
	a.account(-int64(len(a.traces)), -int64(a.spans), -a.bytes)
	a.traces = map[model.TraceID]*trace{}
	a.lists = [nLists]list{}
	a.unsettled = nil
	a.buffered, a.spans, a.bytes = 0, 0, 0
}

func (a *Assembler) emit(dst []Output, t *trace, c model.Completion, now time.Time) []Output {
	a.remove(lIdle, t)
	a.remove(lWait, t)
	a.buffered--
	t.retained = true
	t.emittedAt = now
	a.push(lRetained, t)
	if t.shadow {
		// Rebuilt during a replay from a lookback offset and entirely
		// below the committed offset: a previous owner emitted this
		// version. Retained as if emitted, so that a late span makes the
		// next version from every span.
		a.c.ShadowTraces++
		t.version = uint32(len(t.spans))
		t.emittedCount = len(t.spans)
		return dst
	}
	if len(t.spans) == t.emittedCount {
		// Only dropped (truncated) spans arrived since the last version:
		// nothing new to say.
		return dst
	}
	if t.version > 0 {
		c = model.CompletionLate
	}
	out := &model.AssembledTrace{
		Trace:        model.Trace{TraceID: t.id, Spans: make([]*model.Span, 0, len(t.spans))},
		Completion:   c,
		Truncated:    t.truncated,
		DroppedSpans: t.dropped,
		FirstSeen:    t.since,
		EmittedAt:    now,
	}
	// Each span is decoded here, once per emission: on arrival only its IDs
	// were read (wire.ReadJaegerProtoIDs). A span that does not decode
	// leaves the trace for TakeRejected.
	kept := t.spans[:0]
	for i, st := range t.spans {
		// The spans alias the stored bytes, which stay unchanged.
		s, err := a.dec.Decode(st.b)
		if err != nil {
			a.reject(t, st, i, err)
			continue
		}
		kept = append(kept, st)
		out.Trace.Spans = append(out.Trace.Spans, s)
	}
	clear(t.spans[len(kept):])
	t.spans = kept
	if len(t.spans) == t.emittedCount {
		// Every new span was rejected: nothing new to say (or, never
		// emitted, nothing to say at all).
		return dst
	}
	out.Version = uint32(len(t.spans))
	out.Analysis = dag.Analyze(&out.Trace, a.cfg.Analyze)
	if t.truncated {
		out.Analysis.Warnings = append(out.Analysis.Warnings, model.Warning{Kind: model.WarnTruncated,
			Message: fmt.Sprintf("%d spans dropped: the trace exceeds %d spans", t.dropped, a.cfg.MaxSpansPerTrace)})
		a.c.TruncatedTraces++
	}
	t.version = out.Version
	t.emittedCount = len(t.spans)
	t.pendingAcks++
	a.c.TracesOut[c]++
	return append(dst, Output{Trace: out, Token: Token{t}})
}

// reject takes the stored span st, the i-th of t, out of t: it did not
// decode (err).
func (a *Assembler) reject(t *trace, st stored, i int, err error) {
	a.c.RejectedSpans++
	if t.dedupe != nil {
		delete(t.dedupe, spanKey{st.id, st.hash})
	}
	if i < t.emittedCount {
		// Counted as emitted by a lookback replay (shadow), which decodes
		// nothing; the emission it stands for did not carry it.
		t.emittedCount--
	}
	n := int64(len(st.b) + SpanOverhead)
	t.bytes -= n
	a.account(0, -1, -n)
	a.rejected = append(a.rejected, Rejected{Offset: st.off, TraceID: t.id, SpanID: st.id, Message: st.b, Err: err})
}

// Rejected is a buffered span that did not decode when its trace was
// emitted; the trace was emitted without it.
type Rejected struct {
	Offset  int64 // its message's source offset
	TraceID model.TraceID
	SpanID  model.SpanID
	Message []byte // the message, as added
	Err     error  // why it does not decode
}

// TakeRejected appends the spans rejected since the last call to dst and
// forgets them. The caller owns each rejected message from then on (the
// ingester writes it to the dead-letter topic and commits its offset only
// once that is acknowledged).
func (a *Assembler) TakeRejected(dst []Rejected) []Rejected {
	dst = append(dst, a.rejected...)
	clear(a.rejected)
	a.rejected = a.rejected[:0]
	return dst
}

func (a *Assembler) evict(t *trace) {
	a.remove(lRetained, t)
	if a.unsettled == t {
		a.unsettled = t.links[lAll].next // the traces before t are settled
	}
	a.remove(lAll, t)
	delete(a.traces, t.id)
	a.account(-1, -int64(len(t.spans)), -(t.bytes + TraceOverhead))
	// Nothing refers to the span list any more (every emission is
	// acknowledged): keep it for a new trace.
	if len(a.free) < maxFreeLists && cap(t.spans) <= maxFreeListCap {
		clear(t.spans)
		a.free = append(a.free, t.spans[:0])
	}
	t.spans = nil
	if a.cfg.MaxTombstones > 0 {
		if len(a.tombRing) < a.cfg.MaxTombstones {
			a.tombRing = append(a.tombRing, t.id)
		} else {
			delete(a.tomb, a.tombRing[a.tombNext])
			a.tombRing[a.tombNext] = t.id
			a.tombNext = (a.tombNext + 1) % len(a.tombRing)
		}
		a.tomb[t.id] = &tombstone{min: t.minOffset, max: t.maxOffset}
	}
}

func (a *Assembler) account(traces, spans, bytes int64) {
	a.spans += int(spans)
	a.bytes += bytes
	a.budget.traces.Add(traces)
	a.budget.spans.Add(spans)
	a.budget.bytes.Add(bytes)
}

func (a *Assembler) push(l int, t *trace) {
	if t.inList[l] {
		return
	}
	t.inList[l] = true
	lst := &a.lists[l]
	t.links[l] = link{prev: lst.tail}
	if lst.tail != nil {
		lst.tail.links[l].next = t
	} else {
		lst.head = t
	}
	lst.tail = t
}

func (a *Assembler) remove(l int, t *trace) {
	if !t.inList[l] {
		return
	}
	t.inList[l] = false
	lst := &a.lists[l]
	lk := t.links[l]
	if lk.prev != nil {
		lk.prev.links[l].next = lk.next
	} else {
		lst.head = lk.next
	}
	if lk.next != nil {
		lk.next.links[l].prev = lk.prev
	} else {
		lst.tail = lk.prev
	}
	t.links[l] = link{}
}

func (a *Assembler) moveToBack(l int, t *trace) {
	if !t.inList[l] || a.lists[l].tail == t {
		return
	}
	a.remove(l, t)
	a.push(l, t)
}
