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

	"github.com/tracepipe/tracepipe/aggregate/aggtest"
	"github.com/tracepipe/tracepipe/internal/kafkatest"
	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/storage/embedded"
)

// BenchmarkBackfillKfake is issue 12's backfill case on both stages, an
// in-process Kafka (kfake) and the embedded store: 2,000 live traces over
// the last 30 minutes are aggregated, then 20,000 traces dated 3 hours back
// (over 5 minutes) are published; it measures the time until the stored
// rollups equal the ground truth of all 22,000 traces, and reports the
// backfill's traces/s and the messages re-read by rewinds. The stored
// rollups are checked exactly, as in TestStageKfake.
// TRACEPIPE_BACKFILL_TRACES overrides the 20,000.
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
		now := time.Now()
		live := aggtest.Generate(1, aggtest.Options{Traces: 2000, Base: aggtest.DefaultOptions(0, now).Base, Span: 30 * time.Minute, Clients: 30})
		o := aggtest.DefaultOptions(0, now.Add(-3*time.Hour))
		n := 20000
		if v, err := strconv.Atoi(os.Getenv("TRACEPIPE_BACKFILL_TRACES")); err == nil && v > 0 {
			n = v
		}
		back := aggtest.Generate(2, aggtest.Options{Traces: n, Base: o.Base, Span: 5 * time.Minute, Clients: 30})
		produce(b, c.Brokers, topic, live)

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
		waitFor(b, aggtest.Expect(cfg.Stats, live), store, 120*time.Second)
		rewound := testutil.ToFloat64(a.m.rewindMsgs.WithLabelValues("map"))

		t0 := time.Now()
		produce(b, c.Brokers, topic, back)
		waitFor(b, aggtest.Expect(cfg.Stats, append(append([]aggtest.Message(nil), live...), back...)), store, 10*time.Minute)
		took := time.Since(t0)
		b.ReportMetric(float64(len(back))/took.Seconds(), "backfill-traces/s")
		b.ReportMetric(testutil.ToFloat64(a.m.rewindMsgs.WithLabelValues("map"))-rewound, "backfill-replayed")
		b.Logf("backfill of %d traces 3h back: %s (%.0f traces/s)", len(back), took.Round(time.Millisecond), float64(len(back))/took.Seconds())
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		store.Close()
	}
}
