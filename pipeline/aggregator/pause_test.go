package aggregator

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/pipeline/aggregator/rollup/rolluptest"
	"github.com/tracepipe/tracepipe/storage/elasticsearch"
)

// TestIntegrationPausedAggregator is issue 17's schedule on real Kafka and
// the real search engine: two aggregator processes in one group; one is
// paused (SIGSTOP: a long GC pause, a VM freeze) from just before the end
// of the workload for longer than the session timeout, so the other takes
// over its partitions and writes exact rollups; the paused one is resumed
// and SIGKILLed 0.3 s later, and not restarted. Whatever the resumed
// process does in those 0.3 s (its reducers find their generation ended,
// its flush timers fire), every 1m/5m/15m rollup and edge rollup must still
// equal the generator's truth, at every check for some seconds after.
func TestIntegrationPausedAggregator(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	start := time.Now()
	brokers := testenv.KafkaBrokers(t)
	esURL := testenv.Elasticsearch(t)
	bin := filepath.Join(testenv.Build(t, "github.com/tracepipe/tracepipe/cmd/aggregator"), "aggregator")

	topic := testenv.Name(t, "traces")
	prefix := strings.ReplaceAll(testenv.Name(t, "pause"), "_", "-")
	kafkatest.CreateTopic(t, brokers, topic, 4)
	store, err := elasticsearch.New(context.Background(), elasticsearch.Config{URLs: []string{esURL}, IndexPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()

	msgs := rolluptest.Generate(17, rolluptest.DefaultOptions(500, time.Now()))
	cfg := testConfig(brokers, topic)
	cfg.Stats.Dimensions = []string{"client"}
	exp := rolluptest.Expect(cfg.Stats, msgs)
	t.Logf("ground truth: %d rollups", len(exp.Want))

	a, b := startAggregatorPair(t, bin, brokers, topic, esURL, prefix)

	t.Logf("both joined after %v", time.Since(start).Round(100*time.Millisecond))

	// Stream the workload so that both are busy, and pause a just before
	// the end.
	cut := len(msgs) * 9 / 10
	for i := 0; i < cut; i += 50 {
		produce(t, brokers, topic, msgs[i:min(i+50, cut)])
		time.Sleep(100 * time.Millisecond)
	}
	if err := a.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	produce(t, brokers, topic, msgs[cut:])
	waitES(t, exp, store, time.Minute)
	if d := time.Since(paused); d < session+time.Second {
		time.Sleep(session + time.Second - d)
	}
	t.Logf("paused for %v; b took over and wrote exact rollups", time.Since(paused).Round(100*time.Millisecond))

	if err := a.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	kill(t, a)
	killed := time.Now()

	// Whatever a wrote in its last 0.3 s has landed by now; b keeps running
	// and must not need to repair anything.
	for i := 0; i < 3; i++ {
		time.Sleep(time.Second)
		if err := checkES(exp, store); err != nil {
			t.Fatalf("%v after a was resumed and killed: %v", time.Since(killed).Round(100*time.Millisecond), err)
		}
	}
	t.Logf("rollups stayed exact after the paused process resumed and died (test took %v)", time.Since(start).Round(time.Second))
	if strings.Contains(a.Output(), "reduce: commit failed") {
		t.Logf("note: a's commit failed after resuming (its generation was lost)")
	}
	stop(t, b)
}

// session is the session timeout of startAggregatorPair's aggregators, the
// broker's minimum.
const session = 6 * time.Second

// startAggregatorPair starts two aggregator processes of one group reading
// topic and writing to the Elasticsearch at esURL under prefix (1m windows,
// 5m and 15m coarse, 4 partials partitions, session timeout session), and
// waits until both own reduce partitions.
func startAggregatorPair(t *testing.T, bin string, brokers []string, topic, esURL, prefix string) (a, b *testenv.Process) {
	t.Helper()
	group := topic + "-agg"
	args := []string{
		"--kafka-brokers", strings.Join(brokers, ","), "--traces-topic", topic,
		"--group", group, "--partials-topic", topic + "-partials", "--reduce-group", group + "-reduce", "--partials-partitions", "4",
		"--es-url", esURL, "--index-prefix", prefix, "--index-traces=false", "--metrics-addr", "",
		"--window", "1m", "--coarse", "5m,15m", "--retention", "1m", "--dimensions", "client",
		"--dimension-limit", "5", "--exemplars", "3",
		"--flush-interval", "200ms", "--coarse-interval", "1s", "--checkpoint-interval", "1s",
		"--idle-timeout", "2s", "--session-timeout", session.String(), "--log-level", "info",
	}
	a = testenv.StartProcess(t, "aggregator-a", bin, nil, args...)
	b = testenv.StartProcess(t, "aggregator-b", bin, nil, args...)
	waitOutput(t, 30*time.Second, func() bool {
		return holdsReducePartitions(a.Output()) && holdsReducePartitions(b.Output())
	})
	return a, b
}

// holdsReducePartitions reports whether an aggregator's log shows it
// joined the reduce group with partitions.
func holdsReducePartitions(out string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "msg=generation") && strings.Contains(l, "stage=aggregator-reduce") && !strings.Contains(l, "partitions=0") {
			return true
		}
	}
	return false
}

func waitOutput(t *testing.T, within time.Duration, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); !ok(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not ready within %v", within)
		}
	}
}

// checkES compares every stored rollup and edge rollup with the truth once.
func checkES(exp *rolluptest.Expected, store *elasticsearch.Store) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := store.Refresh(ctx); err != nil {
		return fmt.Errorf("refresh: %w", err)
	}
	got, err := exp.Fetch(ctx, store)
	if err != nil {
		return fmt.Errorf("read rollups: %w", err)
	}
	edges, err := exp.FetchEdges(ctx, store)
	if err != nil {
		return fmt.Errorf("read edge rollups: %w", err)
	}
	return exp.Check(got, edges)
}
