package ui

import (
	"context"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/dag"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/pipeline/aggregator/rollup"
	"github.com/tracepipe/tracepipe/storage"
	"github.com/tracepipe/tracepipe/storage/embedded"
)

// testNow is the seeded store's "now": its traces started in the 30
// minutes before.
var testNow = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

// The seeded store's special traces.
var (
	xssID   = model.TraceID{High: 0xfeed, Low: 0xbad}
	bigID   = model.TraceID{High: 0xb16, Low: 10000}
	xssOp   = `<script>alert("op")</script>`
	xssTag  = `"><img src=x onerror=alert(1)>`
	xssSvc  = `evil"svc'<b>`
	slowSvc = "inventory"
	slowOp  = "reserve"
)

func demoID(i int) model.TraceID { return model.TraceID{High: 0xd3d0, Low: uint64(i + 1)} }

const demoTraces = 120 // four a minute over the 30 minutes before testNow

type builder struct {
	tr   model.Trace
	next model.SpanID
}

func (b *builder) span(parent *model.Span, svc, op string, kind model.SpanKind, start model.Timestamp, d time.Duration, tags ...model.KeyValue) *model.Span {
	b.next++
	sp := &model.Span{TraceID: b.tr.TraceID, SpanID: b.next, Operation: op, Start: start, Duration: d, Kind: kind,
		Tags: append(model.KeyValues{}, tags...), Process: model.Process{ServiceName: svc, Tags: model.KeyValues{model.String("host", svc+"-1")}}}
	if parent != nil {
		sp.References = []model.Reference{{Type: model.ChildOf, TraceID: b.tr.TraceID, SpanID: parent.SpanID}}
	}
	b.tr.Spans = append(b.tr.Spans, sp)
	return sp
}

func assembled(tr model.Trace) model.AssembledTrace {
	a := dag.Analyze(&tr, dag.Options{})
	return model.AssembledTrace{Trace: tr, Analysis: a, Version: uint32(len(tr.Spans)), Completion: model.CompletionIdle}
}

// demoTrace is a checkout request: frontend → api → auth, inventory
// (the bottleneck: slow in every trace, slowest on shard 3) → db, cache.
func demoTrace(i int) model.AssembledTrace {
	b := &builder{tr: model.Trace{TraceID: demoID(i)}}
	start := model.TimestampOf(testNow.Add(-30*time.Minute + time.Duration(i)*15*time.Second))
	shard := strconv.Itoa(i%4 + 1)
	reserve := 80*time.Millisecond + time.Duration(i%7)*5*time.Millisecond
	if shard == "3" {
		reserve += 150 * time.Millisecond
	}
	ms := time.Millisecond
	tags := func(kv ...model.KeyValue) []model.KeyValue {
		return append([]model.KeyValue{model.String("shard", shard), model.String("client", "client-"+strconv.Itoa(i%3))}, kv...)
	}
	total := 2*ms + 4*ms + reserve + 12*ms + 9*ms
	root := b.span(nil, "frontend", "GET /checkout", model.KindServer, start, total, tags(model.Int64("http.status_code", 200))...)
	api := b.span(root, "api", "POST /orders", model.KindServer, start.Add(2*ms), total-11*ms, tags()...)
	b.span(api, "auth", "check", model.KindServer, start.Add(3*ms), 3*ms, tags()...)
	b.span(api, "cache", "get", model.KindServer, start.Add(3*ms), 1*ms, tags()...)
	inv := b.span(api, slowSvc, slowOp, model.KindServer, start.Add(6*ms), reserve, tags()...)
	b.span(inv, "db", "SELECT stock", model.KindServer, start.Add(8*ms), 10*ms, tags()...)
	ins := b.span(api, "db", "INSERT order", model.KindServer, start.Add(6*ms+reserve), 8*ms, tags()...)
	if i%10 == 9 {
		ins.Tags = append(ins.Tags, model.Bool("error", true))
		ins.Status = model.StatusError
		ins.Logs = []model.Log{{Timestamp: ins.Start.Add(7 * ms), Fields: model.KeyValues{model.String("event", "error"), model.String("message", "deadlock detected")}}}
	}
	b.span(root, "frontend", "render", model.KindInternal, start.Add(total-8*ms), 7*ms, tags()...)
	if i == 7 { // a span whose parent never arrived: an orphan warning
		lost := &model.Span{SpanID: 999}
		b.span(lost, "cache", "refresh", model.KindInternal, start.Add(20*ms), 4*ms, tags()...)
	}
	return assembled(b.tr)
}

// xssTrace carries markup and quotes in every field a page shows.
func xssTrace() model.AssembledTrace {
	b := &builder{tr: model.Trace{TraceID: xssID}}
	start := model.TimestampOf(testNow.Add(-10 * time.Minute))
	root := b.span(nil, xssSvc, xssOp, model.KindServer, start, 50*time.Millisecond,
		model.String("shard", `<script>alert('shard')</script>`), model.String("note", xssTag))
	child := b.span(root, "db", `SELECT "x" </script><script>alert(2)</script>`, model.KindClient, start.Add(5*time.Millisecond), 20*time.Millisecond)
	child.Logs = []model.Log{{Timestamp: child.Start, Fields: model.KeyValues{model.String("event", `</script><b>bold</b>`)}}}
	return assembled(b.tr)
}

// bigTrace has n spans: a root with fan-outs three levels deep.
func bigTrace(n int) model.AssembledTrace {
	b := &builder{tr: model.Trace{TraceID: bigID}}
	start := model.TimestampOf(testNow.Add(-3 * time.Hour)) // outside the tests' 1h range
	root := b.span(nil, "batch", "nightly job", model.KindServer, start, 10*time.Second)
	parents := []*model.Span{root}
	for len(b.tr.Spans) < n {
		p := parents[len(b.tr.Spans)%len(parents)]
		k := len(b.tr.Spans)
		off := time.Duration(k%97) * time.Millisecond
		sp := b.span(p, "worker-"+strconv.Itoa(k%5), "step "+strconv.Itoa(k%13), model.KindInternal, p.Start.Add(off), max(p.Duration/3, time.Millisecond))
		if len(parents) < 200 {
			parents = append(parents, sp)
		}
	}
	return assembled(b.tr)
}

// seed returns a fresh embedded store holding the seeded data (fill).
func seed(t testing.TB) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(context.Background(), embedded.Options{Path: filepath.Join(t.TempDir(), "ui.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	fill(t, s)
	return s
}

// fill writes the demo traces, the XSS trace, the big trace, and rollups
// and edge rollups computed from them.
func fill(t testing.TB, s storage.Store) {
	t.Helper()
	ctx := context.Background()
	var ats []model.AssembledTrace
	for i := 0; i < demoTraces; i++ {
		ats = append(ats, demoTrace(i))
	}
	ats = append(ats, xssTrace())
	if err := s.WriteTraces(ctx, ats); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteTraces(ctx, []model.AssembledTrace{bigTrace(10000)}); err != nil {
		t.Fatal(err)
	}
	rs, es := rollupsOf(ats, []string{"shard"})
	if err := s.WriteRollups(ctx, rs); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteEdgeRollups(ctx, es); err != nil {
		t.Fatal(err)
	}
}

type acc struct {
	count, errors      int64
	dur, self, cp      rollup.Sketch
	durSum, sSum, cSum time.Duration
	durMax, sMax, cMax time.Duration
	traceDur           time.Duration
	traces             map[model.TraceID]bool
	ex                 map[model.TraceID]model.Exemplar
}

func (a *acc) dist(s *rollup.Sketch, sum, mx time.Duration) model.Distribution {
	return model.Distribution{Sum: sum, Sketch: s.ProtoBytes(), Quantiles: model.Quantiles{
		P50: time.Duration(s.Quantile(.5)), P90: time.Duration(s.Quantile(.9)), P95: time.Duration(s.Quantile(.95)), P99: time.Duration(s.Quantile(.99)), Max: mx}}
}

func (a *acc) exemplars() []model.Exemplar {
	var out []model.Exemplar
	for _, e := range a.ex {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Duration > out[j].Duration })
	return out[:min(len(out), 3)]
}

// rollupsOf computes, by brute force, the rollups (split by dims) and edge
// rollups the aggregator would write for the traces, at 1m, 1h and 1d.
func rollupsOf(ats []model.AssembledTrace, dims []string) ([]model.Rollup, []model.EdgeRollup) {
	type key struct {
		res    time.Duration
		win    model.Timestamp
		svc    string
		op     string
		kind   model.SpanKind
		dimval string
	}
	type ekey struct {
		res            time.Duration
		win            model.Timestamp
		caller, callee string
	}
	accs, eaccs := map[key]*acc{}, map[ekey]*acc{}
	get := func(m map[key]*acc, k key) *acc {
		if m[k] == nil {
			m[k] = &acc{traces: map[model.TraceID]bool{}, ex: map[model.TraceID]model.Exemplar{}}
		}
		return m[k]
	}
	for _, at := range ats {
		stats := map[model.SpanID]model.SpanStats{}
		for _, st := range at.Analysis.Spans {
			stats[st.SpanID] = st
		}
		byID := map[model.SpanID]*model.Span{}
		for _, sp := range at.Trace.Spans {
			byID[sp.SpanID] = sp
		}
		for _, res := range []time.Duration{time.Minute, time.Hour, 24 * time.Hour} {
			win := model.Timestamp(int64(at.Analysis.Start) - int64(at.Analysis.Start)%int64(res))
			for _, sp := range at.Trace.Spans {
				var dv string
				for _, d := range dims {
					if kv, ok := sp.Tags.Find(d); ok {
						dv = kv.AsString()
					}
				}
				a := get(accs, key{res, win, sp.Process.ServiceName, sp.Operation, sp.Kind, dv})
				st := stats[sp.SpanID]
				a.count++
				if sp.IsError() {
					a.errors++
				}
				a.dur.Add(int64(sp.Duration))
				a.self.Add(int64(st.Self))
				a.cp.Add(int64(st.CriticalPath))
				a.durSum += sp.Duration
				a.sSum += st.Self
				a.cSum += st.CriticalPath
				a.durMax, a.sMax, a.cMax = max(a.durMax, sp.Duration), max(a.sMax, st.Self), max(a.cMax, st.CriticalPath)
				if !a.traces[at.Trace.TraceID] {
					a.traces[at.Trace.TraceID] = true
					a.traceDur += at.Analysis.Duration
				}
				if e, ok := a.ex[at.Trace.TraceID]; !ok || sp.Duration > e.Duration {
					a.ex[at.Trace.TraceID] = model.Exemplar{TraceID: at.Trace.TraceID, Duration: sp.Duration, Start: at.Analysis.Start}
				}
				if p, _, ok := sp.ParentSpanID(); ok && byID[p] != nil && byID[p].Process.ServiceName != sp.Process.ServiceName {
					ek := ekey{res, win, byID[p].Process.ServiceName, sp.Process.ServiceName}
					if eaccs[ek] == nil {
						eaccs[ek] = &acc{traces: map[model.TraceID]bool{}, ex: map[model.TraceID]model.Exemplar{}}
					}
					e := eaccs[ek]
					e.count++
					if sp.IsError() {
						e.errors++
					}
					e.dur.Add(int64(sp.Duration))
					e.durSum += sp.Duration
					e.durMax = max(e.durMax, sp.Duration)
					if x, ok := e.ex[at.Trace.TraceID]; !ok || sp.Duration > x.Duration {
						e.ex[at.Trace.TraceID] = model.Exemplar{TraceID: at.Trace.TraceID, Duration: sp.Duration, Start: sp.Start}
					}
				}
			}
		}
	}
	var rs []model.Rollup
	for k, a := range accs {
		r := model.Rollup{Resolution: k.res, WindowStart: k.win, Service: k.svc, Operation: k.op, Kind: k.kind,
			Count: a.count, Errors: a.errors, Duration: a.dist(&a.dur, a.durSum, a.durMax), Self: a.dist(&a.self, a.sSum, a.sMax),
			CriticalPath: a.dist(&a.cp, a.cSum, a.cMax), TraceDurationSum: a.traceDur, Exemplars: a.exemplars()}
		if len(dims) > 0 {
			r.Dimensions = []model.Dimension{{Name: dims[0], Value: k.dimval}}
		}
		if a.traceDur > 0 {
			r.CriticalPathShare = float64(a.cSum) / float64(a.traceDur)
		}
		rs = append(rs, r)
	}
	var es []model.EdgeRollup
	for k, a := range eaccs {
		es = append(es, model.EdgeRollup{Resolution: k.res, WindowStart: k.win, Caller: k.caller, Callee: k.callee, Calls: a.count, Errors: a.errors,
			Latency: a.dist(&a.dur, a.durSum, a.durMax), Exemplars: a.exemplars()})
	}
	return rs, es
}
