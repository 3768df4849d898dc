package ingest

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/tracegen"
	"github.com/tracepipe/tracepipe/wire"
)

// BenchmarkEndToEnd measures one ingester process from the real broker on
// loopback to acknowledged output: a pre-produced workload is consumed,
// assembled, analysed and published (acks=all), until every partition is
// committed to its end, with the garbage collector tuned as cmd/ingester
// tunes it (TuneGC, and the memory governor making the soft limit follow the
// buffered bytes; set GOGC to measure otherwise). spans/cpu-s is spans
// per CPU-second of this process (the broker runs in its own process), i.e.
// per ingester core. Each iteration processes the whole workload; run with
// -benchtime=1x. The workload is 10,000 traces (197,000 spans);
// TRACEPIPE_BENCH_INGEST_TRACES and TRACEPIPE_BENCH_INGEST_SEED choose
// another (26000 and 1: issue 16's 515,946 spans).
// The traces fall due 100 ms after their last span and are not kept for
// late spans; TRACEPIPE_BENCH_INGEST_DEFAULTS=1 measures the ingester's
// default timing instead (idle 5 s, max wait 60 s, late horizon 1 m, as
// cmd/ingester runs by default): the same work, done on traces that have
// waited 5 s and stay buffered a minute longer.
// TRACEPIPE_BENCH_INGEST_CPUPROFILE names a file for a CPU profile of the
// measured part of the last iteration (the workload's generation and
// publication excluded).
func BenchmarkEndToEnd(b *testing.B) {
	if os.Getenv(testenv.EnvKafka) == "" {
		b.Skip(testenv.HowToStart)
	}
	brokers := testenv.KafkaBrokers(b)
	const partitions = 4
	traces, seed := benchEnvInt(b, "TRACEPIPE_BENCH_INGEST_TRACES", 10000), benchEnvInt(b, "TRACEPIPE_BENCH_INGEST_SEED", 99)
	keepGC(b) // TuneGC below changes the process's collector
	b.ReportAllocs()
	var spans int
	var cpu, wall time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		in, out, dlq, group := testenv.Name(b, "bspans"), testenv.Name(b, "btraces"), testenv.Name(b, "bdlq"), testenv.Name(b, "bgroup")
		kafkatest.CreateTopic(b, brokers, in, partitions)
		kafkatest.CreateTopic(b, brokers, out, partitions)
		kafkatest.CreateTopic(b, brokers, dlq, 1)
		// The workload is generated and published per iteration and let go
		// before the clock starts, so that the garbage collector sees only
		// the ingester's heap, as in an ingester process.
		w := tracegen.Generate(tracegen.Config{Seed: uint64(seed), Traces: traces, Interleave: 50})
		workloadSpans := w.Truth().Spans
		enc, _ := tracegen.EncoderFor(wire.JaegerProto)
		msgs, err := tracegen.Messages(w.Order(), wire.JaegerProto, enc, 1, false)
		if err != nil {
			b.Fatal(err)
		}
		w = nil
		tr := &kafka.Transport{}
		kw := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: in, Balancer: &kafka.Hash{}, Transport: tr,
			RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, BatchSize: 2000}
		if err := tracegen.Publish(context.Background(), kafkatest.Sender(kw), msgs, 0, 2000); err != nil {
			b.Fatal(err)
		}
		kw.Close()
		tr.CloseIdleConnections()
		msgs = nil
		ends := partitionEnds(b, brokers, in, partitions)

		cfg := DefaultConfig()
		cfg.Brokers, cfg.SpansTopic, cfg.TracesTopic, cfg.DLQTopic, cfg.Group = brokers, in, out, dlq, group
		cfg.Encoding = wire.JaegerProto
		if os.Getenv("TRACEPIPE_BENCH_INGEST_DEFAULTS") != "1" {
			cfg.IdleTimeout, cfg.MaxWait, cfg.LateHorizon = 100*time.Millisecond, 5*time.Second, -1
		}
		cfg.CommitInterval = 50 * time.Millisecond
		ing, err := New(cfg, Options{Registry: prometheus.NewRegistry()})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		// The collector runs as cmd/ingester sets it (TuneGC and the
		// memory governor), unless GOGC or GOMEMLIMIT say otherwise.
		stopGov := func() {}
		if gogc, limit, ok := TuneGC(cfg, nil); ok {
			if i == 0 {
				b.Logf("GC tuned as in cmd/ingester: GOGC=%d, soft memory limit following the buffered bytes", gogc)
			}
			stopGov = ing.MemoryGovernor(limit).Start(ctx)
		}
		runtime.GC()
		stopProfile := benchProfile(b, i == b.N-1)
		b.StartTimer()
		// One client asks for the commits over one connection: a new client
		// per poll (a connection, metadata, the coordinator) cost this
		// process about a millisecond of CPU each time, counted as the
		// ingester's, and more of it the longer the run.
		progress := kafkatest.NewProgress(brokers, in)
		ru0, t0 := testenv.SelfUsage(), time.Now()
		go func() { done <- ing.Run(ctx) }()
		for !progress.CommittedTo(b, group, in, ends) {
			time.Sleep(20 * time.Millisecond)
		}
		used, took := testenv.SelfUsage().Sub(ru0), time.Since(t0)
		cpu += used.CPU()
		wall += took
		// Each pass on its own, with its system time and page faults (a
		// process's first pass also grows its heap).
		b.Logf("pass %d: %.0f spans/cpu-s (user %.2fs, system %.2fs, %d minor faults), %.0f spans/s",
			i+1, float64(workloadSpans)/used.CPU().Seconds(), used.User.Seconds(), used.Sys.Seconds(),
			used.MinorFaults, float64(workloadSpans)/took.Seconds())
		stopProfile()
		spans += workloadSpans
		b.StopTimer()
		progress.Close()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		stopGov()
	}
	b.ReportMetric(float64(spans)/wall.Seconds(), "spans/s")
	b.ReportMetric(float64(spans)/cpu.Seconds(), "spans/cpu-s")
}

// benchProfile starts the CPU profile TRACEPIPE_BENCH_INGEST_CPUPROFILE
// names when last is true and returns what stops it.
func benchProfile(b *testing.B, last bool) (stop func()) {
	if !last {
		return func() {}
	}
	return testenv.CPUProfile(b, os.Getenv("TRACEPIPE_BENCH_INGEST_CPUPROFILE"))
}

// benchEnvInt reads a positive integer from the environment variable name,
// or returns def when it is unset.
func benchEnvInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}
