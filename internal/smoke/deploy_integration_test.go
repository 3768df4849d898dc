package smoke

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/pipeline/collector"
	"github.com/tracepipe/tracepipe/pipeline/index"
	"github.com/tracepipe/tracepipe/pipeline/ingest"
	"github.com/tracepipe/tracepipe/query"
	"github.com/tracepipe/tracepipe/storage/dbmodel"
	"github.com/tracepipe/tracepipe/storage/elasticsearch"
)

// selectorRE finds the metric selectors of a PromQL expression.
var selectorRE = regexp.MustCompile(`\btracepipe_[a-z0-9_]+(\{[^}]*\})?`)

// comparisonRE: an expression that filters by value (>, <, ==, ...) may
// rightly return nothing.
var comparisonRE = regexp.MustCompile(`[<>]|==|!=\s*[0-9]`)

// TestDashboardPromQLOnPrometheus runs every PromQL expression of the
// dashboards on the real Prometheus while it scrapes real stage metrics
// (the collector's, ingester's, indexer's and query API's registries, as
// the binaries build them, with a little traffic counted): every
// expression must evaluate without error, and every expression whose
// metrics all have scraped series, and that filters nothing by value,
// must return data — a wrong label name or value in a matcher or a
// grouping shows as an empty result here.
func TestDashboardPromQLOnPrometheus(t *testing.T) {
	prom := testenv.Prometheus(t)
	reg := prometheus.NewRegistry()
	brokers := []string{"127.0.0.1:1"}
	icfg := ingest.DefaultConfig()
	icfg.Brokers = brokers
	if _, err := ingest.New(icfg, ingest.Options{Registry: reg}); err != nil {
		t.Fatal(err)
	}
	ccfg := collector.DefaultConfig()
	ccfg.Brokers, ccfg.SpansTopic = brokers, "spans"
	if _, err := collector.New(ccfg, collector.Options{Registry: reg}); err != nil {
		t.Fatal(err)
	}
	xcfg := index.DefaultConfig()
	xcfg.Brokers = brokers
	if _, err := index.New(xcfg, nopStore{}, index.Options{Registry: reg}); err != nil {
		t.Fatal(err)
	}
	api, err := query.Limit(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "[]") }),
		query.DefaultLimits(), query.LimitOptions{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/api/services", "/api/traces?service=x"} { // one cheap, one heavy request
		api.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, path, nil))
	}
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	name := prom.AddTarget(t, strings.TrimPrefix(srv.URL, "http://"), map[string]string{"component": "dashboards"})

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// rate() needs two scrapes of the target (every second).
	for {
		got, err := prom.Query(ctx, fmt.Sprintf(`count_over_time(up{testenv_target=%q}[1m])`, name))
		if err == nil && len(got) == 1 && got[0].Value >= 3 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("Prometheus did not scrape the target three times (last: %v, %v)", got, err)
		case <-time.After(500 * time.Millisecond):
		}
	}

	exprs := dashboardExprs(t)
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range exprs {
			if !yield(k) {
				return
			}
		}
	})
	present := map[string]bool{}
	checked := 0
	for _, k := range keys {
		expr := exprs[k]
		got, err := prom.Query(ctx, expr)
		if err != nil {
			t.Errorf("%s: %v", k, err)
			continue
		}
		all := true
		for _, sel := range selectorRE.FindAllStringSubmatch(expr, -1) {
			name := strings.TrimSuffix(sel[0], sel[1]) // the metric name alone: label matchers are what is checked
			ok, seen := present[name]
			if !seen {
				n, err := prom.Query(ctx, "count("+name+")")
				ok = err == nil && len(n) == 1 && n[0].Value > 0
				present[name] = ok
			}
			all = all && ok
		}
		if !all || comparisonRE.MatchString(stripBraces(expr)) {
			continue
		}
		checked++
		if len(got) == 0 {
			t.Errorf("%s: no data although Prometheus has series of every metric it names:\n%s", k, expr)
		}
	}
	t.Logf("%d expressions evaluated, %d of them with series of every metric they name, checked for data", len(exprs), checked)
	if checked < 20 {
		t.Errorf("only %d of %d expressions had all their series scraped; the served registry no longer covers the stages", checked, len(exprs))
	}
}

// stripBraces removes label matchers (whose =~ and != are not comparisons).
func stripBraces(expr string) string {
	return regexp.MustCompile(`\{[^}]*\}`).ReplaceAllString(expr, "")
}

// luceneEscape is Grafana's escaping of a variable value in a Lucene query.
var luceneEscape = regexp.MustCompile(`([!*+\-=<>\s&|()\[\]{}^~?:\\/"])`)

// luceneValues formats a multi-value variable as Grafana does for an
// Elasticsearch query: ("a" OR "b").
func luceneValues(vs ...string) string {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = `"` + luceneEscape.ReplaceAllString(v, `\$1`) + `"`
	}
	return "(" + strings.Join(q, " OR ") + ")"
}

// esTarget is an Elasticsearch panel query of a dashboard.
type esTarget struct {
	Query     string `json:"query"`
	TimeField string `json:"timeField"`
	Metrics   []struct {
		ID    string `json:"id"`
		Type  string `json:"type"`
		Field string `json:"field"`
	} `json:"metrics"`
	BucketAggs []struct {
		ID       string            `json:"id"`
		Type     string            `json:"type"`
		Field    string            `json:"field"`
		Settings map[string]string `json:"settings"`
	} `json:"bucketAggs"`
}

// searchBody builds the search Grafana's Elasticsearch datasource sends for
// a terms → date_histogram → metric panel query over [from, to].
func searchBody(t *testing.T, tg esTarget, query string, from, to time.Time) []byte {
	t.Helper()
	if len(tg.Metrics) != 1 || len(tg.BucketAggs) != 2 || tg.BucketAggs[0].Type != "terms" || tg.BucketAggs[1].Type != "date_histogram" {
		t.Fatalf("rollup panel query of an unexpected shape (one metric, terms then date_histogram): %+v", tg)
	}
	m, terms, hist := tg.Metrics[0], tg.BucketAggs[0], tg.BucketAggs[1]
	metric := map[string]any{m.Type: map[string]any{"field": m.Field}}
	var size int
	fmt.Sscan(terms.Settings["size"], &size)
	body := map[string]any{
		"size": 0,
		"query": map[string]any{"bool": map[string]any{"filter": []any{
			map[string]any{"range": map[string]any{tg.TimeField: map[string]any{"gte": from.UnixMilli(), "lte": to.UnixMilli(), "format": "epoch_millis"}}},
			map[string]any{"query_string": map[string]any{"analyze_wildcard": true, "query": query}},
		}}},
		"aggs": map[string]any{terms.ID: map[string]any{
			"terms": map[string]any{"field": terms.Field, "size": size, "order": map[string]any{m.ID: "desc"}, "min_doc_count": 1},
			"aggs": map[string]any{
				m.ID: metric,
				hist.ID: map[string]any{
					"date_histogram": map[string]any{"field": hist.Field, "fixed_interval": hist.Settings["interval"], "min_doc_count": 0,
						"extended_bounds": map[string]any{"min": from.UnixMilli(), "max": to.UnixMilli()}, "format": "epoch_millis"},
					"aggs": map[string]any{m.ID: metric},
				},
			},
		}},
	}
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// field reads a dotted field of a stored document.
func field(doc map[string]any, path string) (float64, bool) {
	var v any = doc
	for _, p := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return 0, false
		}
		v = m[p]
	}
	f, ok := v.(float64)
	return f, ok
}

// TestDashboardRollupPanelsOnElasticsearch writes rollups through the real
// Elasticsearch store (its index templates, its document model), then runs
// every Elasticsearch panel query of the aggregator dashboard as Grafana
// builds it (the service and operation variables formatted as Grafana does
// for Lucene, operation names with spaces and slashes) and checks each
// operation's value in each window against the stored documents.
func TestDashboardRollupPanelsOnElasticsearch(t *testing.T) {
	url := testenv.Elasticsearch(t)
	prefix := testenv.Name(t, "tpdash")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	t.Cleanup(func() { deleteESPrefix(t, url, prefix) })
	// No idle connections: goleak checks for leaked goroutines.
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	store, err := elasticsearch.New(ctx, elasticsearch.Config{URLs: []string{url}, IndexPrefix: prefix, HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()

	w0 := time.Now().UTC().Truncate(time.Minute).Add(-10 * time.Minute)
	ops := []string{"HTTP GET /dispatch", "SQL SELECT"}
	var rollups []model.Rollup
	for i, op := range ops {
		for j := range 3 {
			n := int64(10*(i+1) + j)
			d := func(base time.Duration) model.Distribution {
				q := model.Quantiles{P50: base, P90: 2 * base, P95: 3 * base, P99: 4 * base, Max: 5 * base}
				return model.Distribution{Sum: time.Duration(n) * base, Quantiles: q}
			}
			rollups = append(rollups, model.Rollup{Resolution: time.Minute, WindowStart: model.Timestamp(w0.Add(time.Duration(j) * time.Minute).UnixNano()),
				Service: "frontend", Operation: op, Kind: model.KindServer, Count: n, Errors: n / 10,
				Duration: d(time.Duration(n) * time.Millisecond), Self: d(time.Millisecond), CriticalPath: d(time.Duration(n) * 700 * time.Microsecond),
				TraceDurationSum: time.Duration(n) * 2 * time.Second, CriticalPathShare: float64(n) / 100})
		}
	}
	// Another service's rollups, which the service variable filters out.
	other := rollups[0]
	other.Service, other.Count = "other", 999
	rollups = append(rollups, other)
	if err := store.WriteRollups(ctx, rollups); err != nil {
		t.Fatal(err)
	}
	if err := store.Refresh(ctx); err != nil {
		t.Fatal(err)
	}

	b, err := os.ReadFile(filepath.Join(dashboardsDir, "tracepipe-aggregator.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title      string `json:"title"`
			Datasource struct {
				Type string `json:"type"`
			} `json:"datasource"`
			Targets []esTarget `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	q := strings.NewReplacer("$service", luceneValues("frontend"), "$operation", luceneValues(ops...))
	from, to := w0.Add(-5*time.Minute), w0.Add(10*time.Minute)
	panels := 0
	for _, p := range d.Panels {
		if p.Datasource.Type != "elasticsearch" {
			continue
		}
		panels++
		for _, tg := range p.Targets {
			resp := esSearch(t, ctx, url+"/"+prefix+"-tracepipe-rollups-1m-*/_search", searchBody(t, tg, q.Replace(tg.Query), from, to))
			metric, terms, hist := tg.Metrics[0], tg.BucketAggs[0], tg.BucketAggs[1]
			got := map[string]map[int64]float64{}
			for _, tb := range resp.Aggregations[terms.ID].Buckets {
				got[tb.Key.(string)] = map[int64]float64{}
				for _, hb := range tb.Sub[hist.ID].Buckets {
					if v, ok := hb.Sub[metric.ID].Value.(float64); ok {
						got[tb.Key.(string)][int64(hb.Key.(float64))] = v
					}
				}
			}
			want := map[string]map[int64]float64{}
			for _, r := range rollups {
				if r.Service != "frontend" {
					continue
				}
				var doc map[string]any
				raw, _ := json.Marshal(dbmodel.FromDomainRollup(&r))
				if err := json.Unmarshal(raw, &doc); err != nil {
					t.Fatal(err)
				}
				v, ok := field(doc, metric.Field)
				if !ok {
					t.Fatalf("panel %q: stored rollups have no numeric field %s", p.Title, metric.Field)
				}
				if want[r.Operation] == nil {
					want[r.Operation] = map[int64]float64{}
				}
				want[r.Operation][int64(r.WindowStart)/1e6] = v
			}
			for op, windows := range want {
				for ms, v := range windows {
					if got[op][ms] != v {
						t.Errorf("panel %q (%s %s): %s at %s = %v, want %v (all: %v)", p.Title, metric.Type, metric.Field, op,
							time.UnixMilli(ms).UTC().Format(time.TimeOnly), got[op][ms], v, got)
					}
				}
			}
			if len(got) != len(ops) {
				t.Errorf("panel %q: operations %v, want exactly %v", p.Title, got, ops)
			}
		}
	}
	if panels < 5 {
		t.Errorf("%d Elasticsearch panels in the aggregator dashboard, want the five rollup panels", panels)
	}
}

type esBucket struct {
	Key any               `json:"key"`
	Sub map[string]esAggV `json:"-"`
	raw map[string]json.RawMessage
}

type esAggV struct {
	Value   any        `json:"value"`
	Buckets []esBucket `json:"buckets"`
}

func (b *esBucket) UnmarshalJSON(data []byte) error {
	if err := json.Unmarshal(data, &b.raw); err != nil {
		return err
	}
	if err := json.Unmarshal(b.raw["key"], &b.Key); err != nil {
		return err
	}
	b.Sub = map[string]esAggV{}
	for k, v := range b.raw {
		if k == "key" || k == "key_as_string" || k == "doc_count" {
			continue
		}
		var a esAggV
		if json.Unmarshal(v, &a) == nil {
			b.Sub[k] = a
		}
	}
	return nil
}

type esResponse struct {
	Aggregations map[string]esAggV `json:"aggregations"`
}

func esSearch(t *testing.T, ctx context.Context, url string, body []byte) esResponse {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("search %s: %s\n%s\nrequest: %s", url, resp.Status, b, body)
	}
	var r esResponse
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("search %s: %v\n%s", url, err, b)
	}
	return r
}

// deleteESPrefix removes the indices and index templates of prefix.
func deleteESPrefix(t *testing.T, url, prefix string) {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	do := func(method, path string) []byte {
		req, _ := http.NewRequest(method, url+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Errorf("cleanup %s %s: %v", method, path, err)
			return nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return b
	}
	do(http.MethodDelete, "/"+prefix+"-*")
	var templates map[string]json.RawMessage
	if err := json.Unmarshal(do(http.MethodGet, "/_template/"+prefix+"-*"), &templates); err == nil {
		for name := range templates {
			do(http.MethodDelete, "/_template/"+name)
		}
	}
}
