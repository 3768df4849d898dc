// Package e2e runs tracepipe's separate binaries as an operator would,
// against the real services of deploy/local/services.sh: `tracepipe gen` →
// Kafka → `ingester` → Kafka → `aggregator` → Elasticsearch → `tracepipe
// query`.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/internal/testenv"
)

// daemon starts a long-running command, stopped with SIGINT (then killed)
// when the test ends; its output is logged if the test failed.
func daemon(t *testing.T, bin string, args ...string) {
	t.Helper()
	p := testenv.StartProcess(t, filepath.Base(bin), bin, nil, args...)
	t.Cleanup(func() {
		p.Signal(os.Interrupt)
		switch err := p.Wait(60 * time.Second); {
		case err == testenv.ErrStillRunning:
			t.Errorf("%s did not stop within 60s of SIGINT", p.Name)
		case err != nil:
			t.Errorf("%s exited with %v", p.Name, err)
		}
	})
}

// output runs bin to completion and returns its standard output, or an
// error carrying its standard error.
func output(bin string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		return nil, fmt.Errorf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, stderr)
	}
	return out, nil
}

func run(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	out, err := output(bin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type truth struct {
	Traces     int
	Spans      int
	Operations []struct {
		Service, Operation string
		Count, Errors      int64
	}
}

type bottleneck struct {
	Service, Operation string
	Count, Errors      int64
	Traces             int64
	Share              float64
}

type rollup struct {
	Count, Errors int64
}

// TestChain is the "done": the whole chain on real Kafka and the
// real search engine, where `tracepipe query bottlenecks` names the
// operation that the generator made slow, and every operation's stored
// counts equal the generator's ground truth.
func TestChain(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	brokers := strings.Join(testenv.KafkaBrokers(t), ",")
	esURL := testenv.Elasticsearch(t)
	bin := testenv.Build(t, "github.com/tracepipe/tracepipe/cmd/tracepipe",
		"github.com/tracepipe/tracepipe/cmd/ingester", "github.com/tracepipe/tracepipe/cmd/aggregator")
	tp, ingester, aggregator := filepath.Join(bin, "tracepipe"), filepath.Join(bin, "ingester"), filepath.Join(bin, "aggregator")

	name := testenv.Name(t, "chain")
	prefix := strings.ReplaceAll(name, "_", "-")
	spans, traces := name+"-spans", name+"-traces"
	daemon(t, ingester, "--kafka-brokers", brokers, "--spans-topic", spans, "--traces-topic", traces,
		"--group", name+"-ingester", "--create-topics", "4", "--metrics-addr", "", "--idle-timeout", "2s",
		"--session-timeout", "6s")
	daemon(t, aggregator, "--kafka-brokers", brokers, "--traces-topic", traces, "--group", name+"-agg",
		"--reduce-group", name+"-reduce", "--partials-topic", name+"-partials", "--partials-partitions", "4",
		"--es-url", esURL, "--index-prefix", prefix, "--dimensions", "shard,client", "--metrics-addr", "",
		"--idle-timeout", "2s", "--session-timeout", "6s", "--log-level", "warn")

	// 2000 requests over the last ~17 minutes, inventory Reserve 20× slower.
	start := time.Now().Add(-20 * time.Minute).UTC().Truncate(time.Second)
	truthFile := filepath.Join(t.TempDir(), "truth.json")
	out := run(t, tp, "gen", "--kafka-brokers", brokers, "--spans-topic", spans, "--partitions", "4",
		"--traces", "2000", "--slow", "inventory:Reserve:20", "--start", start.Format(time.RFC3339),
		"--interval", "500ms", "--truth", truthFile)
	t.Logf("%s", bytes.TrimSpace(out))
	var want truth
	b, err := os.ReadFile(truthFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatalf("truth: %v", err)
	}

	backend := []string{"--es-url", esURL, "--index-prefix", prefix, "--format", "json"}
	// While the stages create their indices, a query may fail (a shard
	// not yet active): that is "not yet", and reported if it lasts.
	query := func(args ...string) ([]byte, error) {
		return output(tp, append(append([]string{"query"}, args...), backend...)...)
	}
	began := time.Now()
	deadline := began.Add(4 * time.Minute)
	var last string
	for {
		last = chainCheck(query, &want)
		if last == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the chain never matched the ground truth: %s", last)
		}
		time.Sleep(3 * time.Second)
	}
	t.Logf("stored statistics equal the ground truth %v after the workload was published", time.Since(began).Round(time.Second))
}

// chainCheck returns "" when the stored statistics match want, else what
// differs.
func chainCheck(query func(...string) ([]byte, error), want *truth) string {
	var bn struct{ Bottlenecks []bottleneck }
	out, err := query("bottlenecks", "--since", "2h", "--limit", "1000")
	if err != nil {
		return err.Error()
	}
	if err := json.Unmarshal(out, &bn); err != nil {
		return fmt.Sprintf("bottlenecks: %v", err)
	}
	if len(bn.Bottlenecks) == 0 {
		return "no bottlenecks yet"
	}
	if top := bn.Bottlenecks[0]; top.Service != "inventory" || top.Operation != "Reserve" {
		return fmt.Sprintf("top bottleneck is %s %s (share %.3f), want inventory Reserve", top.Service, top.Operation, top.Share)
	}
	got := map[string]bottleneck{}
	for _, b := range bn.Bottlenecks {
		got[b.Service+" "+b.Operation] = b
	}
	for _, op := range want.Operations {
		g := got[op.Service+" "+op.Operation]
		if g.Count != op.Count || g.Errors != op.Errors {
			return fmt.Sprintf("bottlenecks: %s %s count/errors %d/%d, want %d/%d", op.Service, op.Operation, g.Count, g.Errors, op.Count, op.Errors)
		}
	}
	// The aggregator's rollups (1-minute windows and their 1-hour merges)
	// count the slow operation exactly too.
	for _, res := range []string{"1m", "1h"} {
		var rs struct{ Rollups []rollup }
		out, err := query("rollups", "--service", "inventory", "--operation", "Reserve", "--resolution", res, "--since", "3h")
		if err != nil {
			return err.Error()
		}
		if err := json.Unmarshal(out, &rs); err != nil {
			return fmt.Sprintf("rollups: %v", err)
		}
		var n int64
		for _, r := range rs.Rollups {
			n += r.Count
		}
		for _, op := range want.Operations {
			if op.Service == "inventory" && op.Operation == "Reserve" && n != op.Count {
				return fmt.Sprintf("%s rollups of inventory Reserve count %d, want %d", res, n, op.Count)
			}
		}
	}
	return ""
}
