package ui

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/storage/embedded"
	"github.com/tracepipe/tracepipe/storage/storagetest"
)

// The page benchmarks' store: storagetest's query-benchmark dataset
// (TRACEPIPE_BENCH_TRACES x TRACEPIPE_BENCH_SPANS, 10,000 x 100 = 1 million
// spans by default, starting within the hour after storagetest.Day0, and a
// day of 1-minute rollups for 10 operations) plus one 10,000-span trace,
// built once per run.
var bench struct {
	once sync.Once
	dir  string
	s    *embedded.Store
	big  model.TraceID
	err  error
}

func benchStore(b *testing.B) *embedded.Store {
	bench.once.Do(func() {
		if bench.dir, bench.err = os.MkdirTemp("", "tracepipe-ui-bench-"); bench.err != nil {
			return
		}
		ctx := context.Background()
		if bench.s, bench.err = embedded.Open(ctx, embedded.Options{Path: filepath.Join(bench.dir, "bench.db")}); bench.err != nil {
			return
		}
		traces, spans := storagetest.BenchSize()
		var took time.Duration
		if took, bench.err = storagetest.Load(ctx, bench.s, traces, spans, 100); bench.err != nil {
			return
		}
		big := storagetest.Synthetic(traces+1, 10000, storagetest.Day0)
		bench.big = big.Trace.TraceID
		bench.err = bench.s.WriteTraces(ctx, []model.AssembledTrace{big})
		fmt.Printf("ui bench store: %d traces x %d spans loaded in %v\n", traces, spans, took.Round(time.Millisecond))
	})
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	return bench.s
}

// BenchmarkPages measures the server time of each page (store queries,
// rendering, no network) over the benchmark store. The range of the range
// pages is the dataset's hour. cpu-ms/op is the process's CPU time (user
// and system, GC included) per page: on a shared, loaded machine it is
// steadier than ns/op.
func BenchmarkPages(b *testing.B) {
	s := benchStore(b)
	traces, _ := storagetest.BenchSize()
	now := storagetest.Day0.Time().Add(time.Hour)
	h, err := New(s, Options{Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	hour := "start=2026-03-10T00:00&end=2026-03-10T01:00"
	pages := []struct{ name, path string }{
		{"Bottlenecks", "/?" + hour},
		{"BottlenecksShard", "/?" + hour + "&shard=7"},
		{"BottlenecksService", "/?" + hour + "&service=service-3"},
		// The worst edges for the filtered ranking's 5-minute buckets:
		// almost 5 minutes at either end are summed from the traces.
		{"BottlenecksShardEdges", "/?start=2026-03-10T00:04:59&end=2026-03-10T00:55:01&shard=7"},
		{"Slowest", "/traces?" + hour},
		{"SlowestShard", "/traces?" + hour + "&shard=7"},
		{"SlowestPage5", "/traces?" + hour + "&page=5"},
		{"Trace100Spans", "/trace/" + storagetest.Synthetic(traces/2, 1, storagetest.Day0).Trace.TraceID.String()},
		{"Trace10000Spans", "/trace/" + bench.big.String()},
		{"Operation1h", "/operation?service=service-3&operation=op-3&" + hour},
		{"Operation24h", "/operation?service=service-3&operation=op-3&start=2026-03-10T00:00&end=2026-03-11T00:00&resolution=1m"},
		{"Services", "/services?" + hour},
	}
	for _, p := range pages {
		b.Run(p.name, func(b *testing.B) {
			b.ReportAllocs()
			var size int
			cpu0 := testenv.SelfUsage().CPU()
			for i := 0; i < b.N; i++ {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p.path, nil))
				if rec.Code != http.StatusOK {
					b.Fatalf("%s: %d %s", p.path, rec.Code, rec.Body.String())
				}
				size = rec.Body.Len()
			}
			b.ReportMetric(float64(size), "bytes/page")
			b.ReportMetric(float64(testenv.SelfUsage().CPU()-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
		})
	}
}
