package ingest

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/tracegen"
	"github.com/tracepipe/tracepipe/wire"
)

// TestDropsAreLogged: an empty message, an undecodable one and a span that
// arrives after its trace's late horizon are each counted and logged with
// their reason (before: only counted, and the empty message not even that).
func TestDropsAreLogged(t *testing.T) {
	brokers := newCluster(t, 1, "spans", "traces", "dlq")
	w := tracegen.Generate(tracegen.Config{Seed: 9, Traces: 1})
	enc, _ := tracegen.EncoderFor(wire.JaegerProto)
	msgs, err := tracegen.Messages(w.Order(), wire.JaegerProto, enc, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	produce(t, brokers, "spans", append([]tracegen.Message{{Key: []byte("e")}, {Key: []byte("g"), Value: []byte("\xff\xff not a span")}}, msgs...))

	var logs testenv.SyncBuffer
	cfg := testConfig(brokers)
	cfg.Encoding = wire.Auto
	in, err := New(cfg, Options{Registry: prometheus.NewRegistry(), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
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
	waitFor(t, 30*time.Second, func() bool {
		return value(in.metrics.TracesOut.WithLabelValues("idle")) >= 1 && value(in.metrics.InFlightTraces) == 0
	})
	// The trace was emitted and its late horizon has passed: one more span
	// of it is too late.
	produce(t, brokers, "spans", msgs[:1])
	waitFor(t, 30*time.Second, func() bool {
		return value(in.metrics.DroppedSpans.WithLabelValues("too_late")) >= 1 && strings.Contains(logs.String(), "reason=too-late")
	})
	if v := value(in.metrics.EmptyMessages); v != 1 {
		t.Errorf("empty_messages_total = %v, want 1", v)
	}
	for _, want := range []string{"reason=empty", "reason=dead-letter", "reason=too-late"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no log line with %s:\n%s", want, logs.String())
		}
	}
}
