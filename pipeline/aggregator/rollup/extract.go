package rollup

import (
	"cmp"
	"slices"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// rec is one span's (or one cross-service call's) contribution to a key.
type rec struct {
	key   uint32 // index in the window's key table
	err   bool
	dur   int64
	self  int64
	cp    int64
	start int64
}

// contrib is one trace version's contribution to its window: its records
// sorted by key.
type contrib struct {
	recs     []rec
	traceDur int64
}

// rawKey is a key of a window before the cardinality limit, with its
// incrementally maintained statistics.
type rawKey struct {
	Key
	fam   *famState
	st    Stats
	stale bool // maxima or exemplars need a recompute after a removal
}

// keyTable interns a window's keys.
type keyTable struct {
	ids  map[string]uint32
	keys []*rawKey
}

// extractor turns assembled traces into contributions. It keeps scratch
// buffers, so one extractor serves one goroutine.
type extractor struct {
	dims    []string
	edges   bool
	opLimit int
	keyLim  int
	buf     []byte
	recs    []rec
	spanIdx map[model.SpanID]int32
	// overflowed counts the records of the last extract that went to an
	// overflow key because their window was at a limit.
	overflowed int
}

func newExtractor(cfg *Config) *extractor {
	return &extractor{dims: cfg.Dimensions, edges: !cfg.NoEdges, opLimit: cfg.OperationLimit, keyLim: cfg.KeyLimit, spanIdx: map[model.SpanID]int32{}}
}

func nonNeg(d int64) int64 {
	if d < 0 {
		return 0
	}
	return d
}

// dimValue finds a dimension's value: the span's own tag, else its
// process's tag, else "".
func dimValue(sp *model.Span, name string) string {
	if kv, ok := sp.Tags.Find(name); ok {
		return kv.AsString()
	}
	if kv, ok := sp.Process.Tags.Find(name); ok {
		return kv.AsString()
	}
	return ""
}

// intern returns the id of the key encoded in x.buf, adding it to w.
// dimsAt is where the Dims encoding starts in x.buf.
//
// The limits apply here, as keys enter the window: with KeyLimit keys in
// the window, a new key becomes the window's overflow key of its kind
// (service and operation Overflow, every dimension Overflow; edges Overflow
// → Overflow); a service's operation beyond OperationLimit becomes its
// service's operation Overflow (dimensions kept). The keys a window admits
// are the first ones in log order, which is the order of the window's
// messages in every replay of the log (restarts re-read a resident window
// from its first message). The overflow keys themselves are always
// admitted: a window holds at most KeyLimit keys plus one per span kind and
// one edge.
func (x *extractor) intern(w *window, fam Family, dimsAt int) uint32 {
	if id, ok := w.keys.ids[string(x.buf)]; ok {
		return id
	}
	if len(w.keys.keys) >= x.keyLim {
		x.overflowed++
		return x.overflowKey(w, fam)
	}
	if !fam.Edge && !w.admitOperation(fam.Service, fam.Operation, x.opLimit) {
		x.overflowed++
		dims := append([]byte(nil), x.buf[dimsAt:]...)
		fam.Operation = Overflow
		x.buf = appendFamily(x.buf[:0], fam)
		dimsAt = len(x.buf)
		x.buf = append(x.buf, dims...)
		if id, ok := w.keys.ids[string(x.buf)]; ok {
			return id
		}
	}
	k := Key{Family: fam, Dims: string(x.buf[dimsAt:])}
	return w.addKey(string(x.buf), k)
}

// appendFamily appends the window key encoding of f (an edge's kind is
// zero), which the key's dimensions follow.
func appendFamily(b []byte, f Family) []byte {
	edge := byte(0)
	if f.Edge {
		edge = 1
	}
	b = append(b, edge, byte(f.Kind))
	b = appendStr(b, f.Service)
	return appendStr(b, f.Operation)
}

// overflowKey is the id of w's overflow key for fam's kind (or edges).
func (x *extractor) overflowKey(w *window, fam Family) uint32 {
	of := Family{Edge: fam.Edge, Service: Overflow, Operation: Overflow}
	if !fam.Edge {
		of.Kind = fam.Kind
	}
	x.buf = appendFamily(x.buf[:0], of)
	dimsAt := len(x.buf)
	if !fam.Edge {
		for range x.dims {
			x.buf = appendDimValue(x.buf, Overflow)
		}
	}
	if id, ok := w.keys.ids[string(x.buf)]; ok {
		return id
	}
	return w.addKey(string(x.buf), Key{Family: of, Dims: string(x.buf[dimsAt:])})
}

// extract builds at's contribution to window w, interning its keys there.
// The caller has checked that the analysis is aligned with the spans.
func (x *extractor) extract(at *model.AssembledTrace, w *window) *contrib {
	spans := at.Trace.Spans
	c := &contrib{traceDur: nonNeg(int64(at.Analysis.Duration))}
	if x.edges {
		clear(x.spanIdx)
		for i, sp := range spans {
			x.spanIdx[sp.SpanID] = int32(i)
		}
	}
	recs := x.recs[:0]
	x.overflowed = 0
	for i, sp := range spans {
		ss := &at.Analysis.Spans[i]
		fam := Family{Service: sp.Process.ServiceName, Operation: sp.Operation, Kind: sp.Kind}
		x.buf = appendFamily(x.buf[:0], fam)
		dimsAt := len(x.buf)
		for _, d := range x.dims {
			x.buf = appendDimValue(x.buf, dimValue(sp, d))
		}
		id := x.intern(w, fam, dimsAt)
		dur := nonNeg(int64(sp.Duration))
		recs = append(recs, rec{key: id, err: sp.IsError(), dur: dur,
			self: nonNeg(int64(ss.Self)), cp: nonNeg(int64(ss.CriticalPath)), start: int64(sp.Start)})
		if !x.edges {
			continue
		}
		pid, _, ok := sp.ParentSpanID()
		if !ok {
			continue
		}
		pi, ok := x.spanIdx[pid]
		if !ok {
			continue
		}
		caller := spans[pi].Process.ServiceName
		if caller == sp.Process.ServiceName {
			continue
		}
		edge := Family{Edge: true, Service: caller, Operation: sp.Process.ServiceName}
		x.buf = appendFamily(x.buf[:0], edge)
		id = x.intern(w, edge, len(x.buf))
		recs = append(recs, rec{key: id, err: sp.IsError(), dur: dur, start: int64(sp.Start)})
	}
	x.recs = recs
	// The contribution stays in memory while its window is resident: copy
	// it to an exact-size slice.
	c.recs = append(make([]rec, 0, len(recs)), recs...)
	sortRecs(c.recs)
	return c
}

// sortRecs orders records by key. The order of one key's records does not
// matter: what is made of a group (counts, sums, maxima, sketches, the
// slowest record's duration and start) does not depend on it.
func sortRecs(rs []rec) {
	if len(rs) > 64 {
		slices.SortFunc(rs, func(a, b rec) int { return cmp.Compare(a.key, b.key) })
		return
	}
	// Insertion sort: a trace has a few dozen records, often in runs.
	for i := 1; i < len(rs); i++ {
		if rs[i-1].key <= rs[i].key {
			continue
		}
		r := rs[i]
		j := i
		for j > 0 && rs[j-1].key > r.key {
			rs[j] = rs[j-1]
			j--
		}
		rs[j] = r
	}
}

// groups calls fn for each run of records with one key.
func (c *contrib) groups(fn func(key uint32, rs []rec)) {
	for i := 0; i < len(c.recs); {
		j := i + 1
		for j < len(c.recs) && c.recs[j].key == c.recs[i].key {
			j++
		}
		fn(c.recs[i].key, c.recs[i:j])
		i = j
	}
}

// slowest is the group's exemplar candidate: longest, then earliest.
func slowest(rs []rec) rec {
	b := rs[0]
	for _, r := range rs[1:] {
		if r.dur > b.dur || (r.dur == b.dur && r.start < b.start) {
			b = r
		}
	}
	return b
}

// addRecs adds one trace's records of one key to st.
func addRecs(st *Stats, rs []rec, edge bool, traceDur int64, id model.TraceID, k int) {
	for _, r := range rs {
		st.Count++
		if r.err {
			st.Errors++
		}
		addValue(&st.Duration, r.dur)
		if !edge {
			addValue(&st.Self, r.self)
			addValue(&st.CriticalPath, r.cp)
		}
	}
	if !edge {
		st.TraceDuration += traceDur
	}
	b := slowest(rs)
	st.Exemplars = offerExemplar(st.Exemplars, model.Exemplar{TraceID: id, Duration: time.Duration(b.dur), Start: model.Timestamp(b.start)}, k)
}

func addValue(d *Dist, v int64) {
	d.Sum += v
	if v > d.Max {
		d.Max = v
	}
	d.Sketch.Add(v)
}

// subRecs removes one trace's records of one key from st; it reports
// whether the maxima or exemplars must be recomputed.
func subRecs(st *Stats, rs []rec, edge bool, traceDur int64, id model.TraceID) (stale bool) {
	for _, r := range rs {
		st.Count--
		if r.err {
			st.Errors--
		}
		stale = subValue(&st.Duration, r.dur) || stale
		if !edge {
			stale = subValue(&st.Self, r.self) || stale
			stale = subValue(&st.CriticalPath, r.cp) || stale
		}
	}
	if !edge {
		st.TraceDuration -= traceDur
	}
	for _, e := range st.Exemplars {
		if e.TraceID == id {
			stale = true
		}
	}
	return stale
}

func subValue(d *Dist, v int64) bool {
	d.Sum -= v
	d.Sketch.AddN(v, -1)
	return v >= d.Max
}
