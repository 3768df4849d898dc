// Package rolluptest generates assembled-trace workloads with known ground
// truth and checks stored rollups against it, for tests of the aggregator
// stage (the aggregate package's own tests have an in-package twin).
//
// The ground truth is computed by brute force: the latest version of every
// trace, every statistic from the raw values, the cardinality limit applied
// to each whole window. Check compares exactly (counts, sums, maxima,
// exemplars, sketch bins) and checks quantiles against the exact ones within
// the sketch's relative accuracy.
package rolluptest

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/pipeline/aggregator/rollup"
)

// Options shape a generated workload.
type Options struct {
	Traces      int
	Base        model.Timestamp // earliest trace start
	Span        time.Duration   // trace starts fall in [Base, Base+Span)
	VersionRate float64         // traces with later versions (more spans, maybe an earlier start)
	DupRate     float64         // messages re-emitted later
	VeryLate    float64         // messages delivered 5-25 minutes late
	Clients     int             // distinct values of the client tag
	// SlowService and SlowOperation name an operation made 20x slower and
	// always on the critical path (the bottleneck to find); "" for none.
	SlowService, SlowOperation string
}

// DefaultOptions are n traces over 30 minutes before now.
func DefaultOptions(n int, now time.Time) Options {
	return Options{Traces: n, Base: model.TimestampOf(now.Add(-30 * time.Minute).Truncate(time.Minute)), Span: 30 * time.Minute,
		VersionRate: 0.2, DupRate: 0.1, Clients: 30}
}

// Message is one generated message: deliver them in slice order.
type Message struct {
	Arrival model.Timestamp
	Trace   *model.AssembledTrace
}

var (
	services = []string{"frontend", "api", "auth", "orders", "db", "cache"}
	ops      = map[string][]string{
		"frontend": {"GET /", "GET /cart", "POST /checkout"},
		"api":      {"list", "get", "put"},
		"auth":     {"check"},
		"orders":   {"create", "read"},
		"db":       {"SELECT", "INSERT"},
		"cache":    {"get"},
	}
)

type gen struct {
	rng  *rand.Rand
	o    Options
	tid  model.TraceID
	next model.SpanID
}

func (g *gen) span(svc string, parent *model.Span, start model.Timestamp, dur time.Duration) *model.Span {
	g.next++
	os := ops[svc]
	sp := &model.Span{
		TraceID: g.tid, SpanID: g.next, Operation: os[g.rng.IntN(len(os))], Start: start, Duration: dur,
		Process: model.Process{ServiceName: svc, Tags: model.KeyValues{model.String("host", fmt.Sprintf("%s-%d", svc, g.rng.IntN(3)))}},
		Kind:    model.SpanKind(1 + g.rng.IntN(3)),
	}
	if svc == g.o.SlowService && sp.Operation == g.o.SlowOperation {
		sp.Duration *= 20
	}
	if parent != nil {
		sp.References = []model.Reference{{Type: model.ChildOf, TraceID: g.tid, SpanID: parent.SpanID}}
	}
	if g.rng.IntN(20) == 0 {
		sp.Status = model.StatusError
	}
	if g.rng.IntN(4) != 0 {
		sp.Tags = append(sp.Tags, model.Int64("shard", int64(g.rng.IntN(6))))
	}
	if g.rng.IntN(3) != 0 && g.o.Clients > 0 {
		sp.Tags = append(sp.Tags, model.String("client", fmt.Sprintf("c%03d", g.rng.IntN(g.o.Clients))))
	}
	return sp
}

func (g *gen) analysis(tr *model.Trace, root *model.Span) model.Analysis {
	a := model.Analysis{TraceID: tr.TraceID, RootSpanID: root.SpanID, Start: root.Start, Duration: root.Duration, SpanCount: len(tr.Spans)}
	for _, sp := range tr.Spans {
		self := time.Duration(g.rng.Int64N(int64(sp.Duration) + 1))
		cp := time.Duration(0)
		if g.rng.IntN(3) != 0 || sp.Process.ServiceName == g.o.SlowService && sp.Operation == g.o.SlowOperation {
			cp = time.Duration(g.rng.Int64N(int64(sp.Duration)/2+1)) + sp.Duration/2
		}
		a.Spans = append(a.Spans, model.SpanStats{SpanID: sp.SpanID, Self: self, CriticalPath: cp})
		if sp.IsError() {
			a.ErrorCount++
		}
	}
	return a
}

// Generate makes a workload, deterministic for a seed. Versions are
// numbered by span count, as the ingester numbers them.
func Generate(seed uint64, o Options) []Message {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var out []Message
	for i := 0; i < o.Traces; i++ {
		g := &gen{rng: rng, o: o, tid: model.TraceID{High: rng.Uint64() >> 1, Low: rng.Uint64() | 1}}
		start := o.Base.Add(time.Duration(rng.Int64N(int64(o.Span))))
		rootDur := time.Duration(1e6 + int64(5e6*math.Exp(rng.NormFloat64())))
		root := g.span("frontend", nil, start, rootDur)
		root.Kind = model.KindServer
		spans := []*model.Span{root}
		for n := 2 + rng.IntN(10); len(spans) < n; {
			p := spans[rng.IntN(len(spans))]
			svc := services[1+rng.IntN(len(services)-1)]
			off := time.Duration(rng.Int64N(int64(p.Duration)/2 + 1))
			d := time.Duration(rng.Int64N(int64(p.Duration-off)) + 1)
			spans = append(spans, g.span(svc, p, p.Start.Add(off), d))
		}
		versions, roots := [][]*model.Span{spans}, []*model.Span{root}
		if rng.Float64() < o.VersionRate {
			for v := 0; v < 1+rng.IntN(2); v++ {
				next := append([]*model.Span(nil), versions[len(versions)-1]...)
				r := roots[len(roots)-1]
				if rng.IntN(3) == 0 {
					// A late real root that started up to 55s earlier.
					shift := time.Duration(rng.Int64N(int64(55 * time.Second)))
					nr := g.span("frontend", nil, r.Start.Add(-shift), r.Duration+shift+time.Millisecond)
					nr.Kind = model.KindServer
					cp := *r
					cp.References = []model.Reference{{Type: model.ChildOf, TraceID: g.tid, SpanID: nr.SpanID}}
					for j, sp := range next {
						if sp == r {
							next[j] = &cp
						}
					}
					next, r = append(next, nr), nr
				}
				for k := 0; k < 1+rng.IntN(3); k++ {
					p := next[rng.IntN(len(next))]
					next = append(next, g.span(services[1+rng.IntN(len(services)-1)], p, p.Start, time.Duration(rng.Int64N(int64(p.Duration))+1)))
				}
				versions, roots = append(versions, next), append(roots, r)
			}
		}
		arrival := start.Add(rootDur)
		for v, sps := range versions {
			tr := model.Trace{TraceID: g.tid, Spans: sps}
			at := &model.AssembledTrace{Trace: tr, Analysis: g.analysis(&tr, roots[v]), Version: uint32(len(sps)), Completion: model.CompletionIdle}
			arrival = arrival.Add(time.Duration(rng.Int64N(int64(20 * time.Second))))
			if rng.Float64() < o.VeryLate {
				arrival = arrival.Add(5*time.Minute + time.Duration(rng.Int64N(int64(20*time.Minute))))
			}
			out = append(out, Message{arrival, at})
			if rng.Float64() < o.DupRate {
				out = append(out, Message{arrival.Add(time.Duration(rng.Int64N(int64(3 * time.Minute)))), at})
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Arrival < out[j].Arrival })
	return out
}

// Want is the expected content of one rollup (or edge rollup), with the
// raw values of its distributions.
type Want struct {
	Resolution    time.Duration
	Window        model.Timestamp
	Service       string // edges: caller
	Operation     string // edges: callee
	Kind          model.SpanKind
	Edge          bool
	Dimensions    []model.Dimension
	Count, Errors int64
	TraceDuration int64
	Durs, Selfs   []int64 // sorted
	CPs           []int64 // sorted
	Exemplars     []model.Exemplar
}

// ID is the stored document's ID.
func (w *Want) ID() string {
	if w.Edge {
		e := model.EdgeRollup{Resolution: w.Resolution, WindowStart: w.Window, Caller: w.Service, Callee: w.Operation}
		return e.ID()
	}
	r := model.Rollup{Resolution: w.Resolution, WindowStart: w.Window, Service: w.Service, Operation: w.Operation, Kind: w.Kind, Dimensions: w.Dimensions}
	return r.ID()
}

// Expected is the ground truth of a workload under a config.
type Expected struct {
	Want map[string]*Want // by document ID
}

func latest(msgs []Message) map[model.TraceID]*model.AssembledTrace {
	out := map[model.TraceID]*model.AssembledTrace{}
	for _, m := range msgs {
		at := m.Trace
		if cur := out[at.Trace.TraceID]; cur == nil || at.Version > cur.Version {
			out[at.Trace.TraceID] = at
		}
	}
	return out
}

func tag(sp *model.Span, name string) string {
	if kv, ok := sp.Tags.Find(name); ok {
		return kv.AsString()
	}
	if kv, ok := sp.Process.Tags.Find(name); ok {
		return kv.AsString()
	}
	return ""
}

func hashValue(v string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(v))
	return h.Sum64()
}

// Expect computes the ground truth by brute force.
func Expect(cfg rollup.Config, msgs []Message) *Expected {
	cfg = cfg.Normalized()
	type rawKey struct {
		res  time.Duration
		win  model.Timestamp
		fam  rollup.Family
		vals string // dimension values joined by \x00
	}
	raw := map[rawKey]*Want{}
	for id, at := range latest(msgs) {
		byID := map[model.SpanID]*model.Span{}
		for _, sp := range at.Trace.Spans {
			byID[sp.SpanID] = sp
		}
		for _, res := range append([]time.Duration{cfg.Window}, cfg.Coarse...) {
			win := model.Timestamp(int64(at.Analysis.Start) - int64(at.Analysis.Start)%int64(res))
			type best struct{ dur, start int64 }
			seen := map[rawKey]best{}
			add := func(k rawKey, sp *model.Span, self, cp int64) {
				w := raw[k]
				if w == nil {
					w = &Want{Resolution: res, Window: win, Service: k.fam.Service, Operation: k.fam.Operation, Kind: k.fam.Kind, Edge: k.fam.Edge}
					raw[k] = w
				}
				d := max(0, int64(sp.Duration))
				w.Count++
				if sp.IsError() {
					w.Errors++
				}
				w.Durs = append(w.Durs, d)
				b, ok := seen[k]
				if !k.fam.Edge {
					w.Selfs = append(w.Selfs, max(0, self))
					w.CPs = append(w.CPs, max(0, cp))
					if !ok {
						w.TraceDuration += max(0, int64(at.Analysis.Duration))
					}
				}
				if !ok || d > b.dur || d == b.dur && int64(sp.Start) < b.start {
					seen[k] = best{d, int64(sp.Start)}
				}
			}
			for i, sp := range at.Trace.Spans {
				vals := make([]string, len(cfg.Dimensions))
				for j, d := range cfg.Dimensions {
					vals[j] = tag(sp, d)
				}
				k := rawKey{res, win, rollup.Family{Service: sp.Process.ServiceName, Operation: sp.Operation, Kind: sp.Kind}, strings.Join(vals, "\x00")}
				add(k, sp, int64(at.Analysis.Spans[i].Self), int64(at.Analysis.Spans[i].CriticalPath))
				if cfg.NoEdges {
					continue
				}
				if pid, _, ok := sp.ParentSpanID(); ok {
					if p := byID[pid]; p != nil && p.Process.ServiceName != sp.Process.ServiceName {
						add(rawKey{res, win, rollup.Family{Edge: true, Service: p.Process.ServiceName, Operation: sp.Process.ServiceName}, ""}, sp, 0, 0)
					}
				}
			}
			for k, b := range seen {
				raw[k].Exemplars = append(raw[k].Exemplars, model.Exemplar{TraceID: id, Duration: time.Duration(b.dur), Start: model.Timestamp(b.start)})
			}
		}
	}
	// The cardinality limit, per (resolution, window, family, dimension).
	type famKey struct {
		res time.Duration
		win model.Timestamp
		fam rollup.Family
	}
	admitted := map[famKey][]map[string]bool{}
	values := map[famKey][]map[string]bool{}
	for k := range raw {
		if k.fam.Edge || len(cfg.Dimensions) == 0 {
			continue
		}
		fk := famKey{k.res, k.win, k.fam}
		if values[fk] == nil {
			values[fk] = make([]map[string]bool, len(cfg.Dimensions))
			for i := range values[fk] {
				values[fk][i] = map[string]bool{}
			}
		}
		for i, v := range strings.Split(k.vals, "\x00") {
			if v != "" && v != rollup.Overflow {
				values[fk][i][v] = true
			}
		}
	}
	for fk, sets := range values {
		adm := make([]map[string]bool, len(sets))
		for i, set := range sets {
			vs := make([]string, 0, len(set))
			for v := range set {
				vs = append(vs, v)
			}
			sort.Slice(vs, func(a, b int) bool {
				ha, hb := hashValue(vs[a]), hashValue(vs[b])
				if ha != hb {
					return ha < hb
				}
				return vs[a] < vs[b]
			})
			adm[i] = map[string]bool{"": true}
			for j, v := range vs {
				if j < cfg.DimensionLimit {
					adm[i][v] = true
				}
			}
		}
		admitted[fk] = adm
	}
	exp := &Expected{Want: map[string]*Want{}}
	for k, w := range raw {
		if !k.fam.Edge {
			vals := strings.Split(k.vals, "\x00")
			if len(cfg.Dimensions) == 0 {
				vals = nil
			}
			adm := admitted[famKey{k.res, k.win, k.fam}]
			for i, v := range vals {
				if !adm[i][v] {
					vals[i] = rollup.Overflow
				}
				w.Dimensions = append(w.Dimensions, model.Dimension{Name: cfg.Dimensions[i], Value: vals[i]})
			}
			sort.Slice(w.Dimensions, func(a, b int) bool { return w.Dimensions[a].Name < w.Dimensions[b].Name })
		}
		id := w.ID()
		t := exp.Want[id]
		if t == nil {
			exp.Want[id] = w
			continue
		}
		t.Count += w.Count
		t.Errors += w.Errors
		t.TraceDuration += w.TraceDuration
		t.Durs = append(t.Durs, w.Durs...)
		t.Selfs = append(t.Selfs, w.Selfs...)
		t.CPs = append(t.CPs, w.CPs...)
		t.Exemplars = append(t.Exemplars, w.Exemplars...)
	}
	for _, w := range exp.Want {
		slices.Sort(w.Durs)
		slices.Sort(w.Selfs)
		slices.Sort(w.CPs)
		sort.Slice(w.Exemplars, func(i, j int) bool {
			a, b := w.Exemplars[i], w.Exemplars[j]
			if a.Duration != b.Duration {
				return a.Duration > b.Duration
			}
			if a.TraceID != b.TraceID {
				return a.TraceID.High < b.TraceID.High || a.TraceID.High == b.TraceID.High && a.TraceID.Low < b.TraceID.Low
			}
			return a.Start < b.Start
		})
		if len(w.Exemplars) > cfg.Exemplars {
			w.Exemplars = w.Exemplars[:cfg.Exemplars]
		}
	}
	return exp
}

// Reader is the part of a store Check reads.
type Reader interface {
	RollupSeries(ctx context.Context, q model.RollupQuery) ([]model.Rollup, error)
}

// Fetch reads every stored rollup of the families and resolutions in e.
func (e *Expected) Fetch(ctx context.Context, r Reader) (map[string]model.Rollup, error) {
	type q struct {
		svc, op string
		res     time.Duration
	}
	qs := map[q]bool{}
	for _, w := range e.Want {
		if !w.Edge {
			qs[q{w.Service, w.Operation, w.Resolution}] = true
		}
	}
	out := map[string]model.Rollup{}
	for k := range qs {
		rs, err := r.RollupSeries(ctx, model.RollupQuery{Service: k.svc, Operation: k.op, Resolution: k.res, Limit: model.MaxLimit})
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			out[r.ID()] = r
		}
	}
	return out, nil
}

// EdgeReader is the part of a store FetchEdges reads.
type EdgeReader interface {
	EdgeSeries(ctx context.Context, res time.Duration, caller, callee string, start, end model.Timestamp) ([]model.EdgeRollup, error)
}

// FetchEdges reads every stored edge rollup (retractions included) of the
// edges and resolutions in e, by EdgeRollup.ID(), for Check.
func (e *Expected) FetchEdges(ctx context.Context, r EdgeReader) (map[string]model.EdgeRollup, error) {
	type q struct {
		caller, callee string
		res            time.Duration
	}
	qs := map[q]bool{}
	for _, w := range e.Want {
		if w.Edge {
			qs[q{w.Service, w.Operation, w.Resolution}] = true
		}
	}
	out := map[string]model.EdgeRollup{}
	for k := range qs {
		es, err := r.EdgeSeries(ctx, k.res, k.caller, k.callee, 0, 0)
		if err != nil {
			return nil, fmt.Errorf("edges %s->%s %s: %w", k.caller, k.callee, model.ResolutionName(k.res), err)
		}
		for _, e := range es {
			out[e.ID()] = e
		}
	}
	return out, nil
}

func exactQuantile(sorted []int64, q float64) int64 { return sorted[int(q*float64(len(sorted)-1))] }

// checkDist compares a stored distribution with the raw values.
func checkDist(name string, d model.Distribution, vs []int64) error {
	var sum, mx int64
	var want rollup.Sketch
	for _, v := range vs {
		sum += v
		mx = max(mx, v)
		want.Add(v)
	}
	if int64(d.Sum) != sum || int64(d.Max) != mx {
		return fmt.Errorf("%s: sum %d max %d, want %d %d", name, d.Sum, d.Max, sum, mx)
	}
	got, err := rollup.SketchFromProto(d.Sketch)
	if err != nil {
		return fmt.Errorf("%s: sketch: %v", name, err)
	}
	if !got.Equal(&want) {
		return fmt.Errorf("%s: sketch differs from the sketch of the exact values", name)
	}
	for _, q := range []struct {
		q   float64
		got time.Duration
	}{{0.5, d.P50}, {0.9, d.P90}, {0.95, d.P95}, {0.99, d.P99}} {
		if len(vs) == 0 {
			continue
		}
		w := exactQuantile(vs, q.q)
		if math.Abs(float64(int64(q.got)-w)) > rollup.RelativeAccuracy*float64(w)+0.5 {
			return fmt.Errorf("%s: p%v %d, exact %d: beyond 1%%", name, q.q*100, q.got, w)
		}
	}
	return nil
}

// Check compares stored rollups (by ID, as Fetch returns them) with the
// truth: every expected rollup must be stored and equal, and every other
// stored rollup must be empty (a retraction). Edge rollups (by ID, as
// FetchEdges returns them) are checked the same way when edges is not nil.
func (e *Expected) Check(got map[string]model.Rollup, edges map[string]model.EdgeRollup) error {
	var errs []string
	for id, w := range e.Want {
		if w.Edge {
			if edges == nil {
				continue
			}
			g, ok := edges[id]
			if !ok {
				errs = append(errs, fmt.Sprintf("missing edge %s->%s at %s", w.Service, w.Operation, w.Window.Time().Format(time.RFC3339)))
				continue
			}
			if g.Calls != w.Count || g.Errors != w.Errors {
				errs = append(errs, fmt.Sprintf("edge %s: calls/errors %d/%d, want %d/%d", id, g.Calls, g.Errors, w.Count, w.Errors))
			}
			if err := checkDist(id+" latency", g.Latency, w.Durs); err != nil {
				errs = append(errs, err.Error())
			}
			continue
		}
		g, ok := got[id]
		if !ok {
			errs = append(errs, fmt.Sprintf("missing %s %s/%s/%s %v at %s (count %d)", model.ResolutionName(w.Resolution), w.Service, w.Operation, w.Kind, w.Dimensions, w.Window.Time().Format(time.RFC3339), w.Count))
			continue
		}
		if g.Count != w.Count || g.Errors != w.Errors || int64(g.TraceDurationSum) != w.TraceDuration {
			errs = append(errs, fmt.Sprintf("%s: count/errors/traceDuration %d/%d/%d, want %d/%d/%d", id, g.Count, g.Errors, g.TraceDurationSum, w.Count, w.Errors, w.TraceDuration))
			continue
		}
		for _, d := range []struct {
			n  string
			d  model.Distribution
			vs []int64
		}{{"duration", g.Duration, w.Durs}, {"self", g.Self, w.Selfs}, {"critical path", g.CriticalPath, w.CPs}} {
			if err := checkDist(id+" "+d.n, d.d, d.vs); err != nil {
				errs = append(errs, err.Error())
			}
		}
		if !slices.Equal(g.Exemplars, w.Exemplars) {
			errs = append(errs, fmt.Sprintf("%s: exemplars %v, want %v", id, g.Exemplars, w.Exemplars))
		}
		if w.TraceDuration > 0 {
			if share := float64(g.CriticalPath.Sum) / float64(w.TraceDuration); math.Abs(g.CriticalPathShare-share) > 1e-9 {
				errs = append(errs, fmt.Sprintf("%s: critical-path share %v, want %v", id, g.CriticalPathShare, share))
			}
		}
	}
	for id, g := range edges {
		if e.Want[id] == nil && g.Calls != 0 {
			errs = append(errs, fmt.Sprintf("unexpected edge %s %s->%s at %s (calls %d)", model.ResolutionName(g.Resolution), g.Caller, g.Callee, g.WindowStart.Time().Format(time.RFC3339), g.Calls))
		}
	}
	for id, g := range got {
		if e.Want[id] == nil && g.Count != 0 {
			errs = append(errs, fmt.Sprintf("unexpected %s %s/%s %v at %s (count %d)", model.ResolutionName(g.Resolution), g.Service, g.Operation, g.Dimensions, g.WindowStart.Time().Format(time.RFC3339), g.Count))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	sort.Strings(errs)
	byRes := map[string]int{}
	for _, e := range errs {
		f := strings.Fields(e)
		k := f[0]
		if strings.HasPrefix(e, "missing") || strings.HasPrefix(e, "unexpected") {
			k = f[0] + " " + f[1]
		} else if i := strings.IndexByte(k, '-'); i > 0 {
			k = k[:i]
		}
		byRes[k]++
	}
	errs = append([]string{fmt.Sprintf("by kind: %v", byRes)}, errs...)
	n := len(errs) - 1
	if n > 10 {
		errs = append(errs[:11], fmt.Sprintf("... %d more", n-10))
	}
	return errors.New(fmt.Sprintf("%d of %d rollups differ:\n", n, len(e.Want)) + strings.Join(errs, "\n"))
}
