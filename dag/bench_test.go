package dag

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// realisticTrace builds an n-span trace shaped like an RPC call tree: random
// fan-out biased to recent spans, children nested in their parents,
// sequential and parallel siblings, 12 services of 6 operations each on their
// own hosts, a few tags per span, some async (FOLLOWS_FROM) children and some errors. With
// skew, about one cross-host child in ten is moved off its parent by a few
// milliseconds.
func realisticTrace(rng *rand.Rand, n int, skew bool) *model.Trace {
	tid := model.TraceID{High: rng.Uint64(), Low: rng.Uint64()}
	t := &model.Trace{TraceID: tid, Spans: make([]*model.Span, 0, n)}
	procs := make([]model.Process, 12)
	for i := range procs {
		procs[i] = model.Process{ServiceName: fmt.Sprintf("service-%d", i), Tags: model.KeyValues{
			model.String("hostname", fmt.Sprintf("host-%d", i)),
			model.String("ip", fmt.Sprintf("10.0.%d.%d", i/250, i%250+1)),
			model.String("jaeger.version", "Go-2.30.0"),
		}}
	}
	// Each service has its own 6 operations.
	ops := make([][]string, len(procs))
	for i := range ops {
		for k := range 6 {
			ops[i] = append(ops[i], fmt.Sprintf("operation-%d-%d", i, k))
		}
	}
	type iv struct{ s, e int64 }
	ivs := make([]iv, 0, n)
	svc := make([]int, 0, n)
	start := int64(base) + rng.Int64N(int64(time.Hour))
	const rootDur = int64(200 * time.Millisecond)
	for i := range n {
		s := &model.Span{TraceID: tid, SpanID: model.SpanID(rng.Uint64() | 1), Tags: model.KeyValues{
			model.String("span.kind", "server"), model.Int64("http.status_code", 200), model.String("component", "net/http"),
		}}
		var st, du int64
		p := -1
		if i == 0 {
			st, du = start, rootDur
			svc = append(svc, 0)
		} else {
			// Parents are recent spans more often than old ones.
			p = i - 1 - int(rng.ExpFloat64()*float64(i)/4)%i
			pi := ivs[p]
			pd := pi.e - pi.s
			off := rng.Int64N(pd/2 + 1)
			du = rng.Int64N(pd-off+1) * 3 / 4
			st = pi.s + off
			sv := svc[p]
			if rng.IntN(3) == 0 {
				sv = rng.IntN(len(procs))
			}
			svc = append(svc, sv)
			ref := model.ChildOf
			if rng.IntN(20) == 0 {
				ref = model.FollowsFrom
			}
			s.References = []model.Reference{{Type: ref, TraceID: tid, SpanID: t.Spans[p].SpanID}}
			if skew && sv != svc[p] && rng.IntN(10) == 0 {
				st += rng.Int64N(int64(10*time.Millisecond)) - int64(5*time.Millisecond)
			}
		}
		ivs = append(ivs, iv{st, st + du})
		s.Start, s.Duration = model.Timestamp(st), time.Duration(du)
		s.Process = procs[svc[i]]
		s.Operation = ops[svc[i]][rng.IntN(len(ops[svc[i]]))]
		if rng.IntN(50) == 0 {
			s.Status = model.StatusError
		}
		t.Spans = append(t.Spans, s)
	}
	return t
}

func benchTraces(n, count int, skew bool) []*model.Trace {
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	out := make([]*model.Trace, count)
	for i := range out {
		out[i] = realisticTrace(rng, n, skew)
	}
	return out
}

func reportSpans(b *testing.B, spansPerOp int) {
	b.ReportMetric(float64(spansPerOp)*float64(b.N)/b.Elapsed().Seconds(), "spans/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(spansPerOp), "ns/span")
}

// benchAnalyze analyses the traces round-robin with the package-level
// Analyze. The traces are analysed once before timing, so timed runs see
// already repaired clock skew (as a re-analysis of a trace does).
func benchAnalyze(b *testing.B, traces []*model.Trace) {
	for _, t := range traces {
		Analyze(t, Options{})
	}
	spans := len(traces[0].Spans)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		Analyze(traces[i%len(traces)], Options{})
	}
	reportSpans(b, spans)
}

func BenchmarkAnalyze100(b *testing.B)   { benchAnalyze(b, benchTraces(100, 64, false)) }
func BenchmarkAnalyze1000(b *testing.B)  { benchAnalyze(b, benchTraces(1000, 16, false)) }
func BenchmarkAnalyze10000(b *testing.B) { benchAnalyze(b, benchTraces(10000, 4, false)) }

func BenchmarkAnalyzeDeepChain10000(b *testing.B) { benchAnalyze(b, []*model.Trace{deepChain(10000)}) }
func BenchmarkAnalyzeWideFanout10000(b *testing.B) {
	benchAnalyze(b, []*model.Trace{wideFanout(10000)})
}

// BenchmarkAnalyzeSkew100 measures traces that need clock-skew shifts on
// every run: span starts, logs and notes are restored before each analysis
// (the restore loop is timed too).
func BenchmarkAnalyzeSkew100(b *testing.B) {
	for _, m := range []struct {
		name   string
		method ClockSkewMethod
	}{{"host-offsets", ClockSkewHostOffsets}, {"per-span", ClockSkewPerSpan}} {
		b.Run(m.name, func(b *testing.B) { benchSkew(b, Options{ClockSkew: m.method}) })
	}
}

func benchSkew(b *testing.B, opts Options) {
	traces := benchTraces(100, 64, true)
	starts := make([][]model.Timestamp, len(traces))
	for i, t := range traces {
		for _, s := range t.Spans {
			starts[i] = append(starts[i], s.Start)
		}
	}
	var a Analyzer
	shifted := 0
	for _, t := range traces {
		for _, w := range a.Analyze(t, opts).Warnings {
			if w.Kind == model.WarnClockSkew {
				shifted++
			}
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		k := i % len(traces)
		for j, s := range traces[k].Spans {
			s.Start = starts[k][j]
			s.Warnings = s.Warnings[:0]
		}
		a.Analyze(traces[k], opts)
	}
	reportSpans(b, 100)
	b.ReportMetric(float64(shifted)/float64(len(traces)), "shifts/trace")
}

// BenchmarkAnalyzerReuse100 is BenchmarkAnalyze100 with one explicit Analyzer
// instead of the pool.
func BenchmarkAnalyzerReuse100(b *testing.B) {
	traces := benchTraces(100, 64, false)
	var a Analyzer
	for _, t := range traces {
		a.Analyze(t, Options{})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		a.Analyze(traces[i%len(traces)], Options{})
	}
	reportSpans(b, 100)
}

// TestRealisticTraces checks the benchmark traces themselves: the invariants
// hold and, without injected skew, there are no warnings.
func TestRealisticTraces(t *testing.T) {
	for _, n := range []int{1, 2, 100, 1000} {
		for _, skew := range []bool{false, true} {
			for _, tr := range benchTraces(n, 4, skew) {
				an := Analyze(tr, Options{})
				checkInvariants(t, tr, an, Options{})
				for _, w := range an.Warnings {
					if !skew || (w.Kind != model.WarnClockSkew) {
						t.Fatalf("n=%d skew=%v: unexpected warning %v", n, skew, w)
					}
				}
			}
		}
	}
}
