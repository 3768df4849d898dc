package elasticsearch

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/storage/storagetest"
)

// bench holds the query benchmarks' dataset, built once per run into its
// own prefix and deleted by TestMain's cleanup.
var bench struct {
	once    sync.Once
	s       *Store
	cleanup func()
	err     error
}

type cleanupTB struct {
	testing.TB
	fns []func()
}

func (c *cleanupTB) Cleanup(f func()) { c.fns = append(c.fns, f) }

func benchStore(b *testing.B) *Store {
	url := esURL(b)
	bench.once.Do(func() {
		ctb := &cleanupTB{TB: b}
		prefix := testPrefix(ctb, url)
		bench.cleanup = func() {
			for _, f := range ctb.fns {
				f()
			}
		}
		ctx := context.Background()
		bench.s, bench.err = New(ctx, Config{URLs: []string{url}, IndexPrefix: prefix, BatchDocs: 10000, BatchBytes: 16 << 20})
		if bench.err != nil {
			return
		}
		traces, spans := storagetest.BenchSize()
		took, err := storagetest.Load(ctx, bench.s, traces, spans, 200)
		if err != nil {
			bench.err = err
			return
		}
		t0 := time.Now()
		bench.err = bench.s.Refresh(ctx)
		docs := traces*spans + traces
		fmt.Printf("elasticsearch: indexed %d traces x %d spans (%d docs) in %v (%.0f docs/s), refresh %v\n",
			traces, spans, docs, took.Round(time.Millisecond), float64(docs)/took.Seconds(), time.Since(t0).Round(time.Millisecond))
	})
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	return bench.s
}

func closeBench() {
	if bench.s != nil {
		bench.s.Close()
	}
	if bench.cleanup != nil {
		bench.cleanup()
	}
}

func BenchmarkQueries(b *testing.B) {
	s := benchStore(b)
	traces, _ := storagetest.BenchSize()
	storagetest.BenchQueries(b, s, traces)
}

// BenchmarkWriteTraces measures acknowledged bulk indexing of 100-span
// traces, 100 traces (about 10,000 documents) per call.
func BenchmarkWriteTraces(b *testing.B) {
	url := esURL(b)
	s := newTestStore(b, Config{URLs: []string{url}, IndexPrefix: testPrefix(b, url), BatchDocs: 10000, BatchBytes: 16 << 20})
	defer s.Close()
	storagetest.BenchWrite(b, s, 100, 100)
}
