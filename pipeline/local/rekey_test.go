package local

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/tracegen"
	"github.com/tracepipe/tracepipe/wire"
)

// TestRekeyAssemblesUnkeyedOTLP: OTLP protobuf batches mixing spans of many
// traces, unkeyed (what `tracepipe gen --encoding otlp-proto
// --mixed-batches` and the OTel Collector's Kafka exporter send), spread
// over every partition; with RekeyTo every trace is assembled whole (before:
// stored in fragments).
func TestRekeyAssemblesUnkeyedOTLP(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.RekeyTo = "spans-by-trace"
	// The spans of a trace reach the assembling stage from every source
	// partition, re-published by the re-key stage's partitions at their own
	// pace: on a loaded machine one may lag another by more than the idle
	// timeout plus testConfig's 300 ms late horizon, and a trace's last
	// spans would then arrive after it was evicted (dropped as too late).
	cfg.Ingest.LateHorizon = 10 * time.Second
	brokers, stop := start(t, cfg)

	w := tracegen.Generate(tracegen.Config{Seed: 12, Traces: 200})
	enc, err := tracegen.EncoderFor(wire.OTLPProto)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := tracegen.Messages(w.Order(), wire.OTLPProto, enc, 20, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if m.Key != nil {
			t.Fatalf("mixed batch with key %q", m.Key)
		}
	}
	want := map[model.TraceID]int{}
	for _, s := range w.Order() {
		want[s.TraceID]++
	}
	tr := &kafka.Transport{}
	kw := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: cfg.Ingest.SpansTopic, Balancer: &kafka.RoundRobin{},
		Transport: tr, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	if err := tracegen.Publish(context.Background(), kafkatest.Sender(kw), msgs, 0, 500); err != nil {
		t.Fatal(err)
	}
	kw.Close()
	tr.CloseIdleConnections()

	got := readTraces(t, brokers, cfg.Ingest.TracesTopic, cfg.Partitions, want, 90*time.Second)
	whole := 0
	for id, n := range want {
		if a := got[id]; a != nil && len(a.Trace.Spans) == n {
			whole++
		}
	}
	if whole != len(want) {
		t.Errorf("%d of %d traces whole", whole, len(want))
	}
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
}
