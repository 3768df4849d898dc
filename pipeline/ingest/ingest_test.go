package ingest

import (
	"context"
	"flag"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tracepipe/tracepipe/internal/config"
	"github.com/tracepipe/tracepipe/internal/kafkatest"
	"github.com/tracepipe/tracepipe/tracegen"
	"github.com/tracepipe/tracepipe/wire"
	"github.com/tracepipe/tracepipe/wire/assembledpb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// kafka-go's package-level DNS/dialer caches and the kfake cluster's
		// own background goroutines in their last moments.
		goleak.IgnoreAnyFunction("github.com/segmentio/kafka-go.(*connPool).discover"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*Cluster).run"),
	)
}

func newCluster(t *testing.T, partitions int32, topics ...string) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topics...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

func produce(t *testing.T, brokers []string, topic string, msgs []tracegen.Message) {
	t.Helper()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, Balancer: &kafka.Hash{}, Transport: tr,
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	if err := tracegen.Publish(context.Background(), kafkatest.Sender(w), msgs, 0, 500); err != nil {
		t.Fatal(err)
	}
}

// consume reads topic's partitions from the start until stop says enough
// or the deadline passes.
func consume(t *testing.T, brokers []string, topic string, partitions int, deadline time.Duration, stop func([]kafka.Message) bool) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	var mu sync.Mutex
	var got []kafka.Message
	done := make(chan struct{})
	var once sync.Once
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
				mu.Lock()
				got = append(got, m)
				if stop(got) {
					once.Do(func() { close(done) })
				}
				mu.Unlock()
			}
		}()
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
	cancel()
	wg.Wait()
	return got
}

func testConfig(brokers []string) Config {
	cfg := DefaultConfig()
	cfg.Brokers = brokers
	cfg.SpansTopic, cfg.TracesTopic, cfg.DLQTopic = "spans", "traces", "dlq"
	cfg.Group = "ingester-test"
	cfg.Encoding = wire.JaegerProto
	cfg.IdleTimeout = 200 * time.Millisecond
	cfg.MaxWait = 3 * time.Second
	cfg.LateHorizon = 300 * time.Millisecond
	cfg.CommitInterval = 100 * time.Millisecond
	cfg.SessionTimeout = 6 * time.Second
	cfg.ShutdownGrace = 5 * time.Second
	return cfg
}

func committed(t *testing.T, brokers []string, group, topic string, partitions int) map[int]int64 {
	t.Helper()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: tr, Timeout: 5 * time.Second}
	var ps []int
	for p := 0; p < partitions; p++ {
		ps = append(ps, p)
	}
	resp, err := c.OffsetFetch(context.Background(), &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ps}})
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]int64{}
	for _, p := range resp.Topics[topic] {
		out[p.Partition] = p.CommittedOffset
	}
	return out
}

// TestIngesterOnKfake runs the whole stage against an in-process Kafka:
// every generated trace comes out complete, the undecodable messages go to
// the dead-letter topic with their coordinates (one on arrival, one, a span
// whose IDs read, when its trace is emitted without it), offsets end up committed at the
// end of every partition, and the stage stops cleanly.
func TestIngesterOnKfake(t *testing.T) {
	const partitions = 4
	brokers := newCluster(t, partitions, "spans", "traces", "dlq")
	w := tracegen.Generate(tracegen.Config{Seed: 5, Traces: 60})
	enc, _ := tracegen.EncoderFor(wire.JaegerProto)
	msgs, err := tracegen.Messages(w.Order(), wire.JaegerProto, enc, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	// A span of the first trace whose IDs read but which does not decode
	// (its operation name is not UTF-8): found when the trace is emitted,
	// which it is without that span.
	bad, err := wire.DecodeJaegerProto(msgs[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	badTrace := bad.TraceID.String()
	bad.SpanID = 0xbad
	badValue, err := wire.AppendJaegerProto(nil, bad)
	if err != nil {
		t.Fatal(err)
	}
	badValue = protowire.AppendBytes(protowire.AppendTag(badValue, 3, protowire.BytesType), []byte("\xff"))
	msgs = append(msgs, tracegen.Message{Key: []byte("garbage"), Value: []byte("\xff\xff not a span")},
		tracegen.Message{Key: msgs[0].Key, Value: badValue})
	produce(t, brokers, "spans", msgs)
	truth := w.Truth()

	reg := prometheus.NewRegistry()
	in, err := New(testConfig(brokers), Options{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- in.Run(ctx) }()

	complete := map[string]bool{}
	got := consume(t, brokers, "traces", partitions, 60*time.Second, func(ms []kafka.Message) bool {
		m := ms[len(ms)-1]
		tr, err := assembledpb.Decode(m.Value)
		if err != nil {
			t.Errorf("decode output: %v", err)
			return false
		}
		id := tr.Trace.TraceID.String()
		if string(m.Key) != id {
			t.Errorf("key %q for trace %s", m.Key, id)
		}
		if len(tr.Trace.Spans) == truth.TraceSpans[id] && int(tr.Version) == truth.TraceSpans[id] {
			complete[id] = true
		}
		return len(complete) == truth.Traces
	})
	if len(complete) != truth.Traces {
		t.Fatalf("%d of %d traces complete in %d outputs", len(complete), truth.Traces, len(got))
	}
	dlq := consume(t, brokers, "dlq", partitions, 20*time.Second, func(ms []kafka.Message) bool { return len(ms) >= 2 })
	if len(dlq) != 2 {
		t.Fatalf("dead letters = %v", dlq)
	}
	for _, m := range dlq {
		headers := map[string]string{}
		for _, h := range m.Headers {
			headers[h.Key] = string(h.Value)
		}
		if headers["tracepipe.source.topic"] != "spans" || headers["tracepipe.source.offset"] == "" || !strings.Contains(headers["tracepipe.error"], "decode jaeger-proto") {
			t.Errorf("dead-letter headers = %v", headers)
		}
		switch string(m.Value) {
		case "\xff\xff not a span":
		case string(badValue):
			if string(m.Key) != badTrace || !strings.Contains(headers["tracepipe.error"], "operation_name") {
				t.Errorf("the span that does not decode is dead-lettered with key %q, headers %v", m.Key, headers)
			}
		default:
			t.Errorf("dead letter %q", m.Value)
		}
	}
	// Once the late horizon passed, everything is committed.
	ends := map[int]int64{}
	waitFor(t, 20*time.Second, func() bool {
		return value(in.metrics.InFlightTraces) == 0
	})
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	for p := 0; p < partitions; p++ {
		c := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: tr}
		resp, err := c.ListOffsets(context.Background(), &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{"spans": {kafka.LastOffsetOf(p)}}})
		if err != nil {
			t.Fatal(err)
		}
		ends[p] = resp.Topics["spans"][0].LastOffset
	}
	waitFor(t, 10*time.Second, func() bool {
		c := committed(t, brokers, "ingester-test", "spans", partitions)
		for p, end := range ends {
			if c[p] != end {
				return false
			}
		}
		return true
	})
	if v := value(in.metrics.SpansIn); int(v) != truth.Spans+1 {
		t.Errorf("spans_in_total = %v, want %d", v, truth.Spans+1)
	}
	if v := value(in.metrics.DeadLetters); v != 2 {
		t.Errorf("dead_letters_total = %v", v)
	}
	cancel()
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestConfig(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string // substring of the error, "" for valid
	}{
		{"defaults", nil, nil, ""},
		{"env fills unset flags", nil, map[string]string{"TRACEPIPE_IDLE_TIMEOUT": "0s"}, "--idle-timeout must be positive"},
		{"flag beats env", []string{"--idle-timeout=1s"}, map[string]string{"TRACEPIPE_IDLE_TIMEOUT": "0s"}, ""},
		{"broker without port", []string{"--kafka-brokers=localhost"}, nil, "not host:port"},
		{"max wait below idle", []string{"--idle-timeout=10s", "--max-wait=5s"}, nil, "--max-wait"},
		{"rekey to input", []string{"--rekey-to=jaeger-spans"}, nil, "--rekey-to"},
		{"every problem at once", []string{"--kafka-brokers=", "--spans-topic=", "--max-spans-per-trace=0", "--kafka-sasl-mechanism=NOPE"}, nil,
			"at least one broker|--spans-topic is empty|--max-spans-per-trace must be positive|NOPE"},
		{"sasl from env", nil, map[string]string{"TRACEPIPE_KAFKA_SASL_MECHANISM": "PLAIN"}, "needs a username"},
		{"no output budget", []string{"--max-output-bytes-in-flight=0"}, nil, "--max-output-bytes-in-flight must be positive"},
		{"output budget from env", nil, map[string]string{"TRACEPIPE_MAX_OUTPUT_BYTES_IN_FLIGHT": "1048576"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			cfg.RegisterFlags(fs, "")
			if err := config.Parse(fs, c.args, func(k string) (string, bool) { v, ok := c.env[k]; return v, ok }); err != nil {
				t.Fatal(err)
			}
			before := fmt.Sprintf("%#v", cfg)
			err := cfg.Validate()
			if after := fmt.Sprintf("%#v", cfg); after != before {
				t.Errorf("Validate changed the config:\n%s\n%s", before, after)
			}
			if c.want == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			for _, w := range strings.Split(c.want, "|") {
				if c.want != "" && (err == nil || !strings.Contains(err.Error(), w)) {
					t.Fatalf("error %v, want it to mention %q", err, w)
				}
			}
		})
	}
}

// value reads a counter's or gauge's current value.
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

// TestBackpressure runs the stage with an in-flight budget far below the
// workload's working set: fetching pauses (never more than the budget plus
// one message per partition is held), the stage keeps making progress to the
// end of every partition, and every span is accounted for: in its trace's
// highest version, or counted as dropped too late (a budget this small
// evicts retained traces before their late spans arrive).
func TestBackpressure(t *testing.T) {
	const partitions = 2
	brokers := newCluster(t, partitions, "spans", "traces", "dlq")
	w := tracegen.Generate(tracegen.Config{Seed: 17, Traces: 150})
	truth := w.Truth()
	enc, _ := tracegen.EncoderFor(wire.JaegerProto)
	msgs, _ := tracegen.Messages(w.Order(), wire.JaegerProto, enc, 1, false)
	produce(t, brokers, "spans", msgs)
	cfg := testConfig(brokers)
	cfg.MaxTracesInFlight = 10
	in, err := New(cfg, Options{Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	var maxHeld int64
	paused := false
	waitFor(t, 60*time.Second, func() bool {
		tr, _, _ := in.Budget().InFlight()
		maxHeld = max(maxHeld, tr)
		paused = paused || value(in.metrics.Paused) > 0
		return value(in.metrics.SpansIn)+value(in.metrics.DroppedSpans.WithLabelValues("too_late")) >= float64(truth.Spans) && tr == 0
	})
	if maxHeld > cfg.MaxTracesInFlight+partitions {
		t.Errorf("held %d traces, budget %d", maxHeld, cfg.MaxTracesInFlight)
	}
	if !paused {
		t.Error("fetching never paused")
	}
	best := map[string]int{}
	for _, m := range consume(t, brokers, "traces", partitions, 3*time.Second, func([]kafka.Message) bool { return false }) {
		tr, err := assembledpb.Decode(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		best[tr.Trace.TraceID.String()] = max(best[tr.Trace.TraceID.String()], int(tr.Version))
	}
	sum := 0
	for _, n := range best {
		sum += n
	}
	tooLate := int(value(in.metrics.DroppedSpans.WithLabelValues("too_late")))
	if sum+tooLate != truth.Spans {
		t.Errorf("%d spans in best versions + %d dropped too late != %d spans", sum, tooLate, truth.Spans)
	}
	t.Logf("max held %d traces, %d spans in best versions, %d too late", maxHeld, sum, tooLate)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// keepGC restores the collector's settings (GOGC and the memory limit)
// when tb ends, and returns them.
func keepGC(tb testing.TB) (gcPercent int, memLimit int64) {
	gcPercent, memLimit = debug.SetGCPercent(-1), debug.SetMemoryLimit(-1)
	debug.SetGCPercent(gcPercent)
	tb.Cleanup(func() {
		debug.SetGCPercent(gcPercent)
		debug.SetMemoryLimit(memLimit)
	})
	return gcPercent, memLimit
}

func TestTuneGC(t *testing.T) {
	gcPercent, memLimit := keepGC(t)
	cfg := DefaultConfig()
	cfg.MaxBytesInFlight = 64 << 20
	for _, env := range []string{"GOGC", "GOMEMLIMIT"} {
		lookup := func(k string) (string, bool) { return "50", k == env }
		if _, _, ok := TuneGC(cfg, lookup); ok {
			t.Errorf("with %s set, TuneGC changed the collector", env)
		}
	}
	none := func(string) (string, bool) { return "", false }
	gogc, limit, ok := TuneGC(cfg, none)
	if !ok || gogc != GCPercent || limit != 2*cfg.MaxBytesInFlight+512<<20 {
		t.Fatalf("TuneGC = %d, %d, %v", gogc, limit, ok)
	}
	if got := debug.SetGCPercent(gcPercent); got != GCPercent {
		t.Errorf("GOGC is %d, want %d", got, GCPercent)
	}
	if got := debug.SetMemoryLimit(memLimit); got != limit {
		t.Errorf("memory limit is %d, want %d", got, limit)
	}
}
