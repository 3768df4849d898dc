package index

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
	"go.uber.org/goleak"

	"github.com/tracepipe/tracepipe/dag"
	"github.com/tracepipe/tracepipe/internal/kafkatest"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/storage/embedded"
	"github.com/tracepipe/tracepipe/tracegen"
	"github.com/tracepipe/tracepipe/wire/assembledpb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// assembled builds n explained trace versions from the generator, as the
// ingester would publish them.
func assembled(t testing.TB, n int) ([]kafka.Message, []model.TraceID) {
	t.Helper()
	w := tracegen.Generate(tracegen.Config{Seed: 3, Traces: n})
	byTrace := map[model.TraceID]*model.Trace{}
	var ids []model.TraceID
	for _, s := range w.Order() {
		tr := byTrace[s.TraceID]
		if tr == nil {
			tr = &model.Trace{TraceID: s.TraceID}
			byTrace[s.TraceID] = tr
			ids = append(ids, s.TraceID)
		}
		tr.Spans = append(tr.Spans, s)
	}
	var msgs []kafka.Message
	for _, id := range ids {
		tr := byTrace[id]
		a := model.AssembledTrace{Trace: *tr, Version: uint32(len(tr.Spans)), Completion: model.CompletionIdle}
		a.Analysis = dag.Analyze(&a.Trace, dag.Options{})
		msgs = append(msgs, kafka.Message{Key: []byte(id.String()), Value: assembledpb.Encode(nil, &a)})
	}
	return msgs, ids
}

func testConfig(brokers []string) Config {
	cfg := DefaultConfig()
	cfg.Brokers = brokers
	cfg.Topic, cfg.Group = "traces", "indexer-test"
	cfg.BatchSize = 16
	cfg.BatchWait = 50 * time.Millisecond
	cfg.MaxBackoff = 50 * time.Millisecond
	cfg.SessionTimeout = 6 * time.Second
	return cfg
}

func runStage(t *testing.T, x *Indexer) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestIndexesIntoEmbeddedStore: every trace version lands in a real
// embedded store, offsets are committed to the end, a corrupt message is
// counted and skipped, and running again (a replay with the same group
// reset) writes nothing new.
func TestIndexesIntoEmbeddedStore(t *testing.T) {
	c := kafkatest.NewCluster(t)
	c.CreateTopic(t, "traces", 2)
	msgs, ids := assembled(t, 30)
	msgs = append(msgs, kafka.Message{Key: []byte("junk"), Value: []byte{0xff, 0x01, 0x02}})
	c.Produce(t, "traces", msgs...)

	store, err := embedded.Open(context.Background(), embedded.Options{Path: filepath.Join(t.TempDir(), "t.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	reg := prometheus.NewRegistry()
	x, err := New(testConfig(c.Brokers), store, Options{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	if x.Healthy() {
		t.Error("healthy before joining")
	}
	stop := runStage(t, x)
	waitFor(t, 30*time.Second, "every message committed", func() bool {
		got := c.Committed(t, "indexer-test", "traces", 2)
		return got[0]+got[1] == int64(len(msgs))
	})
	// Lag and health: the shared runtime's metrics, stage "indexer".
	if !x.Healthy() {
		t.Error("not healthy while a member")
	}
	waitFor(t, 10*time.Second, "consumer lag 0 on both partitions", func() bool {
		return gauge(t, reg, "tracepipe_kafka_consumer_lag", `stage="indexer"`) == 0 &&
			gauge(t, reg, "tracepipe_kafka_group_member", `stage="indexer"`) == 1
	})
	stop()
	if x.Healthy() {
		t.Error("healthy after Run returned")
	}

	for _, id := range ids {
		st, err := store.GetTrace(context.Background(), id)
		if err != nil {
			t.Fatalf("trace %s: %v", id, err)
		}
		if len(st.Trace.Spans) == 0 {
			t.Errorf("trace %s stored without spans", id)
		}
	}
	if got := testutil.ToFloat64(x.m.dropped.WithLabelValues("decode")); got != 1 {
		t.Errorf("decode drops = %v, want 1", got)
	}
	if got := testutil.ToFloat64(x.m.written); got != float64(len(ids)) {
		t.Errorf("written = %v, want %d", got, len(ids))
	}
}

// gauge sums the series of the metric name in reg whose labels include
// every label=value of want (fails when there is none).
func gauge(t *testing.T, reg *prometheus.Registry, name, want string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum, n := 0.0, 0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			if !strings.Contains(strings.Join(labels, ","), want) {
				continue
			}
			n++
			sum += m.GetGauge().GetValue()
		}
	}
	if n == 0 {
		return -1
	}
	return sum
}

// flaky fails its first n writes, then records what it is given.
type flaky struct {
	mu     sync.Mutex
	fails  int
	calls  int
	traces int
}

func (f *flaky) WriteTraces(ctx context.Context, traces []model.AssembledTrace) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.fails > 0 {
		f.fails--
		return errors.New("store unavailable")
	}
	f.traces += len(traces)
	return nil
}

func (f *flaky) state() (calls, traces, fails int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls, f.traces, f.fails
}

// TestCommitsOnlyAfterDurableWrite: while the store fails, nothing is
// committed; once it recovers, everything is written and committed.
func TestCommitsOnlyAfterDurableWrite(t *testing.T) {
	c := kafkatest.NewCluster(t)
	c.CreateTopic(t, "traces", 1)
	msgs, ids := assembled(t, 10)
	c.Produce(t, "traces", msgs...)

	w := &flaky{fails: 1 << 30}
	x, err := New(testConfig(c.Brokers), w, Options{})
	if err != nil {
		t.Fatal(err)
	}
	stop := runStage(t, x)
	waitFor(t, 30*time.Second, "retries", func() bool { calls, _, _ := w.state(); return calls >= 3 })
	if got := c.Committed(t, "indexer-test", "traces", 1); len(got) != 0 {
		t.Fatalf("committed %v while the store was failing", got)
	}
	w.mu.Lock()
	w.fails = 0
	w.mu.Unlock()
	waitFor(t, 30*time.Second, "commit after recovery", func() bool {
		return c.Committed(t, "indexer-test", "traces", 1)[0] == int64(len(msgs))
	})
	stop()
	if _, traces, _ := w.state(); traces != len(ids) {
		t.Errorf("wrote %d traces, want %d", traces, len(ids))
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mut  func(*Config)
	}{
		{"no brokers", func(c *Config) { c.Brokers = nil }},
		{"no topic", func(c *Config) { c.Topic = "" }},
		{"batch size", func(c *Config) { c.BatchSize = 0 }},
		{"batch wait", func(c *Config) { c.BatchWait = 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig([]string{"127.0.0.1:1"})
			tc.mut(&cfg)
			if _, err := New(cfg, &flaky{}, Options{}); err == nil {
				t.Error("New accepted a bad config")
			}
		})
	}
}
