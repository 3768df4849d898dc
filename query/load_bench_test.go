package query

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/storage/embedded"
	"github.com/tracepipe/tracepipe/storage/storagetest"
)

// The store of BenchmarkCheapUnderHeavyLoad: storagetest.Synthetic traces
// (10 services, 50 operations, within an hour of Day0).
const (
	loadTraces = 20000
	loadSpans  = 20
)

// BenchmarkCheapUnderHeavyLoad seeds an embedded store with loadTraces
// traces and serves it on loopback; heavyClients clients send heavy queries
// (bottlenecks of a service over the whole range, tag searches) without pause
// while the benchmark loop fetches traces by ID one at a time. It reports
// the p50 and p99 latency of those lookups (cheap-p50-ms, cheap-p99-ms) and
// the heavy answers per lookup: ok and 503. "limited" serves through
// Limit(DefaultLimits()) with the default read pool; "unlimited" is the API
// as it was before the limits (no lanes, two read connections), for
// comparison. Run with a fixed count, e.g.
//
//	go test -run '^$' -bench CheapUnderHeavyLoad -benchtime 400x ./query/
func BenchmarkCheapUnderHeavyLoad(b *testing.B) {
	for _, c := range []struct {
		name      string
		limited   bool
		readConns int
	}{{"limited", true, 0}} {
		b.Run(c.name, func(b *testing.B) {
			const heavyClients = 20
			ctx := context.Background()
			t0 := time.Now()
			path := filepath.Join(b.TempDir(), "db")
			seed, err := embedded.Open(ctx, embedded.Options{Path: path})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := storagetest.Load(ctx, seed, loadTraces, loadSpans, 500); err != nil {
				b.Fatal(err)
			}
			seed.Close()
			b.Logf("seeded %d traces of %d spans in %s", loadTraces, loadSpans, time.Since(t0).Round(time.Millisecond))
			st, err := embedded.Open(ctx, embedded.Options{Path: path, ReadConns: c.readConns})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			now := func() time.Time { return storagetest.Day0.Time().Add(24 * time.Hour) }
			var h http.Handler = NewHandler(st, now, nil)
			if c.limited {
				if h, err = Limit(h, DefaultLimits(), LimitOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: heavyClients + 1}}
			defer client.CloseIdleConnections()
			get := func(path string) (int, error) {
				resp, err := client.Get(srv.URL + path)
				if err != nil {
					return 0, err
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp.StatusCode, nil
			}

			heavy := []string{"/api/v1/bottlenecks?service=service-3&since=48h", "/api/v1/traces?tag=client=client-3&minDuration=100ms&limit=1000&order=newest",
				"/api/v1/traces?service=service-5&operation=op-27&limit=10000", "/api/v1/rollups?service=service-3&operation=op-3&since=48h&limit=10000"}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var ok, rejected, failed atomic.Int64
			for i := range heavyClients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n := i; ; n++ {
						select {
						case <-stop:
							return
						default:
						}
						code, err := get(heavy[n%len(heavy)])
						switch {
						case err != nil || (code != 200 && code != 503):
							failed.Add(1)
						case code == 200:
							ok.Add(1)
						default:
							rejected.Add(1)
						}
					}
				}()
			}
			// The heavy load is on before the first lookup is timed.
			for ok.Load()+rejected.Load()+failed.Load() < heavyClients {
				time.Sleep(5 * time.Millisecond)
			}

			var lat []time.Duration
			i := 0
			for b.Loop() {
				i++
				id := storagetest.Synthetic((i*7919)%loadTraces, 1, storagetest.Day0).Trace.TraceID.String()
				t0 := time.Now()
				code, err := get("/api/v1/traces/" + id)
				lat = append(lat, time.Since(t0))
				if err != nil || code != 200 {
					b.Errorf("trace %s: %d %v", id, code, err)
				}
			}
			close(stop)
			wg.Wait()
			if failed.Load() > 0 {
				b.Errorf("%d heavy queries failed (neither 200 nor 503)", failed.Load())
			}
			slices.Sort(lat)
			q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / float64(time.Millisecond) }
			b.ReportMetric(q(0.50), "cheap-p50-ms")
			b.ReportMetric(q(0.99), "cheap-p99-ms")
			b.ReportMetric(float64(ok.Load())/float64(len(lat)), "heavy-ok/op")
			b.ReportMetric(float64(rejected.Load())/float64(len(lat)), "heavy-503/op")
			b.Logf("%s: %d lookups p50 %.1fms p99 %.1fms; heavy: %d ok, %d 503", c.name, len(lat), q(0.5), q(0.99), ok.Load(), rejected.Load())
		})
	}
}
