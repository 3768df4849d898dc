package rollup

import (
	"context"
	"encoding/base64"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// simpleTraces makes n traces of 4 spans (front calling three back
// operations), trace i starting at base + i*gap, with IDs from idBase.
func simpleTraces(n int, base model.Timestamp, gap time.Duration, idBase uint64) []*model.AssembledTrace {
	out := make([]*model.AssembledTrace, 0, n)
	for i := range n {
		id := model.TraceID{High: idBase, Low: uint64(i + 1)}
		start := base.Add(time.Duration(i) * gap)
		tr := model.Trace{TraceID: id}
		a := model.Analysis{TraceID: id, RootSpanID: 1, Start: start, Duration: time.Duration(10+i%7) * time.Millisecond, SpanCount: 4}
		for j := range 4 {
			sp := &model.Span{TraceID: id, SpanID: model.SpanID(j + 1), Operation: fmt.Sprintf("op-%d", j),
				Start: start, Duration: time.Duration(10+i%7-j) * time.Millisecond, Kind: model.KindServer,
				Process: model.Process{ServiceName: "front"}}
			if j > 0 {
				sp.Process.ServiceName = "back"
				sp.References = []model.Reference{{Type: model.ChildOf, TraceID: id, SpanID: 1}}
			}
			tr.Spans = append(tr.Spans, sp)
			a.Spans = append(a.Spans, model.SpanStats{SpanID: sp.SpanID, Self: time.Millisecond, CriticalPath: time.Millisecond})
		}
		out = append(out, &model.AssembledTrace{Trace: tr, Analysis: a, Version: 1, Completion: model.CompletionIdle})
	}
	return out
}

// backfillLog is a partition's log: live traces (liveN, 10ms apart, ending
// at now) and then backfill traces (backN, 10ms apart, starting 3h before
// now), every message logged at now.
func backfillLog(liveN, backN int) (msgs []Message, now model.Timestamp) {
	now = model.TimestampOf(time.Date(2026, 3, 10, 15, 0, 0, 0, time.UTC))
	live := simpleTraces(liveN, now.Add(-time.Duration(liveN)*10*time.Millisecond), 10*time.Millisecond, 1)
	back := simpleTraces(backN, now.Add(-3*time.Hour), 10*time.Millisecond, 2)
	for _, at := range append(live, back...) {
		msgs = append(msgs, Message{Offset: int64(len(msgs)), Time: now, Trace: at})
	}
	return msgs, now
}

// feedBackfill runs msgs[from:to] through p the way the map stage does:
// rewinds replayed from the log msgs, a flush every 1,000 messages and a
// flush and checkpoint every 5,000 (as FlushInterval and CheckpointInterval,
// 2s and 10s), the watermark trailing the partition's event time by 30s, and
// a final flush of everything.
func feedBackfill(tb testing.TB, p *Partition, msgs []Message, from, to int, publish func([]Partial)) {
	for i := from; i < to; i++ {
		m := msgs[i]
		for {
			rw, err := p.Add(m)
			if err != nil {
				tb.Fatal(err)
			}
			if rw == nil {
				break
			}
			p.BeginRewind(rw)
			for _, r := range msgs[rw.From:rw.To] {
				if err := p.Replay(r); err != nil {
					tb.Fatal(err)
				}
			}
			p.EndRewind()
		}
		// As the map stage: a flush every FlushInterval, a flush and a
		// checkpoint every CheckpointInterval (2s and 10s by default; here
		// in messages).
		if i%1000 == 999 {
			publish(p.Collect(FlushPolicy{Watermark: p.MaxEventTime().Add(-30 * time.Second), Checkpoint: i%5000 == 4999}))
		}
		if i%5000 == 4999 {
			if _, err := p.Checkpoint(); err != nil {
				tb.Fatal(err)
			}
		}
	}
	publish(p.Collect(FlushPolicy{All: true}))
}

// latestSnapshots keeps the newest snapshot of every (window, family).
type latestSnapshots map[[2]string]map[string]Stats

func (l latestSnapshots) add(parts []Partial) {
	for _, pt := range parts {
		k := [2]string{pt.Window.Time().String(), fmt.Sprint(pt.Key.Family)}
		if pt.Seq == 0 {
			l[k] = map[string]Stats{}
		}
		if pt.Total > 0 {
			l[k][pt.Key.Dims] = pt.Stats
		}
	}
}

// TestBackfillNoRereads: traces dated 3h back, arriving after newer data,
// for windows that never had a message, start resident windows without a
// rewind and stay resident while the backfill fills them: nothing is
// re-read (before: a re-read per window and per checkpoint, 150,000
// messages for this log). The rollups are the same as when the backfill is
// aggregated alone.
func TestBackfillNoRereads(t *testing.T) {
	const liveN, backN = 6000, 20000
	msgs, _ := backfillLog(liveN, backN)
	p, err := NewPartition(Config{}, 0, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := latestSnapshots{}
	feedBackfill(t, p, msgs, 0, len(msgs), got.add)
	c := p.Counters()
	if c.Rewinds != 0 || c.Replayed != 0 {
		t.Errorf("%d rewinds re-read %d messages for a backfill of %d", c.Rewinds, c.Replayed, backN)
	}
	if c.Dropped["too-late"] != 0 || c.Traces != liveN+backN {
		t.Errorf("counters %+v", c)
	}

	alone, err := NewPartition(Config{}, 0, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := latestSnapshots{}
	back := msgs[liveN:]
	var renum []Message
	for i, m := range back {
		renum = append(renum, Message{Offset: int64(i), Time: m.Time, Trace: m.Trace})
	}
	feedBackfill(t, alone, renum, 0, len(renum), want.add)
	backStart := back[0].Trace.Analysis.Start
	checked := 0
	for k, w := range want {
		g := got[k]
		for dims, ws := range w {
			gs, ok := g[dims]
			if !ok || gs.Count != ws.Count || gs.Duration.Sum != ws.Duration.Sum || gs.TraceDuration != ws.TraceDuration {
				t.Errorf("%v %q: got %+v, want %+v", k, dims, gs.Count, ws.Count)
			}
			checked++
		}
	}
	if checked == 0 || backStart == 0 {
		t.Fatal("nothing compared")
	}
}

// BenchmarkBackfill measures the map stage's core on the backfill case of
// issue 12: 20,000 live traces, then 20,000 traces dated 3 hours back
// (10ms apart, about 4 windows each), with flushes and checkpoints as the map
// stage does them, rewinds replayed from memory (no Kafka). It reports the
// traces/s of the live part and of the backfill, and the messages re-read
// by rewinds during the backfill.
//
//	go test -run '^$' -bench Backfill -benchtime 3x ./pipeline/aggregator/rollup/
func BenchmarkBackfill(b *testing.B) {
	const liveN, backN = 20000, 20000
	msgs, _ := backfillLog(liveN, backN)
	var replayed int64
	var liveTime, backTime time.Duration
	for b.Loop() {
		p, err := NewPartition(Config{}, 0, 0, nil)
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		feedBackfill(b, p, msgs, 0, liveN, func([]Partial) {})
		t1 := time.Now()
		before := p.Counters().Replayed
		feedBackfill(b, p, msgs, liveN, len(msgs), func([]Partial) {})
		liveTime += t1.Sub(t0)
		backTime += time.Since(t1)
		replayed += p.Counters().Replayed - before
	}
	b.ReportMetric(float64(b.N*liveN)/liveTime.Seconds(), "live-traces/s")
	b.ReportMetric(float64(b.N*backN)/backTime.Seconds(), "backfill-traces/s")
	b.ReportMetric(float64(replayed)/float64(b.N), "backfill-replayed/op")
}

// TestReducerBackfill runs issue 12's backfill case through both stages:
// a partition (committing its checkpoints, so that its partials carry a
// horizon and the reducer evicts the live windows) and a reducer that
// flushes into a store and checkpoints as the reduce stage does. Partials
// of the backfill's windows, which never had one, start their windows
// without a rewind; a window evicted at a checkpoint while the backfill
// still fills it (or forgotten by a restart) is rebuilt from the backfill's
// own partials, never from the log's start (before: a re-read of the whole
// partials log per window and per checkpoint). The stored rollups equal the
// oracle's.
func TestReducerBackfill(t *testing.T) {
	const liveN, backN = 6000, 20000
	msgs, now := backfillLog(liveN, backN)
	cfg := Config{Coarse: []time.Duration{5 * time.Minute, time.Hour}}
	p, err := NewPartition(cfg, 0, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	var parts []PartialMessage
	publish := func(ps []Partial) {
		for _, pt := range ps {
			parts = append(parts, PartialMessage{Offset: int64(len(parts)), Time: now, Partial: pt})
		}
	}
	liveEnd := 0
	for i, m := range msgs {
		if rw, err := p.Add(m); err != nil || rw != nil {
			t.Fatalf("message %d: rewind %v, err %v", i, rw, err)
		}
		if i%1000 == 999 {
			publish(p.Collect(FlushPolicy{Watermark: p.MaxEventTime().Add(-30 * time.Second), Checkpoint: i%5000 == 4999}))
		}
		if i%5000 == 4999 {
			c, err := p.Checkpoint()
			if err != nil {
				t.Fatal(err)
			}
			p.Committed(c)
		}
		if i == liveN-1 {
			publish(p.Collect(FlushPolicy{All: true}))
			c, err := p.Checkpoint()
			if err != nil {
				t.Fatal(err)
			}
			p.Committed(c)
			liveEnd = len(parts)
		}
	}
	publish(p.Collect(FlushPolicy{All: true}))

	st := newStore()
	names := cfg.Normalized().Dimensions
	var rewinds, replayed int
	run := func(r *Reducer, from, to int) Commit {
		var commit Commit
		for i := from; i < to; i++ {
			for {
				rw, err := r.Add(parts[i], names)
				if err != nil {
					t.Fatal(err)
				}
				if rw == nil {
					break
				}
				if i >= liveEnd {
					rewinds++
					replayed += int(rw.To - rw.From)
					if rw.From < int64(liveEnd) {
						t.Errorf("partial %d: a rewind from %d re-reads the live partials (the backfill's start at %d)", i, rw.From, liveEnd)
					}
				}
				r.BeginRewind(rw)
				for _, x := range parts[rw.From:rw.To] {
					if err := r.Replay(x, names); err != nil {
						t.Fatal(err)
					}
				}
				r.EndRewind()
			}
			if i%50 == 49 || i == to-1 {
				outs, err := r.Flush(context.Background(), st, true)
				if err != nil {
					t.Fatal(err)
				}
				st.write(outs)
				if c, err := r.Checkpoint(now); err == nil {
					commit = c
				} else if err != ErrUnpublished {
					t.Fatal(err)
				}
			}
		}
		return commit
	}
	r, err := NewReducer(cfg, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	mid := liveEnd + (len(parts)-liveEnd)/2
	c := run(r, 0, mid)
	// Restart from the last checkpoint: the backfill's windows are evicted
	// in the successor; their next partials rewind from the first partial of
	// the backfill too.
	r2, err := NewReducer(cfg, c.Offset, c.Metadata)
	if err != nil {
		t.Fatal(err)
	}
	run(r2, int(c.Offset), len(parts))
	if backN := len(parts) - liveEnd; rewinds > 8 || replayed > rewinds*backN {
		t.Errorf("%d rewinds re-read %d partials (the backfill has %d)", rewinds, replayed, backN)
	}
	t.Logf("%d partials (%d of the backfill); with a restart mid-backfill: %d rewinds, %d partials re-read", len(parts), len(parts)-liveEnd, rewinds, replayed)

	var all []*model.AssembledTrace
	for _, m := range msgs {
		all = append(all, m.Trace)
	}
	compare(t, "backfill", oracle(cfg.Normalized(), all), st)
}

// TestReducerOldCheckpoint: a reducer checkpoint written before reducers
// recorded their evicted windows (version 2) says nothing of the windows
// before its horizon, so late partials for them rewind as before, while a
// version 3 checkpoint knows which windows never had a partial.
func TestReducerOldCheckpoint(t *testing.T) {
	cfg := Config{}.Normalized()
	hor := model.TimestampOf(time.Date(2026, 3, 10, 15, 0, 0, 0, time.UTC))
	ck := checkpoint{fingerprint: cfg.fingerprint(), hw: 10, maxEvent: math.MinInt64, hor: hor, idxHor: hor, unseenBefore: math.MinInt64}
	v3 := ck.encode()
	raw, err := base64.RawURLEncoding.DecodeString(string(v3))
	if err != nil {
		t.Fatal(err)
	}
	raw[0] = 2
	v2 := []byte(base64.RawURLEncoding.EncodeToString(raw))
	old := hor.Add(-3 * time.Hour)
	for _, c := range []struct {
		name      string
		meta      []byte
		neverSeen bool
	}{{"version 3", v3, true}, {"version 2", v2, false}} {
		r, err := NewReducer(cfg, 5, c.meta)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := r.neverSeen(old); got != c.neverSeen {
			t.Errorf("%s: neverSeen(3h before the horizon) = %v, want %v", c.name, got, c.neverSeen)
		}
	}
}
