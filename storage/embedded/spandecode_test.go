package embedded

import (
	"context"
	"encoding/json"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/storage"
	"github.com/tracepipe/tracepipe/storage/dbmodel"
	"github.com/tracepipe/tracepipe/storage/storagetest"
)

// storedSpans is the spans column's JSON for spans, as WriteTraces writes it.
func storedSpans(t testing.TB, spans []*model.Span) []byte {
	t.Helper()
	docs := []dbmodel.Span{}
	for _, sp := range spans {
		docs = append(docs, dbmodel.FromDomainSpan(sp, dbmodel.SpanOptions{}))
	}
	b, err := json.Marshal(docs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// nastySpans has what the fast path must get right or hand over: escapes,
// quotes, markup, non-ASCII, logs, references, every tag type.
func nastySpans() []*model.Span {
	at := storagetest.Trace(storagetest.Spec{ID: model.TraceID{Low: 7}, Start: storagetest.Day0, Shard: "3", Host: "h\"1", Error: true, ExtraSpans: 2})
	sp := at.Trace.Spans[0]
	sp.Operation = `GET /<script>alert("x")</script> ü 日本 \ /`
	sp.Tags = append(sp.Tags, model.String("q", "a\"b\\c\nd\te\u2028"), model.Bool("ok", false), model.Int64("n", -42),
		model.Float64("f", 0.125), model.Binary("bin", []byte{0, 1, 0xff}), model.String("", ""))
	sp.Logs = append(sp.Logs, model.Log{Timestamp: storagetest.Day0.Add(time.Millisecond), Fields: model.KeyValues{model.String("event", "retry"), model.Int64("attempt", 2)}})
	sp.Process.Tags = append(sp.Process.Tags, model.String("ip", "10.0.0.1"))
	return at.Trace.Spans
}

// TestDecodeSpans: the fast path and json.Unmarshal agree on stored spans,
// and documents outside the fast path still decode as json.Unmarshal does.
func TestDecodeSpans(t *testing.T) {
	docs := [][]byte{
		storedSpans(t, storagetest.Synthetic(3, 200, storagetest.Day0).Trace.Spans),
		storedSpans(t, nastySpans()),
		[]byte(`[]`),
		[]byte(` [ ] `),
		// fallbacks: unknown field, case-folded key, repeated key, null,
		// "tag" object, float integer field, nested value, top-level null
		[]byte(`[{"traceID":"1","spanID":"2","extra":1}]`),
		[]byte(`[{"TraceID":"1","spanID":"2"}]`),
		[]byte(`[{"traceID":"1","traceID":"3"}]`),
		[]byte(`[{"traceID":null,"tags":null}]`),
		[]byte(`[{"traceID":"1","tag":{"a":1,"b":"x"},"process":{"serviceName":"s","tag":{"c":true}}}]`),
		[]byte(`[{"startTime":1e3}]`),
		[]byte(`[{"tags":[{"key":"k","value":{"a":[1,2]}}]}]`),
		[]byte(`[{"tags":[{"key":"k","value":1.5e300}, {"key":"\u00fc\ud83d\ude00","value":"\ud800"}]}]`),
		[]byte("[{\"operationName\":\"\xff\xfe\"}]"),
		[]byte(`null`),
	}
	for i, b := range docs {
		var want []dbmodel.Span
		werr := json.Unmarshal(b, &want)
		got, err := decodeSpans(b)
		if (err != nil) != (werr != nil) || !reflect.DeepEqual(got, want) {
			t.Errorf("doc %d %.80q:\ngot  %+v (%v)\nwant %+v (%v)", i, b, got, err, want, werr)
		}
	}
	// The stored form takes the fast path.
	for _, b := range docs[:4] {
		p := spanParser{b: b}
		if _, ok := p.spans(); !ok {
			t.Errorf("%.80q: not decoded by the fast path", b)
		}
	}
	// Errors stay errors.
	for _, b := range []string{``, `[`, `[{]`, `[{"traceID":1}]`, `[{"flags":-1}]`, `[{"flags":4294967296}]`, `[{}] x`, `[{"startTime":01}]`} {
		if _, err := decodeSpans([]byte(b)); err == nil {
			t.Errorf("%q decoded without error", b)
		}
	}
}

// FuzzDecodeSpans: whatever the fast path accepts, json.Unmarshal accepts
// with an equal result.
func FuzzDecodeSpans(f *testing.F) {
	f.Add(storedSpans(f, nastySpans()))
	f.Add(storedSpans(f, storagetest.Synthetic(1, 3, storagetest.Day0).Trace.Spans))
	f.Add([]byte(`[{"tags":[{"key":"k","type":"bool","value":true},{"key":"n","value":-0}]}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := spanParser{b: b}
		got, ok := p.spans()
		if !ok {
			return
		}
		var want []dbmodel.Span
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("fast path accepted %q, json.Unmarshal: %v", b, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\nfast %+v\njson %+v", b, got, want)
		}
	})
}

// storedDetail is the analysis column's JSON for at, as WriteTraces writes it.
func storedDetail(t testing.TB, at model.AssembledTrace) []byte {
	t.Helper()
	sum := storage.Summarize(&at, model.DefaultPromotedTags())
	d := dbmodel.FromDomainTrace(&sum, &at.Analysis)
	b, err := json.Marshal(detail{Operations: d.Operations, Analysis: d.Analysis})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDecodeDetail: the analysis column decodes as json.Unmarshal decodes it.
func TestDecodeDetail(t *testing.T) {
	nasty := storagetest.Trace(storagetest.Spec{ID: model.TraceID{Low: 9}, Start: storagetest.Day0, Error: true, ExtraSpans: 3})
	nasty.Analysis.Warnings = append(nasty.Analysis.Warnings, model.Warning{Kind: model.WarnClockSkew, SpanID: 2, Message: "shifted \"x\" <b>"})
	docs := [][]byte{
		storedDetail(t, storagetest.Synthetic(4, 300, storagetest.Day0)),
		storedDetail(t, nasty),
		[]byte(`{}`),
		[]byte(`{"operations":[],"analysis":{"criticalPath":[],"spans":[]}}`),
		[]byte(`{"operations":null,"analysis":{"spans":[{"spanID":"1","selfNanos":1.5}]}}`),
		[]byte(`{"Operations":[{"count":1}],"analysis":{"rootSpanID":"\u0041","warnings":[{"kind":"k","message":"m","extra":1}]}}`),
		[]byte(`{"analysis":{}} x`),
	}
	for i, b := range docs {
		var want detail
		werr := json.Unmarshal(b, &want)
		var got detail
		err := decodeDetail(b, &got)
		if (err != nil) != (werr != nil) || !reflect.DeepEqual(got, want) {
			t.Errorf("doc %d %.80q:\ngot  %+v (%v)\nwant %+v (%v)", i, b, got, err, want, werr)
		}
	}
	for _, b := range docs[:4] {
		p := spanParser{b: b}
		var d detail
		if !p.detail(&d) {
			t.Errorf("%.80q: not decoded by the fast path", b)
		}
	}
}

// FuzzDecodeDetail: whatever the fast path accepts, json.Unmarshal
// accepts with an equal result.
func FuzzDecodeDetail(f *testing.F) {
	f.Add(storedDetail(f, storagetest.Synthetic(1, 4, storagetest.Day0)))
	f.Add([]byte(`{"analysis":{"warnings":[{"kind":"a","spanID":"1","message":"m"}],"criticalPath":[{"spanID":"1","startNanos":-1,"endNanos":2}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := spanParser{b: b}
		var got detail
		if !p.detail(&got) {
			return
		}
		if p.ws(); p.i != len(b) {
			return
		}
		var want detail
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("fast path accepted %q, json.Unmarshal: %v", b, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\nfast %+v\njson %+v", b, got, want)
		}
	})
}

func BenchmarkDecodeSpans(b *testing.B) {
	doc := storedSpans(b, storagetest.Synthetic(1, 10000, storagetest.Day0).Trace.Spans)
	b.Run("fast", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for i := 0; i < b.N; i++ {
			if _, err := decodeSpans(doc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for i := 0; i < b.N; i++ {
			var docs []dbmodel.Span
			if err := json.Unmarshal(doc, &docs); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkGetTrace10000Spans reads one 10,000-span trace (the web UI's
// big-trace page reads it so).
func BenchmarkGetTrace10000Spans(b *testing.B) {
	s, err := Open(context.Background(), Options{Path: filepath.Join(b.TempDir(), "db")})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	at := storagetest.Synthetic(1, 10000, storagetest.Day0)
	if err := s.WriteTraces(context.Background(), []model.AssembledTrace{at}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.GetTrace(context.Background(), at.Trace.TraceID); err != nil {
			b.Fatal(err)
		}
	}
}
