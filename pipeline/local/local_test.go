package local

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/goleak"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/tracegen"
	"github.com/tracepipe/tracepipe/wire"
	"github.com/tracepipe/tracepipe/wire/assembledpb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func testConfig(t *testing.T, dir string) Config {
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.BrokerListen = "127.0.0.1:0"
	cfg.Partitions = 3
	cfg.QueryListen = ""
	cfg.MetricsAddr = "127.0.0.1:0"
	cfg.Ingest.Encoding = wire.Auto
	cfg.Ingest.IdleTimeout = 200 * time.Millisecond
	cfg.Ingest.MaxWait = 3 * time.Second
	cfg.Ingest.LateHorizon = 300 * time.Millisecond
	cfg.Ingest.CommitInterval = 100 * time.Millisecond
	cfg.Ingest.SessionTimeout = 6 * time.Second
	cfg.Ingest.ShutdownGrace = 3 * time.Second
	cfg.Collector.JaegerCompactUDP = "127.0.0.1:0"
	cfg.Collector.JaegerBinaryUDP = "127.0.0.1:0"
	cfg.Collector.JaegerHTTP = "127.0.0.1:0"
	cfg.Collector.OTLPGRPC = "127.0.0.1:0"
	cfg.Collector.OTLPHTTP = "127.0.0.1:0"
	cfg.Collector.SamplingHTTP = "127.0.0.1:0"
	cfg.Collector.ShutdownGrace = 3 * time.Second
	return cfg
}

// start runs the deployment in the background and returns its broker
// addresses and a stop function that returns Run's error.
func start(t *testing.T, cfg Config) ([]string, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan []string, 1)
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, Deps{}, func(b []string) { ready <- b }) }()
	select {
	case b := <-ready:
		return b, func() error { cancel(); return <-done }
	case err := <-done:
		cancel()
		t.Fatalf("Run: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("Run did not become ready")
	}
	return nil, nil
}

// readTraces reads the traces topic from the start until want distinct
// traces are complete or the deadline passes; it returns the newest version
// of each trace.
func readTraces(t *testing.T, brokers []string, topic string, partitions int, want map[model.TraceID]int, deadline time.Duration) map[model.TraceID]*model.AssembledTrace {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	var mu sync.Mutex
	got := map[model.TraceID]*model.AssembledTrace{}
	complete := func() bool {
		for id, n := range want {
			if a := got[id]; a == nil || len(a.Trace.Spans) != n {
				return false
			}
		}
		return true
	}
	var wg sync.WaitGroup
	for p := 0; p < partitions; p++ {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p, MaxWait: 50 * time.Millisecond})
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer r.Close()
			for {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					return
				}
				a, err := assembledpb.Decode(m.Value)
				if err != nil {
					t.Errorf("decode output at %d/%d: %v", m.Partition, m.Offset, err)
					return
				}
				mu.Lock()
				if old := got[a.Trace.TraceID]; old == nil || a.Version >= old.Version {
					got[a.Trace.TraceID] = a
				}
				if complete() {
					cancel()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return got
}

// TestRunEndToEndAndRestart produces a generated workload into the embedded
// broker, reads every trace back complete and explained from the traces
// topic, stops, restarts on the same data directory and finds the output
// still there (the embedded broker persists its log).
func TestRunEndToEndAndRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	brokers, stop := start(t, cfg)

	w := tracegen.Generate(tracegen.Config{Seed: 11, Traces: 40})
	enc, err := tracegen.EncoderFor(wire.JaegerProto)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := tracegen.Messages(w.Order(), wire.JaegerProto, enc, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	want := map[model.TraceID]int{}
	for _, s := range w.Order() {
		want[s.TraceID]++
	}
	tr := &kafka.Transport{}
	kw := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: cfg.Ingest.SpansTopic, Balancer: &kafka.Hash{},
		Transport: tr, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	if err := tracegen.Publish(context.Background(), kafkatest.Sender(kw), msgs, 0, 500); err != nil {
		t.Fatal(err)
	}
	kw.Close()
	tr.CloseIdleConnections()

	got := readTraces(t, brokers, cfg.Ingest.TracesTopic, cfg.Partitions, want, 60*time.Second)
	for id, n := range want {
		a := got[id]
		if a == nil {
			t.Errorf("trace %s never emitted", id)
			continue
		}
		if len(a.Trace.Spans) != n {
			t.Errorf("trace %s: %d spans, want %d", id, len(a.Trace.Spans), n)
		}
		if len(a.Analysis.CriticalPath) == 0 {
			t.Errorf("trace %s: no critical path", id)
		}
	}

	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	// Restart on the same directory: the broker reloads its log.
	brokers, stop = start(t, cfg)
	again := readTraces(t, brokers, cfg.Ingest.TracesTopic, cfg.Partitions, want, 30*time.Second)
	if len(again) != len(want) {
		t.Errorf("after restart the traces topic holds %d traces, want %d", len(again), len(want))
	}
	if err := stop(); err != nil {
		t.Fatalf("stop after restart: %v", err)
	}
}

func TestRunServesMetrics(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.MetricsAddr = "127.0.0.1:19464"
	_, stop := start(t, cfg)
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	}()
	resp, err := http.Get("http://" + cfg.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "tracepipe_ingester_") {
		t.Errorf("/metrics lacks the ingester's metrics:\n%.500s", body)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mut  func(*Config)
		want string
	}{
		{"empty data dir", func(c *Config) { c.DataDir = "" }, "--data-dir"},
		{"bad listen", func(c *Config) { c.BrokerListen = "nohostport" }, "--broker-listen"},
		{"partitions", func(c *Config) { c.Partitions = 0 }, "--partitions"},
		{"partitions of topics created on real brokers", func(c *Config) { c.Brokers, c.Partitions = []string{"kafka-1:9092"}, 2000 }, "--partitions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.mut(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want an error naming %s", err, tc.want)
			}
		})
	}
}
