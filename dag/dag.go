// Package dag turns a bag of spans into an explained trace: it builds the span
// graph, repairs clock skew, and computes the critical path and self times.
// It is pure: no clock, no logger, no I/O. Problems in the data become
// warnings on the analysis, never errors, and no input makes it panic.
//
// # The graph
//
// A span's parent is the span named by model.Span.ParentSpanID: its first
// CHILD_OF reference within the trace, else its first reference of any type
// within the trace. A reference to span ID 0 counts as no reference. The edge
// to the parent is blocking when it is a CHILD_OF edge and not a
// producer→consumer edge (child Kind == KindConsumer, parent Kind ==
// KindProducer); FOLLOWS_FROM and producer→consumer edges are non-blocking
// (asynchronous): such children may start after or outlive their parent, are
// never shifted for clock skew on their own account, do not reduce their
// parent's self time and never lie on the critical path.
//
// Roots are spans without a parent reference ("true roots"); spans whose
// parent is not in the trace (orphans, WarnOrphan) and spans whose parent link
// was cut to break a cycle (WarnCycle) are roots of their own subtree too.
// The main root is the true root that starts first, then the longest, then the
// one with the smallest span ID (WarnMultipleRoots when there are several).
// The critical path runs from the main root only; other roots, orphans and
// their subtrees are analysed (self time, operations) but have no
// critical-path time. Without any true root (WarnNoRoot) the analysis has
// RootSpanID 0, its Start and Duration are the envelope of all spans (of those
// starting after the Unix epoch, if any; an envelope longer than the largest
// time.Duration is cut at its start), and the critical path runs over a
// virtual root spanning that envelope whose blocking children are all the
// top-level spans: it then has gaps where the virtual root itself would have
// been critical, and sums to at most Duration.
//
// # Clock skew
//
// Before analysis, clock skew is repaired (Options.ClockSkew). Host identity
// comes from the process tags "host.name" or "hostname" (compared when both
// spans have one), else "ip" (string, int64 IPv4 or 4/16-byte binary;
// compared as addresses). Two spans with no host identity at all are on the
// same host; a span with an identity and one without, or two with identities
// under different tags, are on different hosts. (The per-host solver keys a
// host by its name when it has one, else by its address.)
//
// ClockSkewHostOffsets, the default, estimates one clock offset per host
// (hostskew.go; docs/clock-skew.md). Every blocking parent→child edge between
// two hosts bounds the difference of their offsets (the child ran inside its
// parent; a child longer than its parent bounds it by its start only). The
// pairs form a system of difference constraints, solved by shortest paths; a
// host pair contradicting itself, or (when the system has no solution) the
// tighter pairs, is left out with a WarnClockSkew saying so. Hosts are then
// fixed one by one, the main root's host first (offset 0), then the hosts
// linked to it by pairs in host-name order, each at a point of its feasible
// interval: no shift when its spans fit with room to spare; else the centre of
// the interval its client→server pairs allow, clamped to the feasible one;
// else the least shift that fits, keeping a network hop (100µs, or half the
// interval) from the parent's edge. Every span of a moved host (its Start and
// log timestamps) moves by the same amount, whatever its edge type, so
// siblings keep their order; one WarnClockSkew per moved host, and the same
// text appended to each moved span's Warnings. A host whose offset would
// exceed Options.MaxClockSkewAdjust is not moved. When every cross-host
// child fits its parent the solver does not run. Traces with more than 96
// hosts skip the solver (WarnClockSkew). Then the per-span rule below repairs
// whatever still does not fit.
//
// ClockSkewPerSpan is Jaeger's adjuster: spans are visited top-down from
// every root (parents before children). A blocking child on a different host
// than its (already adjusted) parent that starts before the parent or ends
// after it is shifted by a delta computed as Jaeger does: when the child is
// longer than the parent it can only be made to start with the parent (delta
// = parent start − child start, and no shift when it already starts at or
// after the parent); otherwise it is centred in the parent, assuming request
// and response latency are equal (delta = parent start + (parent duration −
// child duration)/2 − child start). A delta larger in magnitude than
// Options.MaxClockSkewAdjust is not applied (WarnSkewTooLarge). An applied
// delta gives one WarnClockSkew and moves the child's Start and log
// timestamps; every descendant on the same host as a shifted span shares its
// clock and moves with it (whatever its edge type), while a descendant on
// another host is judged afresh against its adjusted parent. Each moved span
// gets a note appended to its Warnings.
//
// Either way, roots on the main root's host are never shifted, every shift is
// a multiple of Options.TimeResolution, and re-analysing an adjusted trace
// shifts nothing more.
//
// # Critical path
//
// The critical path has the semantics Jaeger UI's and Uber CRISP's share. Each
// blocking child is first truncated to its parent's (already truncated)
// interval; a child entirely outside it (starting at or after the parent's
// end, or ending at or before its start when it starts before it) is dropped
// with its subtree. Starting at the root's end, the walk repeatedly takes the
// blocking child whose truncated end is the latest at or before the current
// point, records the parent as critical from that end to the point, descends
// into the child, and on return continues in the parent from the child's
// start; when no child is left the parent is critical back to its start.
// Ties between children with the same truncated end go to the earlier start
// (as recorded, before truncation), then the smaller span ID. This is Jaeger
// UI's rule: it sorts each span's children by start time and takes the first
// child with the latest end; among equal starts it keeps the order of the
// trace's spans, where tracepipe takes the smaller span ID so that the result
// does not depend on the order of t.Spans. Ends are compared after truncation,
// so a child ending at its parent's end and one ending after it tie. (Jaeger
// UI takes only children that end strictly before the point; here a child that
// ends exactly where its sibling starts is taken, so back-to-back sequential
// calls are both critical.)
//
// # Self time
//
// A span's self time is its duration minus the length of the union of its
// blocking children's intervals, each clipped to the span's own interval
// (after clock-skew repair, without critical-path truncation).
//
// # Performance
//
// Analysis is O(n log n) in the number of spans with no recursion (explicit
// stacks), so 10,000-level chains and 10,000-child fan-outs are fine. An
// Analyzer reuses its scratch buffers across calls; the result itself costs a
// handful of allocations per trace.
package dag

import (
	"math"
	"sync"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// Options tunes an analysis. The zero value is valid and means the defaults.
type Options struct {
	// MaxClockSkewAdjust bounds a single clock-skew shift (default
	// DefaultMaxClockSkewAdjust). A needed shift larger than this is not
	// applied and gives WarnSkewTooLarge. A negative value disables clock-skew
	// repair: nothing is shifted and no skew warnings are given.
	MaxClockSkewAdjust time.Duration
	// MaxSpanDuration: longer (or negative) durations are absurd (default
	// DefaultMaxSpanDuration); such a span counts as lasting 0 for the analysis
	// (its Duration field is left as it is) and gets WarnBadDuration. It is also
	// the tolerance for WarnBadTimestamp: a span that starts more than this
	// before the main root's start, or ends more than this after its end.
	MaxSpanDuration time.Duration
	// MaxWarningsPerKind caps the warnings of one kind on an analysis (default
	// DefaultMaxWarningsPerKind; negative means no cap). Beyond the cap, one
	// last warning of that kind (SpanID 0) says how many were left out.
	MaxWarningsPerKind int
	// ClockSkew chooses the clock-skew repair (default ClockSkewHostOffsets).
	ClockSkew ClockSkewMethod
	// TimeResolution is the unit the analysis works in (default
	// DefaultTimeResolution, Jaeger's storage unit, a microsecond; negative:
	// nanoseconds, as recorded). Before analysis, span starts, span ends and
	// log timestamps are truncated down to a multiple of it, in place, and a
	// span's duration becomes the distance between its truncated start and
	// end (a span inside another stays inside it; the duration may differ by
	// one unit from the truncated recorded duration); every clock-skew shift
	// is a multiple of it. So the stored spans and the
	// analysis agree to the nanosecond: self time and critical-path time
	// never exceed the stored duration and offsets from the root are never
	// negative.
	TimeResolution time.Duration
}

// ClockSkewMethod is a way of repairing clock skew.
type ClockSkewMethod uint8

const (
	// ClockSkewHostOffsets estimates one clock offset per host from all the
	// trace's cross-host parent/child pairs and moves every span of a host by
	// it; children that still do not fit their parent (conflicting or too
	// many hosts) are then repaired one by one as ClockSkewPerSpan does.
	ClockSkewHostOffsets ClockSkewMethod = iota
	// ClockSkewPerSpan is Jaeger's adjuster: each cross-host child that does
	// not fit its parent is shifted on its own, with its same-host subtree.
	ClockSkewPerSpan
)

const (
	DefaultMaxClockSkewAdjust = time.Minute
	DefaultMaxSpanDuration    = 24 * time.Hour
	DefaultMaxWarningsPerKind = 20
	DefaultTimeResolution     = time.Microsecond
)

func (o Options) withDefaults() Options {
	if o.MaxClockSkewAdjust == 0 {
		o.MaxClockSkewAdjust = DefaultMaxClockSkewAdjust
	}
	if o.MaxSpanDuration <= 0 {
		o.MaxSpanDuration = DefaultMaxSpanDuration
	}
	if o.MaxWarningsPerKind == 0 {
		o.MaxWarningsPerKind = DefaultMaxWarningsPerKind
	}
	if o.TimeResolution == 0 {
		o.TimeResolution = DefaultTimeResolution
	}
	return o
}

var pool = sync.Pool{New: func() any { return new(Analyzer) }}

// Analyze explains t. It is safe for concurrent use on different traces; it
// takes its scratch space from a pool of Analyzers.
//
// It modifies t in place:
//   - nil spans are removed silently, and spans whose TraceID differs from
//     t.TraceID are removed (WarnForeignTrace). If t.TraceID is zero it is
//     first set to the TraceID of the first non-nil span.
//   - spans sharing a span ID are reduced to one, kept at the position of the
//     first copy: identical copies (all fields but Warnings equal) are merged
//     (WarnDuplicateSpan); differing copies (WarnConflictingSpan) keep the copy
//     with a valid duration, then the longest, then the one with the most
//     references, tags and logs, then the first in t.Spans.
//   - the remaining spans keep their relative order; slots of the backing
//     array past the new length are set to nil.
//   - clock-skew shifts move span Start and log timestamps and append a note
//     to the span's Warnings, as Jaeger's adjusters do. Nothing else in a span
//     changes (absurd durations are ignored for the analysis, not rewritten).
//
// The result's Spans is aligned with t.Spans after the call. Its CriticalPath
// is ordered by time, earliest first, with no zero-length sections and no two
// adjacent sections of the same span. Operations is ordered by CriticalPath
// descending, then Self descending, then service and operation. Warnings come
// in the order found: removed spans, duplicates, durations and timestamps,
// orphans, cycles, roots, clock skew, timestamps far from the root, then the
// notes about warnings left out by MaxWarningsPerKind; within a phase, in the
// order of t.Spans, except duplicates (by span ID) and clock skew (parents
// before children).
//
// The result's slices are freshly allocated: they share no array with t or
// with the Analyzer (strings are shared, being immutable).
func Analyze(t *model.Trace, opts Options) model.Analysis {
	a := pool.Get().(*Analyzer)
	res := a.Analyze(t, opts)
	pool.Put(a)
	return res
}

// Analyzer analyses traces with reusable scratch buffers. The zero value is
// ready to use. It is not safe for concurrent use; use one per goroutine (or
// the package-level Analyze). Between calls it holds only index and time
// buffers sized for the largest trace it has seen, no reference to any span.
type Analyzer struct {
	opts  Options
	spans []*model.Span
	n     int

	table     []int32 // span ID -> index+1, open addressing; 0 is empty
	tableMask uint64
	ids       []idEntry // (span ID, index) pairs, sorted when looking for duplicates
	parent    []int32   // index of the parent, -1 for a root
	flag      []uint8
	start     []int64 // analysis interval, after clock-skew repair
	end       []int64
	shift     []int64 // clock-skew shift applied to each span
	walk      []int32 // cycle detection marks

	// Children in CSR form. Node n is a virtual parent of every root. The
	// children of node p are kids[off[p]:off[p+1]], the blocking ones first
	// (nblk[p] of them, sorted by sortChildren), then the non-blocking ones.
	off  []int32
	nblk []int32
	cur  []int32
	kids []int32

	hosts     []hostID
	hostKnown []bool
	notes     []string // clock-skew note of each shifted span
	sk        skewSolver

	sortBuf  []sortKey
	stack    []frame
	istack   []int32
	self     []int64
	cp       []int64
	sections []model.CriticalSection

	opIndex map[model.OperationKey]int32
	ops     []model.OperationSummary
	opKeys  []opKey

	warns     []model.Warning
	warnKinds []warnCount
}

type idEntry struct {
	id  model.SpanID
	idx int32
}

const (
	fHasRef   uint8 = 1 << iota // has a parent reference within the trace (not a true root)
	fBlocking                   // the edge to the parent is blocking
	fOrphan                     // the parent is not in the trace
	fCycle                      // the parent link was cut to break a cycle
	fBadTime                    // already warned about its timestamp
)

// Analyze is the package-level Analyze using a's scratch buffers; see there
// for the contract.
func (a *Analyzer) Analyze(t *model.Trace, opts Options) model.Analysis {
	a.opts = opts.withDefaults()
	a.warns = a.warns[:0]
	a.warnKinds = a.warnKinds[:0]
	defer a.release()

	if t == nil {
		return model.Analysis{Warnings: []model.Warning{{Kind: model.WarnEmpty, Message: "no trace"}}}
	}
	a.clean(t)
	a.spans = t.Spans
	a.n = len(t.Spans)
	res := model.Analysis{TraceID: t.TraceID, SpanCount: a.n}
	if a.n == 0 {
		a.warn(model.WarnEmpty, 0, "trace has no spans")
		res.Warnings = a.finishWarnings()
		return res
	}

	res.ErrorCount = a.load()
	a.link()
	a.breakCycles()
	a.buildChildren()
	root, trueRoots := a.mainRoot()
	a.rootWarnings(root, trueRoots)
	a.adjustSkew(root)
	a.sortChildren(a.n, trueRoots == 0)

	if root >= 0 {
		res.RootSpanID = a.spans[root].SpanID
		res.Start = model.Timestamp(a.start[root])
		res.Duration = time.Duration(a.end[root] - a.start[root])
		a.farTimestamps(root)
		a.criticalPath(int32(root), a.start[root], a.end[root])
	} else {
		lo, hi := a.envelope()
		res.Start = model.Timestamp(lo)
		res.Duration = time.Duration(subSat(hi, lo))
		a.criticalPath(int32(a.n), lo, hi)
	}
	a.selfTimes()

	res.CriticalPath = append([]model.CriticalSection(nil), a.sections...)
	res.Spans = make([]model.SpanStats, a.n)
	for i, s := range a.spans {
		res.Spans[i] = model.SpanStats{
			SpanID:       s.SpanID,
			Self:         time.Duration(a.self[i]),
			CriticalPath: time.Duration(a.cp[i]),
		}
	}
	res.Operations = a.operations()
	res.Warnings = a.finishWarnings()
	return res
}

// release drops every reference to the analysed trace so that a pooled or
// idle Analyzer does not keep spans or strings alive.
func (a *Analyzer) release() {
	a.spans = nil
	clear(a.hosts)
	clear(a.notes)
	clear(a.sk.keys)
	clear(a.sk.sorted)
	if len(a.opIndex) > 256 {
		a.opIndex = nil // clearing a large map costs its capacity on every later call
	} else {
		clear(a.opIndex)
	}
	clear(a.ops)
	a.ops = a.ops[:0]
	clear(a.warns)
	a.warns = a.warns[:0]
	clear(a.sections)
	a.sections = a.sections[:0]
}

// load fills the analysis intervals, clamping absurd durations, and warns
// about bad durations and start times. It returns the number of error spans.
func (a *Analyzer) load() (errors int) {
	n := a.n
	a.start = grow(a.start, n)
	a.end = grow(a.end, n)
	a.flag = grow(a.flag, n)
	clear(a.flag)
	maxDur := a.opts.MaxSpanDuration
	res := int64(a.opts.TimeResolution)
	for i, s := range a.spans {
		if res > 1 {
			a.toGrid(s, res)
		}
		d := s.Duration
		if d < 0 {
			a.warnf(model.WarnBadDuration, s.SpanID, "duration %v is negative; counted as 0", d)
			d = 0
		} else if d > maxDur {
			a.warnf(model.WarnBadDuration, s.SpanID, "duration %v exceeds the maximum %v; counted as 0", d, maxDur)
			d = 0
		}
		st := int64(s.Start)
		if st <= 0 {
			a.warnf(model.WarnBadTimestamp, s.SpanID, "start %d ns is not after the Unix epoch", st)
			a.flag[i] |= fBadTime
		}
		a.start[i] = st
		a.end[i] = addSat(st, int64(d))
		if s.IsError() {
			errors++
		}
	}
	return errors
}

// toGrid truncates s's start, end and log timestamps down to multiples of
// res; the duration becomes the distance between the truncated start and end
// (so a child inside its parent stays inside it).
func (a *Analyzer) toGrid(s *model.Span, res int64) {
	st0 := int64(s.Start)
	st := floorTo(st0, res)
	d := subSat(floorTo(addSat(st0, int64(s.Duration)), res), st)
	if d%res != 0 { // saturated (absurd times)
		d = int64(s.Duration) / res * res
	}
	if d != int64(s.Duration) {
		s.Duration = time.Duration(d)
	}
	if st != st0 {
		s.Start = model.Timestamp(st)
	}
	for k := range s.Logs {
		if ts := floorTo(int64(s.Logs[k].Timestamp), res); ts != int64(s.Logs[k].Timestamp) {
			s.Logs[k].Timestamp = model.Timestamp(ts)
		}
	}
}

// floorTo rounds x down to a multiple of res (res > 0); up near the bottom of
// the int64 range.
func floorTo(x, res int64) int64 {
	r := x % res
	if r < 0 {
		r += res
	}
	if x < math.MinInt64+r {
		return x - r + res
	}
	return x - r
}

// grid rounds a clock-skew shift down to a multiple of the time resolution.
func (a *Analyzer) grid(x int64) int64 {
	if res := int64(a.opts.TimeResolution); res > 1 && x > math.MinInt64+res {
		return floorTo(x, res)
	}
	return x
}

// mainRoot picks the main root among the true roots: earliest start, then
// longest, then smallest span ID. It returns -1 when there is no true root.
func (a *Analyzer) mainRoot() (root int, trueRoots int) {
	root = -1
	for _, r := range a.kids[a.off[a.n]:a.off[a.n+1]] {
		if a.flag[r]&fHasRef != 0 {
			continue
		}
		trueRoots++
		if root < 0 || a.rootBefore(int(r), root) {
			root = int(r)
		}
	}
	return root, trueRoots
}

func (a *Analyzer) rootBefore(i, j int) bool {
	if a.start[i] != a.start[j] {
		return a.start[i] < a.start[j]
	}
	di, dj := a.end[i]-a.start[i], a.end[j]-a.start[j]
	if di != dj {
		return di > dj
	}
	return a.spans[i].SpanID < a.spans[j].SpanID
}

func (a *Analyzer) rootWarnings(root, trueRoots int) {
	switch {
	case trueRoots > 1:
		a.warnf(model.WarnMultipleRoots, 0, "%d root spans; the critical path starts at %s (earliest start, then longest, then smallest ID)",
			trueRoots, a.spans[root].SpanID)
	case trueRoots == 0:
		top := a.off[a.n+1] - a.off[a.n]
		a.warnf(model.WarnNoRoot, 0, "no root span (every top-level span has a missing or cyclic parent); the critical path runs over the %d top-level spans", top)
	}
}

// envelope returns the earliest start and latest end of the spans that start
// after the Unix epoch (of all spans when none does).
func (a *Analyzer) envelope() (lo, hi int64) {
	lo, hi = math.MaxInt64, math.MinInt64
	for i := range a.n {
		if a.flag[i]&fBadTime == 0 {
			lo = min(lo, a.start[i])
			hi = max(hi, a.end[i])
		}
	}
	if lo > hi {
		for i := range a.n {
			lo = min(lo, a.start[i])
			hi = max(hi, a.end[i])
		}
	}
	if subSat(hi, lo) == math.MaxInt64 {
		lo = hi - math.MaxInt64 // keep Start+Duration == hi representable
	}
	return lo, hi
}

// farTimestamps warns about spans lying more than MaxSpanDuration outside the
// main root's interval.
func (a *Analyzer) farTimestamps(root int) {
	tol := int64(a.opts.MaxSpanDuration)
	lo, hi := subSat(a.start[root], tol), addSat(a.end[root], tol)
	for i := range a.n {
		if a.flag[i]&fBadTime != 0 || (a.start[i] >= lo && a.end[i] <= hi) {
			continue
		}
		a.warnf(model.WarnBadTimestamp, a.spans[i].SpanID, "span lies more than %v outside the root span %s",
			a.opts.MaxSpanDuration, a.spans[root].SpanID)
	}
}

// grow returns s resized to n elements, reusing its array when large enough.
// The contents are unspecified.
func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n, n+n/4)
	}
	return s[:n]
}

// addSat returns a+b, saturated to the int64 range.
func addSat(a, b int64) int64 {
	c := a + b
	if (c > a) != (b > 0) {
		if b > 0 {
			return math.MaxInt64
		}
		return math.MinInt64
	}
	return c
}

// subSat returns a-b, saturated to the int64 range.
func subSat(a, b int64) int64 {
	c := a - b
	if b < 0 && c < a {
		return math.MaxInt64
	}
	if b > 0 && c > a {
		return math.MinInt64
	}
	return c
}
