package rollup

import (
	"context"
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
