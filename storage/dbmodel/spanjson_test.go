package dbmodel

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/tracegen"
)

// layouts are the tag layouts the encoders must agree on.
var layouts = map[string]SpanOptions{
	"jaeger":     {},
	"well-known": {WellKnownTagsAsFields: true},
	"all":        {AllTagsAsFields: true},
	"keys":       {TagKeysAsFields: []string{"shard", "a.b", "k"}, DotReplacement: "_"},
}

// oddSpan has what encoding must get exactly right: escapes, HTML
// characters, invalid UTF-8, repeated keys, floats JSON cannot hold, keys
// that cannot be fields, derived tags, logs and references.
func oddSpan() *model.Span {
	return &model.Span{
		TraceID: tid128, SpanID: 0x77, Operation: "GET /a<b>&\"c\"\n\xff", Flags: 3,
		References: []model.Reference{{Type: model.FollowsFrom, TraceID: tid64, SpanID: 9}},
		Start:      t0.Add(-time.Hour*24*365*60 - 1500), Duration: -time.Millisecond,
		Tags: model.KeyValues{
			model.String("span.kind", "client"), model.String("span.kind", "server"),
			model.Float64("sampler.param", 1), model.Float64("ratio", math.NaN()), model.Float64("k", math.Inf(-1)),
			model.Float64("a.b", 1e21), model.Int64("big", 1<<62+1), model.Bool("error", false),
			model.String("", "empty key"), model.String("x@y", "holds the dot replacement"), model.String("x_y", "z"),
			model.String("日本", "語\u2028"), model.Binary("http.url", []byte{0, 1}),
		},
		Logs: []model.Log{{Timestamp: t0, Fields: model.KeyValues{model.String("event", "a\tb")}}, {Timestamp: t0}},
		Process: model.Process{ServiceName: "svc</script>", Tags: model.KeyValues{
			model.String("hostname", "h"), model.String("ip", "10.0.0.1"), model.String("client-uuid", "u"), model.Int64("process.pid", 42),
		}},
		Kind: model.KindProducer, Status: model.StatusOK, StatusMessage: "fine",
	}
}

func sameAsMarshal(t *testing.T, s *model.Span, o SpanOptions) {
	t.Helper()
	d := FromDomainSpan(s, o)
	want, err := json.Marshal(&d)
	if err != nil {
		t.Fatal(err)
	}
	if got := AppendSpanJSON([]byte("prefix"), s, o); !bytes.Equal(got[6:], want) {
		t.Fatalf("AppendSpanJSON differs from json.Marshal:\ngot  %s\nwant %s", got[6:], want)
	}
}

func TestAppendSpanJSONSameAsMarshal(t *testing.T) {
	spans := []*model.Span{oddSpan()}
	for _, s := range spanCases() {
		spans = append(spans, s)
	}
	for _, tr := range tracegen.Generate(tracegen.Config{Seed: 3, Traces: 200}).Traces {
		spans = append(spans, tr.Spans...)
	}
	for name, o := range layouts {
		t.Run(name, func(t *testing.T) {
			for _, s := range spans {
				sameAsMarshal(t, s, o)
			}
		})
	}
}

func FuzzAppendSpanJSON(f *testing.F) {
	f.Add("http.method", "GET", 1.5, int64(7), uint32(1), "op", true)
	f.Add("a.b", "<x>", math.NaN(), int64(-1), uint32(0), "\xff", false)
	f.Add("", "", 1.0, int64(math.MaxInt64), uint32(math.MaxUint32), "日本", true)
	f.Fuzz(func(t *testing.T, key, val string, fl float64, n int64, flags uint32, op string, b bool) {
		s := &model.Span{
			TraceID: tid128, SpanID: model.SpanID(n), Operation: op, Flags: flags, Start: model.Timestamp(n), Duration: time.Duration(n),
			Tags:    model.KeyValues{model.String(key, val), model.Float64(key, fl), model.Int64(key+".n", n), model.Bool(val, b), model.Binary(key, []byte(val))},
			Logs:    []model.Log{{Timestamp: model.Timestamp(n), Fields: model.KeyValues{model.String(val, key)}}},
			Process: model.Process{ServiceName: val, Tags: model.KeyValues{model.String(key, op), model.Float64("hostname", fl)}},
		}
		for _, o := range layouts {
			sameAsMarshal(t, s, o)
			o.TagKeysAsFields = append(o.TagKeysAsFields, key, val, key+".n")
			sameAsMarshal(t, s, o)
		}
	})
}

// TestTagsAsFieldsRoundTrip stores a span in every layout and reads it back:
// every tag comes back with its type and value (fields after the nested
// tags), floats stay floats and large integers keep every digit.
func TestTagsAsFieldsRoundTrip(t *testing.T) {
	s := oddSpan()
	for name, o := range layouts {
		t.Run(name, func(t *testing.T) {
			var d Span
			if err := json.Unmarshal(AppendSpanJSON(nil, s, o), &d); err != nil {
				t.Fatal(err)
			}
			back, err := ToDomainSpan(&d, o)
			if err != nil {
				t.Fatal(err)
			}
			want := append(append(model.KeyValues(nil), s.Tags...), derivedTags(s)...)
			for _, tags := range [][2]model.KeyValues{{back.Tags, want}, {back.Process.Tags, s.Process.Tags}} {
				got, want := count(tags[0]), count(tags[1])
				if len(got) != len(want) {
					t.Errorf("tags %v, want %v", got, want)
				}
				for k, n := range want {
					if got[k] != n {
						t.Errorf("tag %s: %d times, want %d (got %v)", k, got[k], n, got)
					}
				}
			}
		})
	}
	d := FromDomainSpan(s, SpanOptions{WellKnownTagsAsFields: true})
	for _, k := range []string{"span@kind", "otel@status_code", "error"} {
		if _, ok := d.Tag[k]; !ok {
			t.Errorf("well-known %s is not a field: %v", k, d.Tag)
		}
	}
	for _, k := range []string{"hostname", "ip", "client-uuid", "process@pid"} {
		if _, ok := d.Process.Tag[k]; !ok {
			t.Errorf("well-known process tag %s is not a field: %v", k, d.Process.Tag)
		}
	}
	if len(d.Tag) != 3 { // span.kind (the first), error, otel.status_code; not sampler.param, ratio, ...
		t.Errorf("fields %v", d.Tag)
	}
}

// count renders each tag as key/type/value text and counts them (NaN equal
// to NaN).
func count(kvs model.KeyValues) map[string]int {
	m := map[string]int{}
	for _, kv := range kvs {
		m[kv.Key+"/"+kv.Type.String()+"/"+kv.AsString()]++
	}
	return m
}

func BenchmarkAppendSpanJSON(b *testing.B) {
	spans := tracegen.Generate(tracegen.Config{Seed: 3, Traces: 100}).Traces[0].Spans
	o := SpanOptions{WellKnownTagsAsFields: true}
	b.Run("append", func(b *testing.B) {
		var buf []byte
		for i := 0; i < b.N; i++ {
			buf = AppendSpanJSON(buf[:0], spans[i%len(spans)], o)
		}
	})
	b.Run("marshal", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			d := FromDomainSpan(spans[i%len(spans)], o)
			_, _ = json.Marshal(&d)
		}
	})
}
