package dag

import (
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// hostSkewedTrace is realisticTrace with every host's clock off by up to
// ±skew (one offset per host, as real clocks are).
func hostSkewedTrace(rng *rand.Rand, n int, skew time.Duration) *model.Trace {
	t := realisticTrace(rng, n, false)
	off := map[string]time.Duration{}
	for _, s := range t.Spans {
		h, _ := s.Process.Tags.Find("hostname")
		o, ok := off[h.AsString()]
		if !ok {
			o = time.Duration(rng.Int64N(2*int64(skew)+1)) - skew
			off[h.AsString()] = o
		}
		s.Start = s.Start.Add(o)
	}
	return t
}

// TestSparseSolverMatchesDense checks that the sparse solver (distances from
// and to the reference host only) gives what the all-pairs solver gives, on
// host-skewed traces and on span-skewed ones (whose pairs often conflict:
// the sparse solver then hands over to the dense one).
func TestSparseSolverMatchesDense(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var a Analyzer
	compared := 0
	for iter := range 600 {
		var tr *model.Trace
		switch iter % 3 {
		case 0:
			tr = hostSkewedTrace(rng, 20+rng.IntN(200), 2*time.Millisecond)
		case 1:
			tr = hostSkewedTrace(rng, 20+rng.IntN(200), 20*time.Millisecond)
		default:
			tr = realisticTrace(rng, 20+rng.IntN(200), true)
		}
		dense := cloneTrace(tr)
		got := a.Analyze(tr, Options{})
		forceDense = true
		want := a.Analyze(dense, Options{})
		forceDense = false
		if !reflect.DeepEqual(got.CriticalPath, want.CriticalPath) || !reflect.DeepEqual(got.Spans, want.Spans) ||
			!reflect.DeepEqual(tr, dense) {
			t.Fatalf("iteration %d: sparse and dense solvers differ:\n%+v\n%+v", iter, got.Warnings, want.Warnings)
		}
		leftOut := false
		for _, w := range want.Warnings {
			leftOut = leftOut || strings.Contains(w.Message, "left out")
		}
		if !leftOut {
			compared++
			if !reflect.DeepEqual(got.Warnings, want.Warnings) {
				t.Fatalf("iteration %d: warnings differ:\n%v\n%v", iter, got.Warnings, want.Warnings)
			}
		}
	}
	if compared < 200 {
		t.Errorf("only %d traces without conflicts", compared)
	}
}

// TestHostSkewRecovered checks that on traces whose hosts' clocks are off
// by up to ±20ms, every child ends up inside its parent and the critical
// path is the one of the unskewed trace in most traces (these traces have
// no client spans: every cross-host pair only bounds the offset).
func TestHostSkewRecovered(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	var a Analyzer
	same := 0
	const traces = 200
	for range traces {
		seed := rng.Uint64()
		truth := realisticTrace(rand.New(rand.NewPCG(seed, 1)), 100, false)
		skewed := hostSkewedTrace(rand.New(rand.NewPCG(seed, 1)), 100, 20*time.Millisecond)
		want := a.Analyze(truth, Options{MaxClockSkewAdjust: -1})
		got := a.Analyze(skewed, Options{})
		for i, s := range skewed.Spans {
			p, blocking, ok := s.ParentSpanID()
			if !ok || !blocking {
				continue
			}
			for _, q := range skewed.Spans {
				// (A child longer than its parent, by the truncation to
				// whole microseconds, can only start with it.)
				if q.SpanID == p && s.Duration <= q.Duration && (s.Start < q.Start || s.End() > q.End()) {
					t.Fatalf("span %d %s not inside its parent after repair: %v", i, s.SpanID, got.Warnings)
				}
			}
		}
		ids := func(an model.Analysis) []model.SpanID {
			var out []model.SpanID
			for _, c := range an.CriticalPath {
				out = append(out, c.SpanID)
			}
			return out
		}
		if reflect.DeepEqual(ids(want), ids(got)) {
			same++
		}
	}
	t.Logf("critical path recovered in %d of %d traces", same, traces)
	if same < traces/2 {
		t.Errorf("critical path recovered in only %d of %d traces", same, traces)
	}
}
