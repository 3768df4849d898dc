package aggregator

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/pipeline/aggregator/rollup/rolluptest"
	tpkafka "github.com/tracepipe/tracepipe/pipeline/kafka"
	"github.com/tracepipe/tracepipe/storage/embedded"
)

// lag is what kafka-consumer-groups reports: per partition, log end minus
// the committed offset (the whole end when nothing is committed).
func lag(t testing.TB, brokers []string, group, topic string, n int) (total int64, per string) {
	t.Helper()
	ad, err := tpkafka.NewAdmin(tpkafka.ClientConfig{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer ad.Close()
	ctx := context.Background()
	for p := range n {
		_, end, err := ad.Offsets(ctx, topic, p)
		if err != nil {
			t.Fatal(err)
		}
		c, err := ad.Committed(ctx, group, topic, p)
		if err != nil {
			t.Fatal(err)
		}
		total += end - max(c.Offset, 0)
		per += fmt.Sprintf(" %d:%d/%d", p, c.Offset, end)
	}
	return total, per
}

// waitLagZero waits until both groups' lag, as the standard tools compute
// it, is 0, and returns how long that took.
func waitLagZero(t testing.TB, brokers []string, cfg Config, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		m, mper := lag(t, brokers, cfg.Group, cfg.TracesTopic, 4)
		r, rper := lag(t, brokers, cfg.ReduceGroup, cfg.PartialsTopic, cfg.PartialsPartitions)
		if m == 0 && r == 0 {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("consumer lag still map %d (%s), reduce %d (%s) after %v", m, mper, r, rper, within)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestLagReturnsToZero (issue #14): once traffic stops, the committed
// offsets of the map and reduce groups reach the log ends — the lag that
// kafka-consumer-groups and lag exporters compute returns to 0 — while
// windows are still in memory; after a clean shutdown they stay there; and
// a restart from those commits still re-reads the windows in memory (the
// re-read start travels in the commit metadata), so re-emitted versions of
// their traces replace instead of counting twice, and the rollups stay
// exact.
func TestLagReturnsToZero(t *testing.T) {
	c := kafkatest.NewCluster(t)
	const topic = "traces"
	c.CreateTopic(t, topic, 4)
	testLagReturnsToZero(t, c.Brokers, topic, time.Second)
}

// TestLagReturnsToZeroRealKafka is TestLagReturnsToZero on the real broker.
func TestLagReturnsToZeroRealKafka(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.Name(t, "traces")
	kafkatest.CreateTopic(t, brokers, topic, 4)
	testLagReturnsToZero(t, brokers, topic, 6*time.Second) // the broker's group.min.session.timeout.ms
}

func testLagReturnsToZero(t *testing.T, brokers []string, topic string, session time.Duration) {
	store, err := embedded.Open(context.Background(), embedded.Options{Path: filepath.Join(t.TempDir(), "db")})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	cfg := testConfig(brokers, topic)
	cfg.SessionTimeout = session
	// Windows stay in memory well beyond the test: a restart must re-read
	// them from below the committed offset.
	cfg.Stats.Retention = time.Hour
	logs := &testenv.SyncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- aggregator log (last 16 KiB):\n%s", tail(logs.String(), 16<<10))
		}
	})
	msgs := rolluptest.Generate(7, rolluptest.DefaultOptions(300, time.Now()))
	half := len(msgs) / 2
	r := startLogged(t, cfg, store, logs)
	produce(t, brokers, topic, msgs[:half])
	waitFor(t, rolluptest.Expect(cfg.Stats, msgs[:half]), store, 60*time.Second)
	took := waitLagZero(t, brokers, cfg, time.Minute)
	t.Logf("lag 0 in both groups %v after the rollups were exact", took.Round(10*time.Millisecond))

	// A clean shutdown keeps it there.
	r.stop(t)
	if m, per := lag(t, brokers, cfg.Group, topic, 4); m != 0 {
		t.Errorf("map lag %d after a clean shutdown (%s)", m, per)
	}
	if n, per := lag(t, brokers, cfg.ReduceGroup, cfg.PartialsTopic, cfg.PartialsPartitions); n != 0 {
		t.Errorf("reduce lag %d after a clean shutdown (%s)", n, per)
	}

	// Restart from commits at the log ends; re-emit a third of the traces
	// already counted (they must replace, not add) and send the rest.
	fmt.Fprintln(logs, "--- restart")
	r = startLogged(t, cfg, store, logs)
	defer r.stop(t)
	produce(t, brokers, topic, msgs[:len(msgs)/3])
	produce(t, brokers, topic, msgs[half:])
	waitFor(t, rolluptest.Expect(cfg.Stats, msgs), store, 60*time.Second)
	took = waitLagZero(t, brokers, cfg, time.Minute)
	t.Logf("after the restart: lag 0 in both groups %v after the rollups were exact", took.Round(10*time.Millisecond))
}
