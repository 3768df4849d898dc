package embedded

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/storage/storagetest"
)

// benchStore holds the query benchmarks' dataset, built once per run.
var bench struct {
	once sync.Once
	dir  string
	s    *Store
	err  error
}

func benchStore(b *testing.B) *Store {
	bench.once.Do(func() {
		bench.dir, bench.err = os.MkdirTemp("", "tracepipe-bench-")
		if bench.err != nil {
			return
		}
		ctx := context.Background()
		if bench.s, bench.err = Open(ctx, Options{Path: filepath.Join(bench.dir, "bench.db")}); bench.err != nil {
			return
		}
		traces, spans := storagetest.BenchSize()
		took, err := storagetest.Load(ctx, bench.s, traces, spans, 100)
		bench.err = err
		fmt.Printf("embedded: loaded %d traces x %d spans in %v (%.0f spans/s)\n", traces, spans, took.Round(time.Millisecond), float64(traces*spans)/took.Seconds())
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
	if bench.dir != "" {
		os.RemoveAll(bench.dir)
	}
}

func BenchmarkQueries(b *testing.B) {
	s := benchStore(b)
	traces, _ := storagetest.BenchSize()
	storagetest.BenchQueries(b, s, traces)
}

func BenchmarkWriteTraces(b *testing.B) {
	s, err := Open(context.Background(), Options{Path: filepath.Join(b.TempDir(), "w.db")})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storagetest.BenchWrite(b, s, 100, 100)
}
