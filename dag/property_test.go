package dag

import (
	"math"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// deepChain builds a chain of n spans, span i (ID i+1) the child of span i-1,
// each nested 1µs inside its parent on both sides.
func deepChain(n int) *model.Trace {
	t := &model.Trace{TraceID: testTraceID, Spans: make([]*model.Span, n)}
	for i := range n {
		s := &model.Span{
			TraceID: testTraceID, SpanID: model.SpanID(i + 1), Operation: "op", Process: model.Process{ServiceName: "svc"},
			Start:    base + model.Timestamp(i)*1000,
			Duration: time.Duration(2*(n-i)) * time.Microsecond,
		}
		if i > 0 {
			s.References = []model.Reference{{Type: model.ChildOf, TraceID: testTraceID, SpanID: model.SpanID(i)}}
		}
		t.Spans[i] = s
	}
	return t
}

// wideFanout builds a root with n back-to-back children of 1µs each, listed
// in reverse order.
func wideFanout(n int) *model.Trace {
	t := &model.Trace{TraceID: testTraceID, Spans: make([]*model.Span, 0, n+1)}
	t.Spans = append(t.Spans, &model.Span{TraceID: testTraceID, SpanID: 1, Operation: "root", Start: base,
		Duration: time.Duration(n+2) * time.Microsecond, Process: model.Process{ServiceName: "svc"}})
	for i := n - 1; i >= 0; i-- {
		t.Spans = append(t.Spans, &model.Span{
			TraceID: testTraceID, SpanID: model.SpanID(i + 2), Operation: "child", Process: model.Process{ServiceName: "svc"},
			Start: base + model.Timestamp(i+1)*1000, Duration: time.Microsecond,
			References: []model.Reference{{Type: model.ChildOf, TraceID: testTraceID, SpanID: 1}},
		})
	}
	return t
}

func TestAnalyzeLarge(t *testing.T) {
	const n = 10000
	tests := []struct {
		name     string
		trace    *model.Trace
		sections int
		check    func(t *testing.T, an model.Analysis)
	}{
		{
			name:     "deep chain 10000",
			trace:    deepChain(n),
			sections: 2*n - 1,
			check: func(t *testing.T, an model.Analysis) {
				for i, st := range an.Spans {
					const want = 2 * time.Microsecond // 1µs each side; the deepest lasts 2µs
					if st.CriticalPath != want || st.Self != want {
						t.Fatalf("span %d: cp %v self %v, want %v", i+1, st.CriticalPath, st.Self, want)
					}
				}
			},
		},
		{
			name:     "wide fan-out 10000",
			trace:    wideFanout(n),
			sections: n + 2,
			check: func(t *testing.T, an model.Analysis) {
				if an.Spans[0].Self != 2*time.Microsecond {
					t.Errorf("root self %v", an.Spans[0].Self)
				}
				for i := 1; i <= n; i++ {
					if an.CriticalPath[i].SpanID != model.SpanID(i+1) {
						t.Fatalf("section %d is span %s, want %d", i, an.CriticalPath[i].SpanID, i+1)
					}
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			an := Analyze(tc.trace, Options{})
			checkInvariants(t, tc.trace, an, Options{})
			if len(an.CriticalPath) != tc.sections {
				t.Errorf("%d sections, want %d", len(an.CriticalPath), tc.sections)
			}
			if len(an.Warnings) != 0 {
				t.Errorf("warnings: %v", an.Warnings[:min(3, len(an.Warnings))])
			}
			tc.check(t, an)
		})
	}
}

// byteSource feeds a trace generator from fuzz bytes; it yields zeros once
// the bytes run out.
type byteSource struct{ b []byte }

func (s *byteSource) u8() byte {
	if len(s.b) == 0 {
		return 0
	}
	v := s.b[0]
	s.b = s.b[1:]
	return v
}

func (s *byteSource) u16() int { return int(s.u8())<<8 | int(s.u8()) }

// traceFromBytes builds an arbitrary trace: duplicates, dangling and cyclic
// references, foreign spans, absurd times, several hosts and span kinds.
func traceFromBytes(b []byte) *model.Trace {
	src := &byteSource{b}
	n := int(src.u8())%48 + 1
	t := &model.Trace{TraceID: testTraceID}
	hosts := []model.KeyValues{nil, {model.String("hostname", "a")}, {model.String("hostname", "b")},
		{model.String("ip", "10.0.0.1")}, {model.Int64("ip", 0x0a000001)}, {model.String("host.name", "c")}}
	for i := range n {
		ctl := src.u8()
		id := model.SpanID(i + 1)
		if ctl&0x0f == 0 {
			id = model.SpanID(src.u8()%8 + 1) // likely duplicate
		}
		s := &model.Span{TraceID: testTraceID, SpanID: id, Operation: string(rune('a' + src.u8()%4))}
		if ctl&0x30 == 0x30 && src.u8()%4 == 0 {
			s.TraceID = otherTrace
		}
		s.Process = model.Process{ServiceName: string(rune('p' + ctl>>6)), Tags: hosts[int(src.u8())%len(hosts)]}
		switch r := src.u8(); r % 8 {
		case 0: // root
		case 1:
			s.References = []model.Reference{{Type: model.ChildOf, TraceID: testTraceID, SpanID: 1000}}
		case 2:
			s.References = []model.Reference{{Type: model.ChildOf, TraceID: testTraceID, SpanID: id}}
		default:
			s.References = []model.Reference{{Type: model.RefType(r >> 7), TraceID: testTraceID, SpanID: model.SpanID(int(src.u8())%n + 1)}}
		}
		s.Kind = model.SpanKind(src.u8() % 6)
		if src.u8()%5 == 0 {
			s.Status = model.StatusError
		}
		switch m := src.u8(); m % 16 {
		case 0:
			s.Start = 0
		case 1:
			s.Start = model.Timestamp(math.MaxInt64 - int64(src.u16()))
		case 2:
			s.Start = model.Timestamp(math.MinInt64 + int64(src.u16()))
		case 3:
			s.Start = base + model.Timestamp(src.u16())*model.Timestamp(time.Hour)
		default:
			s.Start = base + model.Timestamp(int16(src.u16()))*model.Timestamp(time.Millisecond)
		}
		switch m := src.u8(); m % 16 {
		case 0:
			s.Duration = -time.Duration(src.u16())
		case 1:
			s.Duration = math.MaxInt64 - time.Duration(src.u16())
		case 2:
			s.Duration = 0
		default:
			s.Duration = time.Duration(src.u16()) * time.Millisecond / 4
		}
		t.Spans = append(t.Spans, s)
	}
	return t
}

func FuzzAnalyze(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{3, 1, 0, 0, 0, 0, 0, 4, 4, 0x11, 1, 1, 3, 0, 3, 0, 5, 5, 0x21, 2, 2, 4, 1, 3, 0, 6, 6})
	f.Add([]byte("a fairly long seed that makes a few dozen spans with random references and times"))
	f.Fuzz(func(t *testing.T, b []byte) {
		opts := Options{MaxClockSkewAdjust: 10 * time.Second, MaxWarningsPerKind: 3}
		if len(b) > 0 && b[0]&0x80 != 0 {
			opts = Options{MaxClockSkewAdjust: -1, MaxSpanDuration: time.Hour}
		}
		tr := traceFromBytes(b)
		orig := cloneTrace(tr)
		an := Analyze(tr, opts)
		checkInvariants(t, tr, an, opts)
		// Deterministic: the same input gives the same output and the same
		// adjusted spans.
		again := cloneTrace(orig)
		var a Analyzer
		an2 := a.Analyze(again, opts)
		if !reflect.DeepEqual(an, an2) {
			t.Fatalf("two analyses of one input differ:\n%+v\n%+v", an, an2)
		}
		if !reflect.DeepEqual(tr, again) {
			t.Fatalf("two analyses of one input adjusted the trace differently")
		}
	})
}

// TestRandomTraces runs the fuzz properties over many generated traces, and
// checks that the order of the input spans does not matter when span IDs are
// unique.
func TestRandomTraces(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var a Analyzer
	for iter := range 2000 {
		b := make([]byte, 20+rng.IntN(600))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		tr := traceFromBytes(b)
		orig := cloneTrace(tr)
		an := a.Analyze(tr, Options{})
		checkInvariants(t, tr, an, Options{})

		// Permutation invariance (no duplicates: their tie-break is input order).
		if hasDuplicateIDs(orig) {
			continue
		}
		perm := cloneTrace(orig)
		rng.Shuffle(len(perm.Spans), func(i, j int) { perm.Spans[i], perm.Spans[j] = perm.Spans[j], perm.Spans[i] })
		an2 := a.Analyze(perm, Options{})
		if an.RootSpanID != an2.RootSpanID || an.Duration != an2.Duration || !reflect.DeepEqual(an.CriticalPath, an2.CriticalPath) ||
			!reflect.DeepEqual(an.Operations, an2.Operations) {
			t.Fatalf("iteration %d: shuffled input gives another analysis:\n%+v\n%+v", iter, an, an2)
		}
		byID := map[model.SpanID]model.SpanStats{}
		for _, st := range an.Spans {
			byID[st.SpanID] = st
		}
		for _, st := range an2.Spans {
			if byID[st.SpanID] != st {
				t.Fatalf("iteration %d: span %s: %+v vs %+v", iter, st.SpanID, byID[st.SpanID], st)
			}
		}
	}
}

func hasDuplicateIDs(t *model.Trace) bool {
	seen := map[model.SpanID]bool{}
	for _, s := range t.Spans {
		if s.TraceID != t.TraceID {
			continue
		}
		if seen[s.SpanID] {
			return true
		}
		seen[s.SpanID] = true
	}
	return false
}

// TestAnalyzerReuse checks that an Analyzer reused across traces of very
// different sizes gives the same results as a fresh one.
func TestAnalyzerReuse(t *testing.T) {
	var reused Analyzer
	traces := []func() *model.Trace{
		func() *model.Trace { return deepChain(3000) },
		func() *model.Trace { return traceFromBytes([]byte("small one")) },
		func() *model.Trace { return wideFanout(500) },
		func() *model.Trace { return traceFromBytes([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}) },
	}
	for i, mk := range traces {
		got := reused.Analyze(mk(), Options{})
		var fresh Analyzer
		want := fresh.Analyze(mk(), Options{})
		if !reflect.DeepEqual(got, want) {
			t.Errorf("trace %d: reused analyzer differs", i)
		}
	}
	if reused.spans != nil {
		t.Errorf("analyzer keeps a reference to the last trace's spans")
	}
}

// TestAnalyzeConcurrent runs the package-level Analyze from several
// goroutines (run with -race) and checks each result against a sequential one.
func TestAnalyzeConcurrent(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	const n = 64
	inputs := make([]*model.Trace, n)
	want := make([]model.Analysis, n)
	for i := range inputs {
		inputs[i] = realisticTrace(rng, 1+rng.IntN(300), true)
		var a Analyzer
		want[i] = a.Analyze(cloneTrace(inputs[i]), Options{})
	}
	got := make([]model.Analysis, n)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < n; i += 4 {
				got[i] = Analyze(inputs[i], Options{})
			}
		})
	}
	wg.Wait()
	for i := range n {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("trace %d: concurrent analysis differs", i)
		}
	}
}
