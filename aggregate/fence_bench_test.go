package aggregate

import (
	"context"
	"testing"
)

// BenchmarkReducerTakeover is BenchmarkReducer for a reducer that took its
// partition over: every partial is below its barrier, so it fences off a
// predecessor (ghost keys for every key read; outputs versioned at the
// barrier) — the worst case, as in a fresh-group replay.
func BenchmarkReducerTakeover(b *testing.B) {
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
		r.SetBarrier(int64(len(parts)))
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
