package aggregator

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/pipeline/aggregator/rollup/rolluptest"
	"github.com/tracepipe/tracepipe/storage/embedded"
)

// TestTracesTopicCreatedAfterStart is the aggregator started on the real
// broker before its traces topic exists (the ingester creates it later).
// kafka-go's consumer group assigns nothing of a missing topic and never
// looks again, so the map group must wait for the topic before joining
// (and the reduce group for the partials topic's leaders); before it did,
// it never read the traces produced later and wrote no rollup.
func TestTracesTopicCreatedAfterStart(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.Name(t, "traces")
	cfg := testConfig(brokers, topic)
	cfg.SessionTimeout = 6 * time.Second
	store, err := embedded.Open(context.Background(), embedded.Options{Path: filepath.Join(t.TempDir(), "db")})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	logs := &testenv.SyncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- aggregator log (last 16 KiB):\n%s", tail(logs.String(), 16<<10))
		}
	})
	r := startLogged(t, cfg, store, logs)
	defer r.stop(t)
	// Give the map group time to join (before the fix) or to start waiting.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "waiting for topic "+topic) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)

	kafkatest.CreateTopic(t, brokers, topic, 1)
	msgs := rolluptest.Generate(2, rolluptest.DefaultOptions(100, time.Now()))
	produce(t, brokers, topic, msgs)
	waitFor(t, rolluptest.Expect(cfg.Stats, msgs), store, 60*time.Second)
	if !strings.Contains(logs.String(), "level=WARN") {
		t.Error("the wait was not logged at WARN")
	}
}
