package dbmodel

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

var update = flag.Bool("update", false, "rewrite the golden fixtures in testdata")

var (
	tid128 = model.TraceID{High: 0x4bf92f3577b34da6, Low: 0xa3ce929d0e0e4736}
	tid64  = model.TraceID{Low: 0x00f067aa0ba902b7}
	t0     = model.Timestamp(1700000000123456000) // µs-aligned, so Jaeger's µs keep it exactly
)

func spanCases() map[string]*model.Span {
	return map[string]*model.Span{
		"span_root_128bit": {
			TraceID: tid128, SpanID: 0x1, Operation: "GET /api/orders", Flags: 1,
			Start: t0, Duration: 120 * time.Millisecond,
			Tags: model.KeyValues{
				model.String("span.kind", "server"), model.Int64("http.status_code", 200),
				model.String("shard", "7"), model.Bool("sampled", true), model.Float64("ratio", 0.25),
				model.Binary("blob", []byte{0xde, 0xad}),
			},
			Logs:    []model.Log{{Timestamp: t0.Add(time.Millisecond), Fields: model.KeyValues{model.String("event", "cache miss"), model.Int64("attempt", 2)}}},
			Process: model.Process{ServiceName: "frontend", Tags: model.KeyValues{model.String("host", "h1"), model.String("ip", "10.0.0.1")}},
			Kind:    model.KindServer,
		},
		"span_child_error_64bit": {
			TraceID: tid64, SpanID: 0xabc, Operation: "SELECT orders",
			References: []model.Reference{{Type: model.ChildOf, TraceID: tid64, SpanID: 0x1}, {Type: model.FollowsFrom, TraceID: tid128, SpanID: 0x2}},
			Start:      t0.Add(5 * time.Millisecond), Duration: 40 * time.Millisecond,
			Tags:    model.KeyValues{model.String("span.kind", "client"), model.Bool("error", true), model.String("otel.status_description", "timeout")},
			Process: model.Process{ServiceName: "db"},
			Kind:    model.KindClient, Status: model.StatusError, StatusMessage: "timeout",
		},
	}
}

func traceCase() (model.TraceSummary, model.Analysis) {
	ops := []model.OperationSummary{
		{OperationKey: model.OperationKey{Service: "db", Operation: "SELECT orders"}, Count: 1, Errors: 1, Duration: 40 * time.Millisecond, Self: 40 * time.Millisecond, CriticalPath: 40 * time.Millisecond},
		{OperationKey: model.OperationKey{Service: "frontend", Operation: "GET /api/orders"}, Count: 1, Duration: 120 * time.Millisecond, Self: 80 * time.Millisecond, CriticalPath: 80 * time.Millisecond},
	}
	s := model.TraceSummary{
		TraceID: tid128, Version: 2, RootService: "frontend", RootOperation: "GET /api/orders",
		Start: t0, Duration: 120*time.Millisecond + 7, SpanCount: 2, ErrorCount: 1, WarningCount: 1,
		Services: []string{"db", "frontend"}, Operations: ops,
		PromotedTags: map[string][]string{"shard": {"7"}, "http.status_code": {"200"}, "host": {"h1"}},
		Bottleneck:   ops[1].OperationKey, BottleneckCriticalPath: 80 * time.Millisecond,
		Completion: model.CompletionLate,
	}
	a := model.Analysis{
		TraceID: tid128, RootSpanID: 1, Start: t0, Duration: 120*time.Millisecond + 7, SpanCount: 2, ErrorCount: 1,
		CriticalPath: []model.CriticalSection{{SpanID: 1, Start: t0, End: t0.Add(5 * time.Millisecond)}, {SpanID: 0xabc, Start: t0.Add(5 * time.Millisecond), End: t0.Add(45 * time.Millisecond)}},
		Spans:        []model.SpanStats{{SpanID: 1, Self: 80 * time.Millisecond, CriticalPath: 80 * time.Millisecond}, {SpanID: 0xabc, Self: 40 * time.Millisecond, CriticalPath: 40 * time.Millisecond}},
		Operations:   ops,
		Warnings:     []model.Warning{{Kind: model.WarnClockSkew, SpanID: 0xabc, Message: "shifted by 3ms"}},
	}
	return s, a
}

func rollupCase() model.Rollup {
	d := func(ms int) model.Distribution {
		x := time.Duration(ms) * time.Millisecond
		return model.Distribution{Sum: 100 * x, Quantiles: model.Quantiles{P50: x, P90: 2 * x, P95: 3 * x, P99: 4 * x, Max: 5 * x}, Sketch: []byte{1, 2, 3}}
	}
	return model.Rollup{
		Resolution: time.Minute, WindowStart: model.Timestamp(1700000040 * int64(time.Second)),
		Service: "db", Operation: "SELECT orders", Kind: model.KindClient,
		Dimensions: []model.Dimension{{Name: "http.status_code", Value: "200"}, {Name: "shard", Value: "7"}},
		Count:      100, Errors: 3, Duration: d(10), Self: d(8), CriticalPath: d(6),
		TraceDurationSum: 3 * time.Second, CriticalPathShare: 0.2,
		Exemplars: []model.Exemplar{{TraceID: tid128, Duration: 50 * time.Millisecond, Start: t0}},
	}
}

// golden compares got (marshalled) with testdata/name, rewriting it with -update.
func golden(t *testing.T, name string, got any) {
	t.Helper()
	b, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, '\n')
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run with -update to create): %v", err)
	}
	if !bytes.Equal(b, want) {
		t.Errorf("%s differs from the golden file:\ngot:\n%s\nwant:\n%s", name, b, want)
	}
}

func readStored(t *testing.T, name string, dst any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, dst); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func TestSpanGolden(t *testing.T) {
	for name, s := range spanCases() {
		t.Run(name, func(t *testing.T) {
			golden(t, name+".domain.json", s)
			golden(t, name+".stored.json", FromDomainSpan(s, SpanOptions{}))
			var d Span
			readStored(t, name+".stored.json", &d)
			back, err := ToDomainSpan(&d, SpanOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, s) {
				t.Errorf("round trip:\ngot  %+v\nwant %+v", back, s)
			}
		})
	}
}

func TestSpanTagsAsFieldsGolden(t *testing.T) {
	s := spanCases()["span_root_128bit"]
	o := SpanOptions{TagKeysAsFields: []string{"http.status_code", "shard", "host", "blob"}}
	golden(t, "span_tags_as_fields.stored.json", FromDomainSpan(s, o))
	var d Span
	readStored(t, "span_tags_as_fields.stored.json", &d)
	back, err := ToDomainSpan(&d, o)
	if err != nil {
		t.Fatal(err)
	}
	// Fields come back after the nested tags, sorted by key; binary stays nested.
	for _, k := range []string{"http.status_code", "shard", "blob"} {
		want, _ := s.Tags.Find(k)
		got, ok := back.Tags.Find(k)
		if !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("tag %s: got %+v, want %+v", k, got, want)
		}
	}
	if got, _ := back.Process.Tags.Find("host"); got.Str != "h1" {
		t.Errorf("process tag host = %+v", got)
	}
}

func TestServiceGolden(t *testing.T) {
	svc := Service{ServiceName: "frontend", OperationName: "GET /api/orders"}
	golden(t, "service.stored.json", map[string]any{"_id": svc.ID(), "_source": svc})
	if other := (Service{ServiceName: "frontend", OperationName: "POST /api/orders"}); svc.ID() == other.ID() {
		t.Fatal("different pairs share an id")
	}
}

func TestTraceGolden(t *testing.T) {
	s, a := traceCase()
	golden(t, "trace.domain.json", model.StoredTrace{Summary: s, Analysis: a})
	golden(t, "trace.stored.json", FromDomainTrace(&s, &a))
	var d Trace
	readStored(t, "trace.stored.json", &d)
	checkTraceRoundTrip(t, &d, s, a)
}

// checkTraceRoundTrip checks that d reads back as summary s and analysis a.
func checkTraceRoundTrip(t *testing.T, d *Trace, s model.TraceSummary, a model.Analysis) {
	t.Helper()
	gotS, err := d.ToDomainSummary(model.DefaultPromotedTags())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotS, s) {
		t.Errorf("summary round trip:\ngot  %+v\nwant %+v", gotS, s)
	}
	gotA, err := d.ToDomainAnalysis()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotA, a) {
		t.Errorf("analysis round trip:\ngot  %+v\nwant %+v", gotA, a)
	}
}

func TestRollupGolden(t *testing.T) {
	r := rollupCase()
	golden(t, "rollup.domain.json", r)
	golden(t, "rollup.stored.json", map[string]any{"_id": r.ID(), "_source": FromDomainRollup(&r)})
	var env struct {
		ID     string `json:"_id"`
		Source Rollup `json:"_source"`
	}
	readStored(t, "rollup.stored.json", &env)
	back, err := env.Source.ToDomain()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, r) {
		t.Errorf("round trip:\ngot  %+v\nwant %+v", back, r)
	}
	if env.ID != back.ID() {
		t.Errorf("id %s != %s", env.ID, back.ID())
	}
}

func TestDerivedTags(t *testing.T) {
	tests := []struct {
		name string
		span model.Span
		want model.KeyValues
	}{
		{"nothing to add", model.Span{}, nil},
		{"kind without tag", model.Span{Kind: model.KindProducer}, model.KeyValues{model.String("span.kind", "producer")}},
		{"kind with tag kept", model.Span{Kind: model.KindServer, Tags: model.KeyValues{model.String("span.kind", "server")}}, nil},
		{"error status", model.Span{Status: model.StatusError, StatusMessage: "boom"}, model.KeyValues{model.Bool("error", true), model.String("otel.status_description", "boom")}},
		{"ok status", model.Span{Status: model.StatusOK}, model.KeyValues{model.String("otel.status_code", "OK")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := FromDomainSpan(&tt.span, SpanOptions{})
			back, err := ToDomainSpan(&d, SpanOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := derivedTags(&tt.span); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("derived = %+v, want %+v", got, tt.want)
			}
			if back.Kind != tt.span.Kind || back.Status != tt.span.Status || back.StatusMessage != tt.span.StatusMessage {
				t.Errorf("kind/status not preserved: got %v/%v/%q", back.Kind, back.Status, back.StatusMessage)
			}
		})
	}
}

func TestToDomainSpanErrors(t *testing.T) {
	tests := []struct{ name, doc string }{
		{"bad trace id", `{"traceID":"xyz","spanID":"1"}`},
		{"bad span id", `{"traceID":"1","spanID":""}`},
		{"bad ref type", `{"traceID":"1","spanID":"1","references":[{"refType":"SIBLING","traceID":"1","spanID":"2"}]}`},
		{"bad int tag", `{"traceID":"1","spanID":"1","tags":[{"key":"n","type":"int64","value":"x"}]}`},
		{"bad binary tag", `{"traceID":"1","spanID":"1","tags":[{"key":"b","type":"binary","value":"zz"}]}`},
		{"unknown type", `{"traceID":"1","spanID":"1","tags":[{"key":"b","type":"complex","value":"1"}]}`},
		{"duration out of range", `{"traceID":"1","spanID":"1","duration":9223372036854776}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d Span
			if err := json.Unmarshal([]byte(tt.doc), &d); err != nil {
				t.Fatal(err)
			}
			if _, err := ToDomainSpan(&d, SpanOptions{}); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}

// TestNegativeDuration: a span with a negative duration is stored with
// duration 0 (as the analysis counts it), and a stored negative duration
// (written by older versions) reads back as 0 instead of failing the trace.
func TestNegativeDuration(t *testing.T) {
	sp := &model.Span{TraceID: model.TraceID{Low: 1}, SpanID: 1, Duration: -5 * time.Second}
	d := FromDomainSpan(sp, SpanOptions{})
	if d.Duration != 0 {
		t.Errorf("stored duration = %d, want 0", d.Duration)
	}
	for _, stored := range []int64{d.Duration, -5000000} {
		d.Duration = stored
		got, err := ToDomainSpan(&d, SpanOptions{})
		if err != nil || got.Duration != 0 {
			t.Errorf("read stored duration %d: %v, %v; want 0", stored, got, err)
		}
	}
}

func TestParentSpanIDFallback(t *testing.T) {
	d := Span{TraceID: "a", SpanID: "2", ParentSpanID: "1"}
	s, err := ToDomainSpan(&d, SpanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p, blocking, ok := s.ParentSpanID(); !ok || !blocking || p != 1 {
		t.Fatalf("parent = %v %v %v", p, blocking, ok)
	}
}

func TestAlignSpans(t *testing.T) {
	spans := []*model.Span{{SpanID: 3, Start: 5}, {SpanID: 9, Start: 1}, {SpanID: 1}, {SpanID: 2}}
	a := model.Analysis{Spans: []model.SpanStats{{SpanID: 1}, {SpanID: 2}, {SpanID: 3}, {SpanID: 4}}}
	got, ga := AlignSpans(spans, a)
	var ids []model.SpanID
	for _, s := range got {
		ids = append(ids, s.SpanID)
	}
	if !reflect.DeepEqual(ids, []model.SpanID{1, 2, 3, 9}) {
		t.Errorf("order = %v", ids)
	}
	if len(ga.Spans) != 3 {
		t.Errorf("stats = %v", ga.Spans)
	}
}

// FuzzSpanDoc feeds stored span documents (bytes read back from a backend)
// to ToDomainSpan: it must never panic, and what it accepts must survive a
// second round trip unchanged.
func FuzzSpanDoc(f *testing.F) {
	for name := range spanCases() {
		if b, err := os.ReadFile(filepath.Join("testdata", name+".stored.json")); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"traceID":"1","spanID":"2","parentSpanID":"1","tag":{"a@b":1.5,"c":true,"d":"x","e":3}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var d Span
		if json.Unmarshal(b, &d) != nil {
			return
		}
		s, err := ToDomainSpan(&d, SpanOptions{})
		if err != nil {
			return
		}
		d2 := FromDomainSpan(s, SpanOptions{})
		s2, err := ToDomainSpan(&d2, SpanOptions{})
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		d3 := FromDomainSpan(s2, SpanOptions{})
		j2, _ := json.Marshal(d2)
		j3, _ := json.Marshal(d3)
		if !bytes.Equal(j2, j3) {
			t.Fatalf("unstable round trip:\n%s\n%s", j2, j3)
		}
	})
}

func edgeCases() map[string]model.EdgeRollup {
	x := 7 * time.Millisecond
	return map[string]model.EdgeRollup{
		"edge_rollup": {
			Resolution: time.Minute, WindowStart: model.Timestamp(1700000040 * int64(time.Second)),
			Caller: "frontend", Callee: "db", Calls: 40, Errors: 2,
			Latency:   model.Distribution{Sum: 40 * x, Quantiles: model.Quantiles{P50: x, P90: 2 * x, P95: 3 * x, P99: 4 * x, Max: 5 * x}, Sketch: []byte{4, 5, 6}},
			Exemplars: []model.Exemplar{{TraceID: tid128, Duration: 5 * x, Start: t0}, {TraceID: tid64, Duration: 4 * x, Start: t0.Add(time.Second)}},
		},
		// A retraction: the reducer empties a window that no longer has calls.
		"edge_rollup_retraction": {
			Resolution: time.Hour, WindowStart: model.Timestamp(1699999200 * int64(time.Second)),
			Caller: "frontend", Callee: "db",
		},
	}
}

func TestEdgeRollupGolden(t *testing.T) {
	for name, e := range edgeCases() {
		t.Run(name, func(t *testing.T) {
			golden(t, name+".domain.json", e)
			golden(t, name+".stored.json", map[string]any{"_id": e.ID(), "_source": FromDomainEdgeRollup(&e)})
			var env struct {
				ID     string     `json:"_id"`
				Source EdgeRollup `json:"_source"`
			}
			readStored(t, name+".stored.json", &env)
			back, err := env.Source.ToDomain()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, e) {
				t.Errorf("round trip:\ngot  %+v\nwant %+v", back, e)
			}
			if env.ID != back.ID() {
				t.Errorf("id %s != %s", env.ID, back.ID())
			}
		})
	}
}

func TestDependencyGolden(t *testing.T) {
	for name, e := range edgeCases() {
		if e.Resolution != 24*time.Hour {
			e.Resolution = 24 * time.Hour
			e.WindowStart = model.TimestampOf(e.WindowStart.Time().UTC().Truncate(24 * time.Hour))
		}
		t.Run(name, func(t *testing.T) {
			golden(t, strings.Replace(name, "edge_rollup", "dependency", 1)+".stored.json", map[string]any{"_id": e.ID(), "_source": FromDomainDependency(&e)})
		})
	}
}

func TestEdgeRollupToDomainErrors(t *testing.T) {
	tests := []struct{ name, doc string }{
		{"zero resolution", `{"resolutionNanos":0,"caller":"a","callee":"b"}`},
		{"negative resolution", `{"resolutionNanos":-60000000000,"caller":"a","callee":"b"}`},
		{"bad exemplar trace id", `{"resolutionNanos":60000000000,"caller":"a","callee":"b","exemplars":[{"traceID":"xyz"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d EdgeRollup
			if err := json.Unmarshal([]byte(tt.doc), &d); err != nil {
				t.Fatal(err)
			}
			if _, err := d.ToDomain(); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}
