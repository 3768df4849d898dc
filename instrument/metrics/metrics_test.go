package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/opentracing/opentracing-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	jaeger "github.com/uber/jaeger-client-go"
	"go.uber.org/goleak"

	"github.com/tracepipe/tracepipe/instrument/metrics"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newTracer is a real jaeger-client-go tracer reporting to memory.
func newTracer(t testing.TB, sampled bool) (opentracing.Tracer, *jaeger.InMemoryReporter) {
	rep := jaeger.NewInMemoryReporter()
	tr, closer := jaeger.NewTracer("svc", jaeger.NewConstSampler(sampled), rep, jaeger.TracerOptions.Gen128Bit(true))
	t.Cleanup(func() { closer.Close() })
	return tr, rep
}

func TestStartWithTracingNestsAndTimes(t *testing.T) {
	tr, rep := newTracer(t, true)
	reg := prometheus.NewRegistry()
	now := time.Unix(1000, 0)
	in, err := metrics.New(tr, reg, metrics.Options{Namespace: "feed", Now: func() time.Time { now = now.Add(10 * time.Millisecond); return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := metrics.WithContext(context.Background(), in)

	outer, ctx := metrics.StartWithTracing(ctx, "GetFeed")
	inner, _ := metrics.StartWithTracing(ctx, "store.Get")
	inner.StopErr(errors.New("shard down"))
	inner.Stop() // second stop: no effect
	outer.Stop()

	spans := rep.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("reported %d spans, want 2", len(spans))
	}
	in0, out0 := spans[0].(*jaeger.Span), spans[1].(*jaeger.Span)
	if in0.OperationName() != "store.Get" || out0.OperationName() != "GetFeed" {
		t.Fatalf("operations %q, %q", in0.OperationName(), out0.OperationName())
	}
	if in0.SpanContext().ParentID() != out0.SpanContext().SpanID() || in0.SpanContext().TraceID() != out0.SpanContext().TraceID() {
		t.Errorf("inner span is not a child of the outer span")
	}
	if in0.Duration() != 10*time.Millisecond || out0.Duration() != 30*time.Millisecond {
		t.Errorf("durations %v, %v; want the injected clock's 10ms, 30ms", in0.Duration(), out0.Duration())
	}
	if in0.Tags()["error"] != true || out0.Tags()["error"] != nil {
		t.Errorf("error tags: inner %v, outer %v", in0.Tags()["error"], out0.Tags()["error"])
	}
	want := `
# HELP feed_operation_errors_total Timed operations that stopped with an error.
# TYPE feed_operation_errors_total counter
feed_operation_errors_total{operation="GetFeed"} 0
feed_operation_errors_total{operation="store.Get"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "feed_operation_errors_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, "feed_operation_duration_seconds"); n != 2 {
		t.Errorf("%d duration series, want 2", n)
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "feed_operation_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetHistogram().GetSampleCount() != 1 {
				t.Errorf("%v: %d observations", m.GetLabel(), m.GetHistogram().GetSampleCount())
			}
			var ex bool
			for _, b := range m.GetHistogram().GetBucket() {
				if e := b.GetExemplar(); e != nil && e.GetLabel()[0].GetValue() == out0.SpanContext().TraceID().String() {
					ex = true
				}
			}
			if !ex {
				t.Errorf("%v: no trace_id exemplar", m.GetLabel())
			}
		}
	}
}

func TestOperationCap(t *testing.T) {
	tr, _ := newTracer(t, false)
	reg := prometheus.NewRegistry()
	in, err := metrics.New(tr, reg, metrics.Options{MaxOperations: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{"a", "b", "c", "d", "a"} {
		tm, _ := in.StartWithTracing(context.Background(), op)
		tm.Stop()
	}
	mfs, _ := reg.Gather()
	got := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() == "operation_duration_seconds" {
			for _, m := range mf.GetMetric() {
				got[m.GetLabel()[0].GetValue()] = m.GetHistogram().GetSampleCount()
			}
		}
	}
	if len(got) != 3 || got["a"] != 2 || got["b"] != 1 || got[metrics.OverflowOperation] != 2 {
		t.Errorf("series %v, want a:2 b:1 other:2", got)
	}
}

func TestDefaultAndDuplicateRegistration(t *testing.T) {
	tr, rep := newTracer(t, true)
	reg := prometheus.NewRegistry()
	in, err := metrics.New(tr, reg, metrics.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := metrics.New(tr, reg, metrics.Options{}); err == nil {
		t.Error("registering twice on one registry: no error")
	}
	prev := metrics.Default()
	metrics.SetDefault(in)
	t.Cleanup(func() { metrics.SetDefault(prev) })
	tm, _ := metrics.StartWithTracing(context.Background(), "root")
	tm.Stop()
	if rep.SpansSubmitted() != 1 {
		t.Errorf("default instrumentation reported %d spans", rep.SpansSubmitted())
	}
}

func benchmarkStartStop(b *testing.B, sampled bool, o metrics.Options) {
	tr, rep := newTracer(b, sampled)
	in, err := metrics.New(tr, prometheus.NewRegistry(), o)
	if err != nil {
		b.Fatal(err)
	}
	root, ctx := in.StartWithTracing(context.Background(), "root")
	defer root.Stop()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tm, _ := metrics.StartWithTracing(ctx, "store.Get")
		tm.Stop()
		if i%1024 == 0 {
			rep.Reset()
		}
	}
}

// BenchmarkStartStop measures StartWithTracing+Stop of a child span on a
// real jaeger-client-go tracer (in-memory reporter), sampled and not.
func BenchmarkStartStop(b *testing.B) {
	b.Run("sampled", func(b *testing.B) { benchmarkStartStop(b, true, metrics.Options{}) })
	b.Run("sampled-no-exemplars", func(b *testing.B) { benchmarkStartStop(b, true, metrics.Options{NoExemplars: true}) })
	b.Run("unsampled", func(b *testing.B) { benchmarkStartStop(b, false, metrics.Options{}) })
	// The tracer alone (a child span started and finished through
	// opentracing): what the library adds is the difference.
	for _, sampled := range []bool{true, false} {
		b.Run(fmt.Sprintf("jaeger-only-sampled=%v", sampled), func(b *testing.B) {
			tr, rep := newTracer(b, sampled)
			root := tr.StartSpan("root")
			defer root.Finish()
			ctx := opentracing.ContextWithSpan(context.Background(), root)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				sp, _ := opentracing.StartSpanFromContextWithTracer(ctx, tr, "store.Get")
				sp.Finish()
				if i%1024 == 0 {
					rep.Reset()
				}
			}
		})
	}
}

func TestTraceIDHex(t *testing.T) {
	for _, id := range []jaeger.TraceID{{High: 0x4bf92f3577b34da6, Low: 0xa3ce929d0e0e4736}, {Low: 0xabc}, {High: 1, Low: 2}} {
		want := fmt.Sprintf("%016x%016x", id.High, id.Low)
		if id.High == 0 {
			want = fmt.Sprintf("%016x", id.Low)
		}
		if got := metrics.TraceIDHex(id); got != want {
			t.Errorf("%v: %s, want %s", id, got, want)
		}
	}
}
