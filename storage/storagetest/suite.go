package storagetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/storage"
)

// Run runs the conformance suite. newStore returns an empty store with the
// default promoted tags whose writes are visible to reads as soon as they
// return; Run closes it.
func Run(t *testing.T, newStore func(t *testing.T) storage.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s storage.Store)
	}{
		{"GetTraceRoundTrip", testGetTrace},
		{"NotFound", testNotFound},
		{"IdempotentRewrite", testIdempotent},
		{"OlderVersionKeepsNewer", testVersions},
		{"SlowestOrdering", testSlowest},
		{"NewestOrdering", testNewest},
		{"ListingSummaries", testListingSummaries},
		{"SearchByTagServiceOperationDuration", testSearch},
		{"SearchHostAliases", testSearchHostAliases},
		{"BadQueries", testBadQueries},
		{"Bottlenecks", testBottlenecks},
		{"RollupSeries", testRollups},
		{"EdgeSeries", testEdges},
		{"RollupVersions", testRollupVersions},
		{"FillNeverReplaces", testFillNeverReplaces},
		{"EdgeBadQueries", testEdgeBadQueries},
		{"Services", testServices},
		{"EdgeRollups", testEdgeRollups},
		{"Retention", testRetention},
		{"WideTrace", testWideTrace},
		{"NegativeDuration", testNegativeDuration},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			defer func() {
				if err := s.Close(); err != nil {
					t.Errorf("close: %v", err)
				}
			}()
			tt.fn(t, s)
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func tid(n uint64) model.TraceID { return model.TraceID{High: 0xabc, Low: n} }

func write(t *testing.T, s storage.Store, traces ...model.AssembledTrace) {
	t.Helper()
	if err := s.WriteTraces(ctx(t), traces); err != nil {
		t.Fatalf("write traces: %v", err)
	}
}

func ids(sums []model.TraceSummary) []uint64 {
	out := make([]uint64, len(sums))
	for i, s := range sums {
		out[i] = s.TraceID.Low
	}
	return out
}

func find(t *testing.T, s storage.Store, q model.TraceQuery) []model.TraceSummary {
	t.Helper()
	res, err := s.FindTraces(ctx(t), q)
	if err != nil {
		t.Fatalf("find %+v: %v", q, err)
	}
	return res
}

func testGetTrace(t *testing.T, s storage.Store) {
	at := Trace(Spec{ID: tid(1), Start: Day0.Add(time.Hour), Shard: "7", Host: "h1", Error: true, ExtraSpans: 2})
	want := Trace(Spec{ID: tid(1), Start: Day0.Add(time.Hour), Shard: "7", Host: "h1", Error: true, ExtraSpans: 2})
	write(t, s, at)
	got, err := s.GetTrace(ctx(t), tid(1))
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if !reflect.DeepEqual(canonical(got.Trace), canonical(want.Trace)) {
		t.Errorf("spans differ:\ngot  %s\nwant %s", dump(got.Trace.Spans), dump(want.Trace.Spans))
	}
	if !reflect.DeepEqual(got.Analysis, want.Analysis) {
		t.Errorf("analysis differs:\ngot  %+v\nwant %+v", got.Analysis, want.Analysis)
	}
	wantSum := storage.Summarize(&want, model.DefaultPromotedTags())
	if !reflect.DeepEqual(got.Summary, wantSum) {
		t.Errorf("summary differs:\ngot  %+v\nwant %+v", got.Summary, wantSum)
	}
	if got.Summary.RootService != "frontend" || got.Summary.Bottleneck.Service != "payments" ||
		!reflect.DeepEqual(got.Summary.PromotedTags, map[string][]string{"shard": {"7"}, "host": {"h1"}, "http.status_code": {"200"}}) {
		t.Errorf("summary fields: %+v", got.Summary)
	}
}

// canonical is a copy of t with every span's and process's tags in key order
// (stable): the order of tags is not part of a store's contract — an
// Elasticsearch store keeping well-known tags as fields (Jaeger's
// tags-as-fields) reads them back after the nested ones, sorted by key, as
// Jaeger does; Jaeger's own storage tests compare sorted tags too.
func canonical(t model.Trace) model.Trace {
	byKey := func(a, b model.KeyValue) int { return strings.Compare(a.Key, b.Key) }
	spans := make([]*model.Span, len(t.Spans))
	for i, sp := range t.Spans {
		c := *sp
		c.Tags = slices.Clone(sp.Tags)
		c.Process.Tags = slices.Clone(sp.Process.Tags)
		slices.SortStableFunc(c.Tags, byKey)
		slices.SortStableFunc(c.Process.Tags, byKey)
		spans[i] = &c
	}
	t.Spans = spans
	return t
}

func canonicalStored(st model.StoredTrace) model.StoredTrace {
	st.Trace = canonical(st.Trace)
	return st
}

func dump(spans []*model.Span) string {
	out := ""
	for _, s := range spans {
		out += fmt.Sprintf("\n  %+v", *s)
	}
	return out
}

func testNotFound(t *testing.T, s storage.Store) {
	write(t, s, Trace(Spec{ID: tid(1), Start: Day0}))
	_, err := s.GetTrace(ctx(t), tid(2))
	if !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	if want := tid(2).String(); !contains(err.Error(), want) {
		t.Errorf("error %q does not name the trace %s", err, want)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func testIdempotent(t *testing.T, s storage.Store) {
	at := Trace(Spec{ID: tid(1), Start: Day0, Shard: "1"})
	write(t, s, at, Trace(Spec{ID: tid(1), Start: Day0, Shard: "1"}))
	write(t, s, Trace(Spec{ID: tid(1), Start: Day0, Shard: "1"}))
	if got := find(t, s, model.TraceQuery{}); len(got) != 1 {
		t.Fatalf("found %d traces, want 1", len(got))
	}
	got, err := s.GetTrace(ctx(t), tid(1))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Trace.Spans) != 3 {
		t.Errorf("spans = %d, want 3", len(got.Trace.Spans))
	}
	rows, err := s.TopBottlenecks(ctx(t), model.BottleneckQuery{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Traces != 1 || r.Count != 1 {
			t.Errorf("bottleneck row counted twice: %+v", r)
		}
	}
}

func testVersions(t *testing.T, s storage.Store) {
	v2 := Trace(Spec{ID: tid(1), Start: Day0, Version: 2, ExtraSpans: 2, Shard: "new"})
	write(t, s, v2)
	write(t, s, Trace(Spec{ID: tid(1), Start: Day0, Version: 1, Shard: "old"}))
	got, err := s.GetTrace(ctx(t), tid(1))
	if err != nil {
		t.Fatal(err)
	}
	if got.Summary.Version != 2 || len(got.Trace.Spans) != 5 {
		t.Fatalf("after older write: version %d with %d spans, want 2 with 5", got.Summary.Version, len(got.Trace.Spans))
	}
	if res := find(t, s, model.TraceQuery{Tags: map[string]string{"shard": "old"}}); len(res) != 0 {
		t.Errorf("older version searchable: %v", ids(res))
	}
	write(t, s, Trace(Spec{ID: tid(1), Start: Day0, Version: 3, ExtraSpans: 3, Shard: "newest"}))
	got, err = s.GetTrace(ctx(t), tid(1))
	if err != nil {
		t.Fatal(err)
	}
	if got.Summary.Version != 3 || len(got.Trace.Spans) != 6 {
		t.Fatalf("after newer write: version %d with %d spans, want 3 with 6", got.Summary.Version, len(got.Trace.Spans))
	}
	if res := find(t, s, model.TraceQuery{Tags: map[string]string{"shard": "newest"}}); len(res) != 1 {
		t.Errorf("newest version not searchable")
	}
	if res := find(t, s, model.TraceQuery{Tags: map[string]string{"shard": "new"}}); len(res) != 0 {
		t.Errorf("replaced version still searchable")
	}
	for _, q := range []model.BottleneckQuery{{}, {Start: Day0, End: Day0.Add(time.Hour)}, {Service: "payments"}} {
		rows, err := s.TopBottlenecks(ctx(t), q)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if r.Traces != 1 || (r.Operation == "validate" && r.Count != 3) {
				t.Errorf("bottlenecks %+v after version replacement: %+v", q, r)
			}
		}
	}
}

// corpus writes 30 traces: trace i starts at Day0+i minutes, lasts
// (i*37 mod 30 + 1) * 10ms, calls "payments" for odd i and "ledger" for even
// i, has shard i%3, host h(i%2), status 500 when i%5==0.
func corpus(t *testing.T, s storage.Store) []model.AssembledTrace {
	var all []model.AssembledTrace
	for i := 1; i <= 30; i++ {
		sp := Spec{
			ID: tid(uint64(i)), Start: Day0.Add(time.Duration(i) * time.Minute),
			Duration: time.Duration((i*37)%30+1) * 10 * time.Millisecond,
			Backend:  map[bool]string{true: "payments", false: "ledger"}[i%2 == 1],
			Shard:    fmt.Sprint(i % 3), Host: fmt.Sprintf("h%d", i%2),
		}
		if i%5 == 0 {
			sp.StatusCode = 500
		}
		all = append(all, Trace(sp))
	}
	// Six more, hours later, at odd seconds: ranges then cross minute and
	// hour boundaries between traces.
	for i := 31; i <= 36; i++ {
		all = append(all, Trace(Spec{
			ID: tid(uint64(i)), Start: Day0.Add(time.Duration(i-30)*47*time.Minute + time.Duration(i)*time.Second + 123*time.Microsecond),
			Duration: time.Duration(i) * 7 * time.Millisecond, Backend: "ledger", Shard: "9", Host: "h9", ExtraSpans: i % 3,
		}))
	}
	write(t, s, all[:10]...)
	write(t, s, all[10:]...)
	return all
}

// expect filters and orders traces by brute force.
func expect(all []model.AssembledTrace, keep func(*model.AssembledTrace) bool, order model.TraceOrder, limit int) []uint64 {
	var sel []*model.AssembledTrace
	for i := range all {
		if keep == nil || keep(&all[i]) {
			sel = append(sel, &all[i])
		}
	}
	sort.Slice(sel, func(i, j int) bool {
		a, b := sel[i].Analysis, sel[j].Analysis
		if order == model.OrderNewest && a.Start != b.Start {
			return a.Start > b.Start
		}
		if a.Duration != b.Duration {
			return a.Duration > b.Duration
		}
		if a.Start != b.Start {
			return a.Start > b.Start
		}
		return a.TraceID.String() < b.TraceID.String()
	})
	out := []uint64{}
	for i, at := range sel {
		if i == limit {
			break
		}
		out = append(out, at.Trace.TraceID.Low)
	}
	return out
}

func backend(at *model.AssembledTrace) string { return at.Trace.Spans[1].Process.ServiceName }

func testSlowest(t *testing.T, s storage.Store) {
	all := corpus(t, s)
	cases := []struct {
		name string
		q    model.TraceQuery
		keep func(*model.AssembledTrace) bool
	}{
		{"overall top 5", model.TraceQuery{Limit: 5}, nil},
		{"overall default limit", model.TraceQuery{}, nil},
		{"service", model.TraceQuery{Service: "ledger", Limit: 4}, func(a *model.AssembledTrace) bool { return backend(a) == "ledger" }},
		{"service and operation", model.TraceQuery{Service: "payments", Operation: "charge", Limit: 100}, func(a *model.AssembledTrace) bool { return backend(a) == "payments" }},
		{"operation of another service", model.TraceQuery{Service: "frontend", Operation: "charge"}, func(a *model.AssembledTrace) bool { return false }},
		{"time range", model.TraceQuery{Start: Day0.Add(10 * time.Minute), End: Day0.Add(20 * time.Minute), Limit: 3}, func(a *model.AssembledTrace) bool {
			return a.Analysis.Start >= Day0.Add(10*time.Minute) && a.Analysis.Start < Day0.Add(20*time.Minute)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			limit := c.q.Limit
			if limit == 0 {
				limit = model.DefaultLimit
			}
			want := expect(all, c.keep, model.OrderSlowest, limit)
			if got := ids(find(t, s, c.q)); !reflect.DeepEqual(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}

func testListingSummaries(t *testing.T, s storage.Store) {
	at := Trace(Spec{ID: tid(1), Start: Day0, Shard: "4", Host: "h4", Error: true})
	write(t, s, at)
	res := find(t, s, model.TraceQuery{})
	if len(res) != 1 {
		t.Fatalf("found %d", len(res))
	}
	want := storage.Summarize(&at, model.DefaultPromotedTags())
	want.Operations = nil
	if !reflect.DeepEqual(res[0], want) {
		t.Errorf("listing summary:\ngot  %+v\nwant %+v", res[0], want)
	}
}

func testNewest(t *testing.T, s storage.Store) {
	all := corpus(t, s)
	want := expect(all, func(a *model.AssembledTrace) bool { return backend(a) == "payments" }, model.OrderNewest, 5)
	if got := ids(find(t, s, model.TraceQuery{Service: "payments", Order: model.OrderNewest, Limit: 5})); !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func testSearch(t *testing.T, s storage.Store) {
	all := corpus(t, s)
	tag := func(k string) func(*model.AssembledTrace) string {
		return func(a *model.AssembledTrace) string {
			return storage.Summarize(a, model.DefaultPromotedTags()).PromotedTags[k][0]
		}
	}
	cases := []struct {
		name string
		q    model.TraceQuery
		keep func(*model.AssembledTrace) bool
	}{
		{"span tag", model.TraceQuery{Tags: map[string]string{"shard": "2"}, Limit: 100}, func(a *model.AssembledTrace) bool { return tag("shard")(a) == "2" }},
		{"process tag", model.TraceQuery{Tags: map[string]string{"host": "h1"}, Limit: 100}, func(a *model.AssembledTrace) bool { return tag("host")(a) == "h1" }},
		{"int tag as text", model.TraceQuery{Tags: map[string]string{"http.status_code": "500"}, Limit: 100}, func(a *model.AssembledTrace) bool { return tag("http.status_code")(a) == "500" }},
		{"two tags and a service", model.TraceQuery{Service: "payments", Tags: map[string]string{"shard": "1", "host": "h1"}, Limit: 100}, func(a *model.AssembledTrace) bool {
			return tag("shard")(a) == "1" && tag("host")(a) == "h1" && backend(a) == "payments"
		}},
		{"no match", model.TraceQuery{Tags: map[string]string{"shard": "99"}}, func(a *model.AssembledTrace) bool { return false }},
		{"duration range", model.TraceQuery{MinDuration: 100 * time.Millisecond, MaxDuration: 200 * time.Millisecond, Limit: 100}, func(a *model.AssembledTrace) bool {
			return a.Analysis.Duration >= 100*time.Millisecond && a.Analysis.Duration <= 200*time.Millisecond
		}},
		{"operation only", model.TraceQuery{Operation: "charge", MinDuration: 250 * time.Millisecond, Limit: 100}, func(a *model.AssembledTrace) bool {
			return a.Analysis.Duration >= 250*time.Millisecond
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			limit := c.q.Limit
			if limit == 0 {
				limit = model.DefaultLimit
			}
			want := expect(all, c.keep, model.OrderSlowest, limit)
			if got := ids(find(t, s, c.q)); !reflect.DeepEqual(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}

func testBadQueries(t *testing.T, s storage.Store) {
	cases := []struct {
		name string
		run  func() error
	}{
		{"unpromoted tag", func() error {
			_, err := s.FindTraces(ctx(t), model.TraceQuery{Tags: map[string]string{"color": "red"}})
			return err
		}},
		{"negative limit", func() error { _, err := s.FindTraces(ctx(t), model.TraceQuery{Limit: -1}); return err }},
		{"limit too large", func() error { _, err := s.FindTraces(ctx(t), model.TraceQuery{Limit: model.MaxLimit + 1}); return err }},
		{"min above max", func() error {
			_, err := s.FindTraces(ctx(t), model.TraceQuery{MinDuration: time.Second, MaxDuration: time.Millisecond})
			return err
		}},
		{"start after end", func() error {
			_, err := s.TopBottlenecks(ctx(t), model.BottleneckQuery{Start: Day0 + 10, End: Day0})
			return err
		}},
		{"rollups without operation", func() error {
			_, err := s.RollupSeries(ctx(t), model.RollupQuery{Service: "a", Resolution: time.Minute})
			return err
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.run(); !errors.Is(err, model.ErrBadQuery) {
				t.Errorf("err = %v, want ErrBadQuery", err)
			}
		})
	}
}

func testBottlenecks(t *testing.T, s storage.Store) {
	all := corpus(t, s)
	check := func(name string, q model.BottleneckQuery, keep func(*model.AssembledTrace) bool) {
		t.Run(name, func(t *testing.T) {
			rows := map[model.OperationKey]*model.BottleneckRow{}
			var total time.Duration
			for i := range all {
				a := &all[i]
				if keep != nil && !keep(a) {
					continue
				}
				total += a.Analysis.Duration
				for _, o := range a.Analysis.Operations {
					r := rows[o.OperationKey]
					if r == nil {
						r = &model.BottleneckRow{OperationKey: o.OperationKey}
						rows[o.OperationKey] = r
					}
					r.CriticalPath += o.CriticalPath
					r.Traces++
					r.Count += o.Count
					r.Errors += o.Errors
					r.Self += o.Self
					r.Duration += o.Duration
				}
			}
			var want []model.BottleneckRow
			for _, r := range rows {
				want = append(want, *r)
			}
			want = storage.RankBottlenecks(want, total, q.Limit)
			got, err := s.TopBottlenecks(ctx(t), q)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("got %d rows, want %d:\n%+v\n%+v", len(got), len(want), got, want)
			}
			for i := range got {
				g, w := got[i], want[i]
				if g.OperationKey != w.OperationKey || g.CriticalPath != w.CriticalPath || g.Traces != w.Traces ||
					g.Count != w.Count || g.Errors != w.Errors || g.Self != w.Self || g.Duration != w.Duration ||
					abs(g.Share-w.Share) > 1e-9 {
					t.Errorf("row %d:\ngot  %+v\nwant %+v", i, g, w)
				}
			}
		})
	}
	check("all", model.BottleneckQuery{Limit: 10}, nil)
	check("top 2", model.BottleneckQuery{Limit: 2}, nil)
	check("range", model.BottleneckQuery{Start: Day0.Add(5 * time.Minute), End: Day0.Add(12 * time.Minute), Limit: 10}, func(a *model.AssembledTrace) bool {
		return a.Analysis.Start >= Day0.Add(5*time.Minute) && a.Analysis.Start < Day0.Add(12*time.Minute)
	})
	check("service", model.BottleneckQuery{Service: "ledger", Limit: 10}, func(a *model.AssembledTrace) bool { return backend(a) == "ledger" })
	between := func(lo, hi time.Duration) func(a *model.AssembledTrace) bool {
		return func(a *model.AssembledTrace) bool {
			return a.Analysis.Start >= Day0.Add(lo) && a.Analysis.Start < Day0.Add(hi)
		}
	}
	for _, r := range [][2]time.Duration{
		{4*time.Minute + 30*time.Second, 25*time.Minute + 10*time.Second},  // partial minutes and whole minutes
		{20*time.Minute + 7*time.Second, 3*time.Hour + 33*time.Minute},     // minutes, whole hours, minutes
		{47*time.Minute + 31*time.Second, 47*time.Minute + 32*time.Second}, // within one second
		{0, 94*time.Minute + 32*time.Second + 124*time.Microsecond},        // ends right after a trace
		{2*time.Hour + 21*time.Minute, 5 * time.Hour},                      // whole minutes into whole hours
	} {
		check(fmt.Sprintf("range %v-%v", r[0], r[1]), model.BottleneckQuery{Start: Day0.Add(r[0]), End: Day0.Add(r[1]), Limit: 10}, between(r[0], r[1]))
	}
	check("from", model.BottleneckQuery{Start: Day0.Add(90 * time.Minute), Limit: 10}, between(90*time.Minute, 24*time.Hour))
	check("until", model.BottleneckQuery{End: Day0.Add(90 * time.Minute), Limit: 10}, between(-time.Hour, 90*time.Minute))
	check("empty range", model.BottleneckQuery{Start: Day0.Add(-2 * time.Hour), End: Day0.Add(-time.Hour), Limit: 10}, func(a *model.AssembledTrace) bool { return false })
	shard := func(v string) func(a *model.AssembledTrace) bool {
		return func(a *model.AssembledTrace) bool {
			kv, _ := a.Trace.Spans[0].Tags.Find("shard")
			return kv.AsString() == v
		}
	}
	check("tag", model.BottleneckQuery{Tags: map[string]string{"shard": "1"}, Limit: 10}, shard("1"))
	check("tag and range", model.BottleneckQuery{Tags: map[string]string{"shard": "2"}, Start: Day0.Add(5 * time.Minute), End: Day0.Add(12 * time.Minute), Limit: 10},
		func(a *model.AssembledTrace) bool { return shard("2")(a) && between(5*time.Minute, 12*time.Minute)(a) })
	check("tag and service", model.BottleneckQuery{Service: "ledger", Tags: map[string]string{"host": "h0", "shard": "0"}, Limit: 10},
		func(a *model.AssembledTrace) bool { return shard("0")(a) && backend(a) == "ledger" })
	if _, err := s.TopBottlenecks(ctx(t), model.BottleneckQuery{Tags: map[string]string{"nope": "1"}}); !errors.Is(err, model.ErrBadQuery) {
		t.Errorf("bottlenecks by an unpromoted tag: err = %v, want ErrBadQuery", err)
	}
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

func rollup(res time.Duration, window int, svc, op string, count int64, dims ...model.Dimension) model.Rollup {
	d := model.Distribution{Sum: time.Duration(count) * time.Millisecond, Quantiles: model.Quantiles{P50: time.Millisecond, P90: 2 * time.Millisecond, P95: 3 * time.Millisecond, P99: 4 * time.Millisecond, Max: 5 * time.Millisecond}, Sketch: []byte{9, 8, 7}}
	return model.Rollup{
		Resolution: res, WindowStart: Day0.Add(time.Duration(window) * res), Service: svc, Operation: op, Kind: model.KindServer,
		Dimensions: dims, Count: count, Errors: count / 10, Duration: d, Self: d, CriticalPath: d,
		TraceDurationSum: time.Duration(count) * 2 * time.Millisecond, CriticalPathShare: 0.5,
		Exemplars: []model.Exemplar{{TraceID: tid(uint64(window + 1)), Duration: 5 * time.Millisecond, Start: Day0}},
	}
}

func testRollups(t *testing.T, s storage.Store) {
	shard := func(v string) model.Dimension { return model.Dimension{Name: "shard", Value: v} }
	var rs []model.Rollup
	for w := 0; w < 5; w++ {
		rs = append(rs, rollup(time.Minute, w, "db", "SELECT", int64(10+w)))
		rs = append(rs, rollup(time.Minute, w, "db", "SELECT", int64(100+w), shard("7")))
		rs = append(rs, rollup(time.Minute, w, "db", "INSERT", int64(20+w)))
	}
	rs = append(rs, rollup(time.Hour, 0, "db", "SELECT", 999))
	if err := s.WriteRollups(ctx(t), rs); err != nil {
		t.Fatal(err)
	}
	// Rewriting window 2 replaces it.
	rw := rollup(time.Minute, 2, "db", "SELECT", 42)
	if err := s.WriteRollups(ctx(t), []model.Rollup{rw, rw}); err != nil {
		t.Fatal(err)
	}
	series := func(q model.RollupQuery) []model.Rollup {
		got, err := s.RollupSeries(ctx(t), q)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	got := series(model.RollupQuery{Service: "db", Operation: "SELECT", Resolution: time.Minute, Start: Day0.Add(time.Minute), End: Day0.Add(4 * time.Minute)})
	var want []model.Rollup
	for w := 1; w < 4; w++ {
		plain := rollup(time.Minute, w, "db", "SELECT", int64(10+w))
		if w == 2 {
			plain = rw
		}
		withDim := rollup(time.Minute, w, "db", "SELECT", int64(100+w), shard("7"))
		pair := []model.Rollup{plain, withDim}
		sort.Slice(pair, func(i, j int) bool { return pair[i].ID() < pair[j].ID() })
		want = append(want, pair...)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("series:\ngot  %+v\nwant %+v", got, want)
	}
	got = series(model.RollupQuery{Service: "db", Operation: "SELECT", Resolution: time.Minute, Dimensions: map[string]string{"shard": "7"}})
	if len(got) != 5 || got[0].Count != 100 || got[4].Count != 104 {
		t.Errorf("dimension filter: %+v", got)
	}
	got = series(model.RollupQuery{Service: "db", Operation: "SELECT", Resolution: time.Hour})
	if len(got) != 1 || got[0].Count != 999 {
		t.Errorf("hour resolution: %+v", got)
	}
	if got = series(model.RollupQuery{Service: "db", Operation: "SELECT", Resolution: time.Minute, Kind: model.KindClient}); len(got) != 0 {
		t.Errorf("kind filter: %+v", got)
	}
	if got = series(model.RollupQuery{Service: "db", Operation: "DELETE", Resolution: time.Minute}); len(got) != 0 {
		t.Errorf("unknown operation: %+v", got)
	}
}

// testRollupVersions: of two writes of one rollup or edge rollup, the one
// with the lower Version loses, whatever their order, in one call or in
// two; an equal Version replaces; Version 0 always replaces (the aggregator
// fences a writer that lost its partition this way).
func testRollupVersions(t *testing.T, s storage.Store) {
	es, ok := s.(interface {
		WriteEdgeRollups(context.Context, []model.EdgeRollup) error
		EdgeSeries(ctx context.Context, res time.Duration, caller, callee string, start, end model.Timestamp) ([]model.EdgeRollup, error)
	})
	if !ok {
		t.Fatal("the store does not store edge rollups")
	}
	rv := func(w int, count, version int64) model.Rollup {
		r := rollup(time.Minute, w, "ver", "op", count)
		r.Version = version
		return r
	}
	ev := func(w int, calls, version int64) model.EdgeRollup {
		e := edge(24*time.Hour, w, "ver-a", "ver-b", calls)
		e.Version = version
		return e
	}
	steps := [][]int64{ // per window: (count, version) written in order, one call each
		{10, 100, 5, 50},        // older loses
		{10, 100, 11, 100},      // equal replaces
		{10, 100, 12, 200},      // newer replaces
		{10, 100, 13, 0},        // unversioned replaces
		{10, 100, 14, 99, 0, 1}, // a retraction (0 calls) of an older version loses too
	}
	want := []int64{10, 11, 12, 13, 10}
	for w, st := range steps {
		for i := 0; i < len(st); i += 2 {
			if err := s.WriteRollups(ctx(t), []model.Rollup{rv(w, st[i], st[i+1])}); err != nil {
				t.Fatal(err)
			}
			if err := es.WriteEdgeRollups(ctx(t), []model.EdgeRollup{ev(w, st[i], st[i+1])}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// In one call, newest first.
	if err := s.WriteRollups(ctx(t), []model.Rollup{rv(5, 20, 300), rv(5, 7, 30)}); err != nil {
		t.Fatal(err)
	}
	if err := es.WriteEdgeRollups(ctx(t), []model.EdgeRollup{ev(5, 20, 300), ev(5, 7, 30)}); err != nil {
		t.Fatal(err)
	}
	want = append(want, 20)
	got, err := s.RollupSeries(ctx(t), model.RollupQuery{Service: "ver", Operation: "op", Resolution: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var counts []int64
	for _, r := range got {
		counts = append(counts, r.Count)
	}
	if !reflect.DeepEqual(counts, want) {
		t.Errorf("rollup counts per window = %v, want %v", counts, want)
	}
	edges, err := es.EdgeSeries(ctx(t), 24*time.Hour, "ver-a", "ver-b", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	counts = counts[:0]
	for _, e := range edges {
		counts = append(counts, e.Calls)
	}
	if !reflect.DeepEqual(counts, want) {
		t.Errorf("edge rollup calls per window = %v, want %v", counts, want)
	}
}

func testRetention(t *testing.T, s storage.Store) {
	day := 24 * time.Hour
	write(t, s,
		Trace(Spec{ID: tid(1), Start: Day0.Add(-2*day + time.Hour)}),
		Trace(Spec{ID: tid(2), Start: Day0.Add(-day + time.Hour)}),
		Trace(Spec{ID: tid(3), Start: Day0.Add(time.Hour)}),
	)
	if err := s.WriteRollups(ctx(t), []model.Rollup{
		rollup(time.Hour, -47, "db", "SELECT", 1), rollup(time.Hour, -23, "db", "SELECT", 2), rollup(time.Hour, 1, "db", "SELECT", 3),
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteEdgeRollups(ctx(t), []model.EdgeRollup{
		edge(time.Hour, -47, "api", "db", 1), edge(time.Hour, -23, "api", "db", 2), edge(time.Hour, 1, "api", "db", 3),
	}); err != nil {
		t.Fatal(err)
	}
	// The cutoff is in the middle of day -1: day -2 goes, day -1 and day 0 stay.
	if _, err := s.DeleteBefore(ctx(t), Day0.Add(-day+5*time.Hour).Time()); err != nil {
		t.Fatalf("retention: %v", err)
	}
	if _, err := s.GetTrace(ctx(t), tid(1)); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("trace of the deleted day: err = %v, want ErrNotFound", err)
	}
	for _, n := range []uint64{2, 3} {
		if _, err := s.GetTrace(ctx(t), tid(n)); err != nil {
			t.Errorf("trace %d: %v", n, err)
		}
	}
	if got := ids(find(t, s, model.TraceQuery{})); !reflect.DeepEqual(got, []uint64{3, 2}) {
		t.Errorf("remaining traces %v, want [3 2]", got)
	}
	rs, err := s.RollupSeries(ctx(t), model.RollupQuery{Service: "db", Operation: "SELECT", Resolution: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].Count != 2 || rs[1].Count != 3 {
		t.Errorf("remaining rollups %+v", rs)
	}
	es, err := s.EdgeSeries(ctx(t), time.Hour, "api", "db", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 || es[0].Calls != 2 || es[1].Calls != 3 {
		t.Errorf("remaining edge rollups %+v", es)
	}
}

func edge(res time.Duration, window int, caller, callee string, calls int64) model.EdgeRollup {
	e := model.EdgeRollup{Resolution: res, WindowStart: Day0.Add(time.Duration(window) * res), Caller: caller, Callee: callee}
	if calls == 0 {
		return e // a retraction: what the reducer writes when a window lost its calls
	}
	e.Calls, e.Errors = calls, calls/10
	e.Latency = model.Distribution{Sum: time.Duration(calls) * time.Millisecond, Quantiles: model.Quantiles{P50: time.Millisecond, P90: 2 * time.Millisecond, P95: 3 * time.Millisecond, P99: 4 * time.Millisecond, Max: 5 * time.Millisecond}, Sketch: []byte{6, 5, 4}}
	e.Exemplars = []model.Exemplar{{TraceID: tid(uint64(window + 100)), Duration: 5 * time.Millisecond, Start: Day0}}
	return e
}

func testEdges(t *testing.T, s storage.Store) {
	var es []model.EdgeRollup
	// Windows -3..4 of 1m: the first three fall on the day before Day0 (a
	// different daily index in Elasticsearch). Written newest first.
	for w := 4; w >= -3; w-- {
		es = append(es, edge(time.Minute, w, "api", "db", int64(10+w)))
		es = append(es, edge(time.Minute, w, "db", "api", int64(50+w))) // the reverse edge is another series
		es = append(es, edge(time.Minute, w, "api", "cache", int64(70+w)))
	}
	es = append(es, edge(time.Hour, 0, "api", "db", 999))
	if err := s.WriteEdgeRollups(ctx(t), es); err != nil {
		t.Fatal(err)
	}
	// Rewriting window 2 replaces it, twice in one call too; window 3 is
	// retracted (no calls left) and must still be stored and read back.
	rw := edge(time.Minute, 2, "api", "db", 42)
	retract := edge(time.Minute, 3, "api", "db", 0)
	if err := s.WriteEdgeRollups(ctx(t), []model.EdgeRollup{rw, rw, retract}); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteEdgeRollups(ctx(t), nil); err != nil {
		t.Errorf("empty write: %v", err)
	}
	want := func(from, to int) []model.EdgeRollup {
		var out []model.EdgeRollup
		for w := from; w < to; w++ {
			switch w {
			case 2:
				out = append(out, rw)
			case 3:
				out = append(out, retract)
			default:
				out = append(out, edge(time.Minute, w, "api", "db", int64(10+w)))
			}
		}
		return out
	}
	at := func(w int) model.Timestamp { return Day0.Add(time.Duration(w) * time.Minute) }
	tests := []struct {
		name           string
		res            time.Duration
		caller, callee string
		start, end     model.Timestamp
		want           []model.EdgeRollup
	}{
		{"range", time.Minute, "api", "db", at(1), at(4), want(1, 4)},
		{"range across days", time.Minute, "api", "db", at(-2), at(1), want(-2, 1)},
		{"unbounded", time.Minute, "api", "db", 0, 0, want(-3, 5)},
		{"start only", time.Minute, "api", "db", at(3), 0, want(3, 5)},
		{"end only", time.Minute, "api", "db", 0, at(-1), want(-3, -1)},
		{"end is exclusive", time.Minute, "api", "db", at(4), at(4), nil},
		{"hour resolution", time.Hour, "api", "db", 0, 0, []model.EdgeRollup{edge(time.Hour, 0, "api", "db", 999)}},
		{"reverse edge", time.Minute, "db", "api", at(0), at(1), []model.EdgeRollup{edge(time.Minute, 0, "db", "api", 50)}},
		{"unknown callee", time.Minute, "api", "queue", 0, 0, nil},
		{"unknown resolution", 24 * time.Hour, "api", "db", 0, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.EdgeSeries(ctx(t), tt.res, tt.caller, tt.callee, tt.start, tt.end)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) == 0 && len(tt.want) == 0 {
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("series:\ngot  %+v\nwant %+v", got, tt.want)
			}
			for i := range got {
				if got[i].ID() != tt.want[i].ID() {
					t.Errorf("id %s, want %s", got[i].ID(), tt.want[i].ID())
				}
			}
		})
	}
}

func testEdgeBadQueries(t *testing.T, s storage.Store) {
	tests := []struct {
		name       string
		res        time.Duration
		start, end model.Timestamp
	}{
		{"zero resolution", 0, 0, 0},
		{"negative resolution", -time.Minute, 0, 0},
		{"start after end", time.Minute, Day0.Add(time.Hour), Day0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.EdgeSeries(ctx(t), tt.res, "api", "db", tt.start, tt.end); !errors.Is(err, model.ErrBadQuery) {
				t.Errorf("err = %v, want ErrBadQuery", err)
			}
		})
	}
	if err := s.WriteEdgeRollups(ctx(t), []model.EdgeRollup{{Caller: "api", Callee: "db", WindowStart: Day0, Calls: 1}}); err == nil {
		t.Error("writing an edge rollup without a resolution: want an error")
	}
}

// fillState is what testFillNeverReplaces compares before and after the
// fill writes: every stored value the suite can read, whole.
type fillState struct {
	traces      map[uint64]model.StoredTrace  // GetTrace of traces 1-4 (absent: not found)
	listing     map[uint64]model.TraceSummary // FindTraces, every trace
	bottlenecks [][]model.BottleneckRow       // fillBottleneckQueries, in order
	rollups     []model.Rollup                // RollupSeries of fill/op at 1m
	edges       []model.EdgeRollup            // EdgeSeries of fill-a -> fill-b at 1d
}

// fillBottleneckQueries read the hour of traces 1 and 2 only, through the
// plain, service and tag bottleneck buckets.
func fillBottleneckQueries() []model.BottleneckQuery {
	start, end := Day0.Add(time.Hour), Day0.Add(2*time.Hour)
	return []model.BottleneckQuery{
		{Start: start, End: end},
		{Start: start, End: end, Service: "payments"},
		{Start: start, End: end, Tags: map[string]string{"shard": "a"}},
		{Start: start, End: end, Tags: map[string]string{"shard": "a-fill"}},
		{Start: start, End: end, Tags: map[string]string{"shard": "b-old"}},
	}
}

func readFillState(t *testing.T, s storage.Store) fillState {
	t.Helper()
	st := fillState{traces: map[uint64]model.StoredTrace{}, listing: map[uint64]model.TraceSummary{}}
	for n := uint64(1); n <= 4; n++ {
		got, err := s.GetTrace(ctx(t), tid(n))
		switch {
		case errors.Is(err, model.ErrNotFound):
		case err != nil:
			t.Fatalf("get trace %d: %v", n, err)
		default:
			st.traces[n] = got
		}
	}
	for _, sum := range find(t, s, model.TraceQuery{Limit: 100}) {
		st.listing[sum.TraceID.Low] = sum
	}
	for _, q := range fillBottleneckQueries() {
		rows, err := s.TopBottlenecks(ctx(t), q)
		if err != nil {
			t.Fatalf("bottlenecks %+v: %v", q, err)
		}
		st.bottlenecks = append(st.bottlenecks, rows)
	}
	var err error
	if st.rollups, err = s.RollupSeries(ctx(t), model.RollupQuery{Service: "fill", Operation: "op", Resolution: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if st.edges, err = s.EdgeSeries(ctx(t), 24*time.Hour, "fill-a", "fill-b", 0, 0); err != nil {
		t.Fatal(err)
	}
	return st
}

// testFillNeverReplaces: under storage.WithFill (tracepipe replay) a write
// only adds what is missing. Of (a) the stored trace version with another
// completion and shard, (b) an older version, (c) a newer version, (d) a
// new trace, (e) rollups and edge rollups of stored IDs with other values
// and higher, lower, equal or no versions, and (f) new ones, only (c), (d)
// and (f) change the store; every other stored value (trace, summary,
// spans, listing, bottleneck buckets, rollup, edge rollup) is unchanged,
// compared whole. What a fill write added is unversioned: a later normal
// write of the ID replaces it, whatever its version.
func testFillNeverReplaces(t *testing.T, s storage.Store) {
	at := func(h, m int) model.Timestamp {
		return Day0.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute)
	}
	trace := func(sp Spec, c model.Completion) model.AssembledTrace {
		tr := Trace(sp)
		tr.Completion = c
		return tr
	}
	a := func() model.AssembledTrace {
		return trace(Spec{ID: tid(1), Start: at(1, 0), Version: 2, Shard: "a", ExtraSpans: 1}, model.CompletionIdle)
	}
	aFill := func() model.AssembledTrace { // (a) the same version, other completion and shard
		return trace(Spec{ID: tid(1), Start: at(1, 0), Version: 2, Shard: "a-fill", ExtraSpans: 1}, model.CompletionMaxWait)
	}
	b := func() model.AssembledTrace {
		return trace(Spec{ID: tid(2), Start: at(1, 1), Version: 2, Shard: "b", ExtraSpans: 2, Duration: 200 * time.Millisecond}, model.CompletionIdle)
	}
	bFill := func() model.AssembledTrace { // (b) an older version
		return trace(Spec{ID: tid(2), Start: at(1, 1), Version: 1, Shard: "b-old", Duration: 100 * time.Millisecond}, model.CompletionMaxWait)
	}
	c := func() model.AssembledTrace {
		return trace(Spec{ID: tid(3), Start: at(3, 0), Version: 2, Shard: "c", ExtraSpans: 1}, model.CompletionIdle)
	}
	cFill := func() model.AssembledTrace { // (c) a newer version
		return trace(Spec{ID: tid(3), Start: at(3, 0), Version: 3, Shard: "c-new", ExtraSpans: 3}, model.CompletionLate)
	}
	dFill := func() model.AssembledTrace { // (d) a new trace
		return trace(Spec{ID: tid(4), Start: at(3, 1), Shard: "d"}, model.CompletionIdle)
	}
	rv := func(w int, count, version int64) model.Rollup {
		r := rollup(time.Minute, w, "fill", "op", count)
		r.Version = version
		return r
	}
	ev := func(w int, calls, version int64) model.EdgeRollup {
		e := edge(24*time.Hour, w, "fill-a", "fill-b", calls)
		e.Version = version
		return e
	}

	write(t, s, a(), b(), c())
	if err := s.WriteRollups(ctx(t), []model.Rollup{rv(0, 10, 100), rv(1, 11, 100), rv(2, 12, 100), rv(3, 13, 0)}); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteEdgeRollups(ctx(t), []model.EdgeRollup{ev(0, 10, 100), ev(1, 11, 100), ev(2, 12, 100), ev(3, 13, 0)}); err != nil {
		t.Fatal(err)
	}
	before := readFillState(t, s)
	if len(before.traces) != 3 || len(before.listing) != 3 || len(before.rollups) != 4 || len(before.edges) != 4 {
		t.Fatalf("before the fill: %d traces, %d listed, %d rollups, %d edge rollups; want 3, 3, 4, 4",
			len(before.traces), len(before.listing), len(before.rollups), len(before.edges))
	}

	fill := storage.WithFill(ctx(t))
	if !storage.Fill(fill) || storage.Fill(ctx(t)) {
		t.Fatal("storage.Fill does not report storage.WithFill")
	}
	if err := s.WriteTraces(fill, []model.AssembledTrace{aFill(), bFill(), cFill(), dFill()}); err != nil {
		t.Fatalf("fill traces: %v", err)
	}
	// (e) stored IDs: higher (a retraction), lower, equal and no version; (f) new IDs, one a retraction.
	if err := s.WriteRollups(fill, []model.Rollup{rv(0, 20, 200), rv(1, 21, 50), rv(2, 22, 100), rv(3, 23, 0), rv(4, 24, 100)}); err != nil {
		t.Fatalf("fill rollups: %v", err)
	}
	if err := s.WriteEdgeRollups(fill, []model.EdgeRollup{ev(0, 0, 200), ev(1, 21, 50), ev(2, 22, 100), ev(3, 23, 0), ev(4, 24, 100), ev(5, 0, 100)}); err != nil {
		t.Fatalf("fill edge rollups: %v", err)
	}
	after := readFillState(t, s)

	stored := func(at model.AssembledTrace) model.StoredTrace {
		return model.StoredTrace{Summary: storage.Summarize(&at, model.DefaultPromotedTags()), Trace: at.Trace, Analysis: at.Analysis}
	}
	listed := func(at model.AssembledTrace) model.TraceSummary {
		sum := storage.Summarize(&at, model.DefaultPromotedTags())
		sum.Operations = nil
		return sum
	}
	wantTraces := map[uint64]model.StoredTrace{1: before.traces[1], 2: before.traces[2], 3: stored(cFill()), 4: stored(dFill())}
	wantListing := map[uint64]model.TraceSummary{1: before.listing[1], 2: before.listing[2], 3: listed(cFill()), 4: listed(dFill())}
	if want := stored(a()); !reflect.DeepEqual(canonicalStored(before.traces[1]), canonicalStored(want)) {
		t.Errorf("trace 1 before the fill:\ngot  %+v\nwant %+v", before.traces[1], want)
	}
	for n := uint64(1); n <= 4; n++ {
		if got, want := after.traces[n], wantTraces[n]; !reflect.DeepEqual(canonicalStored(got), canonicalStored(want)) {
			t.Errorf("trace %d after the fill:\ngot  %+v\nspans %s\nwant %+v\nspans %s", n, got.Summary, dump(got.Trace.Spans), want.Summary, dump(want.Trace.Spans))
		}
		if got, want := after.listing[n], wantListing[n]; !reflect.DeepEqual(got, want) {
			t.Errorf("listing summary of trace %d after the fill:\ngot  %+v\nwant %+v", n, got, want)
		}
	}
	if len(after.listing) != 4 {
		t.Errorf("listed traces after the fill: %d, want 4", len(after.listing))
	}
	for i, q := range fillBottleneckQueries() {
		if !reflect.DeepEqual(after.bottlenecks[i], before.bottlenecks[i]) {
			t.Errorf("bottlenecks %+v changed by the fill:\nbefore %+v\nafter  %+v", q, before.bottlenecks[i], after.bottlenecks[i])
		}
	}
	// Traces 3 (replaced) and 4 (added) are counted once each.
	rows, err := s.TopBottlenecks(ctx(t), model.BottleneckQuery{Start: at(3, 0), End: at(4, 0)})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Traces > 2 || (r.Operation == "validate" && (r.Traces != 1 || r.Count != 3)) {
			t.Errorf("bottlenecks of the filled hour: %+v", r)
		}
	}
	unversioned := func(r model.Rollup) model.Rollup { r.Version = 0; return r }
	wantRollups := append(append([]model.Rollup{}, before.rollups...), unversioned(rv(4, 24, 100)))
	if !reflect.DeepEqual(after.rollups, wantRollups) {
		t.Errorf("rollups after the fill:\ngot  %+v\nwant %+v", after.rollups, wantRollups)
	}
	unversionedEdge := func(e model.EdgeRollup) model.EdgeRollup { e.Version = 0; return e }
	wantEdges := append(append([]model.EdgeRollup{}, before.edges...), unversionedEdge(ev(4, 24, 100)), unversionedEdge(ev(5, 0, 100)))
	if !reflect.DeepEqual(after.edges, wantEdges) {
		t.Errorf("edge rollups after the fill:\ngot  %+v\nwant %+v", after.edges, wantEdges)
	}

	// What the fill added carries no version: the live pipeline's next
	// write of the ID replaces it, even with a lower version.
	if err := s.WriteRollups(ctx(t), []model.Rollup{rv(4, 34, 1)}); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteEdgeRollups(ctx(t), []model.EdgeRollup{ev(4, 34, 1)}); err != nil {
		t.Fatal(err)
	}
	last := readFillState(t, s)
	if len(last.rollups) != 5 || last.rollups[4].Count != 34 {
		t.Errorf("rollup added by the fill, then written with version 1: series %+v, want count 34 in window 4", last.rollups)
	}
	if len(last.edges) != 6 || last.edges[4].Calls != 34 {
		t.Errorf("edge rollup added by the fill, then written with version 1: series %+v, want 34 calls in window 4", last.edges)
	}
}
