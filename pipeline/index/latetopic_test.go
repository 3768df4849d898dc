package index

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
	"github.com/tracepipe/tracepipe/internal/testenv"
)

// TestTopicCreatedAfterStart is the stage started on the real broker
// before its topic exists (the ingester creates it later). kafka-go's
// consumer group assigns nothing of a missing topic and never looks again,
// so the stage must wait for the topic before joining; before it did, it
// never read the traces produced later.
func TestTopicCreatedAfterStart(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	cfg := testConfig(brokers)
	cfg.Topic, cfg.Group = testenv.Name(t, "traces"), testenv.Name(t, "indexer")
	var out testenv.SyncBuffer
	w := &flaky{}
	x, err := New(cfg, w, Options{Logger: slog.New(slog.NewTextHandler(&out, nil))})
	if err != nil {
		t.Fatal(err)
	}
	stop := runStage(t, x)
	defer stop()
	// Give the stage time to join (before the fix) or to start waiting.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "waiting for topic "+cfg.Topic) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)

	kafkatest.CreateTopic(t, brokers, cfg.Topic, 1)
	msgs, ids := assembled(t, 20)
	kafkatest.Produce(t, brokers, cfg.Topic, msgs...)
	waitFor(t, 60*time.Second, "every trace written", func() bool {
		_, n, _ := w.state()
		return n == len(ids)
	})
	if !strings.Contains(out.String(), "level=WARN") {
		t.Errorf("the wait was not logged at WARN:\n%s", out.String())
	}
}
