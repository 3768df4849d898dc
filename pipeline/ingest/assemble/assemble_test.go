package assemble

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/wire"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time          { return c.t }
func (c *fakeClock) Advance(d time.Duration) { c.t = c.t.Add(d) }

func newClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0).UTC()} }

func span(trace uint64, id uint64, parent uint64, op string) *model.Span {
	s := &model.Span{
		TraceID:   model.TraceID{Low: trace},
		SpanID:    model.SpanID(id),
		Operation: op,
		Start:     model.Timestamp(1_700_000_000_000_000_000 + int64(id)*1000),
		Duration:  time.Millisecond,
		Process:   model.Process{ServiceName: "svc"},
	}
	if parent != 0 {
		s.References = []model.Reference{{Type: model.ChildOf, TraceID: s.TraceID, SpanID: model.SpanID(parent)}}
	}
	return s
}

// step is one action in a scenario.
type step struct {
	add     []*model.Span // added at offset = step index
	advance time.Duration
	flush   bool
	ack     bool // acknowledge every emission so far
	// want: emissions of this step as "trace/version/completion/spans"
	want []string
}

func run(t *testing.T, cfg Config, budget *Budget, steps []step) *Assembler {
	t.Helper()
	clk := newClock()
	a := New(cfg, clk, budget)
	var pending []Token
	for i, st := range steps {
		clk.Advance(st.advance)
		if st.add != nil {
			a.Add(int64(i), st.add)
		}
		var outs []Output
		if st.flush {
			outs = a.Flush(nil)
		} else {
			outs = a.Expire(nil)
		}
		var got []string
		for _, o := range outs {
			pending = append(pending, o.Token)
			tr := o.Trace
			got = append(got, fmt.Sprintf("%d/%d/%s/%d", tr.Trace.TraceID.Low, tr.Version, tr.Completion, len(tr.Trace.Spans)))
			if len(tr.Analysis.Spans) != len(tr.Trace.Spans) && tr.Analysis.Spans != nil {
				t.Errorf("step %d: analysis not aligned", i)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(st.want) {
			t.Fatalf("step %d: emitted %v, want %v", i, got, st.want)
		}
		if st.ack {
			for _, tok := range pending {
				a.Acked(tok)
			}
			pending = nil
		}
	}
	return a
}

func TestAssembler(t *testing.T) {
	base := Config{IdleTimeout: time.Second, MaxWait: 10 * time.Second, LateHorizon: 5 * time.Second}
	cases := []struct {
		name  string
		cfg   Config
		steps []step
		check func(t *testing.T, a *Assembler)
	}{
		{
			name: "idle timeout emits once no span came for the timeout",
			cfg:  base,
			steps: []step{
				{add: []*model.Span{span(1, 1, 0, "a")}},
				{advance: 500 * time.Millisecond, add: []*model.Span{span(1, 2, 1, "b"), span(2, 1, 0, "x")}},
				{advance: 999 * time.Millisecond},
				{advance: time.Millisecond, want: []string{"1/2/idle/2", "2/1/idle/1"}},
			},
		},
		{
			name: "max wait emits a busy trace",
			cfg:  base,
			steps: []step{
				{add: []*model.Span{span(1, 1, 0, "a")}},
				{advance: 900 * time.Millisecond, add: []*model.Span{span(1, 2, 1, "a")}},
				{advance: 900 * time.Millisecond, add: []*model.Span{span(1, 3, 1, "a")}},
				{advance: 900 * time.Millisecond, add: []*model.Span{span(1, 4, 1, "a")}},
				{advance: 900 * time.Millisecond, add: []*model.Span{span(1, 5, 1, "a")}},
				{advance: 900 * time.Millisecond, add: []*model.Span{span(1, 6, 1, "a")}},
				{advance: 900 * time.Millisecond, add: []*model.Span{span(1, 7, 1, "a")}},
				{advance: 900 * time.Millisecond, add: []*model.Span{span(1, 8, 1, "a")}},
				{advance: 900 * time.Millisecond, add: []*model.Span{span(1, 9, 1, "a")}},
				{advance: 900 * time.Millisecond, add: []*model.Span{span(1, 10, 1, "a")}},
				{advance: 900 * time.Millisecond, add: []*model.Span{span(1, 11, 1, "a")}},
				{advance: time.Second, add: []*model.Span{span(1, 12, 1, "a")}, want: []string{"1/12/max_wait/12"}},
			},
		},
		{
			name: "exact duplicates are dropped, same ID with other content kept",
			cfg:  base,
			steps: []step{
				{add: []*model.Span{span(1, 1, 0, "a"), span(1, 2, 1, "b")}},
				{add: []*model.Span{span(1, 2, 1, "b"), span(1, 1, 0, "a")}},
				{add: []*model.Span{span(1, 2, 1, "b-other")}},
				{advance: time.Second, want: []string{"1/3/idle/2"}}, // dag merges the conflicting copy into one span
			},
			check: func(t *testing.T, a *Assembler) {
				if c := a.Counters(); c.DuplicateSpans != 2 || c.SpansIn != 5 {
					t.Errorf("counters = %+v", c)
				}
			},
		},
		{
			name: "late span emits a new version with every span",
			cfg:  base,
			steps: []step{
				{add: []*model.Span{span(1, 1, 0, "a")}},
				{advance: time.Second, want: []string{"1/1/idle/1"}, ack: true},
				{advance: time.Second, add: []*model.Span{span(1, 2, 1, "b")}},
				{advance: time.Second, add: []*model.Span{span(1, 1, 0, "a")}, want: []string{"1/2/late/2"}, ack: true}, // dup: no new version
				{advance: 4 * time.Second},
				{advance: time.Second}, // horizon passed: evicted, tombstoned
				{add: []*model.Span{span(1, 3, 1, "c")}},
				{advance: time.Second},
			},
			check: func(t *testing.T, a *Assembler) {
				c := a.Counters()
				if c.LateSpans != 1 || c.TooLateSpans != 1 || c.DuplicateSpans != 1 {
					t.Errorf("counters = %+v", c)
				}
				if _, ok := a.LowestOffset(); ok {
					t.Error("nothing should be held")
				}
			},
		},
		{
			name: "truncation keeps the first spans and marks the trace",
			cfg:  Config{IdleTimeout: time.Second, MaxSpansPerTrace: 2},
			steps: []step{
				{add: []*model.Span{span(1, 1, 0, "a"), span(1, 2, 1, "b"), span(1, 3, 1, "c"), span(1, 4, 1, "d")}},
				{advance: time.Second, want: []string{"1/2/idle/2"}, ack: true},
				{add: []*model.Span{span(1, 5, 1, "e")}}, // still over the limit: no new version
				{advance: time.Second},
			},
			check: func(t *testing.T, a *Assembler) {
				if c := a.Counters(); c.TruncatedSpans != 3 || c.TruncatedTraces != 1 {
					t.Errorf("counters = %+v", c)
				}
			},
		},
		{
			name: "flush emits half-built traces as shutdown",
			cfg:  base,
			steps: []step{
				{add: []*model.Span{span(1, 1, 0, "a"), span(2, 1, 0, "a")}},
				{flush: true, want: []string{"1/1/shutdown/1", "2/1/shutdown/1"}},
			},
		},
		{
			name: "negative horizon: no late versions",
			cfg:  Config{IdleTimeout: time.Second, LateHorizon: -1},
			steps: []step{
				{add: []*model.Span{span(1, 1, 0, "a")}},
				{advance: time.Second, want: []string{"1/1/idle/1"}, ack: true},
				{add: []*model.Span{span(1, 2, 1, "b")}},
				{advance: time.Second},
			},
			check: func(t *testing.T, a *Assembler) {
				if c := a.Counters(); c.TooLateSpans != 1 {
					t.Errorf("counters = %+v", c)
				}
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := run(t, c.cfg, nil, c.steps)
			if c.check != nil {
				c.check(t, a)
			}
		})
	}
}

func TestLowestOffset(t *testing.T) {
	clk := newClock()
	a := New(Config{IdleTimeout: time.Second, LateHorizon: 10 * time.Second}, clk, nil)
	a.Add(10, []*model.Span{span(1, 1, 0, "a")})
	a.Add(11, []*model.Span{span(2, 1, 0, "a")})
	a.Add(12, []*model.Span{span(1, 2, 1, "a")})
	if off, ok := a.LowestOffset(); !ok || off != 10 {
		t.Fatalf("lowest = %d %v", off, ok)
	}
	clk.Advance(time.Second)
	outs := a.Expire(nil)
	if len(outs) != 2 {
		t.Fatalf("%d outputs", len(outs))
	}
	// Emitted but retained (and unacknowledged): still held.
	if off, _ := a.LowestOffset(); off != 10 {
		t.Fatalf("lowest after emit = %d", off)
	}
	clk.Advance(20 * time.Second)
	a.Expire(nil)
	if off, _ := a.LowestOffset(); off != 10 {
		t.Fatalf("unacked trace must not be evicted; lowest = %d", off)
	}
	for _, o := range outs {
		a.Acked(o.Token)
	}
	a.Expire(nil)
	if _, ok := a.LowestOffset(); ok {
		t.Fatal("want nothing held")
	}
}

func TestBackpressure(t *testing.T) {
	clk := newClock()
	b := &Budget{MaxTraces: 3}
	a := New(Config{IdleTimeout: time.Second, LateHorizon: time.Hour}, clk, b)
	a.Add(0, []*model.Span{span(1, 1, 0, "a"), span(2, 1, 0, "a")})
	if a.MakeRoom() {
		t.Fatal("not full yet")
	}
	a.Add(1, []*model.Span{span(3, 1, 0, "a")})
	if !a.MakeRoom() {
		t.Fatal("3 buffered traces: full, nothing evictable")
	}
	clk.Advance(time.Second)
	outs := a.Expire(nil)
	if len(outs) != 3 || !a.MakeRoom() {
		t.Fatal("emitted but unacknowledged traces are not evictable")
	}
	a.Acked(outs[0].Token)
	if a.MakeRoom() {
		t.Fatal("one acked retained trace should have been evicted")
	}
	if tr, _, _ := b.InFlight(); tr != 2 {
		t.Fatalf("in flight = %d", tr)
	}
	if a.Counters().EvictedEarly != 1 {
		t.Fatalf("counters = %+v", a.Counters())
	}
	// bytes limit
	b2 := &Budget{MaxBytes: 2000}
	a2 := New(Config{}, clk, b2)
	for i := 0; !a2.MakeRoom(); i++ {
		a2.Add(int64(i), []*model.Span{span(uint64(i+1), 1, 0, "op")})
		if i > 100 {
			t.Fatal("bytes limit never reached")
		}
	}
	a.Close()
	a2.Close()
	if tr, sp, by := b.InFlight(); tr != 0 || sp != 0 || by != 0 {
		t.Fatalf("Close left %d %d %d in the budget", tr, sp, by)
	}
}

// TestReplayDeterminism: a replay of the same partition from the lowest held
// offset, at any speed, emits the same versions with the same spans.
func TestReplayDeterminism(t *testing.T) {
	type msg struct {
		off int64
		s   *model.Span
	}
	var msgs []msg
	for i := 0; i < 200; i++ {
		tr := uint64(i%7 + 1)
		msgs = append(msgs, msg{int64(i), span(tr, uint64(i/7+1), 0, fmt.Sprint("op", i%3))})
	}
	collect := func(step time.Duration) map[string]string {
		clk := newClock()
		a := New(Config{IdleTimeout: 3 * time.Second, MaxWait: 20 * time.Second}, clk, nil)
		got := map[string]string{}
		for _, m := range msgs {
			clk.Advance(step)
			a.Add(m.off, []*model.Span{m.s})
			for _, o := range a.Expire(nil) {
				k := fmt.Sprintf("%d/%d", o.Trace.Trace.TraceID.Low, o.Trace.Version)
				got[k] = fmt.Sprint(o.Trace.Trace.Spans[len(o.Trace.Trace.Spans)-1].SpanID, o.Trace.Analysis.SpanCount)
				a.Acked(o.Token)
			}
		}
		for _, o := range a.Flush(nil) {
			got[fmt.Sprintf("%d/%d", o.Trace.Trace.TraceID.Low, o.Trace.Version)] = fmt.Sprint(o.Trace.Trace.Spans[len(o.Trace.Trace.Spans)-1].SpanID, o.Trace.Analysis.SpanCount)
		}
		return got
	}
	slow, fast := collect(time.Second), collect(time.Millisecond)
	for k, v := range fast {
		if w, ok := slow[k]; ok && w != v {
			t.Errorf("version %s differs: %s vs %s", k, v, w)
		}
	}
	if len(slow) <= len(fast) {
		t.Errorf("slow run should emit more versions (%d vs %d)", len(slow), len(fast))
	}
}

// TestExpireUpToKeepsExpireOrder emits due traces one portion at a time
// (as pipeline/ingest does under its output bound) and checks that the
// emissions are Expire's, in Expire's order: idle ones first, then those
// past the maximum wait, the rest staying due and first in line.
func TestExpireUpToKeepsExpireOrder(t *testing.T) {
	build := func() (*Assembler, *fakeClock) {
		clk := newClock()
		a := New(Config{IdleTimeout: time.Second, MaxWait: 3 * time.Second, LateHorizon: time.Hour}, clk, nil)
		// Traces 1-3 start at 0 s and receive a span every 900 ms until
		// 3.6 s (never idle): due by the maximum wait. Traces 4-9 arrive at
		// 2.7 s: idle-due at 3.7 s.
		for i := 0; i < 5; i++ {
			if i == 3 {
				for tr := uint64(4); tr <= 9; tr++ {
					a.Add(100+int64(tr), []*model.Span{span(tr, 1, 0, "a")})
				}
			}
			for tr := uint64(1); tr <= 3; tr++ {
				a.Add(int64(10*i)+int64(tr), []*model.Span{span(tr, uint64(i+1), 0, "a")})
			}
			if i < 4 {
				clk.Advance(900 * time.Millisecond)
			}
		}
		clk.Advance(100 * time.Millisecond)
		return a, clk
	}
	key := func(outs []Output) (ks []string) {
		for _, o := range outs {
			ks = append(ks, fmt.Sprintf("%d/%s", o.Trace.Trace.TraceID.Low, o.Trace.Completion))
		}
		return ks
	}
	ref, _ := build()
	want := key(ref.Expire(nil))
	if fmt.Sprint(want) != "[4/idle 5/idle 6/idle 7/idle 8/idle 9/idle 1/max_wait 2/max_wait 3/max_wait]" {
		t.Fatalf("reference emitted %v", want)
	}
	for _, n := range []int{1, 2, 4} {
		a, clk := build()
		var got []string
		if outs, more := a.ExpireUpTo(nil, 0); len(outs) != 0 || !more {
			t.Fatalf("n=0 emitted %d, more %v: want nothing emitted, more due", len(outs), more)
		}
		for calls := 0; ; calls++ {
			if calls > 9 {
				t.Fatalf("n=%d: still due after %d calls", n, calls)
			}
			outs, more := a.ExpireUpTo(nil, n)
			if len(outs) > n {
				t.Fatalf("n=%d: %d emissions in one call", n, len(outs))
			}
			got = append(got, key(outs)...)
			if !more {
				break
			}
			clk.Advance(10 * time.Millisecond) // time passes between portions
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("n=%d: emitted %v, want %v", n, got, want)
		}
	}
}

// TestRecycleKeepsLaterEmissionsIntact: after Recycle the next traces are
// decoded into the memory of the ones emitted before, and come out whole;
// the tokens of the recycled emissions stay valid.
func TestRecycleKeepsLaterEmissionsIntact(t *testing.T) {
	clk := newClock()
	a := New(Config{IdleTimeout: time.Second}, clk, nil)
	var first *model.Span
	for round := uint64(1); round <= 3; round++ {
		var spans []*model.Span
		for i := uint64(1); i <= 40; i++ { // more than a decoder block of spans
			s := span(round, round*100+i, 0, fmt.Sprintf("op-%d-%d", round, i))
			if i > 1 {
				s = span(round, round*100+i, round*100+1, fmt.Sprintf("op-%d-%d", round, i))
			}
			s.Tags = []model.KeyValue{model.String("round", fmt.Sprint(round)), model.Int64("i", int64(i))}
			spans = append(spans, s)
		}
		a.Add(int64(round), spans)
		clk.Advance(2 * time.Second)
		outs := a.Expire(nil)
		if len(outs) != 1 || len(outs[0].Trace.Trace.Spans) != 40 {
			t.Fatalf("round %d: %d emissions", round, len(outs))
		}
		got := map[model.SpanID]string{}
		for _, s := range outs[0].Trace.Trace.Spans {
			if s.TraceID.Low != round {
				t.Fatalf("round %d: span of trace %d", round, s.TraceID.Low)
			}
			got[s.SpanID] = s.Operation + "/" + s.Tags[0].Str
		}
		for _, s := range spans {
			if want := s.Operation + "/" + fmt.Sprint(round); got[s.SpanID] != want {
				t.Fatalf("round %d: span %v is %q, want %q", round, s.SpanID, got[s.SpanID], want)
			}
		}
		if round == 3 && outs[0].Trace.Trace.Spans[0] != first {
			t.Error("the third trace was not decoded into the memory recycled after the second")
		}
		first = outs[0].Trace.Trace.Spans[0]
		a.Recycle()
		a.Acked(outs[0].Token)
	}
}

// TestRejectsSpansThatDoNotDecode: spans are decoded when their trace is
// emitted; one that does not decode leaves the trace (and the budget) for
// TakeRejected, and the trace is emitted without it — not at all when it
// has nothing new, also after a lookback replay, which decodes nothing.
func TestRejectsSpansThatDoNotDecode(t *testing.T) {
	msg := func(s *model.Span, corrupt bool) []byte {
		b, err := wire.AppendJaegerProto(nil, s)
		if err != nil {
			t.Fatal(err)
		}
		if corrupt { // the IDs read; the operation name is not UTF-8
			b = protowire.AppendBytes(protowire.AppendTag(b, 3, protowire.BytesType), []byte("\xff"))
		}
		return b
	}
	add := func(a *Assembler, off int64, b []byte) {
		t.Helper()
		traceID, spanID, err := wire.ReadJaegerProtoIDs(b)
		if err != nil {
			t.Fatal(err)
		}
		a.AddJaegerProto(off, traceID, spanID, b, a.clock.Now())
	}
	emit := func(clk *fakeClock, a *Assembler) (got []string, rejected []int64) {
		clk.Advance(time.Minute)
		for _, o := range a.Expire(nil) {
			got = append(got, fmt.Sprintf("v%d/%d", o.Trace.Version, len(o.Trace.Trace.Spans)))
			a.Acked(o.Token)
		}
		for _, r := range a.TakeRejected(nil) {
			if r.Err == nil || r.TraceID.Low != 1 {
				t.Fatalf("rejected %+v", r)
			}
			rejected = append(rejected, r.Offset)
		}
		return got, rejected
	}
	root, child, late := span(1, 1, 0, "root"), span(1, 2, 1, "child"), span(1, 3, 1, "late")
	check := func(what string, got []string, rejected []int64, wantGot string, wantRejected string) {
		t.Helper()
		if fmt.Sprint(got) != wantGot || fmt.Sprint(rejected) != wantRejected {
			t.Fatalf("%s: emitted %v, rejected offsets %v; want %s and %s", what, got, rejected, wantGot, wantRejected)
		}
	}

	clk, budget := newClock(), &Budget{}
	a := New(Config{IdleTimeout: time.Second, LateHorizon: time.Hour}, clk, budget)
	add(a, 0, msg(root, false))
	add(a, 1, msg(child, true))
	got, rejected := emit(clk, a)
	check("first emission", got, rejected, "[v1/1]", "[1]")
	if _, spans, bytes := budget.InFlight(); spans != 1 || bytes != int64(len(msg(root, false))+SpanOverhead+TraceOverhead) {
		t.Errorf("budget holds %d spans, %d bytes after the rejection", spans, bytes)
	}
	if _, ok := a.LowestUnsettled(); ok {
		t.Error("the trace is not settled once its emission is acknowledged")
	}
	add(a, 2, msg(late, true))
	add(a, 3, msg(child, true)) // the rejected span again: not a duplicate of anything held
	got, rejected = emit(clk, a)
	check("only rejected spans since", got, rejected, "[]", "[2 3]")
	add(a, 4, msg(late, false))
	got, rejected = emit(clk, a)
	check("a late span that decodes", got, rejected, "[v2/2]", "[]")
	if c := a.Counters(); c.RejectedSpans != 3 {
		t.Errorf("RejectedSpans = %d, want 3", c.RejectedSpans)
	}

	// A trace of only spans that do not decode: nothing emitted, settled.
	clk = newClock()
	a = New(Config{IdleTimeout: time.Second, LateHorizon: time.Hour}, clk, nil)
	add(a, 0, msg(child, true))
	got, rejected = emit(clk, a)
	check("nothing that decodes", got, rejected, "[]", "[0]")
	if _, ok := a.LowestUnsettled(); ok {
		t.Error("a trace with nothing to emit is not settled")
	}

	// After a lookback replay: the rebuilt trace stands for an emission
	// that did not carry the rejected span; a late span makes version 2.
	clk = newClock()
	a = New(Config{IdleTimeout: time.Second, LateHorizon: time.Hour}, clk, nil)
	a.SetShadow(2)
	add(a, 0, msg(root, false))
	add(a, 1, msg(child, true))
	got, rejected = emit(clk, a)
	check("the replayed trace", got, rejected, "[]", "[]")
	add(a, 2, msg(late, false))
	got, rejected = emit(clk, a)
	check("a late span after the replay", got, rejected, "[v2/2]", "[1]")
}

// TestLowestUnsettledResumes: LowestUnsettled, which resumes where its last
// walk stopped, agrees with a walk of every held trace through random
// spans (new, late, duplicate), emissions, acknowledgements in any order
// and evictions.
func TestLowestUnsettledResumes(t *testing.T) {
	for seed := uint64(1); seed <= 50; seed++ {
		rng := rand.New(rand.NewPCG(seed, 2))
		clk := newClock()
		a := New(Config{IdleTimeout: time.Second, LateHorizon: 3 * time.Second, MaxSpansPerTrace: 6}, clk, &Budget{MaxTraces: 12})
		var pending []Token
		for step := 0; step < 1000; step++ {
			switch r := rng.IntN(10); {
			case r < 5:
				tr := uint64(1 + rng.IntN(20))
				a.Add(int64(step), []*model.Span{span(tr, tr*100+uint64(rng.IntN(8)), 0, "op")})
			case r < 7:
				clk.Advance(time.Duration(rng.IntN(1500)) * time.Millisecond)
				for _, o := range a.Expire(nil) {
					pending = append(pending, o.Token)
				}
			case r < 9 && len(pending) > 0:
				i := rng.IntN(len(pending))
				a.Acked(pending[i])
				pending = append(pending[:i], pending[i+1:]...)
			default:
				a.MakeRoom()
			}
			if rng.IntN(4) != 0 {
				continue // several changes between walks, as between commits
			}
			want, wantOK := int64(0), false
			for tr := a.lists[lAll].head; tr != nil; tr = tr.links[lAll].next {
				if !tr.retained || tr.pendingAcks > 0 {
					want, wantOK = tr.minOffset, true
					break
				}
			}
			if got, ok := a.LowestUnsettled(); got != want || ok != wantOK {
				t.Fatalf("seed %d step %d: LowestUnsettled %d %v, a walk of every trace %d %v", seed, step, got, ok, want, wantOK)
			}
		}
	}
}
