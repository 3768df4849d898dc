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
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/pipeline/aggregator/rollup/rolluptest"
	"github.com/tracepipe/tracepipe/storage/elasticsearch"
)

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func kill(t *testing.T, p *testenv.Process) {
	t.Helper()
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s: %v (output: %s)", p.Name, err, tail(p.Output(), 2048))
	}
	if p.Wait(time.Minute) == testenv.ErrStillRunning {
		t.Fatalf("%s still runs a minute after SIGKILL", p.Name)
	}
}

func stop(t *testing.T, p *testenv.Process) {
	t.Helper()
	p.Signal(syscall.SIGTERM)
	switch err := p.Wait(90 * time.Second); {
	case err == testenv.ErrStillRunning:
		t.Fatalf("%s did not stop on SIGTERM", p.Name)
	case err != nil:
		t.Fatalf("%s exited with %v", p.Name, err)
	}
}

// TestIntegration runs the aggregator binary on real Kafka and the real
// search engine: a generated workload with known ground truth, two
// aggregator processes, one killed with SIGKILL mid-stream and restarted,
// re-emitted trace versions, very late traces (rewinds), and then a replay
// from the start with fresh groups. Every rollup equals the ground truth
// each time.
func TestIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	brokers := testenv.KafkaBrokers(t)
	esURL := testenv.Elasticsearch(t)
	bin := filepath.Join(testenv.Build(t, "github.com/tracepipe/tracepipe/cmd/aggregator"), "aggregator")

	topic := testenv.Name(t, "traces")
	prefix := strings.ReplaceAll(testenv.Name(t, "agg"), "_", "-")
	kafkatest.CreateTopic(t, brokers, topic, 8)
	ctx := context.Background()
	store, err := elasticsearch.New(ctx, elasticsearch.Config{URLs: []string{esURL}, IndexPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()

	o := rolluptest.DefaultOptions(3000, time.Now())
	o.VeryLate = 0.02 // later than the retention: rewinds
	msgs := rolluptest.Generate(7, o)
	cfg := testConfig(brokers, topic)
	// One dimension (30 clients over a limit of 5, so overflow is
	// exercised) keeps the ground truth to a few thousand rollups, which the
	// test can read back in seconds even on a loaded machine; the in-process
	// tests cover the three-dimension case.
	cfg.Stats.Dimensions = []string{"client"}
	exp := rolluptest.Expect(cfg.Stats, msgs)
	t.Logf("ground truth: %d rollups", len(exp.Want))

	args := func(group, partials string) []string {
		return []string{
			"--kafka-brokers", strings.Join(brokers, ","), "--traces-topic", topic,
			"--group", group, "--partials-topic", partials, "--reduce-group", group + "-reduce", "--partials-partitions", "4",
			"--es-url", esURL, "--index-prefix", prefix, "--index-traces=false", "--metrics-addr", "",
			"--window", "1m", "--coarse", "5m,15m", "--retention", "1m", "--dimensions", "client",
			"--dimension-limit", "5", "--exemplars", "3",
			"--flush-interval", "200ms", "--coarse-interval", "1s", "--checkpoint-interval", "1s",
			"--idle-timeout", "2s", "--session-timeout", "6s", "--log-level", "warn",
		}
	}
	group, partials := topic+"-agg", topic+"-partials"
	half := len(msgs) / 2
	produce(t, brokers, topic, msgs[:half])
	a := testenv.StartProcess(t, "aggregator-a", bin, nil, args(group, partials)...)
	b := testenv.StartProcess(t, "aggregator-b", bin, nil, args(group, partials)...)
	time.Sleep(8 * time.Second)
	kill(t, a) // SIGKILL mid-stream
	produce(t, brokers, topic, msgs[half:])
	a = testenv.StartProcess(t, "aggregator-a2", bin, nil, args(group, partials)...)
	// An ingester re-emits versions after a crash.
	produce(t, brokers, topic, msgs[:len(msgs)/3])
	waitES(t, exp, store, 3*time.Minute)
	t.Log("first run: rollups equal the ground truth")

	kill(t, b)
	b = testenv.StartProcess(t, "aggregator-b2", bin, nil, args(group, partials)...)
	produce(t, brokers, topic, msgs[len(msgs)/3:len(msgs)/2])
	waitES(t, exp, store, 3*time.Minute)
	stop(t, a)
	stop(t, b)
	t.Log("after another SIGKILL and re-emissions: rollups equal the ground truth")

	// Replay from the start with fresh groups and partials topic, into
	// empty indices so that every rollup must be rebuilt (in the old ones
	// the rollups already equal the truth).
	prefix += "-replay"
	replayStore, err := elasticsearch.New(ctx, elasticsearch.Config{URLs: []string{esURL}, IndexPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer replayStore.Close()
	r := testenv.StartProcess(t, "aggregator-replay", bin, nil, args(group+"-replay", partials+"-replay")...)
	waitES(t, exp, replayStore, 3*time.Minute)
	stop(t, r)
	t.Log("after a replay with fresh groups: rollups equal the ground truth")
}

func waitES(t *testing.T, exp *rolluptest.Expected, store *elasticsearch.Store, within time.Duration) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(within)
	var last error
	lastLog := start
	for time.Now().Before(deadline) {
		// A generous read timeout: under a loaded CI machine the search
		// engine answers the few dozen series queries slowly, and a read
		// that times out tells nothing about the aggregator.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		readStart := time.Now()
		err := store.Refresh(ctx)
		var got map[string]model.Rollup
		var edges map[string]model.EdgeRollup
		if err == nil {
			got, err = exp.Fetch(ctx, store)
		}
		if err == nil {
			edges, err = exp.FetchEdges(ctx, store)
		}
		cancel()
		if err == nil {
			if last = exp.Check(got, edges); last == nil {
				t.Logf("rollups and edge rollups equal the ground truth after %v", time.Since(start).Round(time.Second))
				return
			}
		} else {
			last = fmt.Errorf("read: %w", err)
		}
		if time.Since(lastLog) > 30*time.Second {
			lastLog = time.Now()
			msg := last.Error()
			if i := strings.IndexByte(msg, '\n'); i > 0 {
				msg = msg[:i]
			}
			t.Logf("after %v (last read took %v): %s", time.Since(start).Round(time.Second), time.Since(readStart).Round(time.Millisecond), msg)
		}
		time.Sleep(2 * time.Second)
	}
	t.Fatalf("rollups never matched the ground truth within %v: %v", within, last)
}
