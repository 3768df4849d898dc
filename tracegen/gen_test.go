package tracegen

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/tracepipe/tracepipe/dag"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/wire"
)

func TestDeterministic(t *testing.T) {
	cfg := Config{Seed: 42, Traces: 50}
	a, b := Generate(cfg), Generate(cfg)
	if !reflect.DeepEqual(a.Order(), b.Order()) {
		t.Fatal("same seed, different workload")
	}
	c := Generate(Config{Seed: 43, Traces: 50})
	if reflect.DeepEqual(a.Truth(), c.Truth()) {
		t.Fatal("different seeds, same workload")
	}
}

func TestRealistic(t *testing.T) {
	w := Generate(Config{Seed: 1, Traces: 300, ErrorRate: 0.05})
	truth := w.Truth()
	if truth.Traces != 300 || truth.Spans < 300*5 || len(truth.TraceSpans) != 300 {
		t.Fatalf("truth = %d traces %d spans", truth.Traces, truth.Spans)
	}
	var kinds [6]int
	var follows, errs, parallel int
	for _, tr := range w.Traces {
		cp := &model.Trace{TraceID: tr.TraceID, Spans: append([]*model.Span(nil), tr.Spans...)}
		a := dag.Analyze(cp, dag.Options{})
		for _, wn := range a.Warnings {
			if wn.Kind != model.WarnClockSkew {
				t.Fatalf("trace %s: unexpected warning %v", tr.TraceID, wn)
			}
		}
		if a.RootSpanID != tr.Spans[0].SpanID {
			t.Fatalf("root = %v", a.RootSpanID)
		}
		children := map[model.SpanID]map[model.Timestamp]int{}
		for _, s := range tr.Spans {
			kinds[s.Kind]++
			if s.IsError() {
				errs++
			}
			if p, blocking, ok := s.ParentSpanID(); ok {
				if !blocking {
					follows++
				}
				if children[p] == nil {
					children[p] = map[model.Timestamp]int{}
				}
				children[p][s.Start]++
			}
		}
		for _, m := range children {
			if len(m) > 1 {
				parallel++
			}
		}
	}
	if kinds[model.KindServer] == 0 || kinds[model.KindClient] == 0 || kinds[model.KindProducer] == 0 || kinds[model.KindConsumer] == 0 {
		t.Errorf("kinds = %v", kinds)
	}
	if follows == 0 || errs == 0 || parallel == 0 {
		t.Errorf("follows=%d errors=%d parallel=%d", follows, errs, parallel)
	}
	// Spans interleave across traces.
	order := w.Order()
	switches := 0
	for i := 1; i < len(order); i++ {
		if order[i].TraceID != order[i-1].TraceID {
			switches++
		}
	}
	if switches < len(order)/2 {
		t.Errorf("only %d trace switches in %d spans", switches, len(order))
	}
}

func TestSlowOperation(t *testing.T) {
	slow := Slow{Service: "inventory", Operation: "Reserve", Factor: 20}
	w := Generate(Config{Seed: 7, Traces: 200, Slow: []Slow{slow}})
	top := map[string]int{}
	for _, tr := range w.Traces {
		cp := &model.Trace{TraceID: tr.TraceID, Spans: append([]*model.Span(nil), tr.Spans...)}
		a := dag.Analyze(cp, dag.Options{})
		if b, ok := a.Bottleneck(); ok {
			top[b.Service+" "+b.Operation]++
		}
	}
	checkouts := 0
	for _, tr := range w.Traces {
		if tr.Spans[0].Operation == "GET /checkout" {
			checkouts++
		}
	}
	if top["inventory Reserve"] < checkouts*8/10 {
		t.Errorf("slow op is the bottleneck of %d of %d checkout traces: %v", top["inventory Reserve"], checkouts, top)
	}
}

func TestMessagesAndFile(t *testing.T) {
	w := Generate(Config{Seed: 3, Traces: 20})
	enc, err := EncoderFor(wire.JaegerProto)
	if err != nil {
		t.Fatal(err)
	}
	order := w.Order()
	msgs, err := Messages(order, wire.JaegerProto, enc, 10, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != len(order) || string(msgs[0].Key) != order[0].TraceID.String() {
		t.Fatalf("%d messages for %d spans", len(msgs), len(order))
	}
	var buf bytes.Buffer
	if err := WriteFile(&buf, wire.JaegerProto, msgs); err != nil {
		t.Fatal(err)
	}
	back, err := ReadFile(&buf, wire.JaegerProto)
	if err != nil || len(back) != len(msgs) || !bytes.Equal(back[3], msgs[3].Value) {
		t.Fatalf("file round trip: %v, %d messages", err, len(back))
	}
	s, err := wire.DecodeJaegerProto(back[0])
	if err != nil || s.SpanID != order[0].SpanID {
		t.Fatalf("decode: %v", err)
	}
}

func TestEveryEncoding(t *testing.T) {
	w := Generate(Config{Seed: 9, Traces: 10})
	order := w.Order()
	for _, enc := range wire.Encodings() {
		t.Run(string(enc), func(t *testing.T) {
			e, err := EncoderFor(enc)
			if err != nil {
				t.Fatal(err)
			}
			msgs, err := Messages(order, enc, e, 7, false)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := WriteFile(&buf, enc, msgs); err != nil {
				t.Fatal(err)
			}
			vals, err := ReadFile(&buf, enc)
			if err != nil {
				t.Fatal(err)
			}
			var spans []*model.Span
			for _, v := range vals {
				if wire.Detect(v) != enc {
					t.Fatalf("detected %s", wire.Detect(v))
				}
				if spans, err = wire.Decode(enc, v, spans); err != nil {
					t.Fatal(err)
				}
			}
			if len(spans) != len(order) {
				t.Fatalf("%d spans back, want %d", len(spans), len(order))
			}
			// OTLP groups a batch's spans by resource: compare as sets.
			want := map[[2]uint64]bool{}
			for _, s := range order {
				want[[2]uint64{s.TraceID.Low, uint64(s.SpanID)}] = true
			}
			for i, s := range spans {
				if !want[[2]uint64{s.TraceID.Low, uint64(s.SpanID)}] {
					t.Fatalf("span %d was not generated", i)
				}
			}
		})
	}
	if _, err := EncoderFor(wire.Auto); err == nil {
		t.Fatal("auto must be refused")
	}
}
