package elasticsearch

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/storage"
	"github.com/tracepipe/tracepipe/storage/dbmodel"
	"github.com/tracepipe/tracepipe/storage/storagetest"
)

// fakeES answers template calls and scripts _bulk responses: respond gets
// the 1-based bulk call number and the documents' IDs, and returns the HTTP
// status of the whole request and one status per item. Written ids are
// recorded, and the last action sent for each id (see action).
type fakeES struct {
	mu      sync.Mutex
	calls   int
	written map[string]int
	actions map[string]string
	respond func(call int, ids []string) (int, []int)
}

func (f *fakeES) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasPrefix(r.URL.Path, "/_template/") && r.Method == http.MethodGet:
		w.WriteHeader(404)
		fmt.Fprint(w, `{}`)
	case strings.HasPrefix(r.URL.Path, "/_template/"):
		fmt.Fprint(w, `{"acknowledged":true}`)
	case r.URL.Path == "/_bulk":
		var ids, indices, ops, actions []string
		sc := bufio.NewScanner(r.Body)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for i := 0; sc.Scan(); i++ {
			if i%2 == 0 {
				var action map[string]struct {
					Index       string `json:"_index"`
					ID          string `json:"_id"`
					VersionType string `json:"version_type"`
				}
				if err := json.Unmarshal(sc.Bytes(), &action); err != nil || len(action) != 1 {
					http.Error(w, fmt.Sprintf("bad action %s: %v", sc.Bytes(), err), 400)
					return
				}
				for op, a := range action {
					ids, indices, ops = append(ids, a.ID), append(indices, a.Index), append(ops, op)
					actions = append(actions, strings.TrimSuffix(op+" "+a.VersionType, " "))
				}
			}
		}
		f.mu.Lock()
		f.calls++
		if f.actions == nil {
			f.actions = map[string]string{}
		}
		for i, id := range ids {
			f.actions[id] = actions[i]
		}
		code, statuses := f.respond(f.calls, ids)
		if code != 200 {
			f.mu.Unlock()
			w.WriteHeader(code)
			fmt.Fprintf(w, `{"error":{"type":"unavailable","reason":"scripted"},"status":%d}`, code)
			return
		}
		var items []string
		for i, id := range ids {
			st := statuses[i]
			item := fmt.Sprintf(`{%q:{"_index":%q,"_id":%q,"status":%d`, ops[i], indices[i], id, st)
			switch {
			case st < 300:
				f.written[id]++
			case st == 409:
				item += `,"error":{"type":"version_conflict_engine_exception","reason":"newer version"}`
			case st == 429:
				item += `,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}`
			default:
				item += `,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [startTime]"}`
			}
			items = append(items, item+"}}")
		}
		f.mu.Unlock()
		fmt.Fprintf(w, `{"took":1,"errors":true,"items":[%s]}`, strings.Join(items, ","))
	default:
		http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, 500)
	}
}

func all(status int) func(int, []string) (int, []int) {
	return func(_ int, ids []string) (int, []int) {
		out := make([]int, len(ids))
		for i := range out {
			out[i] = status
		}
		return 200, out
	}
}

type deadLetters struct {
	mu  sync.Mutex
	got []Failure
	err error
}

func (d *deadLetters) DeadLetter(_ context.Context, fs []Failure) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.got = append(d.got, fs...)
	return d.err
}

func metricValue(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, lp := range m.GetLabel() {
				match = match || lp.GetValue() == label
			}
			if match {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

func TestBulkWriter(t *testing.T) {
	trace := storagetest.Trace(storagetest.Spec{ID: model.TraceID{Low: 7}, Start: storagetest.Day0})
	const docs = 3 + 3 + 1 // spans, service docs, summary
	cases := []struct {
		name       string
		respond    func(int, []string) (int, []int)
		deadLetter *deadLetters
		wantErr    string
		metric     string // counter that must be > 0
		label      string
		wantDead   int
	}{
		{name: "acknowledged", respond: all(201), metric: "tracepipe_es_docs_written_total"},
		{name: "item 429 then ok", respond: func(call int, ids []string) (int, []int) {
			if call == 1 {
				return all(429)(call, ids)
			}
			return all(201)(call, ids)
		}, metric: "tracepipe_es_retries_total", label: "429"},
		{name: "request 503 then ok", respond: func(call int, ids []string) (int, []int) {
			if call < 3 {
				return 503, nil
			}
			return all(201)(call, ids)
		}, metric: "tracepipe_es_retries_total", label: "5xx"},
		{name: "stale version is success", respond: func(call int, ids []string) (int, []int) {
			_, st := all(201)(call, ids)
			for i, id := range ids {
				if strings.Contains(id, "-") { // span docs: versioned
					st[i] = 409
				}
			}
			return 200, st
		}, metric: "tracepipe_es_stale_versions_total"},
		{name: "mapping error dead-lettered", respond: func(call int, ids []string) (int, []int) {
			_, st := all(201)(call, ids)
			st[0] = 400
			return 200, st
		}, deadLetter: &deadLetters{}, metric: "tracepipe_es_failures_total", label: "mapper_parsing_exception", wantDead: 1},
		{name: "mapping error without dead letter", respond: func(call int, ids []string) (int, []int) {
			_, st := all(201)(call, ids)
			st[0] = 400
			return 200, st
		}, wantErr: "no dead-letter configured", metric: "tracepipe_es_failures_total"},
		{name: "dead letter fails", respond: all(400), deadLetter: &deadLetters{err: fmt.Errorf("dlq down")}, wantErr: "dlq down", wantDead: docs},
		{name: "gives up", respond: all(429), wantErr: "gave up after 2 retries"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fake := &fakeES{written: map[string]int{}, respond: c.respond}
			srv := httptest.NewServer(fake)
			defer srv.Close()
			reg := prometheus.NewRegistry()
			cfg := Config{URLs: []string{srv.URL}, Registerer: reg, MaxRetries: 2, RetryBackoff: time.Millisecond, MaxRetryBackoff: 2 * time.Millisecond}
			if c.deadLetter != nil {
				cfg.DeadLetter = c.deadLetter
			}
			s, err := New(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			err = s.WriteTraces(context.Background(), []model.AssembledTrace{trace})
			switch {
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("err = %v, want %q", err, c.wantErr)
			case c.wantErr == "" && err != nil:
				t.Fatalf("err = %v", err)
			}
			// Only a rejection with nowhere to keep it is permanent.
			if permanent := c.name == "mapping error without dead letter"; errors.Is(err, storage.ErrPermanent) != permanent {
				t.Errorf("errors.Is(%v, storage.ErrPermanent) = %v, want %v", err, !permanent, permanent)
			}
			if c.metric != "" && metricValue(t, reg, c.metric, c.label) == 0 {
				t.Errorf("metric %s{%s} not incremented", c.metric, c.label)
			}
			if c.deadLetter != nil && len(c.deadLetter.got) != c.wantDead {
				t.Errorf("dead letters = %d, want %d", len(c.deadLetter.got), c.wantDead)
			}
			if c.wantDead > 0 && c.deadLetter.got[0].Reason == "" {
				t.Errorf("dead letter without reason: %+v", c.deadLetter.got[0])
			}
			if got := metricValue(t, reg, "tracepipe_es_pending_docs", ""); got != 0 {
				t.Errorf("pending docs = %v after the write returned", got)
			}
		})
	}
}

// TestBulkWriterFill: the bulk action of each document in normal and in
// fill writes (storage.WithFill), and that under fill a 409 of every
// document is success, counted as stale.
func TestBulkWriterFill(t *testing.T) {
	trace := storagetest.Trace(storagetest.Spec{ID: model.TraceID{Low: 7}, Start: storagetest.Day0, Version: 3})
	rollup := model.Rollup{Resolution: time.Minute, WindowStart: storagetest.Day0, Service: "db", Operation: "SELECT", Count: 1, Version: 5}
	unversioned := rollup
	unversioned.Operation, unversioned.Version = "INSERT", 0
	edge := model.EdgeRollup{Resolution: 24 * time.Hour, WindowStart: storagetest.Day0, Caller: "api", Callee: "db", Calls: 1, Version: 5}
	const docs = 3 + 3 + 1 + 2 + 2 // spans, service docs, summary, rollups, edge rollup and its dependency document
	actions := func(traceOp, serviceOp, rollupOp, unversionedOp string) map[string]string {
		m := map[string]string{trace.Trace.TraceID.String(): traceOp, rollup.ID(): rollupOp, unversioned.ID(): unversionedOp, edge.ID(): rollupOp}
		for _, sp := range trace.Trace.Spans {
			m[dbmodel.SpanDocID(sp.TraceID, sp.SpanID)] = traceOp
			m[dbmodel.Service{ServiceName: sp.Process.ServiceName, OperationName: sp.Operation}.ID()] = serviceOp
		}
		return m
	}
	cases := []struct {
		name      string
		fill      bool
		status    int
		want      map[string]string
		wantStale float64
	}{
		{"normal", false, 201, actions("index external_gte", "index", "index external_gte", "index"), 0},
		{"fill", true, 201, actions("index external", "create", "create", "create"), 0},
		{"fill, all stored", true, 409, actions("index external", "create", "create", "create"), docs},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fake := &fakeES{written: map[string]int{}, respond: all(c.status)}
			srv := httptest.NewServer(fake)
			defer srv.Close()
			reg := prometheus.NewRegistry()
			s, err := New(context.Background(), Config{URLs: []string{srv.URL}, Registerer: reg, MaxRetries: 1, RetryBackoff: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			if c.fill {
				ctx = storage.WithFill(ctx)
			}
			if err := s.WriteTraces(ctx, []model.AssembledTrace{trace}); err != nil {
				t.Fatalf("write traces: %v", err)
			}
			if err := s.WriteRollups(ctx, []model.Rollup{rollup, unversioned}); err != nil {
				t.Fatalf("write rollups: %v", err)
			}
			if err := s.WriteEdgeRollups(ctx, []model.EdgeRollup{edge}); err != nil {
				t.Fatalf("write edge rollups: %v", err)
			}
			fake.mu.Lock()
			defer fake.mu.Unlock()
			for id, want := range c.want {
				if got := fake.actions[id]; got != want {
					t.Errorf("action of %s = %q, want %q", id, got, want)
				}
			}
			if len(fake.actions) != len(c.want) {
				t.Errorf("actions %v, want %v", fake.actions, c.want)
			}
			if got := metricValue(t, reg, "tracepipe_es_stale_versions_total", ""); got != c.wantStale {
				t.Errorf("stale versions = %v, want %v", got, c.wantStale)
			}
		})
	}
}

// TestBulkWriterBatchesConcurrentCalls: concurrent small writes share bulk
// requests, every caller is acknowledged, and the service cache avoids
// rewriting Jaeger service docs.
func TestBulkWriterBatchesConcurrentCalls(t *testing.T) {
	fake := &fakeES{written: map[string]int{}, respond: all(201)}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	s, err := New(context.Background(), Config{URLs: []string{srv.URL}, FlushInterval: 20 * time.Millisecond, BatchDocs: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs <- s.WriteTraces(context.Background(), []model.AssembledTrace{storagetest.Trace(storagetest.Spec{ID: model.TraceID{Low: uint64(i + 1)}, Start: storagetest.Day0})})
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	if fake.calls >= 50 {
		t.Errorf("%d bulk calls for 50 writes: not batched", fake.calls)
	}
	if n := len(fake.written); n != 50*4+3 {
		t.Errorf("distinct docs written = %d, want %d", n, 50*4+3)
	}
	if err := s.WriteTraces(context.Background(), []model.AssembledTrace{storagetest.Trace(storagetest.Spec{ID: model.TraceID{Low: 99}})}); err == nil {
		t.Error("write after Close succeeded")
	}
}

func TestIndexNames(t *testing.T) {
	ts := model.TimestampOf(time.Date(2026, 3, 10, 23, 59, 59, 0, time.UTC))
	x := newIndices("prod")
	if got := x.span(ts); got != "prod-jaeger-span-2026-03-10" {
		t.Errorf("span index %s", got)
	}
	if got := newIndices("").rollup(time.Hour, ts); got != "tracepipe-rollups-1h-2026-03-10" {
		t.Errorf("rollup index %s", got)
	}
	if got := x.edges(time.Minute, ts); got != "prod-tracepipe-edges-1m-2026-03-10" {
		t.Errorf("edge index %s", got)
	}
	if got := x.dependencies(ts); got != "prod-jaeger-dependencies-2026-03-10" {
		t.Errorf("dependencies index %s", got)
	}
	cases := []struct {
		name string
		ok   bool
	}{
		{"prod-jaeger-span-2026-03-10", true},
		{"prod-jaeger-service-2026-03-10", true},
		{"prod-tracepipe-traces-2026-03-10", true},
		{"prod-tracepipe-rollups-1m-2026-03-10", true},
		{"prod-tracepipe-edges-1m-2026-03-10", true},
		{"prod-tracepipe-edges-1d-2026-03-10", true},
		{"prod-jaeger-dependencies-2026-03-10", true},
		{"prod-tracepipe-edges-2026-03-10", false},     // no resolution
		{"jaeger-span-2026-03-10", false},              // another prefix
		{"prod-other-jaeger-span-2026-03-10", false},   // another prefix
		{"prod-jaeger-span-archive", false},            // not daily
		{"prod-tracepipe-rollups-2026-03-10", false},   // no resolution
		{"prod-jaeger-span-2026-03-10-reindex", false}, // suffix
	}
	for _, c := range cases {
		if _, ok := x.dayOf(c.name); ok != c.ok {
			t.Errorf("dayOf(%s) ok = %v, want %v", c.name, ok, c.ok)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
	}{
		{"no url", Config{}},
		{"bad url", Config{URLs: []string{"localhost:9200"}}},
		{"bad prefix", Config{URLs: []string{"http://x"}, IndexPrefix: "Prod*"}},
		{"bad refresh", Config{URLs: []string{"http://x"}, Refresh: "sometimes"}},
		{"repeated tag", Config{URLs: []string{"http://x"}, PromotedTags: []string{"a", "a"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := New(context.Background(), c.cfg); err == nil {
				t.Error("accepted")
			}
		})
	}
}

// TestBulkWriterRequestTimeout: a bulk request that gets no answer (a
// paused engine: the connection stays open) is given up after
// RequestTimeout and resent, counted as a "timeout" retry; nothing is
// dead-lettered.
func TestBulkWriterRequestTimeout(t *testing.T) {
	fake := &fakeES{written: map[string]int{}, respond: all(201)}
	var mu sync.Mutex
	stalled := 0
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		stall := r.URL.Path == "/_bulk" && stalled == 0
		if stall {
			stalled++
		}
		mu.Unlock()
		if stall {
			// No answer until the client gives up (the server notices a
			// closed connection only once the body is read) or the test ends.
			io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		fake.ServeHTTP(w, r)
	}))
	defer srv.Close()
	defer close(release)
	reg := prometheus.NewRegistry()
	dl := &deadLetters{}
	s, err := New(context.Background(), Config{URLs: []string{srv.URL}, FlushInterval: 10 * time.Millisecond,
		RequestTimeout: 200 * time.Millisecond, RetryBackoff: 10 * time.Millisecond, Registerer: reg, DeadLetter: dl})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tr := storagetest.Trace(storagetest.Spec{ID: model.TraceID{Low: 7}, Start: storagetest.Day0})
	if err := s.WriteTraces(context.Background(), []model.AssembledTrace{tr}); err != nil {
		t.Fatalf("write after a timed-out request: %v", err)
	}
	if stalled != 1 {
		t.Fatalf("%d bulk requests stalled, want 1", stalled)
	}
	if n := metricValue(t, reg, "tracepipe_es_retries_total", "timeout"); n == 0 {
		t.Error("no retry counted with reason timeout")
	}
	if len(dl.got) != 0 {
		t.Errorf("%d documents dead-lettered", len(dl.got))
	}
	if len(fake.written) == 0 {
		t.Error("nothing written after the retry")
	}
}
