package replay

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/pipeline/local"
	"github.com/tracepipe/tracepipe/tracegen"
)

// BenchmarkReplay compares a replay with the live pipeline on the same
// backlog: TRACEPIPE_BENCH_REPLAY_TRACES generated traces (default 5,000,
// about 100k spans) are produced into the spans topic of an embedded
// broker's log on disk while nothing consumes it; then "live" starts the
// pipeline of `tracepipe run` (embedded broker, ingester, indexer,
// aggregator, into an embedded store; the replay's aggregator intervals) on
// that log and runs until every stage has drained the backlog; then
// "replay" replays the same records from the stopped pipeline's log into a
// fresh embedded store, as `tracepipe replay --data-dir` does. Each
// reports spans per CPU-second of the whole process (every broker
// included: the live pipeline's, the replay's source and private ones)
// and per second of wall time, the settle periods (quiet time waited to
// be sure nothing is left) excluded from both.
//
//	go test ./pipeline/replay -run '^$' -bench Replay -benchtime 1x -count 3
func BenchmarkReplay(b *testing.B) {
	n := 5000
	if v, err := strconv.Atoi(os.Getenv("TRACEPIPE_BENCH_REPLAY_TRACES")); err == nil && v > 0 {
		n = v
	}
	for range b.N {
		b.StopTimer()
		// The backlog, in an embedded broker's log on disk as `tracepipe
		// run` keeps it: produced while no stage runs.
		l := newLive(b)
		l.cfg.Ingest = local.DefaultConfig().Ingest // `tracepipe run`'s
		l.ac = DefaultConfig().Aggregator
		l.ac.PartialsPartitions = l.cfg.Partitions
		l.cfg.BrokerListen = "127.0.0.1:0"
		broker, err := local.StartBroker(l.cfg)
		if err != nil {
			b.Fatal(err)
		}
		w := tracegen.Generate(tracegen.Config{Seed: 9, Traces: n, Start: time.Now().Add(-20 * time.Minute)})
		spans := float64(len(w.Order()))
		from := time.Now().Add(-time.Second)
		publish(b, broker.ListenAddrs(), l.cfg.Ingest.SpansTopic, w)
		to := time.Now().Add(time.Second)
		broker.Close()

		const settle = 3 * time.Second
		c0, t0 := testenv.SelfUsage().CPU(), time.Now()
		stopProfile := testenv.CPUProfile(b, os.Getenv("TRACEPIPE_BENCH_LIVE_CPUPROFILE"))
		b.StartTimer()
		l.start(b, openStore(b))
		waitDrained(b, l.brokers, settle, l.groups()...)
		b.StopTimer()
		stopProfile()
		liveCPU, liveWall := testenv.SelfUsage().CPU()-c0, time.Since(t0)-settle
		l.stop()

		// The replay reads the stopped pipeline's log, as `tracepipe
		// replay --data-dir` does.
		broker, err = local.StartBroker(l.cfg)
		if err != nil {
			b.Fatal(err)
		}
		cfg := replayConfig(b, broker.ListenAddrs(), from, to, newEventRange(time.Now().Add(-time.Hour), time.Now().Add(time.Hour)))
		cfg.Ingest = DefaultConfig().Ingest
		cfg.Aggregator = DefaultConfig().Aggregator
		c0, t0 = testenv.SelfUsage().CPU(), time.Now()
		stopProfile = testenv.CPUProfile(b, os.Getenv("TRACEPIPE_BENCH_REPLAY_CPUPROFILE"))
		b.StartTimer()
		phases := map[Phase]time.Duration{}
		sum, err := Run(context.Background(), cfg, Deps{Store: openStore(b), Progress: func(p Progress) {
			if _, ok := phases[p.Phase]; !ok {
				phases[p.Phase] = p.Elapsed
			}
		}})
		b.StopTimer()
		stopProfile()
		broker.Close()
		if err != nil {
			b.Fatal(err)
		}
		replayCPU, replayWall := testenv.SelfUsage().CPU()-c0, time.Since(t0)-(&run{cfg: cfg}).settle()
		if sum.Traces < int64(n) {
			b.Fatalf("the replay wrote %d traces, want %d", sum.Traces, n)
		}
		b.ReportMetric(spans/liveCPU.Seconds(), "live-spans/cpu-s")
		b.ReportMetric(spans/replayCPU.Seconds(), "replay-spans/cpu-s")
		b.ReportMetric(spans/liveWall.Seconds(), "live-spans/s")
		b.ReportMetric(spans/replayWall.Seconds(), "replay-spans/s")
		b.Logf("%d traces, %.0f spans: live %v CPU, %v; replay %v CPU, %v (settling from %v, rollups from %v, done at %v)", n, spans,
			liveCPU.Round(time.Millisecond), liveWall.Round(time.Millisecond), replayCPU.Round(time.Millisecond), replayWall.Round(time.Millisecond),
			phases[PhaseSettling].Round(time.Millisecond), phases[PhaseRollups].Round(time.Millisecond), phases[PhaseDone].Round(time.Millisecond))
	}
}
