package rollup

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

func tieStats(n int64) Stats {
	var s Stats
	s.Count = n
	for i := int64(0); i < n; i++ {
		s.Duration.Sketch.Add(int64(time.Millisecond))
		s.Self.Sketch.Add(int64(time.Millisecond))
		s.CriticalPath.Sketch.Add(int64(time.Millisecond))
		s.Duration.Sum += int64(time.Millisecond)
		s.Self.Sum += int64(time.Millisecond)
		s.CriticalPath.Sum += int64(time.Millisecond)
	}
	s.Duration.Max, s.Self.Max, s.CriticalPath.Max = int64(time.Millisecond), int64(time.Millisecond), int64(time.Millisecond)
	return s
}

// Partials log of one reducer partition: one family, one window, one source,
// snapshots growing 1..5 spans at offsets 0..4.
func tieLog(win model.Timestamp) []PartialMessage {
	fam := Family{Service: "auth", Operation: "Authenticate", Kind: model.KindServer}
	var log []PartialMessage
	for i := int64(0); i < 5; i++ {
		log = append(log, PartialMessage{Offset: i, Time: win, Partial: Partial{Window: win, Key: Key{Family: fam}, Source: 0,
			Hi: 100 + i, Horizon: math.MinInt64, Total: 1, Stats: tieStats(i + 1)}})
	}
	return log
}

// TestStaleWriterAtTheSameBarrier (found by reading, 2026-12-07): R0
// checkpoints after offset 2; R1 opens with barrier 5, the partition's end,
// flushes at position 3 (count 3), its write hangs in a paused store and R1
// loses the partition; no partial arrives meanwhile, so R2 opens with the
// same barrier, reaches it and writes count 5. R1's write lands last. Both
// were labelled with the barrier (version 5) and an equal version replaces,
// so the store kept count 3 while R2, believing its write stored, had
// nothing more to write. Now a reducer past its barrier outranks every
// write made before it (Reducer.version).
func TestStaleWriterAtTheSameBarrier(t *testing.T) {
	cfg := Config{Window: time.Minute, Coarse: []time.Duration{time.Hour}}
	win := windowOf(model.Timestamp(time.Hour*1000), time.Minute)
	log := tieLog(win)
	st := newStore()

	r0, _ := NewReducer(cfg, 0, nil)
	r0.SetBarrier(0)
	for _, m := range log[:2] {
		if rw, err := r0.Add(m, nil); err != nil || rw != nil {
			t.Fatal(err, rw)
		}
	}
	outs, err := r0.Flush(context.Background(), st, true)
	if err != nil {
		t.Fatal(err)
	}
	st.write(outs)
	ck, err := r0.Checkpoint(win)
	if err != nil {
		t.Fatal(err)
	}

	open := func() *Reducer {
		r, err := NewReducer(cfg, ck.Offset, ck.Metadata)
		if err != nil {
			t.Fatal(err)
		}
		r.SetBarrier(int64(len(log)))
		return r
	}
	r1 := open()
	for r1.Position() < 3 {
		if _, err := r1.Add(log[r1.Position()], nil); err != nil {
			t.Fatal(err)
		}
	}
	stale, err := r1.Flush(context.Background(), st, false)
	if err != nil {
		t.Fatal(err)
	}
	// R1 loses the partition; stale is still on its way to the store.

	r2 := open()
	for r2.Position() < int64(len(log)) {
		if _, err := r2.Add(log[r2.Position()], nil); err != nil {
			t.Fatal(err)
		}
	}
	outs, err = r2.Flush(context.Background(), st, true)
	if err != nil {
		t.Fatal(err)
	}
	st.write(outs)
	st.write(stale) // lands late
	for k, o := range st.m {
		if k.res == time.Minute && o.Stats.Count != 5 {
			t.Errorf("1m rollup count %d (version %d), want 5: the stale write (version %d) replaced the successor's", o.Stats.Count, o.Version, stale[0].Version)
		}
	}
	if st.stale != 1 {
		t.Errorf("%d writes rejected as older, want the stale one", st.stale)
	}
}

// TestNoEvictionBeforeTheBarrier (the random simulations, seeds 144, 334 and
// 337): R1 opens with barrier B and flushes an early state of window W1 (its
// write is held by a paused store, R1 loses the partition); R2 opens from
// the same commit with the same barrier (no partial arrived), flushes W1's
// final state, and takes a checkpoint that evicts W1 and commits past it,
// all before reaching B. Both wrote W1 at 2 × B, so R1's write, landing
// late, replaced R2's; the rewrite at the barrier covers resident windows
// only, and a successor resuming from R2's commit never reads W1 again
// (seed 144), and merges the stale W1 read back from the store into the
// coarse window (seeds 334, 337). Now a reducer evicts and commits nothing
// before it crosses its barrier.
func TestNoEvictionBeforeTheBarrier(t *testing.T) {
	cfg := Config{Window: time.Minute, Coarse: []time.Duration{time.Hour}}
	fam := Family{Service: "auth", Operation: "Authenticate", Kind: model.KindServer}
	w1 := windowOf(model.Timestamp(time.Hour*1000), time.Hour)
	w2 := w1.Add(time.Minute)
	// One source: W1 grows to 2 spans, then W2 does, with the source's
	// committed horizon past W1.
	var log []PartialMessage
	for i, p := range []struct {
		win model.Timestamp
		n   int64
		hor model.Timestamp
	}{{w1, 1, math.MinInt64}, {w1, 2, math.MinInt64}, {w2, 1, w2}, {w2, 2, w2}} {
		log = append(log, PartialMessage{Offset: int64(i), Time: w2, Partial: Partial{Window: p.win, Key: Key{Family: fam}, Source: 0,
			Hi: 100 + int64(i), Horizon: p.hor, Total: 1, Stats: tieStats(p.n)}})
	}
	barrier := int64(len(log))
	feed := func(r *Reducer, to int64) {
		for r.Position() < to {
			if rw, err := r.Add(log[r.Position()], nil); err != nil || rw != nil {
				t.Fatal(err, rw)
			}
		}
	}
	flush := func(r *Reducer, st *store) []Output {
		outs, err := r.Flush(context.Background(), st, true)
		if err != nil {
			t.Fatal(err)
		}
		return outs
	}
	check := func(t *testing.T, st *store) {
		t.Helper()
		for k, want := range map[outKey]int64{{time.Minute, w1, Key{Family: fam}}: 2, {time.Minute, w2, Key{Family: fam}}: 2, {time.Hour, w1, Key{Family: fam}}: 4} {
			if o := st.m[k]; o.Stats.Count != want {
				t.Errorf("%v: count %d (version %d), want %d", k, o.Stats.Count, o.Version, want)
			}
		}
	}
	for _, r2Crosses := range []bool{true, false} {
		t.Run(fmt.Sprintf("r2Crosses=%v", r2Crosses), func(t *testing.T) {
			st := newStore()
			commit := Commit{}
			open := func() *Reducer {
				r, err := NewReducer(cfg, commit.Offset, commit.Metadata)
				if err != nil {
					t.Fatal(err)
				}
				r.SetBarrier(barrier)
				return r
			}
			r1 := open()
			feed(r1, 1)
			stale := flush(r1, st) // W1 with 1 span, held by a paused store

			r2 := open()
			feed(r2, 3)
			st.write(flush(r2, st)) // W1 final, W2 with 1 span
			switch c, err := r2.Checkpoint(w2); {
			case err == nil:
				commit = c
			case err != ErrUnpublished:
				t.Fatal(err)
			}
			st.write(stale) // R1's write lands
			if r2Crosses {
				feed(r2, barrier)
				st.write(flush(r2, st))
			} else {
				// R2 loses the partition before its barrier; R3 takes
				// over with the same one.
				r3 := open()
				feed(r3, barrier)
				st.write(flush(r3, st))
			}
			check(t, st)
		})
	}
}

// TestHeldBeforeTheBarrierIsBounded: a reducer that has not crossed its
// barrier holds its windows, but no more than heldBeforeBarrier: with a
// longer backlog before the barrier (a replay) it evicts and commits as
// before.
func TestHeldBeforeTheBarrierIsBounded(t *testing.T) {
	cfg := Config{Window: time.Minute, Coarse: []time.Duration{time.Hour}}
	fam := Family{Service: "auth", Operation: "Authenticate", Kind: model.KindServer}
	start := windowOf(model.Timestamp(time.Hour*1000), time.Hour)
	n := heldBeforeBarrier + 8
	r, err := NewReducer(cfg, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.SetBarrier(int64(10 * n)) // far ahead: the whole test is before it
	var last model.Timestamp
	committed := false
	for i := 0; i < n; i++ {
		last = start.Add(time.Duration(i) * time.Minute)
		m := PartialMessage{Offset: int64(i), Time: last, Partial: Partial{Window: last, Key: Key{Family: fam}, Source: 0,
			Hi: 100 + int64(i), Horizon: last, Total: 1, Stats: tieStats(1)}}
		if _, err := r.Add(m, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Flush(context.Background(), newStore(), true); err != nil {
			t.Fatal(err)
		}
		_, err := r.Checkpoint(last)
		committed = committed || err == nil
		switch held := r.Windows(); {
		case i < heldBeforeBarrier && err != ErrUnpublished:
			t.Fatalf("window %d: checkpoint %v before the barrier with %d windows held", i, err, held)
		case held > heldBeforeBarrier+1:
			t.Fatalf("window %d: %d windows held, bound %d", i, held, heldBeforeBarrier)
		}
	}
	if !committed {
		t.Fatal("nothing committed past the bound")
	}
}
