package collector

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/opentracing/opentracing-go"
	"github.com/opentracing/opentracing-go/ext"
	"github.com/uber/jaeger-client-go"
	"github.com/uber/jaeger-client-go/transport"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	oteltrace "go.opentelemetry.io/otel/trace"
)

// The real client libraries, sending a small workload: each trace is a
// server span with traces-1... children, tags of every type, a log/event and
// an error.

// sendJaeger sends traces of 1+children spans through jaeger-client-go's
// reporter over t (UDP or HTTP) and closes the tracer (which flushes).
func sendJaeger(tb testing.TB, tr jaeger.Transport, service string, traces, children int) {
	tb.Helper()
	tracer, closer := jaeger.NewTracer(service, jaeger.NewConstSampler(true),
		jaeger.NewRemoteReporter(tr, jaeger.ReporterOptions.BufferFlushInterval(50*time.Millisecond), jaeger.ReporterOptions.QueueSize(100000)),
		jaeger.TracerOptions.Tag("hostname", "host-a"))
	for i := range traces {
		root := tracer.StartSpan("GET /feed")
		ext.SpanKindRPCServer.Set(root)
		root.SetTag("http.status_code", 200)
		root.SetTag("shard", fmt.Sprintf("shard-%d", i%3))
		for j := range children {
			ch := tracer.StartSpan("db.query", opentracing.ChildOf(root.Context()))
			ext.SpanKindRPCClient.Set(ch)
			ch.SetTag("rows", int64(j))
			ch.SetTag("ratio", 0.5)
			ch.SetTag("cached", j%2 == 0)
			if j == 0 {
				ext.Error.Set(ch, true)
				ch.LogKV("event", "error", "message", "timeout")
			}
			ch.Finish()
		}
		root.Finish()
	}
	if err := closer.Close(); err != nil {
		tb.Fatalf("close jaeger tracer: %v", err)
	}
}

func sendJaegerUDP(tb testing.TB, addr, service string, traces, children int) {
	tb.Helper()
	tr, err := jaeger.NewUDPTransport(addr, 0)
	if err != nil {
		tb.Fatal(err)
	}
	sendJaeger(tb, tr, service, traces, children)
}

func sendJaegerHTTP(tb testing.TB, addr, service string, traces, children int) {
	tb.Helper()
	sendJaeger(tb, transport.NewHTTPTransport("http://"+addr+"/api/traces", transport.HTTPBatchSize(50)), service, traces, children)
}

// sendOTel sends the workload through the OTel SDK with exp, then shuts the
// provider down (which exports what is left).
func sendOTel(tb testing.TB, exp *otlptrace.Exporter, service string, traces, children int) {
	tb.Helper()
	res := resource.NewSchemaless(attribute.String("service.name", service), attribute.String("host.name", "host-b"))
	tp := sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(50*time.Millisecond), sdktrace.WithMaxQueueSize(100000)))
	tr := tp.Tracer("tracepipe.test", oteltrace.WithInstrumentationVersion("1.0"))
	ctx := context.Background()
	for i := range traces {
		rctx, root := tr.Start(ctx, "GET /feed", oteltrace.WithSpanKind(oteltrace.SpanKindServer),
			oteltrace.WithAttributes(attribute.Int("http.status_code", 200), attribute.String("shard", fmt.Sprintf("shard-%d", i%3))))
		for j := range children {
			_, ch := tr.Start(rctx, "db.query", oteltrace.WithSpanKind(oteltrace.SpanKindClient),
				oteltrace.WithAttributes(attribute.Int64("rows", int64(j)), attribute.Float64("ratio", 0.5), attribute.Bool("cached", j%2 == 0)))
			if j == 0 {
				ch.AddEvent("timeout", oteltrace.WithAttributes(attribute.String("message", "timeout")))
				ch.SetStatus(codes.Error, "timeout")
			}
			ch.End()
		}
		root.End()
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := tp.Shutdown(sctx); err != nil {
		tb.Fatalf("shut down tracer provider: %v", err)
	}
}

func sendOTLPGRPC(tb testing.TB, addr, service string, traces, children int) {
	tb.Helper()
	exp, err := otlptracegrpc.New(context.Background(), otlptracegrpc.WithEndpoint(addr), otlptracegrpc.WithInsecure())
	if err != nil {
		tb.Fatal(err)
	}
	sendOTel(tb, exp, service, traces, children)
}

func sendOTLPHTTP(tb testing.TB, addr, service string, traces, children int) {
	tb.Helper()
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpoint(addr), otlptracehttp.WithInsecure())
	if err != nil {
		tb.Fatal(err)
	}
	sendOTel(tb, exp, service, traces, children)
}
