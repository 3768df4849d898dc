package query

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/storage/embedded"
	"github.com/tracepipe/tracepipe/storage/storagetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func tid(n uint64) model.TraceID { return model.TraceID{Low: n} }

// server serves an embedded store holding traces 1..5 (trace i lasts i*10ms,
// starts at Day0+i min, shard i%2, trace 3 has an error), a rollup and the
// edge rollups of edges().
func server(t *testing.T) *httptest.Server {
	t.Helper()
	ctx := context.Background()
	s, err := embedded.Open(ctx, embedded.Options{Path: filepath.Join(t.TempDir(), "db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var ats []model.AssembledTrace
	for i := 1; i <= 5; i++ {
		ats = append(ats, storagetest.Trace(storagetest.Spec{
			ID: tid(uint64(i)), Start: storagetest.Day0.Add(time.Duration(i) * time.Minute), Duration: time.Duration(i) * 10 * time.Millisecond,
			Shard: []string{"0", "1"}[i%2], Error: i == 3,
		}))
	}
	if err := s.WriteTraces(ctx, ats); err != nil {
		t.Fatal(err)
	}
	r := model.Rollup{Resolution: time.Minute, WindowStart: storagetest.Day0, Service: "db", Operation: "SELECT", Kind: model.KindClient, Count: 5,
		Exemplars: []model.Exemplar{{TraceID: tid(5), Duration: 50 * time.Millisecond, Start: storagetest.Day0}}}
	if err := s.WriteRollups(ctx, []model.Rollup{r}); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteEdgeRollups(ctx, edges()); err != nil {
		t.Fatal(err)
	}
	now := func() time.Time { return storagetest.Day0.Time().Add(10 * time.Minute) }
	h := NewHandler(s, now, nil)
	h.SetResolutions([]time.Duration{time.Minute, time.Hour, 24 * time.Hour})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, srv *httptest.Server, method, path string, into any) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatalf("%s: decode: %v", path, err)
	}
	if into != nil && resp.StatusCode == 200 {
		if err := json.Unmarshal(raw, into); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, string(raw)
}

func TestAPITrace(t *testing.T) {
	srv := server(t)
	var tr Trace
	code, body := get(t, srv, "GET", "/api/v1/traces/"+tid(3).String(), &tr)
	if code != 200 {
		t.Fatalf("code %d: %s", code, body)
	}
	if tr.Summary.TraceID != tid(3).String() || len(tr.Spans) != 3 || len(tr.CriticalPath) != 4 || len(tr.Warnings) != 1 {
		t.Fatalf("trace: %s", body)
	}
	if tr.Spans[0].Depth != 0 || tr.Spans[1].Depth != 1 || tr.Spans[1].Operation != "charge" || !tr.Spans[2].Error {
		t.Errorf("span tree: %+v", tr.Spans)
	}
	if tr.Summary.Bottleneck == nil || tr.Summary.Bottleneck.Operation != "charge" || tr.Summary.Bottleneck.CriticalPathNanos != int64(15*time.Millisecond) {
		t.Errorf("bottleneck: %+v", tr.Summary.Bottleneck)
	}
}

func TestAPIErrors(t *testing.T) {
	srv := server(t)
	cases := []struct {
		name, method, path string
		code               int
		msg                string
	}{
		{"missing trace", "GET", "/api/v1/traces/ffff", 404, `"trace ffff not found"`},
		{"bad trace id", "GET", "/api/v1/traces/xyz", 400, "not hex"},
		{"negative limit", "GET", "/api/v1/traces?limit=-1", 400, "limit"},
		{"unknown parameter", "GET", "/api/v1/traces?colour=red", 400, "unknown parameter"},
		{"unpromoted tag", "GET", "/api/v1/traces?tag=color=red", 400, "not searchable"},
		{"since and start", "GET", "/api/v1/traces?since=1h&start=2026-03-10", 400, "since cannot be combined"},
		{"bad time", "GET", "/api/v1/bottlenecks?start=yesterday", 400, "RFC 3339"},
		{"start past 2262", "GET", "/api/v1/traces?start=2300-01-01", 400, "outside the range of timestamps (1677-09-21 to 2262-04-11)"},
		{"end before 1677", "GET", "/api/v1/bottlenecks?end=1600-01-01T00:00:00Z", 400, "outside the range"},
		{"edges start past 2262", "GET", "/api/v1/edges?caller=frontend&callee=db&start=2262-04-12", 400, "outside the range"},
		{"rollups need operation", "GET", "/api/v1/rollups?service=db", 400, "operation"},
		{"bad resolution", "GET", "/api/v1/rollups?service=db&operation=x&resolution=fast", 400, "resolution"},
		{"resolution not written", "GET", "/api/v1/rollups?service=db&operation=SELECT&resolution=5m", 400, "no rollups at resolution 5m; the aggregator writes 1m, 1h, 1d"},
		{"edge resolution not written", "GET", "/api/v1/edges?caller=frontend&callee=db&resolution=15m", 400, "no rollups at resolution 15m"},
		{"edges need caller", "GET", "/api/v1/edges?callee=db", 400, "edges need a caller"},
		{"edges need callee", "GET", "/api/v1/edges?caller=frontend", 400, "edges need a callee"},
		{"edges bad resolution", "GET", "/api/v1/edges?caller=frontend&callee=db&resolution=fast", 400, "resolution"},
		{"edges zero resolution", "GET", "/api/v1/edges?caller=frontend&callee=db&resolution=0s", 400, "resolution"},
		{"edges start after end", "GET", "/api/v1/edges?caller=frontend&callee=db&start=2026-03-11&end=2026-03-10", 400, "start is after end"},
		{"edges since and end", "GET", "/api/v1/edges?caller=frontend&callee=db&since=1h&end=2026-03-10", 400, "since cannot be combined"},
		{"edges bad since", "GET", "/api/v1/edges?caller=frontend&callee=db&since=-1h", 400, "positive duration"},
		{"edges unknown parameter", "GET", "/api/v1/edges?caller=frontend&callee=db&service=db", 400, "(known: caller, callee, resolution, since, start, end)"},
		{"edges post", "POST", "/api/v1/edges?caller=frontend&callee=db", 405, "read-only"},
		{"post", "POST", "/api/v1/traces", 405, "read-only"},
		{"unknown path", "GET", "/api/v2/x", 404, "no such endpoint"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := get(t, srv, c.method, c.path, nil)
			if code != c.code || !strings.Contains(body, c.msg) || !strings.Contains(body, `"error"`) {
				t.Errorf("got %d %s, want %d with %q", code, body, c.code, c.msg)
			}
		})
	}
}

func TestAPISearch(t *testing.T) {
	srv := server(t)
	cases := []struct {
		name, query string
		want        []string
	}{
		{"slowest", "limit=2", []string{tid(5).String(), tid(4).String()}},
		{"newest since", "order=newest&since=7m30s", []string{tid(5).String(), tid(4).String(), tid(3).String()}},
		{"tag and duration", "tag=shard:1&minDuration=20ms", []string{tid(5).String(), tid(3).String()}},
		{"service operation", "service=db&operation=SELECT&start=2026-03-10T00:02:00Z&end=2026-03-10T00:04:00Z", []string{tid(3).String(), tid(2).String()}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var res struct{ Traces []Summary }
			code, body := get(t, srv, "GET", "/api/v1/traces?"+c.query, &res)
			if code != 200 {
				t.Fatalf("%d %s", code, body)
			}
			var got []string
			for _, s := range res.Traces {
				got = append(got, s.TraceID)
			}
			if strings.Join(got, ",") != strings.Join(c.want, ",") {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
}

func TestAPIBottlenecksAndRollups(t *testing.T) {
	srv := server(t)
	var b struct{ Bottlenecks []Bottleneck }
	if code, body := get(t, srv, "GET", "/api/v1/bottlenecks?limit=1", &b); code != 200 || len(b.Bottlenecks) != 1 {
		t.Fatalf("%d %s", code, body)
	}
	if r := b.Bottlenecks[0]; r.Operation != "charge" || r.Traces != 5 || r.Share != 0.5 {
		t.Errorf("top bottleneck %+v", r)
	}
	var r struct{ Rollups []Rollup }
	if code, body := get(t, srv, "GET", "/api/v1/rollups?service=db&operation=SELECT&resolution=1m", &r); code != 200 || len(r.Rollups) != 1 || r.Rollups[0].Exemplars[0].TraceID != tid(5).String() {
		t.Fatalf("%d %s", code, body)
	}
	if code, body := get(t, srv, "GET", "/api/v1/rollups?service=db&operation=SELECT&resolution=1h", &r); code != 200 || len(r.Rollups) != 0 {
		t.Fatalf("%d %s", code, body)
	}
}

// slowCall is the slowest call of the first frontend → db window; its trace
// ID has a high half, to show that IDs are 32 lowercase hex digits.
var slowCall = model.Exemplar{TraceID: model.TraceID{High: 0xABCDEF, Low: 0x1F}, Duration: 12 * time.Millisecond, Start: storagetest.Day0.Add(time.Second)}

// edges are frontend → db at 1m (Day0: 4 calls, 1 error; +1m: 2 calls;
// +2m: a retraction) and 1h (Day0: 6 calls), and db → frontend at 1m (Day0: 1 call).
func edges() []model.EdgeRollup {
	lat := func(p50, p99 time.Duration) model.Distribution {
		return model.Distribution{Sum: 4 * p50, Quantiles: model.Quantiles{P50: p50, P90: p99, P95: p99, P99: p99, Max: p99}}
	}
	at := func(m int) model.Timestamp { return storagetest.Day0.Add(time.Duration(m) * time.Minute) }
	return []model.EdgeRollup{
		{Resolution: time.Minute, WindowStart: at(0), Caller: "frontend", Callee: "db", Calls: 4, Errors: 1, Latency: lat(2*time.Millisecond, 9*time.Millisecond),
			Exemplars: []model.Exemplar{slowCall, {TraceID: tid(2), Duration: 8 * time.Millisecond, Start: at(0)}}},
		{Resolution: time.Minute, WindowStart: at(1), Caller: "frontend", Callee: "db", Calls: 2, Latency: lat(time.Millisecond, 3*time.Millisecond),
			Exemplars: []model.Exemplar{{TraceID: tid(4), Duration: 3 * time.Millisecond, Start: at(1)}}},
		{Resolution: time.Minute, WindowStart: at(2), Caller: "frontend", Callee: "db"},
		{Resolution: time.Hour, WindowStart: at(0), Caller: "frontend", Callee: "db", Calls: 6, Errors: 1, Latency: lat(2*time.Millisecond, 9*time.Millisecond),
			Exemplars: []model.Exemplar{slowCall}},
		{Resolution: time.Minute, WindowStart: at(0), Caller: "db", Callee: "frontend", Calls: 1, Latency: lat(time.Millisecond, time.Millisecond)},
	}
}

func TestAPIEdges(t *testing.T) {
	srv := server(t)
	cases := []struct {
		name, query string
		calls       []int64 // of the windows, in order
	}{
		{"default resolution is 1m", "caller=frontend&callee=db", []int64{4, 2, 0}},
		{"hour resolution", "caller=frontend&callee=db&resolution=1h", []int64{6}},
		{"start and end", "caller=frontend&callee=db&start=2026-03-10T00:01:00Z&end=2026-03-10T00:02:00Z", []int64{2}},
		{"date range", "caller=frontend&callee=db&start=2026-03-10&end=2026-03-11", []int64{4, 2, 0}},
		{"since", "caller=frontend&callee=db&since=9m", []int64{2, 0}},
		{"reverse edge", "caller=db&callee=frontend", []int64{1}},
		{"unknown edge", "caller=frontend&callee=cache", []int64{}},
		{"range before the data", "caller=frontend&callee=db&end=2026-03-09", []int64{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var res struct{ Edges []Edge }
			code, body := get(t, srv, "GET", "/api/v1/edges?"+c.query, &res)
			if code != 200 {
				t.Fatalf("%d %s", code, body)
			}
			if !strings.Contains(body, `"edges": [`) {
				t.Errorf("edges is not a list: %s", body)
			}
			got := []int64{}
			for _, e := range res.Edges {
				got = append(got, e.Calls)
			}
			if fmt.Sprint(got) != fmt.Sprint(c.calls) {
				t.Errorf("calls %v, want %v", got, c.calls)
			}
		})
	}
}

// TestAPIEdgeView checks the JSON form of an edge window: RFC 3339 times,
// durations in nanoseconds, trace IDs in lowercase hex.
func TestAPIEdgeView(t *testing.T) {
	srv := server(t)
	code, body := get(t, srv, "GET", "/api/v1/edges?caller=frontend&callee=db&end=2026-03-10T00:01:00Z", nil)
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	first := edges()[0]
	var res struct {
		Edges []map[string]any `json:"edges"`
	}
	if err := json.Unmarshal([]byte(body), &res); err != nil || len(res.Edges) != 1 {
		t.Fatalf("%v: %s", err, body)
	}
	got, _ := json.Marshal(res.Edges[0])
	want := `{"callee":"db","caller":"frontend","calls":4,"errors":1,` +
		`"exemplars":[{"durationNanos":12000000,"start":"2026-03-10T00:00:01Z","traceID":"0000000000abcdef000000000000001f"},` +
		`{"durationNanos":8000000,"start":"2026-03-10T00:00:00Z","traceID":"` + tid(2).String() + `"}],` +
		`"id":"` + first.ID() + `",` +
		`"latency":{"maxNanos":9000000,"p50Nanos":2000000,"p90Nanos":9000000,"p95Nanos":9000000,"p99Nanos":9000000,"sumNanos":8000000},` +
		`"resolution":"1m","windowStart":"2026-03-10T00:00:00Z"}`
	if string(got) != want {
		t.Errorf("edge view\n got %s\nwant %s", got, want)
	}
}

func TestWriteEdgesText(t *testing.T) {
	var b strings.Builder
	if err := WriteEdgesText(&b, NewEdges(edges()[:3])); err != nil {
		t.Fatal(err)
	}
	want := `WINDOW (UTC)      CALLS  ERRORS  ERROR %  P50  P99  SLOWEST
2026-03-10 00:00  4      1       25%      2ms  9ms  0000000000abcdef000000000000001f
2026-03-10 00:01  2      0       0%       1ms  3ms  ` + tid(4).String() + `
2026-03-10 00:02  0      0       -        0s   0s   -
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	if err := WriteEdgesText(&b, NewEdges(nil)); err != nil || b.String() != "no edge rollups in range\n" {
		t.Errorf("empty: %q %v", b.String(), err)
	}
}

func TestHumanDuration(t *testing.T) {
	cases := []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"}, {500, "500ns"}, {850 * time.Microsecond, "850µs"}, {1500 * time.Microsecond, "1.5ms"},
		{120 * time.Millisecond, "120ms"}, {1250 * time.Millisecond, "1.25s"}, {90 * time.Second, "1m30s"}, {-2 * time.Millisecond, "-2ms"},
	}
	for _, c := range cases {
		if got := HumanDuration(int64(c.d)); got != c.want {
			t.Errorf("HumanDuration(%v) = %q, want %q", c.d, got, c.want)
		}
	}
}

func TestParseTag(t *testing.T) {
	cases := []struct{ in, k, v string }{{"shard=7", "shard", "7"}, {"shard:7", "shard", "7"}, {"host=a:b", "host", "a:b"}, {"k=", "k", ""}}
	for _, c := range cases {
		k, v, err := ParseTag(c.in)
		if err != nil || k != c.k || v != c.v {
			t.Errorf("ParseTag(%q) = %q %q %v", c.in, k, v, err)
		}
	}
	for _, bad := range []string{"", "=7", "shard"} {
		if _, _, err := ParseTag(bad); err == nil {
			t.Errorf("ParseTag(%q) accepted", bad)
		}
	}
}

// FuzzParseQueries feeds raw URL query strings (outside input) to the
// parsers: they must never panic, and what they accept must be valid.
func FuzzParseQueries(f *testing.F) {
	for _, s := range []string{"service=a&operation=b&tag=shard:7&minDuration=1ms&maxDuration=2s&since=1h&limit=5&order=newest",
		"start=2026-03-10&end=2026-03-11T00:00:00Z", "resolution=1d&service=a&operation=b&dim=x=y&kind=server",
		"caller=a&callee=b&resolution=1h&start=2026-03-11&end=2026-03-10", "limit=-1", "tag=%3D",
		"start=2300-01-01", "end=1600-01-01T00:00:00Z", "start=2262-04-11T23:47:16.854775807Z", "start=2262-04-11T23:47:16.854775808Z",
		"start=1677-09-21T00:12:43.145224191Z&end=2026-01-01", "since=2562047h47m16s", "since=0s", "since=1e3h",
		"minDuration=-1ns", "maxDuration=9223372036854775807ns", "limit=10000", "limit=10001", "limit=%2B5", "order=oldest",
		"kind=server&resolution=1m&service=a&operation=b&dim=x", "tag=k%3Dv&tag=k%3Dw", "service=a&service=b", "start=2026-02-30",
		"start=2026-03-10T14:00:00%2B14:00", "start=0001-01-01", "start=9999-12-31T23:59:59.999999999Z"} {
		f.Add(s)
	}
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		// checkRange: an accepted start or end is the time that was asked
		// for (no wrap-around past the int64 nanosecond range).
		checkRange := func(start, end model.Timestamp) {
			t.Helper()
			for _, c := range []struct {
				param string
				got   model.Timestamp
			}{{"start", start}, {"end", end}} {
				s := v.Get(c.param)
				if s == "" || v.Get("since") != "" {
					continue
				}
				want, err := time.Parse(time.RFC3339Nano, s)
				if err != nil {
					if want, err = time.Parse(time.DateOnly, s); err != nil {
						t.Fatalf("%s=%q accepted but not a time", c.param, s)
					}
				}
				if !c.got.Time().Equal(want) {
					t.Fatalf("%s=%q read as %s", c.param, s, c.got.Time())
				}
			}
		}
		badQuery := func(err error) {
			t.Helper()
			if err != nil && !errors.Is(err, model.ErrBadQuery) {
				t.Fatalf("error does not wrap ErrBadQuery: %v", err)
			}
		}
		tq, err := ParseTraceQuery(v, now)
		badQuery(err)
		if err == nil {
			if tq.Limit < 1 || tq.Limit > model.MaxLimit || (tq.End != 0 && tq.Start > tq.End) || tq.MinDuration < 0 || tq.MaxDuration < 0 {
				t.Fatalf("accepted invalid trace query %+v", tq)
			}
			checkRange(tq.Start, tq.End)
		}
		rq, err := ParseRollupQuery(v, now)
		badQuery(err)
		if err == nil {
			if rq.Resolution <= 0 || rq.Service == "" || rq.Operation == "" {
				t.Fatalf("accepted invalid rollup query %+v", rq)
			}
			checkRange(rq.Start, rq.End)
		}
		eq, err := ParseEdgeQuery(v, now)
		badQuery(err)
		if err == nil {
			if eq.Resolution <= 0 || eq.Caller == "" || eq.Callee == "" || (eq.End != 0 && eq.Start > eq.End) {
				t.Fatalf("accepted invalid edge query %+v", eq)
			}
			checkRange(eq.Start, eq.End)
		}
		bq, err := ParseBottleneckQuery(v, now)
		badQuery(err)
		if err == nil {
			if bq.Limit < 1 || bq.Limit > model.MaxLimit {
				t.Fatalf("accepted invalid bottleneck query %+v", bq)
			}
			checkRange(bq.Start, bq.End)
		}
	})
}
