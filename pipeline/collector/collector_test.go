package collector

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	kafkago "github.com/segmentio/kafka-go"
	"go.uber.org/goleak"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The OTel SDK's and grpc's package-level goroutines.
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		// kfake's, when a test held produce requests (SleepControl).
		goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*Cluster).runControl.func1"),
		goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*Cluster).run"),
	)
}

// testConfig has every receiver on a free loopback port.
func testConfig(brokers []string, topic string) Config {
	cfg := DefaultConfig()
	cfg.JaegerCompactUDP = "127.0.0.1:0"
	cfg.JaegerBinaryUDP = "127.0.0.1:0"
	cfg.JaegerHTTP = "127.0.0.1:0"
	cfg.OTLPGRPC = "127.0.0.1:0"
	cfg.OTLPHTTP = "127.0.0.1:0"
	cfg.SamplingHTTP = "127.0.0.1:0"
	cfg.Brokers = brokers
	cfg.SpansTopic = topic
	cfg.ShutdownGrace = 10 * time.Second
	return cfg
}

// running is a collector serving in the background.
type running struct {
	c     *Collector
	addrs Addrs
	stop  func() error
}

func start(t testing.TB, cfg Config, opts Options) *running {
	t.Helper()
	c, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var stopped bool
	var stopErr error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			stopErr = <-done
		}
		return stopErr
	}
	t.Cleanup(func() { stop() })
	return &running{c: c, addrs: c.Addrs(), stop: stop}
}

// readSpans reads topic's partitions until want messages arrived (or the
// deadline), then for a short while more to catch extra ones, and checks
// that each is a Jaeger protobuf span keyed by its trace ID.
func readSpans(t testing.TB, brokers []string, topic string, partitions, want int) []*model.Span {
	t.Helper()
	tr := kafkatest.NewTransport(t)
	cl := &kafkago.Client{Addr: kafkago.TCP(brokers...), Transport: tr, Timeout: 10 * time.Second}
	var spans []*model.Span
	deadline := time.Now().Add(60 * time.Second)
	next := make([]int64, partitions)
	settle := time.Time{}
	for {
		got := 0
		for p := range partitions {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			resp, err := cl.Fetch(ctx, &kafkago.FetchRequest{Topic: topic, Partition: p, Offset: next[p], MaxWait: 20 * time.Millisecond, MaxBytes: 16 << 20})
			cancel()
			if err != nil || resp.Error != nil {
				continue
			}
			for {
				rec, err := resp.Records.ReadRecord()
				if err != nil {
					break
				}
				key := readAll(t, rec.Key)
				val := readAll(t, rec.Value)
				sp, err := wire.DecodeJaegerProto(val)
				if err != nil {
					t.Fatalf("partition %d offset %d: %v", p, rec.Offset, err)
				}
				if !bytes.Equal(key, wire.Key(sp.TraceID)) {
					t.Fatalf("message key %q, want the trace id %s", key, sp.TraceID)
				}
				if wantP := (&kafkago.Hash{}).Balance(kafkago.Message{Key: key}, seq(partitions)...); wantP != p {
					t.Fatalf("span of trace %s in partition %d, kafka.Hash says %d", sp.TraceID, p, wantP)
				}
				spans = append(spans, sp)
				next[p] = rec.Offset + 1
				got++
			}
		}
		now := time.Now()
		if len(spans) >= want && settle.IsZero() {
			settle = now.Add(300 * time.Millisecond)
		}
		if (!settle.IsZero() && now.After(settle)) || now.After(deadline) {
			break
		}
		if got == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	return spans
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

func readAll(t testing.TB, r interface{ Read([]byte) (int, error) }) []byte {
	if r == nil {
		return nil
	}
	var b bytes.Buffer
	if _, err := b.ReadFrom(r); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// checkOnce fails unless spans holds every span exactly once: want spans in
// traces of 1+children each, for service.
func checkOnce(t testing.TB, spans []*model.Span, service string, traces, children int) {
	t.Helper()
	seen := map[model.SpanID]bool{}
	perTrace := map[model.TraceID]int{}
	n := 0
	for _, sp := range spans {
		if sp.Process.ServiceName != service {
			continue
		}
		n++
		if seen[sp.SpanID] {
			t.Errorf("span %s of %s arrived twice", sp.SpanID, service)
		}
		seen[sp.SpanID] = true
		perTrace[sp.TraceID]++
	}
	if want := traces * (1 + children); n != want {
		t.Errorf("%s: %d spans arrived, want %d", service, n, want)
	}
	if len(perTrace) != traces {
		t.Errorf("%s: %d traces, want %d", service, len(perTrace), traces)
	}
}

// TestRealClientsKfake: jaeger-client-go over UDP and HTTP and the OTel SDK
// over OTLP gRPC and HTTP send to one collector; every span arrives once in
// the spans topic, keyed by trace ID, in kafka.Hash's partition.
func TestRealClientsKfake(t *testing.T) {
	cl := kafkatest.NewCluster(t)
	testRealClients(t, cl.Brokers, "spans", kafkatest.NewTransport(t), func(topic string) { cl.CreateTopic(t, topic, 3) })
}

// TestRealClientsKafka is TestRealClientsKfake against the real broker.
func TestRealClientsKafka(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.Name(t, "collector-spans")
	testRealClients(t, brokers, topic, nil, func(topic string) { kafkatest.CreateTopic(t, brokers, topic, 3) })
}

func testRealClients(t *testing.T, brokers []string, topic string, tr kafkago.RoundTripper, create func(string)) {
	create(topic)
	var opts Options
	if tr != nil {
		opts.Transport = tr
	}
	r := start(t, testConfig(brokers, topic), opts)
	const traces, children = 20, 4
	sendJaegerUDP(t, r.addrs.JaegerCompactUDP, "jaeger-udp", traces, children)
	waitCount(t, r.c.m.received.WithLabelValues(RecvJaegerCompactUDP), traces*(1+children))
	sendJaegerHTTP(t, r.addrs.JaegerHTTP, "jaeger-http", traces, children)
	sendOTLPGRPC(t, r.addrs.OTLPGRPC, "otlp-grpc", traces, children)
	sendOTLPHTTP(t, r.addrs.OTLPHTTP, "otlp-http", traces, children)
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	spans := readSpans(t, brokers, topic, 3, 4*traces*(1+children))
	for _, svc := range []string{"jaeger-udp", "jaeger-http", "otlp-grpc", "otlp-http"} {
		checkOnce(t, spans, svc, traces, children)
	}
	// Links, kinds, errors, host tags survive.
	for _, sp := range spans {
		if sp.Operation == "db.query" {
			if _, _, ok := sp.ParentSpanID(); !ok {
				t.Errorf("%s: child span %s has no parent", sp.Process.ServiceName, sp.SpanID)
			}
			if sp.Kind != model.KindClient {
				t.Errorf("%s: child span kind %v", sp.Process.ServiceName, sp.Kind)
			}
		}
		host := "hostname"
		if sp.Process.ServiceName == "otlp-grpc" || sp.Process.ServiceName == "otlp-http" {
			host = "host.name"
		}
		if _, ok := sp.Process.Tags.Find(host); !ok {
			t.Errorf("%s: process tag %s missing: %v", sp.Process.ServiceName, host, sp.Process.Tags)
		}
	}
	errs := 0
	for _, sp := range spans {
		if sp.IsError() {
			errs++
		}
	}
	if errs != 4*traces {
		t.Errorf("%d error spans, want %d", errs, 4*traces)
	}
}

// waitCount waits until c reaches want: UDP senders get no answer, so a
// test waits for the collector to have read their datagrams.
func waitCount(tb testing.TB, c prometheus.Collector, want float64) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for testutil.ToFloat64(c) < want {
		if time.Now().After(deadline) {
			tb.Fatalf("count %g, want %g", testutil.ToFloat64(c), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var _ = errors.Is
