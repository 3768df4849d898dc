package storagetest

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/storage"
)

// BenchSize is the query benchmarks' dataset: TRACEPIPE_BENCH_TRACES traces
// (default 10,000) of TRACEPIPE_BENCH_SPANS spans (default 100): 1 million
// spans by default.
func BenchSize() (traces, spans int) {
	traces, spans = 10000, 100
	if n, err := strconv.Atoi(os.Getenv("TRACEPIPE_BENCH_TRACES")); err == nil && n > 0 {
		traces = n
	}
	if n, err := strconv.Atoi(os.Getenv("TRACEPIPE_BENCH_SPANS")); err == nil && n > 0 {
		spans = n
	}
	return traces, spans
}

// BenchRollupOps and BenchRollupWindows shape the rollup dataset: a day of
// 1-minute rollups for 10 operations.
const (
	BenchRollupOps     = 10
	BenchRollupWindows = 1440
)

// Load writes the benchmark dataset (Synthetic traces 0..traces-1 starting
// on Day0, and the rollups) in batches of batch traces, and returns how long
// the trace writes took.
func Load(ctx context.Context, s storage.Store, traces, spans, batch int) (time.Duration, error) {
	var took time.Duration
	buf := make([]model.AssembledTrace, 0, batch)
	for i := 0; i < traces; i++ {
		buf = append(buf, Synthetic(i, spans, Day0))
		if len(buf) == batch || i == traces-1 {
			t0 := time.Now()
			if err := s.WriteTraces(ctx, buf); err != nil {
				return took, fmt.Errorf("load traces: %w", err)
			}
			took += time.Since(t0)
			buf = buf[:0]
		}
	}
	var rs []model.Rollup
	for op := 0; op < BenchRollupOps; op++ {
		for w := 0; w < BenchRollupWindows; w++ {
			r := rollup(time.Minute, w, serviceNames[op%10], opNames[op], int64(100+w))
			rs = append(rs, r)
			if len(rs) == 5000 {
				if err := s.WriteRollups(ctx, rs); err != nil {
					return took, fmt.Errorf("load rollups: %w", err)
				}
				rs = rs[:0]
			}
		}
	}
	if err := s.WriteRollups(ctx, rs); err != nil {
		return took, fmt.Errorf("load rollups: %w", err)
	}
	return took, nil
}

// BenchWrite measures writing traces of spans spans in batches of batch
// traces into a store from newStore, reporting spans/s.
func BenchWrite(b *testing.B, s storage.Store, spans, batch int) {
	b.ReportAllocs()
	ctx := context.Background()
	traces := make([]model.AssembledTrace, batch)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		for j := range traces {
			traces[j] = Synthetic(1_000_000+i*batch+j, spans, Day0)
		}
		b.StartTimer()
		if err := s.WriteTraces(ctx, traces); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch*spans)/b.Elapsed().Seconds(), "spans/s")
}

// BenchQueries runs one sub-benchmark per query over a store holding the
// Load dataset of traces traces.
func BenchQueries(b *testing.B, s storage.Reader, traces int) {
	ctx := context.Background()
	hour := Day0.Add(time.Hour)
	run := func(name string, f func(i int) error) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if err := f(i); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	run("GetTrace", func(i int) error {
		id := Synthetic((i*7919)%traces, 1, Day0).Trace.TraceID
		st, err := s.GetTrace(ctx, id)
		if err == nil && len(st.Trace.Spans) == 0 {
			err = fmt.Errorf("trace %s has no spans", id)
		}
		return err
	})
	find := func(q model.TraceQuery) func(int) error {
		return func(int) error {
			res, err := s.FindTraces(ctx, q)
			if err == nil && len(res) == 0 {
				err = fmt.Errorf("no result for %+v", q)
			}
			return err
		}
	}
	run("Slowest20", find(model.TraceQuery{Limit: 20}))
	run("Slowest20InRange", find(model.TraceQuery{Start: Day0.Add(10 * time.Minute), End: Day0.Add(40 * time.Minute), Limit: 20}))
	run("Slowest20OfOperation", find(model.TraceQuery{Service: "service-3", Operation: "op-17", Limit: 20}))
	run("SearchTagShard", find(model.TraceQuery{Tags: map[string]string{"shard": "7"}, Limit: 20}))
	run("SearchTagsServiceDuration", find(model.TraceQuery{Service: "service-5", Tags: map[string]string{"client": "client-3", "http.status_code": "500"}, MinDuration: 100 * time.Millisecond, Limit: 20}))
	run("TopBottlenecks", func(int) error {
		_, err := s.TopBottlenecks(ctx, model.BottleneckQuery{Limit: 10})
		return err
	})
	run("TopBottlenecks30min", func(int) error {
		_, err := s.TopBottlenecks(ctx, model.BottleneckQuery{Start: Day0.Add(10 * time.Minute), End: Day0.Add(40 * time.Minute), Limit: 10})
		return err
	})
	run("RollupSeries1h", func(int) error {
		res, err := s.RollupSeries(ctx, model.RollupQuery{Service: "service-3", Operation: "op-3", Resolution: time.Minute, Start: Day0, End: hour})
		if err == nil && len(res) != 60 {
			err = fmt.Errorf("got %d rollups, want 60", len(res))
		}
		return err
	})
}
