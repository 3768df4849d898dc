package sidebyside

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/tracegen"
	"github.com/tracepipe/tracepipe/wire"
)

// Environment variables read by BenchmarkVersusJaegerV2.
const (
	envEnable  = "TRACEPIPE_BENCH_JAEGER_V2"          // 1: run (else skipped: it builds Jaeger)
	envBinary  = "TRACEPIPE_JAEGER_V2"                // the jaeger binary (default: deploy/local/jaeger-v2.sh builds it)
	envTraces  = "TRACEPIPE_BENCH_SBS_TRACES"         // workload size in traces (default 26,000)
	envPaths   = "TRACEPIPE_BENCH_SBS_PATHS"          // "kafka", "elasticsearch" or both, comma-separated (default both)
	envEngine  = "TRACEPIPE_ES_BENCH"                 // private search engine node for the Elasticsearch path
	envEmbedIx = "TRACEPIPE_BENCH_SBS_AGG_INDEXES"    // 1: the aggregator indexes (--index-traces), no separate indexer
	envRounds  = "TRACEPIPE_BENCH_SBS_ROUNDS"         // rounds per benchmark iteration (default 2)
	envJMetric = "TRACEPIPE_BENCH_SBS_JAEGER_METRICS" // Jaeger's own metrics level (default none; e.g. normal, detailed)
	envJFlags  = "TRACEPIPE_BENCH_SBS_JAEGER_FLAGS"   // more jaeger flags, e.g. --feature-gates=-receiver.kafkareceiver.UseFranzGo
	envWarmup  = "TRACEPIPE_BENCH_SBS_WARMUP"         // 0: no warm-up round on the elasticsearch path
)

// BenchmarkVersusJaegerV2 measures tracepipe and an unmodified Jaeger v2 side
// by side on one workload (issue 16's baselines): tracegen traces (default
// 26,000 ≈ 516,000 spans, TRACEPIPE_BENCH_SBS_TRACES shrinks it) encoded as
// Jaeger protobuf, one span per message keyed by trace ID (Jaeger's Kafka
// format, the "jaeger_proto" encoding of the OpenTelemetry Kafka receiver),
// published once to a new 4-partition topic of the real broker. Each round
// runs both systems, each with fresh consumer groups, topics and indices, in
// alternating order (Jaeger first in odd rounds); TRACEPIPE_BENCH_SBS_ROUNDS
// rounds (default 2) per benchmark iteration: run it with -benchtime 1x.
// Sub-benchmarks, one per path:
//
//   - kafka: Jaeger v2 `jaeger --config` with the kafka receiver → nop
//     exporter (decoded, nothing stored), versus tracepipe's cmd/ingester
//     (assembled, analysed traces written to a traces topic and
//     acknowledged). Done when the system's group has committed the spans
//     topic to its end.
//   - elasticsearch: Jaeger v2 with the kafka receiver → batch processor →
//     jaeger_storage_exporter on an elasticsearch backend (Jaeger's defaults:
//     5 shards, 1 replica, bulk requests of 1,000 actions / 5 MB / 200 ms),
//     versus tracepipe's cmd/ingester → cmd/indexer (spans and trace
//     summaries) and cmd/aggregator (rollups, edges; with
//     TRACEPIPE_BENCH_SBS_AGG_INDEXES=1 the aggregator indexes too and no
//     indexer runs), each with its defaults. Done when every group has
//     committed its input topic to its end and, after a refresh, the engine
//     counts every span document.
//
// Reported per system (jaeger-…, tracepipe-…): CPU-s, the utime+stime of its
// processes from their start to done (/proc/<pid>/stat; start-up and GC
// included); peak-RSS-MiB, the sum of its processes' VmHWM; spans/CPU-s; and
// on the elasticsearch path engine-CPU-s and engine-CPU-µs/span, the search
// engine's JVM CPU (/proc of the pid the node names) from before the start
// until the written data is refreshed and no merge runs, minus its idle CPU
// over that time (measured for 3 s before and after, the smaller rate taken,
// as storage/elasticsearch's BenchmarkEngineCPU does). Every round's figures
// are logged too (-v), for ranges. The elasticsearch path first runs one
// warm-up round of both systems that is not counted (the engine's JIT warms
// up over its first runs; TRACEPIPE_BENCH_SBS_WARMUP=0 skips it).
//
// The engine must run alone for clean engine figures: point TRACEPIPE_ES_BENCH
// at a private node, e.g.
//
//	bash deploy/local/services.sh up kafka && eval "$(bash deploy/local/services.sh env)"
//	TRACEPIPE_SERVICES_DIR=/tmp/bench-es2 TRACEPIPE_ES_PORT=9252 TRACEPIPE_ES_TRANSPORT_PORT=9352 \
//	  bash deploy/local/services.sh up search
//	TRACEPIPE_BENCH_JAEGER_V2=1 TRACEPIPE_ES_BENCH=http://127.0.0.1:9252 \
//	  go test ./internal/sidebyside -run '^$' -bench VersusJaegerV2 -benchtime 1x -timeout 60m -v
//
// Jaeger runs with its logs at warn and its own metrics off (the cheapest
// Jaeger; TRACEPIPE_BENCH_SBS_JAEGER_METRICS=normal or detailed turns them on,
// served on a free port) and the collector's default feature gates (the
// Kafka receiver's franz-go client; TRACEPIPE_BENCH_SBS_JAEGER_FLAGS adds
// flags, e.g. --feature-gates=-receiver.kafkareceiver.UseFranzGo for Sarama).
// TRACEPIPE_BENCH_SBS_PATHS=kafka or =elasticsearch runs one path only.
//
// Without TRACEPIPE_ES_BENCH the elasticsearch path uses TRACEPIPE_ES and says
// that other users' load is included. The jaeger binary is TRACEPIPE_JAEGER_V2,
// else what `bash deploy/local/jaeger-v2.sh` builds (many minutes when cold).
func BenchmarkVersusJaegerV2(b *testing.B) {
	if os.Getenv(envEnable) != "1" {
		b.Skip(envEnable + "=1 is not set: this benchmark builds Jaeger v2 from source (deploy/local/jaeger-v2.sh) and runs it beside tracepipe on the real services; see its comment")
	}
	if os.Getenv(testenv.EnvKafka) == "" {
		b.Skip(testenv.HowToStart)
	}
	brokers := testenv.KafkaBrokers(b)
	jaeger := jaegerBinary(b)
	bins := testenv.Build(b, "github.com/tracepipe/tracepipe/cmd/ingester", "github.com/tracepipe/tracepipe/cmd/indexer",
		"github.com/tracepipe/tracepipe/cmd/aggregator")
	w := publishWorkload(b, brokers)
	b.Logf("workload: %d traces, %d spans in %s (4 partitions, Jaeger protobuf, one span per message)", w.traces, w.spans, w.topic)
	e := env{brokers: brokers, jaeger: jaeger, bins: bins, w: w}

	paths := os.Getenv(envPaths)
	want := func(p string) bool { return paths == "" || strings.Contains(","+paths+",", ","+p+",") }
	if want("kafka") {
		b.Run("kafka", func(b *testing.B) {
			e.rounds(b, nil, e.jaegerKafka, e.tracepipeKafka)
		})
	}
	if want("elasticsearch") {
		b.Run("elasticsearch", func(b *testing.B) {
			url := os.Getenv(envEngine)
			if url == "" {
				url = testenv.Elasticsearch(b)
				b.Logf("%s is not set: measuring the shared engine %s, whose CPU includes other users' load", envEngine, url)
			}
			eng, err := newEngine(url)
			if err != nil {
				b.Fatal(err)
			}
			e.rounds(b, eng, e.jaegerES, e.tracepipeES)
		})
	}
}

// env is what every run needs.
type env struct {
	brokers []string
	jaeger  string // binary
	bins    string // directory of tracepipe's binaries
	w       workload
}

// workload is the published topic.
type workload struct {
	topic         string
	traces, spans int
	ends          map[int]int64
	partitions    int
}

// result is one system's figures of one run.
type result struct {
	cpu    float64 // seconds, its processes
	rss    float64 // bytes, sum of its processes' peaks
	engine float64 // seconds, the engine's CPU less idle (elasticsearch path)
	wall   time.Duration
	detail string
}

type runFunc func(b *testing.B, eng *engine) result

// rounds runs b.N rounds of both systems, alternating their order, and
// reports their figures.
func (e env) rounds(b *testing.B, eng *engine, jaeger, tracepipe runFunc) {
	var sum [2]result
	names := [2]string{"jaeger", "tracepipe"}
	runs := [2]runFunc{jaeger, tracepipe}
	rounds := 2
	if v, err := strconv.Atoi(os.Getenv(envRounds)); err == nil && v > 0 {
		rounds = v
	}
	if eng != nil && os.Getenv(envWarmup) != "0" {
		// The engine's JIT and caches warm up over the first runs on a
		// fresh node (measured: Jaeger's engine CPU 53, 37, 33, 31 s in its
		// first rounds, then steady): one round of both is not counted.
		for k, run := range runs {
			r := run(b, eng)
			b.Logf("warm-up %s (not counted): %.2f CPU-s, engine %.1f CPU-s", names[k], r.cpu, r.engine)
		}
	}
	for i := 0; i < b.N*rounds; i++ {
		order := []int{0, 1}
		if i%2 == 1 {
			order = []int{1, 0}
		}
		for _, k := range order {
			r := runs[k](b, eng)
			line := fmt.Sprintf("round %d %s: %.2f CPU-s (%.0f spans/CPU-s), peak RSS %.1f MiB, wall %v",
				i+1, names[k], r.cpu, float64(e.w.spans)/r.cpu, r.rss/(1<<20), r.wall.Round(100*time.Millisecond))
			if eng != nil {
				line += fmt.Sprintf(", engine %.1f CPU-s (%.1f µs/span)", r.engine, r.engine*1e6/float64(e.w.spans))
			}
			if r.detail != "" {
				line += "; " + r.detail
			}
			b.Log(line)
			sum[k].cpu += r.cpu
			sum[k].rss += r.rss
			sum[k].engine += r.engine
			sum[k].wall += r.wall
		}
	}
	n := float64(b.N * rounds)
	for k, name := range names {
		b.ReportMetric(sum[k].cpu/n, name+"-CPU-s")
		b.ReportMetric(float64(e.w.spans)*n/sum[k].cpu, name+"-spans/CPU-s")
		b.ReportMetric(sum[k].rss/n/(1<<20), name+"-peak-RSS-MiB")
		if eng != nil {
			b.ReportMetric(sum[k].engine/n, name+"-engine-CPU-s")
			b.ReportMetric(sum[k].engine*1e6/n/float64(e.w.spans), name+"-engine-CPU-µs/span")
		}
	}
	b.ReportMetric(sum[1].cpu/sum[0].cpu, "CPU-tracepipe/jaeger")
	if eng != nil {
		b.ReportMetric(sum[1].engine/sum[0].engine, "engine-CPU-tracepipe/jaeger")
	}
	b.ReportMetric(0, "ns/op")
}

// jaegerBinary is TRACEPIPE_JAEGER_V2, else deploy/local/jaeger-v2.sh's build.
func jaegerBinary(b *testing.B) string {
	if p := os.Getenv(envBinary); p != "" {
		return p
	}
	script, err := filepath.Abs("../../deploy/local/jaeger-v2.sh")
	if err != nil {
		b.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command("bash", script)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("bash deploy/local/jaeger-v2.sh: %v\n%s", err, tail(stderr.String()))
	}
	return strings.TrimSpace(string(out))
}

// publishWorkload generates the workload as `tracepipe gen` does (seed 1,
// 10 ms between traces, the last starting now, 50 traces interleaved) and
// publishes it to a new 4-partition topic.
func publishWorkload(b *testing.B, brokers []string) workload {
	n := 26000
	if v, err := strconv.Atoi(os.Getenv(envTraces)); err == nil && v > 0 {
		n = v
	}
	const partitions = 4
	topic := testenv.Name(b, "sbs-spans")
	kafkatest.CreateTopic(b, brokers, topic, partitions)
	start := time.Now().UTC().Add(-time.Duration(n) * 10 * time.Millisecond).Truncate(time.Millisecond)
	gen := tracegen.Generate(tracegen.Config{Seed: 1, Traces: n, Start: start, Interval: 10 * time.Millisecond, Interleave: 50})
	enc, err := tracegen.EncoderFor(wire.JaegerProto)
	if err != nil {
		b.Fatal(err)
	}
	msgs, err := tracegen.Messages(gen.Order(), wire.JaegerProto, enc, 1, false)
	if err != nil {
		b.Fatal(err)
	}
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	kw := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, Balancer: &kafka.Hash{}, Transport: tr,
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, BatchSize: 2000}
	if err := tracegen.Publish(context.Background(), kafkatest.Sender(kw), msgs, 0, 2000); err != nil {
		b.Fatalf("publish the workload: %v", err)
	}
	if err := kw.Close(); err != nil {
		b.Fatal(err)
	}
	w := workload{topic: topic, traces: n, spans: gen.Truth().Spans, partitions: partitions}
	pr := kafkatest.NewProgress(brokers)
	defer pr.Close()
	w.ends = pr.Ends(b, topic, partitions)
	return w
}

// jaegerKafka: kafka receiver → nop exporter.
func (e env) jaegerKafka(b *testing.B, _ *engine) result {
	group := testenv.Name(b, "sbs-jaeger")
	cfg := fmt.Sprintf(`service:
  pipelines:
    traces:
      receivers: [kafka]
      exporters: [nop]
%s%sexporters:
  nop:
`, jaegerTelemetry(b), e.kafkaReceiver(group))
	return e.runJaeger(b, nil, cfg, group, "")
}

// jaegerES: kafka receiver → batch → jaeger_storage_exporter (elasticsearch).
func (e env) jaegerES(b *testing.B, eng *engine) result {
	group := testenv.Name(b, "sbs-jaeger")
	prefix := testenv.Name(b, "sbsj")
	cfg := fmt.Sprintf(`service:
  extensions: [jaeger_storage]
  pipelines:
    traces:
      receivers: [kafka]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
%sextensions:
  jaeger_storage:
    backends:
      es:
        elasticsearch:
          server_urls: [%s]
          indices:
            index_prefix: %s
%sprocessors:
  batch:
exporters:
  jaeger_storage_exporter:
    trace_storage: es
`, jaegerTelemetry(b), eng.url, prefix, e.kafkaReceiver(group))
	return e.runJaeger(b, eng, cfg, group, prefix)
}

// kafkaReceiver is the receivers section: the kafka receiver reading the
// workload's topic as consumer group (and client ID) group.
func (e env) kafkaReceiver(group string) string {
	return fmt.Sprintf(`receivers:
  kafka:
    brokers: [%s]
    client_id: %s
    group_id: %s
    initial_offset: earliest
    traces:
      topic: %s
      encoding: jaeger_proto
`, strings.Join(e.brokers, ", "), group, group, e.w.topic)
}

// jaegerTelemetry is the service.telemetry section: warnings logged, Jaeger's
// own metrics off unless TRACEPIPE_BENCH_SBS_JAEGER_METRICS names a level
// (then served on a free port, as a deployment would scrape them).
func jaegerTelemetry(b *testing.B) string {
	level := os.Getenv(envJMetric)
	if level == "" || level == "none" {
		return "  telemetry:\n    logs:\n      level: warn\n    metrics:\n      level: none\n"
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return fmt.Sprintf("  telemetry:\n    logs:\n      level: warn\n    metrics:\n      level: %s\n      readers:\n"+
		"        - pull:\n            exporter:\n              prometheus:\n                host: 127.0.0.1\n                port: %d\n", level, port)
}

func (e env) runJaeger(b *testing.B, eng *engine, cfg, group, prefix string) result {
	file := filepath.Join(b.TempDir(), "jaeger.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	var r result
	e.measure(b, eng, prefix, &r, func(s *session) {
		s.start(b, "jaeger", e.jaeger, append([]string{"--config", file}, strings.Fields(os.Getenv(envJFlags))...)...)
	}, func(s *session) bool {
		return s.pr.CommittedTo(b, group, e.w.topic, e.w.ends)
	})
	return r
}

// tracepipeKafka: the ingester, spans topic → traces topic.
func (e env) tracepipeKafka(b *testing.B, _ *engine) result {
	group := testenv.Name(b, "sbs-ingester")
	traces, dlq := testenv.Name(b, "sbs-traces"), testenv.Name(b, "sbs-dlq")
	kafkatest.CreateTopic(b, e.brokers, traces, e.w.partitions)
	kafkatest.CreateTopic(b, e.brokers, dlq, 1)
	var r result
	e.measure(b, nil, "", &r, func(s *session) {
		s.start(b, "ingester", filepath.Join(e.bins, "ingester"), e.ingesterArgs(group, traces, dlq)...)
	}, func(s *session) bool {
		return s.pr.CommittedTo(b, group, e.w.topic, e.w.ends)
	})
	return r
}

func (e env) ingesterArgs(group, traces, dlq string) []string {
	return []string{"--kafka-brokers", strings.Join(e.brokers, ","), "--spans-topic", e.w.topic, "--traces-topic", traces,
		"--dlq-topic", dlq, "--group", group, "--encoding", "jaeger-proto", "--metrics-addr", ""}
}

// tracepipeES: ingester → indexer and aggregator → the engine.
func (e env) tracepipeES(b *testing.B, eng *engine) result {
	ig, xg, ag, rg := testenv.Name(b, "sbs-ingester"), testenv.Name(b, "sbs-indexer"), testenv.Name(b, "sbs-agg"), testenv.Name(b, "sbs-reduce")
	traces, dlq, partials, sdlq := testenv.Name(b, "sbs-traces"), testenv.Name(b, "sbs-dlq"), testenv.Name(b, "sbs-partials"), testenv.Name(b, "sbs-sdlq")
	prefix := testenv.Name(b, "sbst")
	for _, t := range []string{traces, partials} {
		kafkatest.CreateTopic(b, e.brokers, t, e.w.partitions)
	}
	kafkatest.CreateTopic(b, e.brokers, dlq, 1)
	kafkatest.CreateTopic(b, e.brokers, sdlq, 1)
	embedded := os.Getenv(envEmbedIx) == "1"
	brokers := strings.Join(e.brokers, ",")
	var r result
	var tracesEnds map[int]int64
	e.measure(b, eng, prefix, &r, func(s *session) {
		s.start(b, "ingester", filepath.Join(e.bins, "ingester"), e.ingesterArgs(ig, traces, dlq)...)
		if !embedded {
			s.start(b, "indexer", filepath.Join(e.bins, "indexer"), "--kafka-brokers", brokers, "--topic", traces,
				"--group", xg, "--es-url", eng.url, "--index-prefix", prefix, "--store-dlq-topic", sdlq,
				"--metrics-addr", "", "--log-level", "warn")
		}
		s.start(b, "aggregator", filepath.Join(e.bins, "aggregator"), "--kafka-brokers", brokers, "--traces-topic", traces,
			"--group", ag, "--reduce-group", rg, "--partials-topic", partials, "--partials-partitions", strconv.Itoa(e.w.partitions),
			"--es-url", eng.url, "--index-prefix", prefix, "--store-dlq-topic", sdlq, "--index-traces="+strconv.FormatBool(embedded),
			"--indexer-group", xg, "--metrics-addr", "", "--log-level", "warn")
	}, func(s *session) bool {
		if tracesEnds == nil {
			if !s.pr.CommittedTo(b, ig, e.w.topic, e.w.ends) {
				return false
			}
			// The ingester acknowledged every trace: the traces topic is complete.
			tracesEnds = s.pr.Ends(b, traces, e.w.partitions)
		}
		return s.pr.CommittedTo(b, xg, traces, tracesEnds) && s.pr.CommittedTo(b, ag, traces, tracesEnds) &&
			s.pr.CommittedTo(b, rg, partials, s.pr.Ends(b, partials, e.w.partitions))
	})
	return r
}

// session is one system's run: its processes and a progress poller.
type session struct {
	procs []*proc
	pr    *kafkatest.Progress
}

type proc struct {
	name string
	cmd  *exec.Cmd
	out  testenv.SyncBuffer
	done chan struct{}
}

func (s *session) start(b *testing.B, name, bin string, args ...string) {
	p := &proc{name: name, cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	s.procs = append(s.procs, p)
}

func (s *session) stop() {
	for _, p := range s.procs {
		p.cmd.Process.Kill()
		<-p.done
	}
}

// exited returns the first process that exited (nil: all run).
func (s *session) exited() *proc {
	for _, p := range s.procs {
		select {
		case <-p.done:
			return p
		default:
		}
	}
	return nil
}

// measure runs one system: it starts the processes (start), polls done every
// 250 ms, reads their CPU and peak RSS, then (with an engine) waits until the
// engine counts every span document under prefix and measures the engine's
// CPU, then stops the processes and deletes prefix's indices.
func (e env) measure(b *testing.B, eng *engine, prefix string, r *result, start func(*session), done func(*session) bool) {
	ctx := context.Background()
	var idle float64
	var e0 time.Duration
	if eng != nil {
		var err error
		if idle, err = eng.idleRate(3 * time.Second); err != nil {
			b.Fatal(err)
		}
		if e0, err = eng.cpu(); err != nil {
			b.Fatal(err)
		}
	}
	s := &session{pr: kafkatest.NewProgress(e.brokers)}
	defer s.pr.Close()
	t0 := time.Now()
	start(s)
	defer s.stop()
	deadline := t0.Add(30 * time.Minute)
	var counted int64
	var committed time.Duration // when every input was committed
	for {
		if p := s.exited(); p != nil {
			b.Fatalf("%s exited early; output:\n%s", p.name, tail(p.out.String()))
		}
		ok := done(s)
		if ok && committed == 0 {
			committed = time.Since(t0)
		}
		if ok && eng != nil {
			// Every input committed: now every span must be searchable.
			n, err := eng.countSpans(ctx, prefix)
			if err != nil {
				b.Logf("count spans: %v", err)
			}
			counted = n
			ok = n >= int64(e.w.spans)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("not done after 30 minutes (%d span documents counted); outputs:\n%s", counted, s.outputs())
		}
		wait := 250 * time.Millisecond
		if eng != nil {
			wait = time.Second // a refresh per count costs the engine too
		}
		time.Sleep(wait)
	}
	r.wall = time.Since(t0)
	var details []string
	for _, p := range s.procs {
		c, rss, err := testenv.ProcUsage(p.cmd.Process.Pid)
		if err != nil {
			b.Fatalf("%s: %v", p.name, err)
		}
		cpu, hwm := c.Seconds(), float64(rss)
		r.cpu += cpu
		r.rss += hwm
		if len(s.procs) > 1 {
			details = append(details, fmt.Sprintf("%s %.2f CPU-s %.0f MiB", p.name, cpu, hwm/(1<<20)))
		}
	}
	s.stop()
	if eng != nil {
		if err := eng.settle(ctx, prefix+"-*"); err != nil {
			b.Fatal(err)
		}
		e1, err := eng.cpu()
		if err != nil {
			b.Fatal(err)
		}
		took := time.Since(t0)
		idle2, err := eng.idleRate(3 * time.Second)
		if err != nil {
			b.Fatal(err)
		}
		r.engine = (e1 - e0).Seconds() - min(idle, idle2)*took.Seconds()
		details = append(details, fmt.Sprintf("inputs committed after %v, %d span documents", committed.Round(100*time.Millisecond), counted))
		if fams, err := eng.families(ctx, prefix); err != nil {
			b.Logf("index stats: %v", err)
		} else {
			details = append(details, "by index family: "+fams)
		}
		if err := eng.deleteIndices(ctx, prefix+"-*"); err != nil {
			b.Logf("delete %s-*: %v", prefix, err)
		}
	}
	r.detail = strings.Join(details, ", ")
}

func (s *session) outputs() string {
	var sb strings.Builder
	for _, p := range s.procs {
		fmt.Fprintf(&sb, "--- %s:\n%s\n", p.name, tail(p.out.String()))
	}
	return sb.String()
}

// engine is the search engine node whose JVM CPU is measured.
type engine struct {
	url string
	pid int
	hc  *http.Client
}

func newEngine(url string) (*engine, error) {
	e := &engine{url: strings.TrimRight(url, "/"), hc: &http.Client{Timeout: 2 * time.Minute}}
	var info struct {
		Nodes map[string]struct {
			Process struct {
				ID int `json:"id"`
			} `json:"process"`
		} `json:"nodes"`
	}
	if err := e.do(context.Background(), http.MethodGet, "/_nodes/process", &info); err != nil {
		return nil, fmt.Errorf("nodes info: %w", err)
	}
	if len(info.Nodes) != 1 {
		return nil, fmt.Errorf("the benchmark wants a single-node engine, %s has %d nodes", url, len(info.Nodes))
	}
	for _, n := range info.Nodes {
		e.pid = n.Process.ID
	}
	if _, err := testenv.ProcCPU(e.pid); err != nil {
		return nil, fmt.Errorf("the engine's process %d is not readable on this host: %w", e.pid, err)
	}
	return e, nil
}

func (e *engine) cpu() (time.Duration, error) {
	return testenv.ProcCPU(e.pid)
}

// idleRate is the engine's CPU per second of wall time over d.
func (e *engine) idleRate(d time.Duration) (float64, error) {
	c0, err := e.cpu()
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	time.Sleep(d)
	c1, err := e.cpu()
	if err != nil {
		return 0, err
	}
	return float64(c1-c0) / float64(time.Since(t0)), nil
}

func (e *engine) do(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, e.url+path, nil)
	if err != nil {
		return err
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, tail(string(body)))
	}
	if out != nil {
		return json.Unmarshal(body, out)
	}
	return nil
}

// countSpans refreshes prefix's span indices and counts their documents.
func (e *engine) countSpans(ctx context.Context, prefix string) (int64, error) {
	pattern := prefix + "-jaeger-span-*"
	if err := e.do(ctx, http.MethodPost, "/"+pattern+"/_refresh", nil); err != nil {
		return 0, err
	}
	var c struct {
		Count int64 `json:"count"`
	}
	err := e.do(ctx, http.MethodGet, "/"+pattern+"/_count", &c)
	return c.Count, err
}

// settle refreshes pattern's indices and waits until no merge runs.
func (e *engine) settle(ctx context.Context, pattern string) error {
	if err := e.do(ctx, http.MethodPost, "/"+pattern+"/_refresh", nil); err != nil {
		return fmt.Errorf("refresh: %w", err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var st struct {
			All struct {
				Total struct {
					Merges struct {
						Current int `json:"current"`
					} `json:"merges"`
				} `json:"total"`
			} `json:"_all"`
		}
		if err := e.do(ctx, http.MethodGet, "/"+pattern+"/_stats/merge", &st); err != nil {
			return fmt.Errorf("merge stats: %w", err)
		}
		if st.All.Total.Merges.Current == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("merges still running after 2 minutes")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// families sums the indexing statistics of prefix's indices per index
// family (the name without its day): documents indexed (every write,
// replacements included), Lucene documents left, and the engine's own
// accounting of indexing, merge and refresh time (thread time, not CPU).
func (e *engine) families(ctx context.Context, prefix string) (string, error) {
	var st struct {
		Indices map[string]struct {
			Primaries struct {
				Docs     struct{ Count int64 } `json:"docs"`
				Indexing struct {
					IndexTotal  int64 `json:"index_total"`
					IndexMillis int64 `json:"index_time_in_millis"`
				} `json:"indexing"`
				Merges struct {
					Millis int64 `json:"total_time_in_millis"`
				} `json:"merges"`
				Refresh struct {
					Millis int64 `json:"total_time_in_millis"`
				} `json:"refresh"`
			} `json:"primaries"`
		} `json:"indices"`
	}
	if err := e.do(ctx, http.MethodGet, "/"+prefix+"-*/_stats/docs,indexing,merge,refresh?level=indices", &st); err != nil {
		return "", err
	}
	type sum struct{ writes, docs, index, merge, refresh int64 }
	by := map[string]*sum{}
	for name, ix := range st.Indices {
		fam := strings.TrimPrefix(name, prefix+"-")
		if len(fam) > 11 && fam[len(fam)-11] == '-' {
			fam = fam[:len(fam)-11] // -YYYY-MM-DD
		}
		f := by[fam]
		if f == nil {
			f = &sum{}
			by[fam] = f
		}
		p := ix.Primaries
		f.writes += p.Indexing.IndexTotal
		f.docs += p.Docs.Count
		f.index += p.Indexing.IndexMillis
		f.merge += p.Merges.Millis
		f.refresh += p.Refresh.Millis
	}
	names := make([]string, 0, len(by))
	for n := range by {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []string
	for _, n := range names {
		f := by[n]
		out = append(out, fmt.Sprintf("%s %d writes, %d Lucene docs, index %.1f s, merge %.1f s, refresh %.1f s",
			n, f.writes, f.docs, float64(f.index)/1000, float64(f.merge)/1000, float64(f.refresh)/1000))
	}
	return strings.Join(out, "; "), nil
}

func (e *engine) deleteIndices(ctx context.Context, pattern string) error {
	// Index templates stay (a few per run, harmless); the indices go.
	return e.do(ctx, http.MethodDelete, "/"+pattern, nil)
}

func tail(s string) string {
	if len(s) > 4096 {
		return s[len(s)-4096:]
	}
	return s
}
