package collector

import (
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
)

// TestBackpressure: while Kafka does not acknowledge, the queue fills to
// its byte limit; then every receiver refuses with its protocol's signal
// (UDP counts drops), and once Kafka answers, every accepted span arrives
// exactly once.
func TestBackpressure(t *testing.T) {
	cl := kafkatest.NewCluster(t)
	cl.CreateTopic(t, "spans", 2)
	cfg := testConfig(cl.Brokers, "spans")
	cfg.MaxRequestBytes = 16 << 10
	cfg.QueueBytes = 32 << 10
	r := start(t, cfg, Options{Transport: kafkatest.NewTransport(t)})

	// Warm up the producer's metadata, then hold every produce request.
	postOK(t, "http://"+r.addrs.JaegerHTTP+"/api/traces", "application/x-thrift", golden(t, "jaeger-http"), http.StatusAccepted)
	waitDrained(t, r)
	release := make(chan struct{})
	released := false
	free := func() {
		if !released {
			released = true
			close(release)
		}
	}
	defer free()
	cl.Fake.ControlKey(kmsg.Produce.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
		cl.Fake.KeepControl()
		cl.Fake.SleepControl(func() { <-release })
		return nil, nil, false
	})

	// Fill the queue through Jaeger HTTP until refused.
	jaegerURL := "http://" + r.addrs.JaegerHTTP + "/api/traces"
	var refusedResp *http.Response
	for i := 0; i < 1000 && refusedResp == nil; i++ {
		resp := post(t, jaegerURL, "application/x-thrift", golden(t, "jaeger-http"))
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusAccepted:
		case http.StatusTooManyRequests:
			refusedResp = resp
		default:
			t.Fatalf("request %d: %s", i, resp.Status)
		}
	}
	if refusedResp == nil {
		t.Fatal("the queue never filled")
	}
	if ra, err := strconv.Atoi(refusedResp.Header.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("Retry-After %q", refusedResp.Header.Get("Retry-After"))
	}
	if b := r.c.prod.Buffered(); b > cfg.QueueBytes {
		t.Errorf("queue holds %d bytes, over its limit %d", b, cfg.QueueBytes)
	}

	// Every other receiver refuses too.
	resp := post(t, "http://"+r.addrs.OTLPHTTP+"/v1/traces", "application/x-protobuf", golden(t, "otlp-http"))
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("OTLP/HTTP: %s Retry-After %q, want 429 with Retry-After", resp.Status, resp.Header.Get("Retry-After"))
	}
	_, err := rawExport(t, r.addrs.OTLPGRPC, golden(t, "otlp-grpc"))
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		t.Errorf("OTLP/gRPC: %v, want RESOURCE_EXHAUSTED", err)
	}
	hasRetryInfo := false
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().AsDuration() >= time.Second {
			hasRetryInfo = true
		}
	}
	if !hasRetryInfo {
		t.Errorf("OTLP/gRPC: no RetryInfo in %v (OTel exporters retry RESOURCE_EXHAUSTED only with it)", st.Details())
	}
	sendUDP(t, r.addrs.JaegerCompactUDP, golden(t, "jaeger-compact-udp"))
	waitCount(t, r.c.m.dropped.WithLabelValues(RecvJaegerCompactUDP, ReasonQueueFull), 1)

	// Kafka answers again: the queue drains, what was accepted arrives.
	free()
	waitDrained(t, r)
	postOK(t, jaegerURL, "application/x-thrift", golden(t, "jaeger-http"), http.StatusAccepted)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	accepted := 0.0
	for _, recv := range []string{RecvJaegerHTTP, RecvOTLPHTTP, RecvOTLPGRPC, RecvJaegerCompactUDP} {
		accepted += testutil.ToFloat64(r.c.m.accepted.WithLabelValues(recv))
	}
	if testutil.ToFloat64(r.c.m.requests.WithLabelValues(RecvJaegerHTTP, "refused")) == 0 {
		t.Error("requests_total{result=refused} not counted")
	}
	got := readSpans(t, cl.Brokers, "spans", 2, int(accepted))
	if len(got) != int(accepted) {
		t.Errorf("%d spans in Kafka, %g accepted", len(got), accepted)
	}
	if lost := testutil.ToFloat64(r.c.m.dropped.WithLabelValues(RecvJaegerHTTP, ReasonLost)); lost != 0 {
		t.Errorf("%g spans lost", lost)
	}
}

func waitDrained(tb testing.TB, r *running) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for r.c.prod == nil || r.c.prod.Buffered() > 0 {
		if time.Now().After(deadline) {
			tb.Fatal("the queue did not drain")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestShutdownDrains: spans accepted while Kafka is slow still reach it
// when the collector stops within its grace period.
func TestShutdownDrains(t *testing.T) {
	cl := kafkatest.NewCluster(t)
	cl.CreateTopic(t, "spans", 1)
	r := start(t, testConfig(cl.Brokers, "spans"), Options{Transport: kafkatest.NewTransport(t)})
	postOK(t, "http://"+r.addrs.JaegerHTTP+"/api/traces", "application/x-thrift", golden(t, "jaeger-http"), http.StatusAccepted)
	waitDrained(t, r)
	release := make(chan struct{})
	cl.Fake.ControlKey(kmsg.Produce.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
		cl.Fake.KeepControl()
		cl.Fake.SleepControl(func() { <-release })
		return nil, nil, false
	})
	for range 5 {
		postOK(t, "http://"+r.addrs.JaegerHTTP+"/api/traces", "application/x-thrift", golden(t, "jaeger-http"), http.StatusAccepted)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- r.stop() }()
	time.Sleep(100 * time.Millisecond) // the stop is under way, the queue is not empty
	if r.c.prod.Buffered() == 0 {
		t.Fatal("queue already empty")
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	accepted := testutil.ToFloat64(r.c.m.accepted.WithLabelValues(RecvJaegerHTTP))
	if got := readSpans(t, cl.Brokers, "spans", 1, int(accepted)); len(got) != int(accepted) {
		t.Errorf("%d spans in Kafka, %g accepted", len(got), accepted)
	}
}

// TestRequestLargerThanQueue: a request whose spans take more than the
// whole queue would be refused forever; it is answered as too large
// instead of "retry later".
func TestRequestLargerThanQueue(t *testing.T) {
	cl := kafkatest.NewCluster(t)
	cl.CreateTopic(t, "spans", 1)
	cfg := testConfig(cl.Brokers, "spans")
	cfg.MaxRequestBytes = 2500
	cfg.QueueBytes = 2500
	r := start(t, cfg, Options{Transport: kafkatest.NewTransport(t)})
	resp := post(t, "http://"+r.addrs.JaegerHTTP+"/api/traces", "application/x-thrift", golden(t, "jaeger-http"))
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("Jaeger HTTP: %s, want 413", resp.Status)
	}
	resp = post(t, "http://"+r.addrs.OTLPHTTP+"/v1/traces", "application/x-protobuf", golden(t, "otlp-http"))
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("OTLP/HTTP: %s, want 413", resp.Status)
	}
	if _, err := rawExport(t, r.addrs.OTLPGRPC, golden(t, "otlp-grpc")); status.Code(err) != codes.InvalidArgument {
		t.Errorf("OTLP/gRPC: %v, want InvalidArgument", err)
	}
	for _, recv := range []string{RecvJaegerHTTP, RecvOTLPHTTP, RecvOTLPGRPC} {
		if n := testutil.ToFloat64(r.c.m.badRequests.WithLabelValues(recv, ReasonTooLarge)); n != 1 {
			t.Errorf("%s: bad_requests_total{too_large} = %g, want 1", recv, n)
		}
	}
}
