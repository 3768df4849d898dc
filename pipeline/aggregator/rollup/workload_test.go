package rollup

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// workload is a generated stream of assembled-trace messages with known
// content: several versions of some traces (later versions add spans and
// may move the trace's start to another window), re-emitted duplicates,
// out-of-order and very late arrivals, and high-cardinality tags.
type workload struct {
	msgs []wmsg // in arrival order
}

type wmsg struct {
	arrival model.Timestamp
	at      *model.AssembledTrace
}

type workloadOpts struct {
	traces       int
	base         model.Timestamp
	span         time.Duration // event-time range of trace starts
	versionRate  float64       // traces with a second version
	moveRate     float64       // of those, versions whose start moves earlier (maybe another window)
	dupRate      float64       // messages re-emitted later
	veryLateRate float64       // messages arriving 5-25 minutes late
	maxDelay     time.Duration // normal arrival delay
	clients      int           // distinct client tag values
}

func defaultWorkload(n int) workloadOpts {
	return workloadOpts{
		traces: n, base: model.Timestamp(1_700_000_000_000_000_000 - 1_700_000_000_000_000_000%int64(24*time.Hour)),
		span: 40 * time.Minute, versionRate: 0.25, moveRate: 0.4, dupRate: 0.1, veryLateRate: 0.04,
		maxDelay: 20 * time.Second, clients: 40,
	}
}

var (
	wlServices = []string{"frontend", "api", "auth", "orders", "db", "cache"}
	wlOps      = map[string][]string{
		"frontend": {"GET /", "GET /cart", "POST /checkout"},
		"api":      {"list", "get", "put"},
		"auth":     {"check"},
		"orders":   {"create", "read"},
		"db":       {"SELECT", "INSERT"},
		"cache":    {"get"},
	}
)

type spanGen struct {
	rng  *rand.Rand
	o    workloadOpts
	tid  model.TraceID
	next model.SpanID
}

func (g *spanGen) span(svc string, parent *model.Span, start model.Timestamp, dur time.Duration) *model.Span {
	g.next++
	ops := wlOps[svc]
	sp := &model.Span{
		TraceID: g.tid, SpanID: g.next, Operation: ops[g.rng.IntN(len(ops))],
		Start: start, Duration: dur,
		Process: model.Process{ServiceName: svc, Tags: model.KeyValues{model.String("host", fmt.Sprintf("%s-%d", svc, g.rng.IntN(3)))}},
		Kind:    model.SpanKind(1 + g.rng.IntN(3)),
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
	if g.rng.IntN(3) != 0 {
		sp.Tags = append(sp.Tags, model.String("client", fmt.Sprintf("c%03d", g.rng.IntN(g.o.clients))))
	}
	if g.rng.IntN(10) == 0 {
		sp.Tags = append(sp.Tags, model.String("host", "override")) // span tag wins over process tag
	}
	return sp
}

// analysis builds a synthetic but well-formed analysis: self and
// critical-path times within each span's duration.
func synthAnalysis(rng *rand.Rand, tr *model.Trace, root *model.Span) model.Analysis {
	a := model.Analysis{TraceID: tr.TraceID, RootSpanID: root.SpanID, Start: root.Start, Duration: root.Duration, SpanCount: len(tr.Spans)}
	for _, sp := range tr.Spans {
		self := time.Duration(rng.Int64N(int64(sp.Duration) + 1))
		cp := time.Duration(0)
		if rng.IntN(3) != 0 {
			cp = time.Duration(rng.Int64N(int64(sp.Duration) + 1))
		}
		a.Spans = append(a.Spans, model.SpanStats{SpanID: sp.SpanID, Self: self, CriticalPath: cp})
		if sp.IsError() {
			a.ErrorCount++
		}
	}
	return a
}

func genWorkload(seed uint64, o workloadOpts) *workload {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	w := &workload{}
	for i := 0; i < o.traces; i++ {
		g := &spanGen{rng: rng, o: o, tid: model.TraceID{High: rng.Uint64() >> 1, Low: rng.Uint64() | 1}}
		start := o.base.Add(time.Duration(rng.Int64N(int64(o.span))))
		rootDur := time.Duration(1e6 + int64(5e6*math.Exp(rng.NormFloat64())))
		root := g.span("frontend", nil, start, rootDur)
		root.Kind = model.KindServer
		spans := []*model.Span{root}
		n := 2 + rng.IntN(10)
		for len(spans) < n {
			p := spans[rng.IntN(len(spans))]
			svc := wlServices[1+rng.IntN(len(wlServices)-1)]
			if rng.IntN(4) == 0 {
				svc = p.Process.ServiceName
			}
			off := time.Duration(rng.Int64N(int64(p.Duration)/2 + 1))
			d := time.Duration(rng.Int64N(int64(p.Duration-off)) + 1)
			spans = append(spans, g.span(svc, p, p.Start.Add(off), d))
		}
		versions := [][]*model.Span{spans}
		vroot := []*model.Span{root}
		if rng.Float64() < o.versionRate {
			nv := 1 + rng.IntN(2)
			for v := 0; v < nv; v++ {
				prev := versions[len(versions)-1]
				next := append([]*model.Span(nil), prev...)
				r := vroot[len(vroot)-1]
				if rng.Float64() < o.moveRate {
					// A late real root that started earlier: the trace's start
					// moves back by up to 55s per version (maybe to another
					// window), within the default VersionSpread overall.
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
					next = append(next, nr)
					r = nr
				}
				for k := 0; k < 1+rng.IntN(3); k++ {
					p := next[rng.IntN(len(next))]
					next = append(next, g.span(wlServices[1+rng.IntN(len(wlServices)-1)], p, p.Start, time.Duration(rng.Int64N(int64(p.Duration))+1)))
				}
				versions = append(versions, next)
				vroot = append(vroot, r)
			}
		}
		arrival := start.Add(rootDur)
		for v, sps := range versions {
			tr := model.Trace{TraceID: g.tid, Spans: sps}
			at := &model.AssembledTrace{Trace: tr, Analysis: synthAnalysis(rng, &tr, vroot[v]), Version: uint32(v + 1), Completion: model.CompletionIdle}
			arrival = arrival.Add(time.Duration(rng.Int64N(int64(o.maxDelay))))
			if rng.Float64() < o.veryLateRate {
				arrival = arrival.Add(5*time.Minute + time.Duration(rng.Int64N(int64(20*time.Minute))))
			}
			w.msgs = append(w.msgs, wmsg{arrival, at})
			if rng.Float64() < o.dupRate {
				w.msgs = append(w.msgs, wmsg{arrival.Add(time.Duration(rng.Int64N(int64(3 * time.Minute)))), at})
			}
		}
	}
	sort.SliceStable(w.msgs, func(i, j int) bool { return w.msgs[i].arrival < w.msgs[j].arrival })
	return w
}

// partitionOf keys a trace to a partition as a producer keyed by trace ID
// would; salt varies the split.
func partitionOf(id model.TraceID, n int, salt uint64) int {
	h := fnv.New64a()
	var b [24]byte
	for i := 0; i < 8; i++ {
		b[i] = byte(id.High >> (8 * i))
		b[8+i] = byte(id.Low >> (8 * i))
		b[16+i] = byte(salt >> (8 * i))
	}
	h.Write(b[:])
	return int(h.Sum64() % uint64(n))
}

// logs splits the workload into n partition logs.
func (w *workload) logs(n int, salt uint64) [][]Message {
	out := make([][]Message, n)
	for _, m := range w.msgs {
		p := partitionOf(traceIDOf(m.at), n, salt)
		out[p] = append(out[p], Message{Offset: int64(len(out[p])), Time: m.arrival, Trace: m.at})
	}
	return out
}
