package aggregate

import (
	"fmt"
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
// rewinds replayed from the log msgs, a flush every 500 messages and a
// checkpoint every 2,000, the watermark trailing the partition's event time
// by 30s, and a final flush of everything.
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
		if i%500 == 499 {
			publish(p.Collect(FlushPolicy{Watermark: p.MaxEventTime().Add(-30 * time.Second)}))
		}
		if i%2000 == 1999 {
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
// rewind, rewinds re-read only the backfill's own messages, and the rollups
// are the same as when the backfill is aggregated alone.
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
	// The backfill's windows start resident without a rewind; a window
	// forgotten at a checkpoint while the backfill still fills it costs a
	// rewind from the backfill's own messages, never the live data before.
	if c.Replayed > c.Rewinds*int64(backN) || c.Rewinds > 20 {
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
// issue 12: 6,000 live traces, then 20,000 traces dated 3 hours back
// (10ms apart, about 4 windows), with flushes and checkpoints as the map
// stage does them, rewinds replayed from memory (no Kafka). It reports the
// traces/s of the live part and of the backfill, and the messages re-read
// by rewinds during the backfill.
//
//	go test -run '^$' -bench Backfill -benchtime 3x ./aggregate/
func BenchmarkBackfill(b *testing.B) {
	const liveN, backN = 6000, 20000
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
