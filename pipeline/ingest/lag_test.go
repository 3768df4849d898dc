package ingest

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/tracegen"
	"github.com/tracepipe/tracepipe/wire"
	"github.com/tracepipe/tracepipe/wire/assembledpb"
)

// TestCommitReachesEndWhileRetaining (issue 14): with traffic stopped, the
// committed offset — the lag kafka-consumer-groups shows — reaches the log
// end once the traces are emitted and acknowledged, although they are
// still retained for late spans (a long late horizon); after a clean
// shutdown too. A restart re-reads from the commit's lookback without
// re-emitting anything (the retained traces are rebuilt as already
// emitted), and a late span after the restart still makes a complete new
// version of its trace.
func TestCommitReachesEndWhileRetaining(t *testing.T) {
	const partitions = 2
	testCommitReachesEnd(t, newCluster(t, partitions, "spans", "traces", "dlq"), partitions, "spans", "traces", "dlq", "ingester-test")
}

// TestCommitReachesEndOnRealKafka is TestCommitReachesEndWhileRetaining on
// the real broker: the offsets kafka-consumer-groups reads.
func TestCommitReachesEndOnRealKafka(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	const partitions = 2
	spans, traces, dlq, group := testenv.Name(t, "spans"), testenv.Name(t, "traces"), testenv.Name(t, "dlq"), testenv.Name(t, "group")
	for _, topic := range []string{spans, traces, dlq} {
		kafkatest.CreateTopic(t, brokers, topic, partitions)
	}
	testCommitReachesEnd(t, brokers, partitions, spans, traces, dlq, group)
}

func testCommitReachesEnd(t *testing.T, brokers []string, partitions int, spansTopic, tracesTopic, dlqTopic, group string) {
	w := tracegen.Generate(tracegen.Config{Seed: 8, Traces: 40})
	order := w.Order()
	late := order[len(order)-1] // held back: it arrives after the restart
	enc, _ := tracegen.EncoderFor(wire.JaegerProto)
	msgs, err := tracegen.Messages(order[:len(order)-1], wire.JaegerProto, enc, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	produce(t, brokers, spansTopic, msgs)
	truth := w.Truth()

	cfg := testConfig(brokers)
	cfg.SpansTopic, cfg.TracesTopic, cfg.DLQTopic, cfg.Group = spansTopic, tracesTopic, dlqTopic, group
	cfg.LateHorizon = 10 * time.Minute // retained throughout the test
	start := func() (*Ingester, func()) {
		in, err := New(cfg, Options{Registry: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- in.Run(ctx) }()
		return in, func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
	ends := partitionEnds(t, brokers, spansTopic, partitions)
	atEnd := func() bool {
		c := committed(t, brokers, cfg.Group, spansTopic, partitions)
		for p, end := range ends {
			if c[p] != end {
				return false
			}
		}
		return true
	}
	in, stop := start()
	began := time.Now()
	waitFor(t, 30*time.Second, atEnd)
	t.Logf("committed offsets at the log end %v after start (idle timeout %v)", time.Since(began).Round(time.Millisecond), cfg.IdleTimeout)
	if v := value(in.metrics.InFlightTraces); v == 0 {
		t.Fatal("no trace retained: the test proves nothing")
	}
	outputs := func() int {
		return len(consume(t, brokers, tracesTopic, partitions, 3*time.Second, func([]kafka.Message) bool { return false }))
	}
	before := outputs()
	stop()
	if !atEnd() {
		t.Fatalf("after a clean shutdown committed %v, want the ends %v", committed(t, brokers, cfg.Group, spansTopic, partitions), ends)
	}

	// Restart: nothing new comes out until the late span.
	in2, stop2 := start()
	defer stop2()
	waitFor(t, 30*time.Second, func() bool { return in2.Healthy() && value(in2.metrics.Messages) >= 1 })
	time.Sleep(2 * cfg.IdleTimeout)
	if n := outputs(); n != before {
		t.Fatalf("the restart emitted %d new versions of settled traces", n-before)
	}
	lateMsg, err := tracegen.Messages([]*model.Span{late}, wire.JaegerProto, enc, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	produce(t, brokers, spansTopic, lateMsg)
	id := late.TraceID.String()
	got := consume(t, brokers, tracesTopic, partitions, 30*time.Second, func(ms []kafka.Message) bool {
		tr, err := assembledpb.Decode(ms[len(ms)-1].Value)
		return err == nil && tr.Trace.TraceID.String() == id && len(tr.Trace.Spans) == truth.TraceSpans[id]
	})
	tr, _ := assembledpb.Decode(got[len(got)-1].Value)
	if tr == nil || tr.Trace.TraceID.String() != id || len(tr.Trace.Spans) != truth.TraceSpans[id] {
		t.Fatalf("no complete version of trace %s after its late span", id)
	}
}
