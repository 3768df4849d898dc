package aggregator

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/pipeline/aggregator/rollup/rolluptest"
	"github.com/tracepipe/tracepipe/storage/embedded"
)

// BenchmarkBackfillKfake is issue 12's backfill case on both stages, an
// in-process Kafka (kfake) and the embedded store, against live data of the
// same size: with the aggregator running, n live traces over the last 30
// minutes are published and aggregated, then n traces dated 3 hours back
// (over 5 minutes). For each part it measures the time from publishing to
// stored rollups equal to the ground truth (checked exactly, as in
// TestStageKfake, polled every 300ms), and reports both rates and the
// messages re-read by the map stage's rewinds during the backfill.
// TRACEPIPE_BACKFILL_TRACES sets n (default 20,000);
// TRACEPIPE_BACKFILL_INTERVALS=default runs both stages with the default
// flush, coarse and checkpoint intervals (2s, 30s, 10s) instead of the
// tests' (100ms, 300ms, 300ms).
//
//	go test -run '^$' -bench BackfillKfake -benchtime 1x ./pipeline/aggregator/
func BenchmarkBackfillKfake(b *testing.B) {
	for b.Loop() {
		c := kafkatest.NewCluster(b)
		const topic = "backfill"
		c.CreateTopic(b, topic, 2)
		store, err := embedded.Open(context.Background(), embedded.Options{Path: filepath.Join(b.TempDir(), "db")})
		if err != nil {
			b.Fatal(err)
		}
		cfg := testConfig(c.Brokers, topic)
		if os.Getenv("TRACEPIPE_BACKFILL_INTERVALS") == "default" {
			d := DefaultConfig()
			cfg.FlushInterval, cfg.CoarseInterval, cfg.CheckpointInterval = d.FlushInterval, d.CoarseInterval, d.CheckpointInterval
		}
		now := time.Now()
		n := 20000
		if v, err := strconv.Atoi(os.Getenv("TRACEPIPE_BACKFILL_TRACES")); err == nil && v > 0 {
			n = v
		}
		live := rolluptest.Generate(1, rolluptest.Options{Traces: n, Base: rolluptest.DefaultOptions(0, now).Base, Span: 30 * time.Minute, Clients: 30})
		o := rolluptest.DefaultOptions(0, now.Add(-3*time.Hour))
		back := rolluptest.Generate(2, rolluptest.Options{Traces: n, Base: o.Base, Span: 5 * time.Minute, Clients: 30})

		reg := prometheus.NewRegistry()
		logs := &testenv.SyncBuffer{}
		b.Cleanup(func() {
			if b.Failed() {
				b.Logf("--- aggregator log (last 16 KiB):\n%s", tail(logs.String(), 16<<10))
			}
		})
		a, err := New(cfg, store, Options{Registry: reg, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		for !a.Healthy() {
			time.Sleep(50 * time.Millisecond)
		}
		t0 := time.Now()
		produce(b, c.Brokers, topic, live)
		waitFor(b, rolluptest.Expect(cfg.Stats, live), store, 10*time.Minute)
		liveTook := time.Since(t0)
		rewound := testutil.ToFloat64(a.m.rewindMsgs.WithLabelValues("map"))
		rewoundReduce := testutil.ToFloat64(a.m.rewindMsgs.WithLabelValues("reduce"))

		t1 := time.Now()
		produce(b, c.Brokers, topic, back)
		waitFor(b, rolluptest.Expect(cfg.Stats, append(append([]rolluptest.Message(nil), live...), back...)), store, 10*time.Minute)
		took := time.Since(t1)
		b.ReportMetric(float64(len(live))/liveTook.Seconds(), "live-traces/s")
		b.ReportMetric(float64(len(back))/took.Seconds(), "backfill-traces/s")
		b.ReportMetric(testutil.ToFloat64(a.m.rewindMsgs.WithLabelValues("map"))-rewound, "backfill-replayed")
		b.ReportMetric(testutil.ToFloat64(a.m.rewindMsgs.WithLabelValues("reduce"))-rewoundReduce, "backfill-reduce-replayed")
		b.Logf("%d live traces: %s (%.0f traces/s); %d traces 3h back: %s (%.0f traces/s)", len(live), liveTook.Round(time.Millisecond),
			float64(len(live))/liveTook.Seconds(), len(back), took.Round(time.Millisecond), float64(len(back))/took.Seconds())
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		store.Close()
	}
}
