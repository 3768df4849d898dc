package tracehttp_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	jaeger "github.com/uber/jaeger-client-go"
	"go.uber.org/goleak"

	"github.com/tracepipe/tracepipe/instrument/metrics"
	"github.com/tracepipe/tracepipe/instrument/tracehttp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newIns(t *testing.T, service string) (*metrics.Instrumentation, *jaeger.InMemoryReporter) {
	rep := jaeger.NewInMemoryReporter()
	tr, closer := jaeger.NewTracer(service, jaeger.NewConstSampler(true), rep, jaeger.TracerOptions.Gen128Bit(true))
	t.Cleanup(func() { closer.Close() })
	in, err := metrics.New(tr, prometheus.NewRegistry(), metrics.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return in, rep
}

func TestClientToServer(t *testing.T) {
	cliIns, cliRep := newIns(t, "gateway")
	srvIns, srvRep := newIns(t, "feed")
	var gotKey string
	h := tracehttp.Middleware(srvIns, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotKey = r.Header.Get("X-Api-Key")
		tm, _ := metrics.StartWithTracing(r.Context(), "inner")
		tm.Stop()
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		io.WriteString(w, "ok")
	}), tracehttp.Options{Tags: func(r *http.Request, set func(string, any)) {
		set("shard", r.URL.Query().Get("shard"))
		set("api_key", tracehttp.KeyFingerprint(r.Header.Get("X-Api-Key")))
	}})
	srv := httptest.NewServer(h)
	defer srv.Close()
	client := &http.Client{Transport: &tracehttp.Transport{Base: srv.Client().Transport}}

	for _, path := range []string{"/feed?shard=3", "/fail"} {
		root, ctx := cliIns.StartWithTracing(context.Background(), "request")
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+path, nil)
		req.Header.Set("X-Api-Key", "secret-key-123")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		root.Stop()
		if req.Header.Get("uber-trace-id") != "" {
			t.Error("transport modified the caller's request")
		}
	}
	if gotKey != "secret-key-123" {
		t.Fatalf("server saw key %q", gotKey)
	}
	cs, ss := cliRep.GetSpans(), srvRep.GetSpans()
	if len(cs) != 4 || len(ss) != 4 {
		t.Fatalf("client %d spans, server %d spans; want 4 and 4", len(cs), len(ss))
	}
	clientSpan := cs[0].(*jaeger.Span) // the transport's span finishes first
	inner, server := ss[0].(*jaeger.Span), ss[1].(*jaeger.Span)
	if clientSpan.OperationName() != "HTTP GET" || server.OperationName() != "HTTP GET /feed" {
		t.Fatalf("names %q, %q", clientSpan.OperationName(), server.OperationName())
	}
	if server.SpanContext().ParentID() != clientSpan.SpanContext().SpanID() || server.SpanContext().TraceID() != clientSpan.SpanContext().TraceID() {
		t.Error("server span is not a child of the client span")
	}
	if inner.SpanContext().ParentID() != server.SpanContext().SpanID() {
		t.Error("handler's span is not a child of the server span")
	}
	tags := server.Tags()
	if tags["shard"] != "3" || fmt.Sprint(tags["span.kind"]) != "server" || tags["http.status_code"] != uint16(200) {
		t.Errorf("server tags %v", tags)
	}
	if k := tags["api_key"].(string); !strings.HasPrefix(k, "sha256:") || strings.Contains(k, "secret") || k != tracehttp.KeyFingerprint("secret-key-123") {
		t.Errorf("api_key tag %q", k)
	}
	failed := ss[3].(*jaeger.Span)
	if failed.Tags()["error"] != true || failed.Tags()["http.status_code"] != uint16(503) {
		t.Errorf("503 span tags %v", failed.Tags())
	}
	if cs[2].(*jaeger.Span).Tags()["error"] != true {
		t.Errorf("client span of a 503 is not marked as an error")
	}
}

// An OpenTelemetry caller sends only traceparent; the server span continues its trace.
func TestServerExtractsTraceParent(t *testing.T) {
	srvIns, srvRep := newIns(t, "feed")
	h := tracehttp.Middleware(srvIns, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), tracehttp.Options{})
	req := httptest.NewRequest("GET", "/x", nil)
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	h.ServeHTTP(httptest.NewRecorder(), req)
	sp := srvRep.GetSpans()[0].(*jaeger.Span)
	if got := sp.SpanContext().TraceID().String(); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("trace %s", got)
	}
	if got := sp.SpanContext().ParentID().String(); got != "00f067aa0ba902b7" {
		t.Errorf("parent %s", got)
	}
	if !sp.SpanContext().IsSampled() {
		t.Error("not sampled although the caller's flags say sampled")
	}
}
