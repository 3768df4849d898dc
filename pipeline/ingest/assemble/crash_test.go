package assemble

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/tracegen"
)

type emission struct {
	spans string // span IDs in order
	id    string
	v     int
}

// TestCrashReplay simulates an owner that commits (offset, lookback) the way
// pipeline/ingest does and crashes at an arbitrary point; a new owner
// replays from the lookback with the committed offset as shadow boundary.
// Every (trace, version) emitted by both owners must carry the same spans,
// and every trace's highest version must be complete. Short horizons force
// evictions, so traces straddle commit points.
//
// Two commit rules are checked: "held" commits below every held trace
// (buffered or retained); "settled" (pipeline/ingest's: the committed offset
// reaches the log end soon after traffic stops) commits below the lowest
// unsettled trace (LowestUnsettled) with the lowest held trace in the
// lookback.
func TestCrashReplay(t *testing.T) {
	for _, rule := range []string{"held", "settled"} {
		t.Run(rule, func(t *testing.T) { testCrashReplay(t, rule) })
	}
}

func testCrashReplay(t *testing.T, rule string) {
	w := tracegen.Generate(tracegen.Config{Seed: 21, Traces: 400, Interleave: 10})
	truth := w.Truth()
	// Continuous overlap (no clean cut between groups of traces): span j of
	// trace i is delivered at position i + U(0,8), so traces straddle every
	// commit point.
	rng0 := rand.New(rand.NewPCG(3, 4))
	type keyed struct {
		k float64
		s *model.Span
	}
	var ks []keyed
	for i, tr := range w.Traces {
		for _, s := range tr.Spans {
			ks = append(ks, keyed{float64(i) + rng0.Float64()*8, s})
		}
	}
	sort.Slice(ks, func(a, b int) bool { return ks[a].k < ks[b].k })
	order := make([]*model.Span, len(ks))
	for i := range ks {
		order[i] = ks[i].s
	}
	// Every span arrives within the late horizon of its trace's earlier
	// versions (the interleaving spreads a trace over ~150 ms), so no span is
	// too late and every trace must end complete.
	cfg := Config{IdleTimeout: 40 * time.Millisecond, MaxWait: 2 * time.Second, LateHorizon: 400 * time.Millisecond}
	rng := rand.New(rand.NewPCG(1, 2))

	run := func(a *Assembler, clk *fakeClock, from, to int, out map[string]emission, commit func(off int64)) {
		for i := from; i < to; i++ {
			// Irregular arrival: bursts and pauses, so some traces get late
			// versions and some are evicted while others straddle.
			clk.Advance(time.Duration(rng.IntN(3)) * time.Millisecond)
			if rng.IntN(200) == 0 {
				clk.Advance(100 * time.Millisecond)
			}
			a.Add(int64(i), []*model.Span{order[i]})
			for _, o := range a.Expire(nil) {
				k := fmt.Sprintf("%s/%d", o.Trace.Trace.TraceID, o.Trace.Version)
				var ids string
				for _, s := range o.Trace.Trace.Spans {
					ids += s.SpanID.String() + ","
				}
				if prev, ok := out[k]; ok && prev.spans != ids {
					t.Fatalf("same owner emitted %s twice with different spans", k)
				}
				out[k] = emission{ids, o.Trace.Trace.TraceID.String(), int(o.Trace.Version)}
				a.Acked(o.Token)
			}
			if commit != nil && i%50 == 0 {
				lim := int64(i + 1)
				low, ok := a.LowestOffset()
				if rule == "settled" {
					low, ok = a.LowestUnsettled()
				}
				if ok && low < lim {
					lim = low
				}
				commit(lim)
			}
		}
	}
	for trial := 0; trial < 8; trial++ {
		crash := 500 + rng.IntN(len(order)-1000)
		clk := newClock()
		a := New(cfg, clk, nil)
		before := map[string]emission{}
		var committed, lookback int64
		run(a, clk, 0, crash, before, func(lim int64) {
			if lim > committed {
				committed, lookback = lim, a.Lookback(lim)
				if low, ok := a.LowestOffset(); ok && rule == "settled" {
					lookback = min(lookback, low)
				}
			}
		})
		// Crash: a new owner replays from the lookback.
		clk2 := newClock()
		b := New(cfg, clk2, nil)
		b.SetShadow(committed)
		after := map[string]emission{}
		run(b, clk2, int(lookback), len(order), after, nil)
		clk2.Advance(time.Hour)
		for _, o := range b.Expire(nil) {
			k := fmt.Sprintf("%s/%d", o.Trace.Trace.TraceID, o.Trace.Version)
			var ids string
			for _, s := range o.Trace.Trace.Spans {
				ids += s.SpanID.String() + ","
			}
			after[k] = emission{ids, o.Trace.Trace.TraceID.String(), int(o.Trace.Version)}
		}
		dup := 0
		for k, e := range after {
			if p, ok := before[k]; ok {
				dup++
				if p.spans != e.spans {
					t.Fatalf("trial %d (crash at %d, commit %d, lookback %d): %s re-emitted with other spans", trial, crash, committed, lookback, k)
				}
			}
		}
		best := map[string]int{}
		for _, m := range []map[string]emission{before, after} {
			for _, e := range m {
				best[e.id] = max(best[e.id], e.v)
			}
		}
		for id, n := range truth.TraceSpans {
			if best[id] != n {
				t.Fatalf("trial %d: trace %s best version has %d of %d spans", trial, id, best[id], n)
			}
		}
		t.Logf("trial %d: crash at %d, commit %d, lookback %d, %d re-emissions", trial, crash, committed, lookback, dup)
	}
}
