package wire

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tracepipe/tracepipe/model"
)

func TestJaegerRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		span *model.Span
	}{
		{"realistic", realisticSpan()},
		{"rich values, 64-bit ids, negative times", richSpan()},
		{"minimal", minimalSpan()},
		{"from otlp: kind and error status only as fields", otlpStyleSpans()[0]},
		{"from otlp: ok status", otlpStyleSpans()[1]},
		{"from otlp: client without status", otlpStyleSpans()[2]},
	}
	for _, enc := range []Encoding{JaegerProto, JaegerJSON} {
		for _, c := range cases {
			t.Run(string(enc)+"/"+c.name, func(t *testing.T) {
				msgs, err := Encode(enc, []*model.Span{c.span})
				if err != nil {
					t.Fatal(err)
				}
				if len(msgs) != 1 {
					t.Fatalf("%d messages, want 1", len(msgs))
				}
				got, err := Decode(enc, msgs[0], nil)
				if err != nil {
					t.Fatal(err)
				}
				want := withJaegerTags(c.span)
				if d := spansDiff(got, []*model.Span{want}); d != "" {
					t.Fatal(d)
				}
				// Decoding what a Jaeger decoder returned and encoding it again
				// gives the same message: Jaeger -> model -> Jaeger is lossless.
				again, err := Encode(enc, got)
				if err != nil {
					t.Fatal(err)
				}
				if enc == JaegerProto && !bytes.Equal(again[0], msgs[0]) {
					t.Fatalf("second encoding differs:\n%x\n%x", again[0], msgs[0])
				}
				if got[0].Kind != c.span.Kind || got[0].Status != c.span.Status || got[0].StatusMessage != c.span.StatusMessage {
					t.Fatalf("kind/status %v/%v/%q, want %v/%v/%q", got[0].Kind, got[0].Status, got[0].StatusMessage,
						c.span.Kind, c.span.Status, c.span.StatusMessage)
				}
			})
		}
	}
}

func TestOTLPRoundTrip(t *testing.T) {
	cases := []struct {
		name  string
		spans []*model.Span
	}{
		{"realistic jaeger-style span", []*model.Span{realisticSpan()}},
		{"sdk batch: two services, two traces, links, events", otlpStyleSpans()},
		{"minimal", []*model.Span{minimalSpan()}},
		{"interleaved processes regroup", []*model.Span{otlpStyleSpans()[0], otlpStyleSpans()[2], otlpStyleSpans()[1]}},
	}
	for _, enc := range []Encoding{OTLPProto, OTLPJSON} {
		for _, c := range cases {
			t.Run(string(enc)+"/"+c.name, func(t *testing.T) {
				msgs, err := Encode(enc, c.spans)
				if err != nil {
					t.Fatal(err)
				}
				if len(msgs) != 1 {
					t.Fatalf("%d messages, want 1", len(msgs))
				}
				dst := []*model.Span{minimalSpan()} // Decode appends
				got, err := Decode(enc, msgs[0], dst)
				if err != nil {
					t.Fatal(err)
				}
				if got[0] != dst[0] {
					t.Fatal("Decode did not append to dst")
				}
				if d := spansDiff(sortedSpans(got[1:]), sortedSpans(c.spans)); d != "" {
					t.Fatal(d)
				}
			})
		}
	}
}

// TestOTLPGrouping checks the documented grouping: one ResourceSpans per
// process, one ScopeSpans per scope, in order of first appearance.
func TestOTLPGrouping(t *testing.T) {
	in := otlpStyleSpans()
	in = []*model.Span{in[0], in[2], in[1]}
	msg, err := EncodeOTLPProto(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeOTLPProto(msg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var order []model.SpanID
	for _, s := range got {
		order = append(order, s.SpanID)
	}
	want := []model.SpanID{in[0].SpanID, in[2].SpanID, in[1].SpanID}
	if len(order) != 3 || order[0] != want[0] || order[1] != want[1] || order[2] != want[2] {
		t.Fatalf("order %v, want %v", order, want)
	}
	if &got[0].Process.Tags[0] != &got[1].Process.Tags[0] {
		t.Error("spans of one resource should share process tags")
	}
}

func TestOTLPEncodeRejects(t *testing.T) {
	for name, s := range map[string]*model.Span{
		"start before epoch": richSpan(),
		"unknown kind":       {TraceID: model.TraceID{Low: 1}, SpanID: 1, Kind: 9},
	} {
		if _, err := EncodeOTLPProto([]*model.Span{s}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestCrossFormat: a span read from Jaeger survives a trip through OTLP
// and comes back as the same Jaeger bytes.
func TestCrossFormat(t *testing.T) {
	orig, err := EncodeJaegerProto(realisticSpan())
	if err != nil {
		t.Fatal(err)
	}
	s, err := DecodeJaegerProto(orig)
	if err != nil {
		t.Fatal(err)
	}
	for _, enc := range []Encoding{OTLPProto, OTLPJSON, JaegerJSON} {
		msgs, err := Encode(enc, []*model.Span{s})
		if err != nil {
			t.Fatal(err)
		}
		back, err := Decode(enc, msgs[0], nil)
		if err != nil {
			t.Fatal(err)
		}
		again, err := EncodeJaegerProto(back[0])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, orig) {
			t.Errorf("%s: jaeger bytes changed:%s", enc, spanDiff(back[0], s))
		}
	}
}

func TestEncodeUnknown(t *testing.T) {
	if _, err := Encode("xml", nil); !errors.Is(err, ErrUnknownEncoding) {
		t.Fatal(err)
	}
	if _, err := Decode("xml", nil, nil); !errors.Is(err, ErrUnknownEncoding) {
		t.Fatal(err)
	}
	if msgs, err := Encode(OTLPProto, nil); err != nil || msgs != nil {
		t.Fatal(msgs, err)
	}
	bad := &model.Span{TraceID: model.TraceID{Low: 1}, SpanID: 1, Tags: model.KeyValues{{Key: "x", Type: 9}}}
	for _, enc := range Encodings() {
		if _, err := Encode(enc, []*model.Span{bad}); err == nil && (enc == JaegerProto || enc == JaegerJSON) {
			t.Errorf("%s: no error for unknown value type", enc)
		}
	}
}

func TestParseEncoding(t *testing.T) {
	for in, want := range map[string]Encoding{
		"jaeger-proto": JaegerProto, "protobuf": JaegerProto, "json": JaegerJSON, "jaeger-json": JaegerJSON,
		"otlp-proto": OTLPProto, "otlp_json": OTLPJSON, "auto": Auto, "": Auto,
	} {
		got, err := ParseEncoding(in)
		if err != nil || got != want {
			t.Errorf("ParseEncoding(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseEncoding("thrift"); !errors.Is(err, ErrUnknownEncoding) {
		t.Error(err)
	}
}

func TestKey(t *testing.T) {
	if got := string(Key(model.TraceID{Low: 0xabc})); got != "0000000000000abc" {
		t.Error(got)
	}
	if got := string(Key(testTraceID)); got != testTraceID.String() {
		t.Error(got)
	}
}

// otlpWithFirstLength builds an OTLP request whose first ResourceSpans is n
// bytes long (so the message starts 0x0a, n).
func otlpWithFirstLength(t *testing.T, n int) []byte {
	t.Helper()
	for l := 0; l < 200; l++ {
		s := minimalSpan()
		s.Operation = strings.Repeat("x", l)
		b, err := EncodeOTLPProto([]*model.Span{s})
		if err != nil {
			t.Fatal(err)
		}
		if v, m := protowire.ConsumeVarint(b[1:]); m == 1 && int(v) == n {
			return b
		}
	}
	t.Fatalf("no request with first length %d", n)
	return nil
}

func TestDetect(t *testing.T) {
	enc := func(e Encoding, spans ...*model.Span) []byte {
		msgs, err := Encode(e, spans)
		if err != nil {
			t.Fatal(err)
		}
		return msgs[0]
	}
	cases := []struct {
		name string
		msg  []byte
		want Encoding
	}{
		{"jaeger proto", enc(JaegerProto, realisticSpan()), JaegerProto},
		{"jaeger proto minimal", enc(JaegerProto, minimalSpan()), JaegerProto},
		{"jaeger proto, fields out of order", append(enc(JaegerProto, minimalSpan())[18:], enc(JaegerProto, minimalSpan())[:18]...), JaegerProto},
		{"jaeger json", enc(JaegerJSON, realisticSpan()), JaegerJSON},
		{"jaeger json, leading whitespace", append([]byte("\n  "), enc(JaegerJSON, realisticSpan())...), JaegerJSON},
		{"otlp proto", enc(OTLPProto, realisticSpan()), OTLPProto},
		{"otlp proto batch", enc(OTLPProto, otlpStyleSpans()...), OTLPProto},
		{"otlp proto that starts like \"\\n{\"", otlpWithFirstLength(t, '{'), OTLPProto},
		{"empty message is an empty otlp request", nil, OTLPProto},
		{"otlp json", enc(OTLPJSON, otlpStyleSpans()...), OTLPJSON},
		{"otlp json snake case, after other members", []byte(`{"x":[1,{"y":2}],"resource_spans":[]}`), OTLPJSON},
		{"jaeger json with unknown members first", []byte(`{"x":"resourceSpans","spanId":"AAAAAAAAAAE="}`), JaegerJSON},
		{"garbage", []byte{0xff, 0xff}, OTLPProto},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Detect(c.msg); got != c.want {
				t.Fatalf("Detect = %s, want %s", got, c.want)
			}
			if c.want != OTLPProto || len(c.msg) == 0 || c.name == "garbage" {
				return
			}
			// Auto decodes what Detect recognised.
			if _, err := Decode(Auto, c.msg, nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	valid, err := EncodeJaegerProto(realisticSpan())
	if err != nil {
		t.Fatal(err)
	}
	pb := func(fields ...[]byte) []byte { return bytes.Join(fields, nil) }
	bytesField := func(num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
	}
	ids := pb(bytesField(1, make16(1)), bytesField(2, []byte{0, 0, 0, 0, 0, 0, 0, 2}))
	otlpSpan := func(span []byte) []byte {
		return bytesField(1, bytesField(2, bytesField(2, span)))
	}
	cases := []struct {
		name string
		enc  Encoding
		msg  []byte
		want string
	}{
		{"jaeger proto: cut inside references", JaegerProto, valid[:60],
			"decode jaeger span: field 4 (references) at byte 58: truncated: length 28, 0 bytes left"},
		{"jaeger proto: trace id of 5 bytes", JaegerProto, bytesField(1, []byte{1, 2, 3, 4, 5}),
			"decode jaeger span: field 1 (trace_id) at byte 0: malformed id: trace id has 5 bytes, want 8 or 16"},
		{"jaeger proto: zero trace id", JaegerProto, pb(bytesField(1, make([]byte, 16))), "trace id is zero"},
		{"jaeger proto: no trace id", JaegerProto, bytesField(3, []byte("op")), "missing trace id"},
		{"jaeger proto: no span id", JaegerProto, bytesField(1, make16(1)), "missing span id"},
		{"jaeger proto: zero span id", JaegerProto, pb(bytesField(1, make16(1)), bytesField(2, make([]byte, 8))), "span id is zero"},
		{"jaeger proto: invalid utf-8 operation", JaegerProto, pb(ids, bytesField(3, []byte{0xff})),
			"field 3 (operation_name) at byte 28: invalid UTF-8"},
		{"jaeger proto: bad process tag type", JaegerProto,
			pb(ids, bytesField(10, bytesField(2, pb(bytesField(1, []byte("k")), []byte{0x10, 9})))),
			`field 10 (process) > field 2 (tags) > field 2 (v_type) at byte 30: key "k": unknown v_type 9`},
		{"jaeger proto: log time out of range", JaegerProto,
			pb(ids, bytesField(9, bytesField(1, []byte{0x10, 0x80, 0x94, 0xeb, 0xdc, 0x03}))),
			"field 9 (logs) > field 1 (timestamp) at byte 28: timestamp 0s 1000000000ns out of range"},
		{"jaeger proto: unknown ref type", JaegerProto,
			pb(ids, bytesField(4, pb(bytesField(1, make16(1)), bytesField(2, make([]byte, 8)), []byte{0x18, 5}))),
			"field 4 (references) > field 3 (ref_type) at byte 28: unknown ref_type 5"},
		{"jaeger proto: field number 0", JaegerProto, []byte{0x02, 0x00}, "at byte 0: invalid field number"},
		{"jaeger proto: bad varint", JaegerProto, pb(ids, []byte{0x28, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}),
			"field 5 (flags) at byte 28: variable length integer overflow"},
		{"jaeger json: not json", JaegerJSON, []byte("{x"), "decode jaeger json: at byte 1: unexpected 'x', want object key"},
		{"jaeger json: bad trace id", JaegerJSON, []byte(`{"traceId":"?!"}`), `traceId at byte 11: trace id "?!" is neither hex nor base64`},
		{"jaeger json: bad tag value", JaegerJSON, []byte(`{"traceId":"AAAAAAAAAAE=","tags":[{"key":"a"},{"key":"b","vType":"INT64","vInt64":"1.5"}]}`),
			"tags[1].vInt64 at byte 82: invalid integer 1.5"},
		{"jaeger json: unknown enum", JaegerJSON, []byte(`{"tags":[{"vType":"TEXT"}]}`), `tags[0].vType at byte 18: unknown value "TEXT"`},
		{"jaeger json: missing span id", JaegerJSON, []byte(`{"traceId":"AAAAAAAAAAE="}`), "spanId at byte 0: missing span id"},
		{"jaeger json: trailing garbage", JaegerJSON, []byte(`{"traceId":"1","spanId":"2"} x`), "at byte 29: unexpected 'x' after the top-level value"},
		{"jaeger json: bad duration", JaegerJSON, []byte(`{"traceId":"1","spanId":"2","duration":"5 minutes"}`), `duration at byte 39: invalid duration "5 minutes"`},
		{"jaeger json: timestamp out of range", JaegerJSON, []byte(`{"traceId":"1","spanId":"2","startTime":"3000-01-01T00:00:00Z"}`),
			`startTime at byte 40: timestamp "3000-01-01T00:00:00Z" out of range`},
		{"otlp proto: truncated span", OTLPProto, otlpSpan(ids)[:20],
			"decode otlp request: field 1 (resource_spans) at byte 0: truncated"},
		{"otlp proto: invalid utf-8 name", OTLPProto, otlpSpan(pb(ids, bytesField(5, []byte{0xc0}))),
			"decode otlp request: field 1 (resource_spans) > field 2 (scope_spans) > field 2 (spans) > field 5 (name) at byte 34: invalid UTF-8"},
		{"otlp proto: short span id", OTLPProto, otlpSpan(pb(bytesField(1, make16(1)), bytesField(2, []byte{1}))),
			"decode otlp request: resourceSpans[0].scopeSpans[0].spans[0].spanId: malformed id: span id has 1 bytes, want 8"},
		{"otlp proto: bad parent", OTLPProto, otlpSpan(pb(ids, bytesField(4, []byte{1, 2}))),
			"spans[0].parentSpanId: malformed id: span id has 2 bytes, want 8"},
		{"otlp json: bad hex", OTLPJSON, []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}`),
			`decode otlp json: resourceSpans[0].scopeSpans[0].spans[0].traceId at byte 54: id "zz" is neither hex nor base64 of 16 bytes`},
		{"otlp json: missing span id", OTLPJSON, []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0af7651916cd43dd8448eb211c80319c"}]}]}]}`),
			"resourceSpans[0].scopeSpans[0].spans[0].spanId: missing span id"},
		{"otlp json: kind of wrong type", OTLPJSON, []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":true}]}]}]}`),
			"resourceSpans[0].scopeSpans[0].spans[0].kind at byte 51: unexpected 't', want number"},
		{"otlp json: array at top", OTLPJSON, []byte(`[]`), "at byte 0: unexpected '[', want object"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dst := []*model.Span{minimalSpan()}
			got, err := Decode(c.enc, c.msg, dst)
			if err == nil {
				t.Fatalf("no error; got %d spans", len(got)-1)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("error does not wrap ErrMalformed: %v", err)
			}
			if len(got) != 1 || got[0] != dst[0] {
				t.Errorf("dst changed on error")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error\n  %v\nwant it to contain\n  %s", err, c.want)
			}
		})
	}
}

func make16(low byte) []byte {
	b := make([]byte, 16)
	b[15] = low
	return b
}
