//lint:file-ignore SA1019 legacy (_template) index templates are deliberate: what Jaeger v1 installs for ES 7, accepted by ES 7.x and OpenSearch 2.x

package elasticsearch

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/olivere/elastic/v7"
	"go.uber.org/goleak"

	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/storage"
	"github.com/tracepipe/tracepipe/storage/dbmodel"
	"github.com/tracepipe/tracepipe/storage/storagetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	closeBench()
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"), goleak.IgnoreTopFunction("internal/poll.runtime_pollWait")); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// esURL returns the real engine's URL (TRACEPIPE_ES); without it the test
// is skipped, or fails under CI=true.
func esURL(t testing.TB) string {
	t.Helper()
	return testenv.Elasticsearch(t)
}

// testPrefix returns a fresh index prefix and deletes its indices and
// templates when the test ends.
func testPrefix(t testing.TB, url string) string {
	prefix := fmt.Sprintf("tptest-%x", rand.Uint64())
	t.Cleanup(func() {
		c, err := elastic.NewClient(elastic.SetURL(url), elastic.SetSniff(false), elastic.SetHealthcheck(false))
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer c.Stop()
		ctx := context.Background()
		if _, err := c.DeleteIndex(prefix + "-*").Do(ctx); err != nil && !elastic.IsNotFound(err) {
			t.Errorf("cleanup indices: %v", err)
		}
		for _, tp := range newIndices(prefix).templates() {
			if _, err := c.IndexDeleteTemplate(tp.name).Do(ctx); err != nil && !elastic.IsNotFound(err) {
				t.Errorf("cleanup template %s: %v", tp.name, err)
			}
		}
	})
	return prefix
}

func newTestStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	url := esURL(t)
	// With the tag layout tracepipe's binaries use (storeflags.Default).
	storagetest.Run(t, func(t *testing.T) storage.Store {
		return newTestStore(t, Config{URLs: []string{url}, IndexPrefix: testPrefix(t, url), Refresh: "wait_for",
			SpanOptions: dbmodel.SpanOptions{WellKnownTagsAsFields: true}})
	})
}

func TestTemplatesInstalledIdempotentAndVersioned(t *testing.T) {
	url := esURL(t)
	prefix := testPrefix(t, url)
	ctx := context.Background()
	c, err := elastic.NewClient(elastic.SetURL(url), elastic.SetSniff(false), elastic.SetHealthcheck(false))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	name := prefix + "-tracepipe-traces"
	// An older template is upgraded, a newer one left alone.
	if _, err := c.IndexPutTemplate(name).BodyString(`{"index_patterns":["` + name + `-*"],"version":0}`).Do(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		newTestStore(t, Config{URLs: []string{url}, IndexPrefix: prefix}).Close()
	}
	got, err := c.IndexGetTemplate(name).Do(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got[name].Version != TemplateVersion || got[name].Mappings == nil {
		t.Fatalf("template %s: version %d, mappings %v", name, got[name].Version, got[name].Mappings)
	}
	if _, err := c.IndexPutTemplate(name).BodyString(`{"index_patterns":["` + name + `-*"],"version":99}`).Do(ctx); err != nil {
		t.Fatal(err)
	}
	newTestStore(t, Config{URLs: []string{url}, IndexPrefix: prefix}).Close()
	if got, _ = c.IndexGetTemplate(name).Do(ctx); got[name].Version != 99 {
		t.Errorf("newer template downgraded to %d", got[name].Version)
	}
	// Written indices get the mappings.
	s := newTestStore(t, Config{URLs: []string{url}, IndexPrefix: prefix + "x", Refresh: "wait_for"})
	testPrefixCleanup(t, url, prefix+"x")
	if err := s.WriteTraces(ctx, []model.AssembledTrace{storagetest.Trace(storagetest.Spec{ID: model.TraceID{Low: 1}, Start: storagetest.Day0})}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// A plain GET /{index}/_mapping: olivere's GetMapping without a type asks
	// for /{index}/_mapping/_all, which OpenSearch 2 no longer serves.
	m, err := c.PerformRequest(ctx, elastic.PerformRequestOptions{Method: "GET", Path: "/" + prefix + "x-jaeger-span-2026-03-10/_mapping"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(m.Body), `"nested"`) {
		t.Errorf("span index mapping lacks nested tags: %s", m.Body)
	}
}

// TestEdgeSeriesPages: a series longer than one search page (model.MaxLimit
// hits) comes back whole and in window order, across daily indices, and each
// rollup is indexed under its ID in its resolution's daily index.
func TestEdgeSeriesPages(t *testing.T) {
	url := esURL(t)
	prefix := testPrefix(t, url)
	ctx := context.Background()
	s := newTestStore(t, Config{URLs: []string{url}, IndexPrefix: prefix, Refresh: "wait_for"})
	defer s.Close()
	n := model.MaxLimit + 50 // 1m windows: about a week, 8 daily indices
	edges := make([]model.EdgeRollup, n)
	for i := range edges {
		edges[i] = model.EdgeRollup{Resolution: time.Minute, WindowStart: storagetest.Day0.Add(time.Duration(i) * time.Minute),
			Caller: "api", Callee: "db", Calls: int64(i%3 + 1)}
	}
	// Shuffled, so the order comes from the reader.
	shuffled := append([]model.EdgeRollup(nil), edges...)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	if err := s.WriteEdgeRollups(ctx, shuffled); err != nil {
		t.Fatal(err)
	}
	got, err := s.EdgeSeries(ctx, time.Minute, "api", "db", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("%d edge rollups, want %d", len(got), n)
	}
	for i := range got {
		if got[i].ID() != edges[i].ID() || got[i].Calls != edges[i].Calls {
			t.Fatalf("rollup %d: %s calls %d, want %s calls %d", i, got[i].ID(), got[i].Calls, edges[i].ID(), edges[i].Calls)
		}
	}
	last := edges[n-1]
	res, err := s.c.Get().Index(s.x.edges(last.Resolution, last.WindowStart)).Id(last.ID()).Do(ctx)
	if err != nil || !res.Found {
		t.Fatalf("edge rollup %s not in %s: %v", last.ID(), s.x.edges(last.Resolution, last.WindowStart), err)
	}
}

func testPrefixCleanup(t *testing.T, url, prefix string) {
	t.Cleanup(func() {
		c, err := elastic.NewClient(elastic.SetURL(url), elastic.SetSniff(false), elastic.SetHealthcheck(false))
		if err != nil {
			return
		}
		defer c.Stop()
		c.DeleteIndex(prefix + "-*").Do(context.Background())
		for _, tp := range newIndices(prefix).templates() {
			c.IndexDeleteTemplate(tp.name).Do(context.Background())
		}
	})
}

// TestMappingErrorGoesToDeadLetter: an index whose mapping rejects our span
// documents makes them dead letters with the reason; the rest is written.
func TestMappingErrorGoesToDeadLetter(t *testing.T) {
	url := esURL(t)
	prefix := testPrefix(t, url)
	ctx := context.Background()
	c, err := elastic.NewClient(elastic.SetURL(url), elastic.SetSniff(false), elastic.SetHealthcheck(false))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	dl := &deadLetters{}
	s := newTestStore(t, Config{URLs: []string{url}, IndexPrefix: prefix, Refresh: "wait_for", DeadLetter: dl})
	defer s.Close()
	if _, err := c.CreateIndex(prefix + "-jaeger-span-2026-03-10").BodyString(`{"mappings":{"properties":{"startTime":{"type":"boolean"}}}}`).Do(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteTraces(ctx, []model.AssembledTrace{storagetest.Trace(storagetest.Spec{ID: model.TraceID{Low: 1}, Start: storagetest.Day0})}); err != nil {
		t.Fatalf("write: %v", err)
	}
	if len(dl.got) != 3 || !strings.Contains(dl.got[0].Reason, "mapper_parsing_exception") || dl.got[0].Kind != "span" {
		t.Fatalf("dead letters: %+v", dl.got)
	}
	res, err := s.FindTraces(ctx, model.TraceQuery{})
	if err != nil || len(res) != 1 {
		t.Fatalf("summary not written: %v %v", res, err)
	}
}

// failingTransport answers the first n bulk requests with 429 itself.
type failingTransport struct {
	n    atomic.Int32
	next http.RoundTripper
}

func (f *failingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/_bulk") && f.n.Add(-1) >= 0 {
		return &http.Response{StatusCode: 429, Header: http.Header{"Content-Type": {"application/json"}}, Request: r,
			Body: io.NopCloser(strings.NewReader(`{"error":{"type":"es_rejected_execution_exception","reason":"injected"},"status":429}`))}, nil
	}
	return f.next.RoundTrip(r)
}

func TestRetriesUntilAcknowledged(t *testing.T) {
	url := esURL(t)
	ft := &failingTransport{next: http.DefaultTransport}
	ft.n.Store(3)
	s := newTestStore(t, Config{URLs: []string{url}, IndexPrefix: testPrefix(t, url), Refresh: "wait_for", HTTPClient: &http.Client{Transport: ft}, RetryBackoff: 10 * time.Millisecond})
	defer s.Close()
	ctx := context.Background()
	if err := s.WriteTraces(ctx, []model.AssembledTrace{storagetest.Trace(storagetest.Spec{ID: model.TraceID{Low: 5}, Start: storagetest.Day0})}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetTrace(ctx, model.TraceID{Low: 5}); err != nil {
		t.Fatalf("after retries: %v", err)
	}
	if ft.n.Load() >= 0 {
		t.Errorf("injected failures not all consumed")
	}
}

// TestDependencyDocumentFenced: the Jaeger dependency document written with
// a daily edge rollup carries the edge rollup's version, so an older write
// (an aggregator that lost its partition) replaces neither.
func TestDependencyDocumentFenced(t *testing.T) {
	url := esURL(t)
	s := newTestStore(t, Config{URLs: []string{url}, IndexPrefix: testPrefix(t, url), Refresh: "wait_for"})
	defer s.Close()
	ctx := context.Background()
	e := model.EdgeRollup{Resolution: 24 * time.Hour, WindowStart: model.TimestampOf(time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)), Caller: "api", Callee: "db"}
	for _, w := range []struct{ calls, version int64 }{{7, 200}, {3, 100}} {
		e.Calls, e.Version = w.calls, w.version
		e.Latency = model.Distribution{Sum: time.Duration(w.calls) * time.Millisecond}
		if err := s.WriteEdgeRollups(ctx, []model.EdgeRollup{e}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := s.c.Get().Index(s.x.dependencies(e.WindowStart)).Id(e.ID()).Do(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var d dbmodel.Dependencies
	if err := json.Unmarshal(res.Source, &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Dependencies) != 1 || d.Dependencies[0].CallCount != 7 || res.Version == nil || *res.Version != 200 {
		t.Errorf("dependency document %s version %v, want 7 calls at version 200", res.Source, res.Version)
	}
}

// TestDependencyDocumentFill: under storage.WithFill the Jaeger dependency
// document of a daily edge rollup is written only where none is stored: a
// stored one stays as it is (even against a newer version), a missing one
// is created.
func TestDependencyDocumentFill(t *testing.T) {
	url := esURL(t)
	s := newTestStore(t, Config{URLs: []string{url}, IndexPrefix: testPrefix(t, url), Refresh: "wait_for"})
	defer s.Close()
	ctx := context.Background()
	day := model.TimestampOf(time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC))
	edge := func(d int, calls, version int64) model.EdgeRollup {
		return model.EdgeRollup{Resolution: 24 * time.Hour, WindowStart: day.Add(time.Duration(d) * 24 * time.Hour), Caller: "api", Callee: "db",
			Calls: calls, Latency: model.Distribution{Sum: time.Duration(calls) * time.Millisecond}, Version: version}
	}
	if err := s.WriteEdgeRollups(ctx, []model.EdgeRollup{edge(0, 7, 200)}); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteEdgeRollups(storage.WithFill(ctx), []model.EdgeRollup{edge(0, 3, 300), edge(1, 5, 300)}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct {
		day     int
		calls   uint64
		version int64 // Elasticsearch's _version: the edge's, or 1 for a document created by a fill
	}{{0, 7, 200}, {1, 5, 1}} {
		e := edge(want.day, 0, 0)
		res, err := s.c.Get().Index(s.x.dependencies(e.WindowStart)).Id(e.ID()).Do(ctx)
		if err != nil {
			t.Fatalf("day %d: %v", want.day, err)
		}
		var d dbmodel.Dependencies
		if err := json.Unmarshal(res.Source, &d); err != nil {
			t.Fatal(err)
		}
		if len(d.Dependencies) != 1 || d.Dependencies[0].CallCount != want.calls || res.Version == nil || *res.Version != want.version {
			t.Errorf("day %d: dependency document %s version %v, want %d calls at version %d", want.day, res.Source, res.Version, want.calls, want.version)
		}
	}
}
