package tracegen

import (
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/dag"
)

var skewTable = flag.Int("skew-table", 100, "TestSkewRepairTable: traces per row of the measurement table")

// skewMethods are the repairs compared by the measurement.
var skewMethods = []struct {
	name string
	opts dag.Options
}{
	{"none", dag.Options{MaxClockSkewAdjust: -1}},
	{"per-span (Jaeger)", dag.Options{ClockSkew: dag.ClockSkewPerSpan}},
	{"host offsets", dag.Options{}},
}

// skewShapes are the workload shapes of the measurement.
var skewShapes = []struct {
	name string
	cfg  Config
}{
	{"client spans, asymmetric latency", Config{AsymmetricLatency: true}},
	{"10% uninstrumented clients", Config{DirectCalls: 0.1, AsymmetricLatency: true}},
	{"30% uninstrumented clients", Config{DirectCalls: 0.3, AsymmetricLatency: true}},
}

// TestSkewRepairTable prints the clock-skew measurement of the README: for
// each workload shape and clock skew, each repair scored against the
// true-time analysis over -skew-table traces (seed 1; 100 by default, the
// README's table uses 5000):
//
//	go test ./tracegen -run TestSkewRepairTable -skew-table 5000 -v
func TestSkewRepairTable(t *testing.T) {
	fmt.Fprintln(os.Stdout, "| workload | skew | repair | exact critical path | mean abs. error CP/span | mean abs. error self/span | CP time misattributed |")
	fmt.Fprintln(os.Stdout, "|---|---|---|---|---|---|---|")
	for _, sh := range skewShapes {
		for _, skew := range []time.Duration{500 * time.Microsecond, 2 * time.Millisecond, 10 * time.Millisecond} {
			cfg := sh.cfg
			cfg.Seed, cfg.Traces, cfg.ClockSkew = 1, *skewTable, skew
			w := Generate(cfg)
			for _, m := range skewMethods {
				sc := w.ScoreSkewRepair(m.opts)
				fmt.Fprintf(os.Stdout, "| %s | ±%v | %s | %.1f%% | %v | %v | %.2f%% |\n", sh.name, skew, m.name,
					100*sc.ExactShare(), sc.MeanCriticalPathErr().Round(100*time.Nanosecond), sc.MeanSelfErr().Round(100*time.Nanosecond),
					100*sc.MisattributedShare())
			}
		}
	}
}

// TestSkewRepair checks the measurement's figures that the host-offset repair
// must keep, on a small workload: without uninstrumented clients 99% of the
// traces' critical paths are exactly recovered at ±2ms; with 30% of them it does better
// than Jaeger's per-span repair on every score.
func TestSkewRepair(t *testing.T) {
	w := Generate(Config{Seed: 3, Traces: 300, ClockSkew: 2 * time.Millisecond, AsymmetricLatency: true})
	none := w.ScoreSkewRepair(dag.Options{MaxClockSkewAdjust: -1})
	hosts := w.ScoreSkewRepair(dag.Options{})
	if none.ExactShare() > 0.2 {
		t.Errorf("skew does not disturb the critical path (%.2f exact without repair): the measurement measures nothing", none.ExactShare())
	}
	if hosts.ExactShare() < 0.99 || hosts.MisattributedShare() > 0.001 {
		t.Errorf("host offsets: %d of %d exact, %.4f misattributed", hosts.Exact, hosts.Traces, hosts.MisattributedShare())
	}

	w = Generate(Config{Seed: 3, Traces: 300, ClockSkew: 2 * time.Millisecond, AsymmetricLatency: true, DirectCalls: 0.3})
	per := w.ScoreSkewRepair(dag.Options{ClockSkew: dag.ClockSkewPerSpan})
	hosts = w.ScoreSkewRepair(dag.Options{})
	if hosts.Exact <= per.Exact || hosts.MisattributedShare() >= per.MisattributedShare() ||
		hosts.MeanCriticalPathErr() >= per.MeanCriticalPathErr() || hosts.MeanSelfErr() >= per.MeanSelfErr() {
		t.Errorf("host offsets %+v not better than per span %+v", hosts, per)
	}
}

// TestSkewWorkload checks the skewed workload: one offset per host within
// bounds, true traces kept, durations untouched, truth with analyses.
func TestSkewWorkload(t *testing.T) {
	w := Generate(Config{Seed: 5, Traces: 20, ClockSkew: time.Millisecond})
	plain := Generate(Config{Seed: 5, Traces: 20})
	if len(w.TrueTraces) != 20 || len(w.Offsets) == 0 {
		t.Fatalf("%d true traces, %d offsets", len(w.TrueTraces), len(w.Offsets))
	}
	for i, tr := range w.Traces {
		for j, s := range tr.Spans {
			want := plain.Traces[i].Spans[j]
			if w.TrueTraces[i].Spans[j].Start != want.Start {
				t.Fatal("skew changed the true trace")
			}
			off := w.Offsets[HostOf(s)]
			if off < -time.Millisecond || off > time.Millisecond || s.Start != want.Start.Add(off) || s.Duration != want.Duration {
				t.Fatalf("span %s: start %v, want %v + %v", s.SpanID, s.Start, want.Start, off)
			}
		}
	}
	truth := w.Truth()
	if len(truth.Analyses) != 20 || len(truth.ClockOffsets) != len(w.Offsets) || len(truth.Analyses[0].CriticalPath) == 0 {
		t.Fatalf("truth: %d analyses, %d offsets", len(truth.Analyses), len(truth.ClockOffsets))
	}
	if plain.Truth().Analyses != nil {
		t.Fatal("a workload without skew has analyses in its truth")
	}
}

// BenchmarkSkewRepair analyses a ±2ms skewed workload with 30% uninstrumented
// clients with each repair (copies of the traces are analysed, the copying
// is timed too).
func BenchmarkSkewRepair(b *testing.B) {
	w := Generate(Config{Seed: 1, Traces: 200, ClockSkew: 2 * time.Millisecond, AsymmetricLatency: true, DirectCalls: 0.3})
	spans := 0
	for _, tr := range w.Traces {
		spans += len(tr.Spans)
	}
	for _, m := range skewMethods {
		b.Run(m.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := range b.N {
				analyse(w.Traces[i%len(w.Traces)], m.opts)
			}
			b.ReportMetric(float64(b.N)*float64(spans)/float64(len(w.Traces))/b.Elapsed().Seconds(), "spans/s")
		})
	}
}
