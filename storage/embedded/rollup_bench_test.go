package embedded

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// BenchmarkWriteRollups writes batches of 500 rollups, each batch rewriting
// the same IDs with a newer version (the reducer's steady state: changed
// rollups of resident windows rewritten every flush).
func BenchmarkWriteRollups(b *testing.B) {
	s, err := Open(context.Background(), Options{Path: filepath.Join(b.TempDir(), "r.db")})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	t0 := model.TimestampOf(time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC))
	rs := make([]model.Rollup, 500)
	for i := range rs {
		d := model.Distribution{Sum: time.Millisecond, Sketch: make([]byte, 200)}
		rs[i] = model.Rollup{Resolution: time.Minute, WindowStart: t0.Add(time.Duration(i%10) * time.Minute), Service: "svc", Operation: fmt.Sprint("op", i), Kind: model.KindServer,
			Count: 10, Duration: d, Self: d, CriticalPath: d}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		for i := range rs {
			rs[i].Count++
			rs[i].Version = int64(n + 1)
		}
		if err := s.WriteRollups(context.Background(), rs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(rs))/b.Elapsed().Seconds(), "rollups/s")
}
