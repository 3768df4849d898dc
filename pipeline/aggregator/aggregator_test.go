package aggregator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.uber.org/goleak"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/pipeline/aggregator/rollup"
	"github.com/tracepipe/tracepipe/pipeline/aggregator/rollup/rolluptest"
	"github.com/tracepipe/tracepipe/storage/embedded"
	"github.com/tracepipe/tracepipe/wire/assembledpb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// kafka-go's package-level dialer caches and the kfake cluster's own
		// goroutines in their last moments.
		goleak.IgnoreAnyFunction("github.com/segmentio/kafka-go.(*connPool).discover"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*Cluster).run"),
		// The Elasticsearch client's idle keep-alive connections.
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
	)
}

func testConfig(brokers []string, traces string) Config {
	cfg := DefaultConfig()
	cfg.Brokers = brokers
	cfg.TracesTopic = traces
	cfg.PartialsTopic = traces + "-partials"
	cfg.Group = traces + "-agg"
	cfg.ReduceGroup = traces + "-reduce"
	cfg.PartialsPartitions = 3
	cfg.FlushInterval = 100 * time.Millisecond
	cfg.CoarseInterval = 300 * time.Millisecond
	cfg.CheckpointInterval = 300 * time.Millisecond
	cfg.IdleTimeout = 500 * time.Millisecond
	cfg.SessionTimeout = time.Second
	cfg.Stats = rollup.Config{
		Coarse:         []time.Duration{5 * time.Minute, 15 * time.Minute},
		Retention:      time.Minute,
		Dimensions:     []string{"shard", "client", "host"},
		DimensionLimit: 5,
		Exemplars:      3,
	}
	return cfg
}

// produce writes the messages to topic keyed by trace ID, as the ingester does.
func produce(t testing.TB, brokers []string, topic string, msgs []rolluptest.Message) {
	t.Helper()
	tr := kafkatest.NewTransport(t)
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, Balancer: &kafka.Hash{}, Transport: tr, BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	var km []kafka.Message
	for _, m := range msgs {
		id := m.Trace.Trace.TraceID.Bytes()
		km = append(km, kafka.Message{Key: id[:], Value: assembledpb.Encode(nil, m.Trace)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, km...); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

type running struct {
	cancel context.CancelFunc
	done   chan error
}

// startLogged is start with the aggregator's log written to w (nil: discarded).
func startLogged(t testing.TB, cfg Config, store RollupStore, w io.Writer) *running {
	t.Helper()
	if w == nil {
		w = io.Discard
	}
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
	a, err := New(cfg, store, Options{Registry: prometheus.NewRegistry(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	return r
}

func (r *running) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("aggregator: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("aggregator did not stop")
	}
}

// checkedStore is what waitFor reads: rollups and edge rollups.
type checkedStore interface {
	rolluptest.Reader
	rolluptest.EdgeReader
}

// waitFor polls the store until it holds exactly the expected rollups and
// edge rollups.
func waitFor(t testing.TB, exp *rolluptest.Expected, store checkedStore, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		got, err := exp.Fetch(context.Background(), store)
		var edges map[string]model.EdgeRollup
		if err == nil {
			edges, err = exp.FetchEdges(context.Background(), store)
		}
		if err == nil {
			if last = exp.Check(got, edges); last == nil {
				return
			}
		} else {
			last = err
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("rollups never matched the ground truth: %v", last)
}

// TestStageKfake runs both stages against an in-process Kafka and the
// embedded store: the rollups and edge rollups equal the ground truth; after
// a restart and re-emitted versions they still do; and after a replay with
// fresh groups.
func TestStageKfake(t *testing.T) {
	c := kafkatest.NewCluster(t)
	const topic = "traces"
	c.CreateTopic(t, topic, 4)
	store, err := embedded.Open(context.Background(), embedded.Options{Path: filepath.Join(t.TempDir(), "db")})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	cfg := testConfig(c.Brokers, topic)
	msgs := rolluptest.Generate(1, rolluptest.DefaultOptions(400, time.Now()))
	half := len(msgs) / 2
	produce(t, c.Brokers, topic, msgs[:half])
	logs := &testenv.SyncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- aggregator log (last 16 KiB):\n%s", tail(logs.String(), 16<<10))
		}
	})
	start := func(t testing.TB, cfg Config, store RollupStore) *running {
		fmt.Fprintf(logs, "--- start group=%s\n", cfg.Group)
		return startLogged(t, cfg, store, logs)
	}
	r := start(t, cfg, store)
	produce(t, c.Brokers, topic, msgs[half:])
	exp := rolluptest.Expect(cfg.Stats, msgs)
	edges := 0
	for _, w := range exp.Want {
		if w.Edge {
			edges++
		}
	}
	if edges == 0 {
		t.Fatal("the workload has no service edges: the edge check would be vacuous")
	}
	waitFor(t, exp, store, 60*time.Second)

	// Restart, and re-emit a third of the messages (as an ingester does
	// after a crash): nothing changes.
	r.stop(t)
	r = start(t, cfg, store)
	produce(t, c.Brokers, topic, msgs[:len(msgs)/3])
	time.Sleep(2 * time.Second)
	waitFor(t, exp, store, 60*time.Second)
	r.stop(t)

	// Replay from the start with fresh groups and a fresh partials topic,
	// into an empty store, so that every rollup must be rebuilt (a replay
	// into the same store, where the old rollups already equal the truth,
	// would pass before it wrote anything; the simulations in aggregate
	// cover that case).
	replayStore, err := embedded.Open(context.Background(), embedded.Options{Path: filepath.Join(t.TempDir(), "replay")})
	if err != nil {
		t.Fatal(err)
	}
	defer replayStore.Close()
	cfg.Group, cfg.ReduceGroup, cfg.PartialsTopic = cfg.Group+"-replay", cfg.ReduceGroup+"-replay", cfg.PartialsTopic+"-replay"
	r = start(t, cfg, replayStore)
	waitFor(t, exp, replayStore, 60*time.Second)
	r.stop(t)
}

// TestMetricsExemplars checks that /metrics, asked for OpenMetrics, serves
// per-operation histograms with trace-ID exemplars, and that the series
// limit folds extra operations into __overflow__.
func TestMetricsExemplars(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := testConfig([]string{"127.0.0.1:1"}, "t")
	cfg.MaxMetricSeries = 3
	a, err := New(cfg, nopStore{}, Options{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	msgs := rolluptest.Generate(3, rolluptest.DefaultOptions(50, time.Now()))
	for _, m := range msgs {
		a.m.observe(m.Trace, true)
	}
	srv := httptest.NewServer(a.Handler(reg))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	text := string(body)
	for _, want := range []string{
		`tracepipe_aggregator_span_duration_seconds_bucket{kind=`,
		`# {trace_id="`,
		`tracepipe_aggregator_span_critical_path_seconds_bucket{`,
		`tracepipe_aggregator_calls_total{kind=`,
		`operation="__overflow__"`,
		`tracepipe_aggregator_edge_calls_total{`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(tail(text, 3000))
	}
	srv.Client().CloseIdleConnections()
	http.DefaultClient.CloseIdleConnections()
}

type nopStore struct{}

func (nopStore) WriteRollups(context.Context, []model.Rollup) error { return nil }
func (nopStore) RollupSeries(context.Context, model.RollupQuery) ([]model.Rollup, error) {
	return nil, nil
}

// blockingStore acknowledges a write only when released; like the
// Elasticsearch writer it gives up on a cancelled context.
type blockingStore struct {
	nopStore
	release chan struct{}
}

func (s blockingStore) WriteRollups(ctx context.Context, _ []model.Rollup) error {
	select {
	case <-s.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// versionStore records the versions of the rollups written to it.
type versionStore struct {
	nopStore
	versions chan int64
}

func (s versionStore) WriteRollups(_ context.Context, rs []model.Rollup) error {
	for _, r := range rs {
		s.versions <- r.Version
	}
	return nil
}

// TestWriteEndsWithTheGeneration: a rollup write in progress when the
// generation ends returns at once (the member can rejoin the group in
// time; if the store lands the write later, its versions are below the next
// owner's barrier and it loses), and rollups carry their outputs' versions.
func TestWriteEndsWithTheGeneration(t *testing.T) {
	store := blockingStore{release: make(chan struct{})}
	a, err := New(testConfig([]string{"127.0.0.1:1"}, "t"), store, Options{Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	out := rollup.Output{Resolution: time.Minute, Key: rollup.Key{Family: rollup.Family{Service: "s", Operation: "o"}}, Version: 42}
	go func() { done <- a.write(ctx, []rollup.Output{out}) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("write after the generation ended: %v, want context.Canceled", err)
	}

	vs := versionStore{versions: make(chan int64, 1)}
	a, err = New(testConfig([]string{"127.0.0.1:1"}, "t"), vs, Options{Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.write(context.Background(), []rollup.Output{out}); err != nil {
		t.Fatal(err)
	}
	if v := <-vs.versions; v != 42 {
		t.Errorf("stored version %d, want 42", v)
	}
}
