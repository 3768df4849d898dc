package aggregator

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/pipeline/aggregator/rollup/rolluptest"
	"github.com/tracepipe/tracepipe/storage/embedded"
)

// BenchmarkAggregatorEndToEnd measures both aggregator stages from the real
// broker to rollups acknowledged by the store (issue 16's goal: ≥ 200k spans
// per CPU-second): rolluptest traces (TRACEPIPE_BENCH_AGG_TRACES, default
// 20,000, each delivered once, over the last 30 minutes) wait in a
// 4-partition traces topic; the aggregator (map and reduce stages, the
// partials topic on the same broker, the embedded store in this process,
// DefaultConfig's intervals and statistics, the collector tuned as
// cmd/aggregator tunes it) runs until the stored rollups and edge rollups
// equal the ground truth. spans/cpu-s counts the spans of the
// traces per CPU-second of this process until both stages committed their
// input to its end (the broker runs in its own process; the store's work
// and the polling of committed offsets are included, the final exact check
// of the stored rollups against the ground truth is not), GC included.
//
//	eval "$(bash deploy/local/services.sh env)"
//	go test ./pipeline/aggregator -run '^$' -bench AggregatorEndToEnd -benchtime 1x
func BenchmarkAggregatorEndToEnd(b *testing.B) {
	if os.Getenv(testenv.EnvKafka) == "" {
		b.Skip(testenv.HowToStart)
	}
	brokers := testenv.KafkaBrokers(b)
	keepGC(b) // TuneGC below changes the process's collector
	n := 20000
	if v, err := strconv.Atoi(os.Getenv("TRACEPIPE_BENCH_AGG_TRACES")); err == nil && v > 0 {
		n = v
	}
	var spans int
	var cpu, wall time.Duration
	var written, published float64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		topic := testenv.Name(b, "aggbench")
		kafkatest.CreateTopic(b, brokers, topic, 4)
		// Production settings (DefaultConfig: flush every 2 s, coarse
		// resolutions every 30 s, default statistics), not the tests' fast
		// intervals, which rewrite every open window many times a second.
		cfg := DefaultConfig()
		cfg.Brokers, cfg.TracesTopic = brokers, topic
		cfg.PartialsTopic, cfg.Group, cfg.ReduceGroup = topic+"-partials", topic+"-agg", topic+"-reduce"
		cfg.PartialsPartitions = 4
		kafkatest.CreateTopic(b, brokers, cfg.PartialsTopic, cfg.PartialsPartitions)
		o := rolluptest.DefaultOptions(n, time.Now())
		o.VersionRate, o.DupRate = 0, 0
		// The workload is generated again for the final check: while the
		// aggregator runs, the process holds only the aggregator's data
		// (the messages and the ground truth, held throughout, made half
		// of the live heap that every collection marked).
		spans += func() int {
			msgs := rolluptest.Generate(uint64(i+1), o)
			produce(b, brokers, topic, msgs)
			n := 0
			for _, m := range msgs {
				n += len(m.Trace.Trace.Spans)
			}
			return n
		}()
		store, err := embedded.Open(context.Background(), embedded.Options{Path: filepath.Join(b.TempDir(), "db")})
		if err != nil {
			b.Fatal(err)
		}
		logs := &testenv.SyncBuffer{}
		b.Cleanup(func() {
			if b.Failed() {
				b.Logf("--- aggregator log (last 16 KiB):\n%s", tail(logs.String(), 16<<10))
			}
		})
		reg := prometheus.NewRegistry()
		a, err := New(cfg, store, Options{Registry: reg, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		// The collector runs as cmd/aggregator sets it (TuneGC), unless
		// GOGC or GOMEMLIMIT say otherwise.
		if gogc, limit, ok := TuneGC(nil, nil); ok && i == 0 {
			b.Logf("GC tuned as in cmd/aggregator: GOGC=%d, memory limit %d", gogc, limit)
		}
		runtime.GC() // the generation's garbage is not the aggregator's
		b.StartTimer()
		stopProfile := startProfile(b, i)
		c0, t0 := testenv.SelfUsage().CPU(), time.Now()
		go func() { done <- a.Run(ctx) }()
		// The clock stops when the map group has committed the whole traces
		// topic and the reduce group every partial (it commits only what the
		// store acknowledged); then the stored rollups are checked exactly
		// (outside the measurement: the check reads every rollup back).
		// One client polls, every 250 ms (a new one per poll connected
		// afresh each time: a tenth of the measured CPU went to the
		// harness's connections; polling every 100 ms cost 0.04-0.06 CPU-s
		// over a run's 10 s).
		pr := kafkatest.NewProgress(brokers, topic, cfg.PartialsTopic)
		tracesEnd := pr.Ends(b, topic, 4)
		deadline := time.Now().Add(10 * time.Minute)
		for !pr.CommittedTo(b, cfg.Group, topic, tracesEnd) ||
			!pr.CommittedTo(b, cfg.ReduceGroup, cfg.PartialsTopic, pr.Ends(b, cfg.PartialsTopic, cfg.PartialsPartitions)) {
			if time.Now().After(deadline) {
				b.Fatal("the aggregator did not commit the traces and partials topics within 10 minutes")
			}
			time.Sleep(250 * time.Millisecond)
		}
		pr.Close()
		cpu += testenv.SelfUsage().CPU() - c0
		wall += time.Since(t0)
		stopProfile()
		written += counterSum(b, reg, "tracepipe_aggregator_rollups_written_total")
		published += counterSum(b, reg, "tracepipe_aggregator_partials_published_total")
		exp := rolluptest.Expect(cfg.Stats, rolluptest.Generate(uint64(i+1), o))
		waitFor(b, exp, store, 10*time.Minute)
		b.StopTimer()
		cancel()
		if err := <-done; err != nil {
			b.Fatalf("%v\n%s", err, tail(logs.String(), 8<<10))
		}
		store.Close()
	}
	b.ReportMetric(float64(spans)/cpu.Seconds(), "spans/cpu-s")
	b.ReportMetric(float64(spans)/wall.Seconds(), "spans/s")
	b.ReportMetric(float64(spans)/float64(b.N), "spans/op")
	b.ReportMetric(published/float64(b.N), "partials/op")
	b.ReportMetric(written/float64(b.N), "rollups/op")
}

// startProfile starts a CPU profile of the measured part of run i when
// TRACEPIPE_BENCH_AGG_CPUPROFILE names a file (run i writes file.i; go
// test's -cpuprofile would include the generation of the traces and the
// final check). The returned function stops it.
func startProfile(b *testing.B, i int) func() {
	path := os.Getenv("TRACEPIPE_BENCH_AGG_CPUPROFILE")
	if path != "" {
		path += "." + strconv.Itoa(i)
	}
	return testenv.CPUProfile(b, path)
}

// counterSum adds up the series of a counter in reg.
func counterSum(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
