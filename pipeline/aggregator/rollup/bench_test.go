package rollup

import (
	"context"
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// benchTraces makes n traces of about 20 spans each, starting 1ms apart
// (1,000 traces per second of event time), 10% of them with a second version.
func benchTraces(n int) []Message {
	o := defaultWorkload(n)
	o.span = time.Duration(n) * time.Millisecond
	o.versionRate, o.dupRate, o.veryLateRate = 0.1, 0, 0
	o.maxDelay = 2 * time.Second
	w := genWorkload(11, o)
	// Grow every trace to ~20 spans by repeating its spans' shapes.
	var out []Message
	for i, m := range w.msgs {
		at := *m.at
		spans := at.Trace.Spans
		stats := at.Analysis.Spans
		for len(spans) < 20 {
			k := len(spans) % len(m.at.Trace.Spans)
			cp := *m.at.Trace.Spans[k]
			cp.SpanID = model.SpanID(1000 + len(spans))
			spans = append(spans, &cp)
			stats = append(stats, m.at.Analysis.Spans[k])
		}
		at.Trace.Spans, at.Analysis.Spans = spans, stats
		out = append(out, Message{Offset: int64(i), Time: m.arrival, Trace: &at})
	}
	return out
}

func spanCount(ms []Message) int {
	n := 0
	for _, m := range ms {
		n += len(m.Trace.Trace.Spans)
	}
	return n
}

// BenchmarkPartition measures the aggregation work of one source partition:
// adding traces, publishing closed windows every 2,000 traces, and
// checkpointing (evicting) — everything but Kafka and storage.
func BenchmarkPartition(b *testing.B) {
	for _, dims := range []struct {
		name string
		d    []string
	}{{"nodims", nil}, {"shard-client-host", []string{"shard", "client", "host"}}} {
		b.Run(dims.name, func(b *testing.B) {
			msgs := benchTraces(20000)
			spans := spanCount(msgs)
			cfg := Config{Dimensions: dims.d, DimensionLimit: 20}
			b.ReportAllocs()
			b.ResetTimer()
			var p *Partition
			for i := 0; i < b.N; i++ {
				p, _ = NewPartition(cfg, 0, 0, nil)
				for j, m := range msgs {
					if rw, err := p.Add(m); err != nil || rw != nil {
						b.Fatalf("add: %v %v", rw, err)
					}
					if j%2000 == 1999 {
						p.Collect(FlushPolicy{Watermark: p.MaxEventTime().Add(-30 * time.Second), Checkpoint: true})
						if _, err := p.Checkpoint(); err != nil {
							b.Fatal(err)
						}
					}
				}
			}
			sec := b.Elapsed().Seconds()
			b.ReportMetric(float64(b.N*spans)/sec, "spans/s")
			b.ReportMetric(float64(b.N*len(msgs))/sec, "traces/s")
		})
	}
}

// BenchmarkReducer measures merging partials from 8 sources into rollups.
func BenchmarkReducer(b *testing.B) { benchReducer(b, false) }

// benchReducer merges the partials of 20,000 traces from 8 sources into
// rollups per iteration; with takeover the reducer's barrier lies past every
// partial (see BenchmarkReducerTakeover).
func benchReducer(b *testing.B, takeover bool) {
	msgs := benchTraces(20000)
	cfg := Config{Dimensions: []string{"shard", "host"}, DimensionLimit: 20}
	var parts []PartialMessage
	for src := int32(0); src < 8; src++ {
		p, _ := NewPartition(cfg, src, 0, nil)
		for _, m := range msgs[int(src)*2500 : int(src+1)*2500] {
			p.Add(m)
		}
		for _, pt := range p.Collect(FlushPolicy{All: true}) {
			parts = append(parts, PartialMessage{Offset: int64(len(parts)), Partial: pt})
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, _ := NewReducer(cfg, 0, nil)
		if takeover {
			r.SetBarrier(int64(len(parts)))
		}
		for _, m := range parts {
			if rw, err := r.Add(m, cfg.Dimensions); err != nil || rw != nil {
				b.Fatal(err)
			}
		}
		if _, err := r.Flush(context.Background(), nil, true); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(parts))/b.Elapsed().Seconds(), "partials/s")
}

// BenchmarkMemory reports what one minute of resident data costs (1,000
// traces/s of ~20 spans): bytes per buffered span and per key, with no
// dimensions and with three dimensions of high cardinality.
func BenchmarkMemory(b *testing.B) {
	msgs := benchTraces(60000)
	spans := spanCount(msgs)
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"nodims", Config{}},
		{"shard-client-host", Config{Dimensions: []string{"shard", "client", "host"}, DimensionLimit: 1000}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				p, _ := NewPartition(c.cfg, 0, 0, nil)
				for _, m := range msgs {
					p.Add(m)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				keys := 0
				for _, w := range p.windows {
					keys += len(w.keys.keys)
				}
				held := float64(after.HeapAlloc) - float64(before.HeapAlloc)
				b.ReportMetric(math.Round(held/float64(spans)), "bytes/span")
				b.ReportMetric(math.Round(held/float64(keys)), "bytes/key")
				b.ReportMetric(float64(keys), "keys")
				runtime.KeepAlive(p)
			}
		})
	}
}
