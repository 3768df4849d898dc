package propagation_test

import (
	"testing"

	"github.com/opentracing/opentracing-go"
	jaeger "github.com/uber/jaeger-client-go"
	"go.uber.org/goleak"

	"github.com/tracepipe/tracepipe/instrument/propagation"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newTracer(t *testing.T) opentracing.Tracer {
	tr, closer := jaeger.NewTracer("svc", jaeger.NewConstSampler(true), jaeger.NewNullReporter(), jaeger.TracerOptions.Gen128Bit(true))
	t.Cleanup(func() { closer.Close() })
	return tr
}

// Inject writes both headers; Extract prefers uber-trace-id and falls back
// to traceparent.
func TestInjectExtract(t *testing.T) {
	tr := newTracer(t)
	sp := tr.StartSpan("op")
	defer sp.Finish()
	carrier := opentracing.TextMapCarrier{}
	if err := propagation.Inject(tr, sp.Context(), opentracing.TextMap, carrier); err != nil {
		t.Fatal(err)
	}
	sc := sp.Context().(jaeger.SpanContext)
	if carrier["uber-trace-id"] == "" || carrier[propagation.TraceParent] != propagation.FormatTraceParent(sc) {
		t.Fatalf("carrier %v", carrier)
	}
	got, err := propagation.Extract(tr, opentracing.TextMap, carrier)
	if err != nil || got.(jaeger.SpanContext).SpanID() != sc.SpanID() || got.(jaeger.SpanContext).TraceID() != sc.TraceID() {
		t.Fatalf("extract both: %v, %v", got, err)
	}
	delete(carrier, "uber-trace-id")
	got, err = propagation.Extract(tr, opentracing.TextMap, carrier)
	if err != nil || got.(jaeger.SpanContext).SpanID() != sc.SpanID() || got.(jaeger.SpanContext).TraceID() != sc.TraceID() {
		t.Fatalf("extract traceparent only: %v, %v", got, err)
	}
	if _, err := propagation.Extract(tr, opentracing.TextMap, opentracing.TextMapCarrier{}); err != opentracing.ErrSpanContextNotFound {
		t.Errorf("empty carrier: %v, want ErrSpanContextNotFound", err)
	}
	if _, err := propagation.Extract(tr, opentracing.TextMap, opentracing.TextMapCarrier{"traceparent": "garbage"}); err != propagation.ErrBadTraceParent {
		t.Errorf("bad traceparent: %v", err)
	}
}

func TestTraceParentRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false},
		{"00-4bf92f3577b34da6a3ce929d0e0e473x-00f067aa0ba902b7-01", false},
		{"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", false},
		{"", false},
	} {
		sc, err := propagation.ParseTraceParent(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("%q: err %v, want ok=%v", tc.in, err, tc.ok)
			continue
		}
		if tc.ok && propagation.FormatTraceParent(sc) != tc.in {
			t.Errorf("%q: formatted back as %q", tc.in, propagation.FormatTraceParent(sc))
		}
	}
}

func FuzzParseTraceParent(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := propagation.ParseTraceParent(s)
		if err == nil && !sc.IsValid() {
			t.Errorf("%q: accepted an invalid context", s)
		}
	})
}
