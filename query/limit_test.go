package query

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/storage/embedded"
	"github.com/tracepipe/tracepipe/storage/storagetest"
)

// seedFile writes traces 1..n (storagetest specs, one a second from Day0)
// to a new embedded store file and returns its path.
func seedFile(tb testing.TB, n int) string {
	tb.Helper()
	ctx := context.Background()
	path := filepath.Join(tb.TempDir(), "db")
	s, err := embedded.Open(ctx, embedded.Options{Path: path})
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	for lo := 1; lo <= n; lo += 500 {
		var ats []model.AssembledTrace
		for i := lo; i < lo+500 && i <= n; i++ {
			ats = append(ats, storagetest.Trace(storagetest.Spec{
				ID: tid(uint64(i)), Start: storagetest.Day0.Add(time.Duration(i) * time.Second), Duration: time.Duration(1+i%97) * time.Millisecond,
				Shard: []string{"0", "1"}[i%2], Error: i%10 == 3,
			}))
		}
		if err := s.WriteTraces(ctx, ats); err != nil {
			tb.Fatal(err)
		}
	}
	return path
}

// seeded is an open store of seedFile(n), closed at the end of the test.
func seeded(tb testing.TB, n int) *embedded.Store {
	tb.Helper()
	s, err := embedded.Open(context.Background(), embedded.Options{Path: seedFile(tb, n)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// gated is the real store whose bottleneck queries, once entered (reported
// on entered), hold their slot until release is closed or their context ends.
type gated struct {
	Reader
	entered chan struct{}
	release chan struct{}
}

func (g *gated) TopBottlenecks(ctx context.Context, q model.BottleneckQuery) ([]model.BottleneckRow, error) {
	g.entered <- struct{}{}
	select {
	case <-g.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.Reader.TopBottlenecks(ctx, q)
}

// limited serves r through Limit(l); the log is returned for inspection.
func limited(t *testing.T, r Reader, l Limits) (*httptest.Server, *Limiter, *testenv.SyncBuffer) {
	t.Helper()
	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	now := func() time.Time { return storagetest.Day0.Time().Add(time.Hour) }
	lm, err := Limit(NewHandler(r, now, log), l, LimitOptions{Logger: log, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(lm)
	srv.Config = NewServer(lm, l)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, lm, logs
}

type answer struct {
	code       int
	retryAfter string
	requestID  string
	body       map[string]any
	raw        string
}

func call(t *testing.T, srv *httptest.Server, path string) answer {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Error(err)
		return answer{}
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Errorf("%s: decode: %v", path, err)
	}
	a := answer{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), requestID: resp.Header.Get("X-Request-Id"), raw: string(raw)}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

func TestIsCheap(t *testing.T) {
	cases := []struct {
		path  string
		cheap bool
	}{
		{"/api/v1/traces/" + tid(3).String(), true},
		{"/api/v1/services", true},
		{"/api/v1/operations", true},
		{"/", true},
		{"/static/app.js", true},
		{"/api/v1/traces", false},
		{"/api/v1/traces/", false},
		{"/api/v1/traces/x/y", false},
		{"/api/v1/bottlenecks", false},
		{"/api/v1/rollups", false},
		{"/api/v1/edges", false},
	}
	for _, c := range cases {
		if got := IsCheap(httptest.NewRequest("GET", c.path, nil)); got != c.cheap {
			t.Errorf("IsCheap(%s) = %v, want %v", c.path, got, c.cheap)
		}
	}
}

func TestLimitsValidate(t *testing.T) {
	if err := DefaultLimits().Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []func(*Limits){
		func(l *Limits) { l.Heavy.Concurrency = 0 },
		func(l *Limits) { l.Cheap.Queue = -1 },
		func(l *Limits) { l.Heavy.Budget = 0 },
		func(l *Limits) { l.Cheap.Wait = 0 },
		func(l *Limits) { l.Heavy.RetryAfter = 0 },
	}
	for i, f := range bad {
		l := DefaultLimits()
		f(&l)
		if err := l.Validate(); err == nil {
			t.Errorf("case %d: accepted %+v", i, l)
		}
		if _, err := Limit(http.NotFoundHandler(), l, LimitOptions{}); err == nil {
			t.Errorf("case %d: Limit accepted %+v", i, l)
		}
	}
}

// TestLimitHeavyLaneFull fills the heavy lane (one running, one queued):
// the next heavy query is answered 503 at once, with Retry-After and a JSON
// message, while trace-by-ID lookups are still answered; the held queries
// finish once released.
func TestLimitHeavyLaneFull(t *testing.T) {
	g := &gated{Reader: seeded(t, 50), entered: make(chan struct{}, 4), release: make(chan struct{})}
	l := DefaultLimits()
	l.Heavy = Lane{Concurrency: 1, Queue: 1, Wait: time.Minute, Budget: time.Minute, RetryAfter: 7 * time.Second}
	srv, lm, _ := limited(t, g, l)

	var wg sync.WaitGroup
	held := make([]answer, 2)
	for i := range held {
		wg.Add(1)
		go func() {
			defer wg.Done()
			held[i] = call(t, srv, "/api/v1/bottlenecks?limit=3")
		}()
	}
	<-g.entered // one runs
	for lm.heavy.waiting.Load() != 1 {
		time.Sleep(time.Millisecond) // the other is queued
	}

	a := call(t, srv, "/api/v1/bottlenecks?limit=3")
	if a.code != 503 || a.retryAfter != "7" || !strings.Contains(a.raw, "too many heavy queries waiting") || a.body["requestId"] != a.requestID || a.requestID == "" {
		t.Errorf("third heavy query: %d Retry-After %q id %q: %s", a.code, a.retryAfter, a.requestID, a.raw)
	}
	for i := 1; i <= 20; i++ {
		a := call(t, srv, "/api/v1/traces/"+tid(uint64(i)).String())
		if a.code != 200 || a.body["summary"] == nil {
			t.Fatalf("trace %d while the heavy lane is full: %d %s", i, a.code, a.raw)
		}
	}
	if got := testutil.ToFloat64(lm.heavy.rejected.WithLabelValues("heavy", "queue_full")); got != 1 {
		t.Errorf("rejected{heavy,queue_full} = %v, want 1", got)
	}

	close(g.release)
	<-g.entered // the queued one runs
	wg.Wait()
	for i, a := range held {
		if a.code != 200 || a.body["bottlenecks"] == nil {
			t.Errorf("held query %d: %d %s", i, a.code, a.raw)
		}
	}
}

// TestLimitWait: a request that finds no slot within the lane's wait is
// answered 503 (reason wait).
func TestLimitWait(t *testing.T) {
	g := &gated{Reader: seeded(t, 5), entered: make(chan struct{}, 2), release: make(chan struct{})}
	l := DefaultLimits()
	l.Heavy = Lane{Concurrency: 1, Queue: 5, Wait: time.Nanosecond, Budget: time.Minute, RetryAfter: time.Second}
	srv, lm, _ := limited(t, g, l)
	done := make(chan answer)
	go func() { done <- call(t, srv, "/api/v1/bottlenecks") }()
	<-g.entered
	a := call(t, srv, "/api/v1/bottlenecks")
	if a.code != 503 || a.retryAfter != "1" || !strings.Contains(a.raw, "no heavy query slot free within 1ns") {
		t.Errorf("waiting query: %d %q %s", a.code, a.retryAfter, a.raw)
	}
	close(g.release)
	if a := <-done; a.code != 200 {
		t.Errorf("running query: %d %s", a.code, a.raw)
	}
	if got := testutil.ToFloat64(lm.heavy.rejected.WithLabelValues("heavy", "wait")); got != 1 {
		t.Errorf("rejected{heavy,wait} = %v, want 1", got)
	}
}

// TestLimitBudget: a query whose budget runs out is answered 503 with the
// budget in the message and Retry-After, from the real store (its context
// ends before the SQL runs) and from a query held past its budget; the cheap
// lane keeps answering.
func TestLimitBudget(t *testing.T) {
	st := seeded(t, 200)
	g := &gated{Reader: st, entered: make(chan struct{}, 10), release: make(chan struct{})}
	l := DefaultLimits()
	l.Heavy = Lane{Concurrency: 2, Queue: 2, Wait: time.Minute, Budget: 20 * time.Millisecond, RetryAfter: 3 * time.Second}
	srv, lm, logs := limited(t, g, l)
	a := call(t, srv, "/api/v1/bottlenecks?service=frontend")
	if a.code != 503 || a.retryAfter != "3" || !strings.Contains(a.raw, "query over its time budget of 20ms") || a.body["requestId"] != a.requestID {
		t.Errorf("held bottleneck query: %d %q %s", a.code, a.retryAfter, a.raw)
	}

	l.Heavy.Budget = time.Nanosecond
	srv2, lm2, logs2 := limited(t, st, l)
	for _, path := range []string{"/api/v1/traces?service=frontend", "/api/v1/bottlenecks?service=frontend", "/api/v1/rollups?service=db&operation=SELECT", "/api/v1/edges?caller=frontend&callee=db"} {
		a := call(t, srv2, path)
		if a.code != 503 || !strings.Contains(a.raw, "query over its time budget of 1ns") {
			t.Errorf("%s: %d %s", path, a.code, a.raw)
		}
	}
	if a := call(t, srv2, "/api/v1/traces/"+tid(7).String()); a.code != 200 {
		t.Errorf("cheap lookup: %d %s", a.code, a.raw)
	}
	if got := testutil.ToFloat64(lm.heavy.rejected.WithLabelValues("heavy", "budget")); got != 1 {
		t.Errorf("rejected{heavy,budget} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(lm2.heavy.rejected.WithLabelValues("heavy", "budget")); got != 4 {
		t.Errorf("rejected{heavy,budget} = %v, want 4", got)
	}
	for _, l := range []string{logs.String(), logs2.String()} {
		if strings.Contains(l, "level=ERROR") {
			t.Errorf("budget answers logged as errors:\n%s", l)
		}
	}
}

// failing fails every search with an error naming internals.
type failing struct{ Reader }

func (failing) FindTraces(context.Context, model.TraceQuery) ([]model.TraceSummary, error) {
	return nil, errors.New("find traces: open /var/lib/secret/tracepipe.db: disk I/O error")
}

// TestLimitInternalErrorHidden: a 500 names only the request ID; the error
// is logged with it.
func TestLimitInternalErrorHidden(t *testing.T) {
	srv, _, logs := limited(t, failing{seeded(t, 1)}, DefaultLimits())
	a := call(t, srv, "/api/v1/traces?service=x")
	if a.code != 500 || strings.Contains(a.raw, "secret") || strings.Contains(a.raw, "disk") || a.requestID == "" || !strings.Contains(a.raw, a.requestID) || a.body["requestId"] != a.requestID {
		t.Fatalf("500 answer: %d id %q: %s", a.code, a.requestID, a.raw)
	}
	if l := logs.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "request_id="+a.requestID) || !strings.Contains(l, "disk I/O error") {
		t.Errorf("log lacks the error under the request ID:\n%s", l)
	}
}

// TestClientGoneNotAnError: a request whose client went away is logged at
// debug, never as an error, whether it was running or queued.
func TestClientGoneNotAnError(t *testing.T) {
	st := seeded(t, 20)
	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	now := func() time.Time { return storagetest.Day0.Time().Add(time.Hour) }
	lm, err := Limit(NewHandler(st, now, log), DefaultLimits(), LimitOptions{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, path := range []string{"/api/v1/traces?service=frontend", "/api/v1/bottlenecks?service=frontend", "/api/v1/traces/" + tid(3).String()} {
		rec := httptest.NewRecorder()
		lm.ServeHTTP(rec, httptest.NewRequest("GET", path, nil).WithContext(ctx))
		if rec.Code == 500 {
			t.Errorf("%s: 500 %s", path, rec.Body)
		}
	}
	if l := logs.String(); strings.Contains(l, "level=ERROR") || !strings.Contains(l, "client went away") {
		t.Errorf("log:\n%s", l)
	}
}

func TestNewServerTimeouts(t *testing.T) {
	l := DefaultLimits()
	s := NewServer(http.NotFoundHandler(), l)
	if s.ReadHeaderTimeout <= 0 || s.ReadTimeout <= 0 || s.IdleTimeout <= 0 || s.WriteTimeout < l.Heavy.Wait+l.Heavy.Budget {
		t.Errorf("timeouts %+v", s)
	}
	l.Heavy.Budget = 10 * time.Minute
	if s := NewServer(http.NotFoundHandler(), l); s.WriteTimeout < 10*time.Minute+l.Heavy.Wait {
		t.Errorf("write timeout %v below the heavy budget", s.WriteTimeout)
	}
}
