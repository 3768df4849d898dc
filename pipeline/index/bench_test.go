package index

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/model"
)

// countingWriter stores nothing: it counts the traces it is given, so that
// the benchmark measures the stage (fetch, decode, batch, commit) rather
// than a store.
type countingWriter struct{ n atomic.Int64 }

func (w *countingWriter) WriteTraces(_ context.Context, traces []model.AssembledTrace) error {
	w.n.Add(int64(len(traces)))
	return nil
}

// BenchmarkIndexer measures the indexer stage on an in-process Kafka
// (kfake, 4 partitions): 20,000 explained traces (about 400k spans) read,
// decoded, batched and handed to a writer that only counts them. It
// reports traces per second and per CPU-second of the whole process (the
// broker included), the figure to compare across changes of the Kafka
// runtime.
//
//	go test -run '^$' -bench Indexer -benchtime 1x -count 3 ./pipeline/index/
func BenchmarkIndexer(b *testing.B) {
	msgs, _ := assembled(b, 20000)
	var took, cpu time.Duration
	for b.Loop() {
		c := kafkatest.NewCluster(b)
		c.CreateTopic(b, "traces", 4)
		kw := &kafka.Writer{Addr: kafka.TCP(c.Brokers...), Topic: "traces", Balancer: &kafka.Hash{}, BatchSize: 1000, BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
		if err := kw.WriteMessages(context.Background(), msgs...); err != nil {
			b.Fatal(err)
		}
		kw.Close()
		cfg := DefaultConfig()
		cfg.Brokers = c.Brokers
		cfg.Topic, cfg.Group = "traces", "indexer-bench"
		cfg.SessionTimeout = 6 * time.Second
		cw := &countingWriter{}
		x, err := New(cfg, cw, Options{})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		t0, c0 := time.Now(), testenv.SelfUsage().CPU()
		go func() { done <- x.Run(ctx) }()
		for cw.n.Load() < int64(len(msgs)) {
			time.Sleep(5 * time.Millisecond)
		}
		took += time.Since(t0)
		cpu += testenv.SelfUsage().CPU() - c0
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(msgs))/took.Seconds(), "traces/s")
	b.ReportMetric(float64(b.N*len(msgs))/cpu.Seconds(), "traces/CPU-s")
}
