package feed_test

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	jaeger "github.com/uber/jaeger-client-go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"

	"github.com/tracepipe/tracepipe/examples/feed"
	"github.com/tracepipe/tracepipe/instrument/metrics"
	"github.com/tracepipe/tracepipe/internal/kafkatest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestSystem runs the demo on kfake with in-memory reporters and checks the
// traces the library produced: one trace per request across every service,
// every cross-process parent present, the fan-out consumer in the
// publisher's trace, the slow shard slowest.
func TestSystem(t *testing.T) {
	cl := kafkatest.NewCluster(t)
	reps := map[string]*jaeger.InMemoryReporter{}
	ins := feed.Instruments{}
	for _, svc := range []string{feed.Gateway, feed.Feed, feed.Storage, feed.Fanout} {
		rep := jaeger.NewInMemoryReporter()
		tr, closer := jaeger.NewTracer(svc, jaeger.NewConstSampler(true), rep, jaeger.TracerOptions.Gen128Bit(true))
		t.Cleanup(func() { closer.Close() })
		in, err := metrics.New(tr, prometheus.NewRegistry(), metrics.Options{})
		if err != nil {
			t.Fatal(err)
		}
		reps[svc], ins[svc] = rep, in
	}
	otelExp := tracetest.NewInMemoryExporter()
	profileTP := sdktrace.NewTracerProvider(sdktrace.WithSyncer(otelExp))
	avatarTP := sdktrace.NewTracerProvider(sdktrace.WithSyncer(otelExp))
	t.Cleanup(func() { profileTP.Shutdown(context.Background()); avatarTP.Shutdown(context.Background()) })

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sys, err := feed.Start(ctx, feed.Config{Brokers: cl.Brokers, Profile: &feed.OTelProviders{Profile: profileTP, Avatar: avatarTP}}, ins)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- sys.Run(runCtx) }()

	res, err := feed.Load(ctx, sys.GatewayURL(), feed.LoadConfig{Requests: 100, Concurrency: 6, Users: 10})
	if err != nil {
		t.Fatal(err)
	}
	// Every post is fanned out: wait for the worker's consumer spans.
	for reps[feed.Fanout].SpansSubmitted() < 3*int(res.Posts) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	spans := map[jaeger.SpanID]*jaeger.Span{}
	traces := map[jaeger.TraceID]int{}
	var all []*jaeger.Span
	for _, rep := range reps {
		for _, s := range rep.GetSpans() {
			sp := s.(*jaeger.Span)
			spans[sp.SpanContext().SpanID()] = sp
			all = append(all, sp)
		}
	}
	for _, sp := range all {
		sc := sp.SpanContext()
		if sc.ParentID() == 0 {
			traces[sc.TraceID()]++
			if svc := sp.Tracer().(*jaeger.Tracer); svc == nil || sp.OperationName()[:4] != "GET " && sp.OperationName()[:5] != "POST " {
				t.Errorf("root span %s is not the gateway's request span", sp.OperationName())
			}
			continue
		}
		if _, ok := spans[sc.ParentID()]; !ok && !isOTelSpan(otelExp, sc.ParentID()) {
			t.Errorf("span %s %s: parent %s missing", sp.OperationName(), sc.SpanID(), sc.ParentID())
		}
	}
	if want := int(res.Feeds + res.Posts); len(traces) != want {
		t.Errorf("%d traces, want one per request (%d)", len(traces), want)
	}
	// OTel spans continue the gateway's traces.
	for _, s := range otelExp.GetSpans() {
		tid := s.SpanContext.TraceID()
		var jt jaeger.TraceID
		jt.High, jt.Low = be(tid[:8]), be(tid[8:])
		if traces[jt] == 0 {
			t.Errorf("OTel span %s is in trace %s, not a gateway trace", s.Name, tid)
		}
	}
	// The slow shard's reads are the slowest on average.
	sum, n := map[string]time.Duration{}, map[string]int{}
	for _, sp := range all {
		if op := sp.OperationName(); len(op) > 10 && op[:10] == "ReadPosts " {
			sum[op] += sp.Duration()
			n[op]++
		}
	}
	var ops []string
	for op := range sum {
		ops = append(ops, op)
	}
	sort.Slice(ops, func(i, j int) bool {
		return sum[ops[i]]/time.Duration(n[ops[i]]) > sum[ops[j]]/time.Duration(n[ops[j]])
	})
	if len(ops) == 0 || ops[0] != "ReadPosts shard-3" {
		t.Errorf("slowest shard reads: %v", fmt.Sprint(ops))
	}
}

func isOTelSpan(exp *tracetest.InMemoryExporter, id jaeger.SpanID) bool {
	for _, s := range exp.GetSpans() {
		sid := s.SpanContext.SpanID()
		if jaeger.SpanID(be(sid[:])) == id {
			return true
		}
	}
	return false
}

func be(b []byte) uint64 {
	var x uint64
	for _, c := range b {
		x = x<<8 | uint64(c)
	}
	return x
}
