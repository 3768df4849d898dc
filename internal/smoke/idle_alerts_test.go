package smoke

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
	"github.com/tracepipe/tracepipe/internal/testenv"
)

// alertExprs returns the expression of every alerting rule of a rule file
// (an "expr: |" block or a one-line expr), by alert name.
func alertExprs(t *testing.T, file string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	indent := func(s string) int { return len(s) - len(strings.TrimLeft(s, " ")) }
	out := map[string]string{}
	lines := strings.Split(string(b), "\n")
	alert := ""
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if m := alertRE.FindStringSubmatch(line); m != nil {
			alert = m[1]
			continue
		}
		if strings.HasPrefix(strings.TrimSpace(line), "- record:") {
			alert = ""
			continue
		}
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "expr:")
		if !ok || alert == "" {
			continue
		}
		rest = strings.TrimSpace(rest)
		if rest != "|" && rest != "|-" {
			out[alert] = rest
			continue
		}
		var expr []string
		for i+1 < len(lines) && (strings.TrimSpace(lines[i+1]) == "" || indent(lines[i+1]) > indent(line)) {
			i++
			expr = append(expr, strings.TrimSpace(lines[i]))
		}
		out[alert] = strings.TrimSpace(strings.Join(expr, " "))
	}
	return out
}

// restrict adds the label matcher m to every tracepipe_* and up selector of a
// PromQL expression, so it sees only the series of this test's targets
// (the Prometheus is shared).
func restrict(expr, m string) string {
	sel := regexp.MustCompile(`\b(?:tracepipe_[a-z0-9_]+|up)\b(\{)?`)
	return sel.ReplaceAllStringFunc(expr, func(s string) string {
		if strings.HasSuffix(s, "{") {
			return s + m + ", "
		}
		return s + "{" + m + "}"
	})
}

func TestRestrict(t *testing.T) {
	m := `testenv_target="a"`
	cases := []struct{ in, want string }{
		{`tracepipe_x`, `tracepipe_x{testenv_target="a"}`},
		{`rate(tracepipe_x_total[5m])`, `rate(tracepipe_x_total{testenv_target="a"}[5m])`},
		{`tracepipe_x{stage="s"} > 0 and on (stage) time() - tracepipe_y`, `tracepipe_x{testenv_target="a", stage="s"} > 0 and on (stage) time() - tracepipe_y{testenv_target="a"}`},
		{`a / tracepipe_b{} `, `a / tracepipe_b{testenv_target="a", } `},
		{`sum by (job) (up{job=~"tracepipe-.+"}) == 0`, `sum by (job) (up{testenv_target="a", job=~"tracepipe-.+"}) == 0`},
		{`update_x`, `update_x`},
	}
	for _, c := range cases {
		if got := restrict(c.in, m); got != c.want {
			t.Errorf("restrict(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	got := alertExprs(t, filepath.Join(rulesDir, "tracepipe-rules.yml"))["TracepipeConsumerStalled"]
	want := "max by (stage, topic, partition) (tracepipe_kafka_consumer_lag) > 0 and on (stage, topic, partition) time() - max by (stage, topic, partition) (tracepipe_kafka_last_commit_timestamp_seconds) > 600"
	if got != want {
		t.Errorf("alertExprs: TracepipeConsumerStalled = %q, want %q", got, want)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestAlertsQuietOnIdlePipeline runs the consuming stages as separate
// binaries (ingester, indexer, aggregator) on the real Kafka and search
// engine, scraped by the real Prometheus, publishes a workload with
// `tracepipe gen`, and once the traffic has stopped checks the issue's
// complaint: every stage's consumer lag as Kafka sees it
// (tracepipe_kafka_consumer_lag: log end − committed offset) returns to 0,
// and then no alert expression of deploy/prometheus/tracepipe-rules.yml
// matches anything of this pipeline — an idle, healthy pipeline fires none.
func TestAlertsQuietOnIdlePipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	brokers := strings.Join(testenv.KafkaBrokers(t), ",")
	esURL := testenv.Elasticsearch(t)
	prom := testenv.Prometheus(t)
	bin := testenv.Build(t, "github.com/tracepipe/tracepipe/cmd/tracepipe", "github.com/tracepipe/tracepipe/cmd/ingester",
		"github.com/tracepipe/tracepipe/cmd/indexer", "github.com/tracepipe/tracepipe/cmd/aggregator")

	name := testenv.Name(t, "idle")
	spans, traces := name+"-spans", name+"-traces"
	t.Cleanup(func() { deleteESPrefix(t, esURL, name) })
	addrs := map[string]string{"ingester": freeAddr(t), "indexer": freeAddr(t), "aggregator": freeAddr(t)}
	daemon := func(bin string, args ...string) {
		t.Helper()
		p := testenv.StartProcess(t, filepath.Base(bin), bin, nil, args...)
		t.Cleanup(func() {
			p.Signal(os.Interrupt)
			if err := p.Wait(60 * time.Second); err != nil {
				t.Errorf("%s: %v\n%s", p.Name, err, p.Output())
			}
		})
	}
	daemon(filepath.Join(bin, "ingester"), "--kafka-brokers", brokers, "--spans-topic", spans, "--traces-topic", traces,
		"--group", name+"-ingester", "--create-topics", "4", "--metrics-addr", addrs["ingester"], "--idle-timeout", "2s",
		"--session-timeout", "6s")
	daemon(filepath.Join(bin, "indexer"), "--kafka-brokers", brokers, "--topic", traces, "--group", name+"-indexer",
		"--es-url", esURL, "--index-prefix", name, "--metrics-addr", addrs["indexer"], "--session-timeout", "6s", "--log-level", "warn")
	daemon(filepath.Join(bin, "aggregator"), "--kafka-brokers", brokers, "--traces-topic", traces, "--group", name+"-agg",
		"--reduce-group", name+"-reduce", "--partials-topic", name+"-partials", "--partials-partitions", "4",
		"--es-url", esURL, "--index-prefix", name, "--metrics-addr", addrs["aggregator"], "--index-traces=false",
		"--idle-timeout", "2s", "--session-timeout", "6s", "--log-level", "warn")
	var targets []string
	for stage, addr := range addrs {
		targets = append(targets, prom.AddTarget(t, addr, map[string]string{"component": stage}))
	}
	sort.Strings(targets)
	mine := fmt.Sprintf(`testenv_target=~%q`, strings.Join(targets, "|"))

	genCtx, genCancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer genCancel()
	out, err := exec.CommandContext(genCtx, filepath.Join(bin, "tracepipe"), "gen", "--kafka-brokers", brokers, "--spans-topic", spans, "--partitions", "4",
		"--traces", "300", "--start", time.Now().Add(-5*time.Minute).UTC().Format(time.RFC3339), "--interval", "1s").CombinedOutput()
	if err != nil {
		t.Fatalf("tracepipe gen: %v\n%s", err, out)
	}
	stopped := time.Now()
	t.Logf("traffic published: %s", strings.TrimSpace(string(out)))

	// Every stage of the pipeline reports lag 0 for every partition it
	// consumes (and reports at all: four stages, two topics).
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	stages := []string{"aggregator-map", "aggregator-reduce", "indexer", "ingester"}
	lagQuery := restrict(`max by (stage) (tracepipe_kafka_consumer_lag)`, mine)
	var last string
	for {
		got, err := prom.Query(ctx, lagQuery)
		lag := map[string]float64{}
		for _, s := range got {
			lag[s.Metric["stage"]] = s.Value
		}
		last = fmt.Sprintf("%v (err %v)", lag, err)
		done := err == nil
		for _, st := range stages {
			v, ok := lag[st]
			done = done && ok && v == 0
		}
		if done {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("consumer lag never returned to 0 for every stage after the traffic stopped; last max lag by stage: %s", last)
		case <-time.After(2 * time.Second):
		}
	}
	t.Logf("consumer lag of every stage is 0 %v after the traffic stopped (Prometheus scrapes every second)", time.Since(stopped).Round(time.Second))

	// Nothing fires: every alert expression is empty for this pipeline.
	exprs := alertExprs(t, filepath.Join(rulesDir, "tracepipe-rules.yml"))
	if len(exprs) < 20 {
		t.Fatalf("read %d alert expressions; the parser no longer understands the rule file", len(exprs))
	}
	for alert, expr := range exprs {
		q := restrict(expr, mine)
		got, err := prom.Query(ctx, q)
		if err != nil {
			t.Errorf("%s: %v", alert, err)
			continue
		}
		if len(got) > 0 {
			t.Errorf("%s matches on an idle, healthy pipeline: %v\n%s", alert, got, q)
		}
	}
	// The alerts' inputs were there: every stage is a live group member.
	members, err := prom.Query(ctx, restrict(`sum by (stage) (tracepipe_kafka_group_member)`, mine))
	if err != nil || len(members) != len(stages) {
		t.Fatalf("group members by stage: %v, %v; want one series for each of %v", members, err, stages)
	}
	for _, m := range members {
		if m.Value != 1 {
			t.Errorf("stage %s: %v live members, want 1", m.Metric["stage"], m.Value)
		}
	}
}

// TestAlertsFireOnBrokenPipeline is the other half: real indexer binaries
// in trouble, scraped by the real Prometheus, match the alert expressions
// meant for them — one waits for a traces topic that does not exist (never
// a group member: TracepipeNotGroupMember), one reads messages that are
// not assembled traces (skipped as undecodable: TracepipeIndexerDroppedTraces)
// and commits past them (so it is not stalled).
func TestAlertsFireOnBrokenPipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	brokers := testenv.KafkaBrokers(t)
	prom := testenv.Prometheus(t)
	bin := testenv.Build(t, "github.com/tracepipe/tracepipe/cmd/indexer")
	name := testenv.Name(t, "broken")
	traces := name + "-traces"
	kafkatest.CreateTopic(t, brokers, traces, 2)

	dir := t.TempDir()
	addrs := map[string]string{"waiting": freeAddr(t), "garbage": freeAddr(t)}
	topics := map[string]string{"waiting": name + "-missing", "garbage": traces}
	var targets []string
	for _, which := range []string{"waiting", "garbage"} {
		p := testenv.StartProcess(t, "indexer-"+which, filepath.Join(bin, "indexer"), nil,
			"--kafka-brokers", strings.Join(brokers, ","), "--topic", topics[which], "--group", name+"-"+which,
			"--store", filepath.Join(dir, which, "traces.db"), "--metrics-addr", addrs[which], "--session-timeout", "6s")
		t.Cleanup(func() {
			p.Signal(os.Interrupt)
			if err := p.Wait(60 * time.Second); err != nil {
				t.Errorf("%s: %v\n%s", p.Name, err, p.Output())
			}
		})
		targets = append(targets, prom.AddTarget(t, addrs[which], map[string]string{"component": "indexer-" + which}))
	}
	mine := fmt.Sprintf(`testenv_target=~%q`, strings.Join(targets, "|"))
	exprs := alertExprs(t, filepath.Join(rulesDir, "tracepipe-rules.yml"))

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// The garbage arrives once Prometheus has seen the drop counter at 0,
	// as in a running deployment (increase() needs the counter's rise).
	seen := restrict(`tracepipe_indexer_dropped_total{reason="decode"} == 0`, mine)
	for {
		got, err := prom.Query(ctx, seen)
		if err == nil && len(got) == 2 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("Prometheus never scraped both indexers: %v, %v", got, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
	kafkatest.Produce(t, brokers, traces, kafkatest.Messages("not a trace ", 5)...)

	want := map[string]string{ // alert: a label set it must match, as "k=v"
		"TracepipeNotGroupMember":       "stage=indexer",
		"TracepipeIndexerDroppedTraces": "reason=decode",
	}
	for alert, label := range want {
		k, v, _ := strings.Cut(label, "=")
		q := restrict(exprs[alert], mine)
		for {
			got, err := prom.Query(ctx, q)
			if err == nil && len(got) == 1 && got[0].Metric[k] == v {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s never matched the broken indexers (want one series with %s); last %v, %v\n%s", alert, label, got, err, q)
			case <-time.After(time.Second):
			}
		}
	}
	// The garbage is committed past: the lag returns to 0 and nothing is
	// stalled or failing. (Until that commit, the stalled expression does
	// match, as a partition with lag and no commit yet has a last commit
	// time of 0; the alert's for: 5m is what tells a stall from a moment.)
	for _, alert := range []string{"TracepipeConsumerStalled", "TracepipeConsumerLagHigh", "TracepipeCommitsFailing"} {
		q := restrict(exprs[alert], mine)
		for {
			got, err := prom.Query(ctx, q)
			if err == nil && len(got) == 0 {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s still matches after the indexer committed past the garbage: %v, %v", alert, got, err)
			case <-time.After(time.Second):
			}
		}
	}
}
