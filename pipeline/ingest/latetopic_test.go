package ingest

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/tracegen"
	"github.com/tracepipe/tracepipe/wire"
)

// TestSpansTopicCreatedAfterStart is the ingester started on the real
// broker before its spans topic exists (the collector's first produce
// creates it). kafka-go's consumer group assigns nothing of a missing topic
// and never looks again, so the ingester must wait for the topic before
// joining; before it did, it never read the spans produced later.
func TestSpansTopicCreatedAfterStart(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	cfg := testConfig(brokers)
	cfg.SpansTopic, cfg.TracesTopic, cfg.DLQTopic = testenv.Name(t, "spans"), testenv.Name(t, "traces"), testenv.Name(t, "dlq")
	cfg.Group = testenv.Name(t, "ingester")
	kafkatest.CreateTopic(t, brokers, cfg.TracesTopic, 1)
	kafkatest.CreateTopic(t, brokers, cfg.DLQTopic, 1)
	var out testenv.SyncBuffer
	in, err := New(cfg, Options{Registry: prometheus.NewRegistry(), Logger: slog.New(slog.NewTextHandler(&out, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- in.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Error(err)
		}
	}()
	// Give the ingester time to join (before the fix) or to start waiting.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "waiting for topic "+cfg.SpansTopic) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)
	if in.Healthy() {
		t.Error("healthy (a group member) while its topic does not exist")
	}

	kafkatest.CreateTopic(t, brokers, cfg.SpansTopic, 1)
	w := tracegen.Generate(tracegen.Config{Seed: 7, Traces: 20})
	enc, _ := tracegen.EncoderFor(wire.JaegerProto)
	msgs, err := tracegen.Messages(w.Order(), wire.JaegerProto, enc, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	produce(t, brokers, cfg.SpansTopic, msgs)
	want := w.Truth().Spans
	waitFor(t, 60*time.Second, func() bool { return int(value(in.metrics.SpansIn)) == want })
	if !strings.Contains(out.String(), "level=WARN") {
		t.Errorf("the wait was not logged at WARN:\n%s", out.String())
	}
}
