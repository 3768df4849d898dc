package tracegrpc_test

import (
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	jaeger "github.com/uber/jaeger-client-go"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/tracepipe/tracepipe/instrument/metrics"
	"github.com/tracepipe/tracepipe/instrument/tracegrpc"
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

// TestUnaryAndStream runs grpc's health service (a unary Check and a
// server-streaming Watch) behind the interceptors on loopback.
func TestUnaryAndStream(t *testing.T) {
	cliIns, cliRep := newIns(t, "gateway")
	srvIns, srvRep := newIns(t, "feed")
	tags := func(ctx context.Context, method string, md metadata.MD, set func(string, any)) {
		if v := md.Get("x-client"); len(v) > 0 {
			set("client", v[0])
		}
	}
	srv := grpc.NewServer(
		grpc.UnaryInterceptor(tracegrpc.UnaryServerInterceptor(srvIns, tracegrpc.Options{Tags: tags})),
		grpc.StreamInterceptor(tracegrpc.StreamServerInterceptor(srvIns, tracegrpc.Options{Tags: tags})),
	)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	defer func() { srv.Stop(); <-done }()

	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(tracegrpc.UnaryClientInterceptor(cliIns)),
		grpc.WithStreamInterceptor(tracegrpc.StreamClientInterceptor(cliIns)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)

	root, ctx := cliIns.StartWithTracing(context.Background(), "request")
	ctx = metadata.AppendToOutgoingContext(ctx, "x-client", "ios")
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "unknown"}); err == nil {
		t.Fatal("unknown service: no error")
	}
	sctx, cancel := context.WithCancel(ctx)
	st, err := hc.Watch(sctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel() // ends the stream: both spans finish
	for {
		if _, err := st.Recv(); err != nil {
			break
		}
	}
	root.Stop()
	srv.GracefulStop()

	cs, ss := cliRep.GetSpans(), srvRep.GetSpans()
	if len(cs) != 4 || len(ss) != 3 {
		t.Fatalf("client %d spans, server %d; want 4 and 3", len(cs), len(ss))
	}
	byID := map[jaeger.SpanID]*jaeger.Span{}
	for _, s := range cs {
		byID[s.(*jaeger.Span).SpanContext().SpanID()] = s.(*jaeger.Span)
	}
	for i, s := range ss {
		sp := s.(*jaeger.Span)
		parent := byID[sp.SpanContext().ParentID()]
		if parent == nil || parent.OperationName() != sp.OperationName() {
			t.Errorf("server span %d %s: parent is not the client span of the call", i, sp.OperationName())
			continue
		}
		if fmt.Sprint(sp.Tags()["span.kind"]) != "server" || fmt.Sprint(parent.Tags()["span.kind"]) != "client" || sp.Tags()["client"] != "ios" {
			t.Errorf("tags: server %v, client %v", sp.Tags(), parent.Tags())
		}
		if root := byID[parent.SpanContext().ParentID()]; root == nil || root.OperationName() != "request" {
			t.Errorf("client span %s is not a child of the request span", parent.OperationName())
		}
	}
	if ss[1].(*jaeger.Span).Tags()["error"] != true || ss[1].(*jaeger.Span).Tags()["grpc.status_code"] != "NotFound" {
		t.Errorf("failed call: tags %v", ss[1].(*jaeger.Span).Tags())
	}
	if ss[2].(*jaeger.Span).OperationName() != "/grpc.health.v1.Health/Watch" {
		t.Errorf("third server span %s", ss[2].(*jaeger.Span).OperationName())
	}
}
