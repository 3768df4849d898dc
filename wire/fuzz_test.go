package wire

import (
	"bytes"
	"errors"
	"math"
	"testing"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/wire/internal/jaegerpb"
)

// FuzzJaegerProto is the differential test of the direct decoder: on every
// input it must agree with proto.Unmarshal into the generated type followed
// by the reference conversion (both fail, or both give the same span), and
// what it decodes must survive encoding and decoding again.
func FuzzJaegerProto(f *testing.F) {
	for _, s := range fuzzSeeds(f, "FuzzJaegerProto") {
		f.Add(s)
	}
	var bulk JaegerProtoDecoder
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecodeJaegerProto(b)
		checkBulk(t, &bulk, b, got, err)
		if len(b)%2 == 0 {
			bulk.Recycle() // the spans of later inputs reuse the blocks
		}
		var p jaegerpb.Span
		var ref *model.Span
		refErr := proto.Unmarshal(b, &p)
		if refErr == nil {
			ref, refErr = spanFromPB(&p)
		}
		if (err == nil) != (refErr == nil) {
			t.Fatalf("direct decoder error: %v\nreference error: %v", err, refErr)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if d := spanDiff(got, ref); d != "" {
			t.Fatalf("direct and reference decoders disagree:%s", d)
		}
		checkJaegerRoundTrip(t, got)
	})
}

// checkJaegerRoundTrip: a decoded span encodes and decodes to itself in
// both Jaeger encodings.
func checkJaegerRoundTrip(t *testing.T, s *model.Span) {
	t.Helper()
	for _, enc := range []Encoding{JaegerProto, JaegerJSON} {
		msgs, err := Encode(enc, []*model.Span{s})
		if err != nil {
			t.Fatalf("%s: encode a decoded span: %v", enc, err)
		}
		again, err := Decode(enc, msgs[0], nil)
		if err != nil {
			t.Fatalf("%s: decode own encoding: %v\n%q", enc, err, msgs[0])
		}
		want := s
		if enc == JaegerJSON {
			want = canonicalNaNs(s) // JSON has one NaN
		}
		if d := spanDiff(again[0], want); d != "" {
			t.Fatalf("%s: round trip changed the span:%s", enc, d)
		}
	}
}

// FuzzJaegerJSON: the decoder never panics, wraps ErrMalformed, round-trips
// what it reads, and reads whatever protojson writes for a message the
// generated code accepts exactly as the reference conversion does.
func FuzzJaegerJSON(f *testing.F) {
	for _, s := range fuzzSeeds(f, "FuzzJaegerJSON") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecodeJaegerJSON(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
		} else {
			checkJaegerRoundTrip(t, got)
		}
		var p jaegerpb.Span
		if protojson.Unmarshal(b, &p) != nil {
			return
		}
		ref, err := spanFromPB(&p)
		if err != nil {
			return
		}
		canon, err := protojson.Marshal(&p)
		if err != nil {
			t.Fatal(err)
		}
		mine, err := DecodeJaegerJSON(canon)
		if err != nil {
			t.Fatalf("cannot read protojson's output %s: %v", canon, err)
		}
		if d := spanDiff(mine, ref); d != "" {
			t.Fatalf("reading %s:%s", canon, d)
		}
	})
}

// checkOTLPRoundTrip: decoded spans encode and decode to the same spans
// (in the order the encoder's grouping gives) in both OTLP encodings.
func checkOTLPRoundTrip(t *testing.T, spans []*model.Span) {
	t.Helper()
	if len(spans) == 0 {
		return
	}
	hand, err := EncodeOTLPProto(spans)
	if err != nil {
		t.Fatalf("encode decoded spans: %v", err)
	}
	if ref, err := encodeOTLPProtoReference(spans); err != nil || !bytes.Equal(hand, ref) {
		t.Fatalf("hand-written OTLP encoder differs from proto.Marshal (%v)\n got %x\nwant %x", err, hand, ref)
	}
	for _, enc := range []Encoding{OTLPProto, OTLPJSON} {
		want := sortedSpans(spans)
		if enc == OTLPJSON {
			for i := range want {
				want[i] = canonicalNaNs(want[i])
			}
			want = sortedSpans(want)
		}
		msgs, err := Encode(enc, spans)
		if err != nil {
			t.Fatalf("%s: encode decoded spans: %v", enc, err)
		}
		again, err := Decode(enc, msgs[0], nil)
		if err != nil {
			t.Fatalf("%s: decode own encoding: %v\n%q", enc, err, msgs[0])
		}
		if enc == OTLPJSON {
			for i := range again {
				again[i] = canonicalNaNs(again[i])
			}
		}
		if d := spansDiff(sortedSpans(again), want); d != "" {
			t.Fatalf("%s: round trip changed the spans: %s", enc, d)
		}
	}
}

// FuzzOTLPProto is the differential test of the direct OTLP decoder
// against the generated code and reference conversion, plus round trips.
func FuzzOTLPProto(f *testing.F) {
	for _, s := range fuzzSeeds(f, "FuzzOTLPProto") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got := checkOTLPDifferential(t, b); got != nil {
			checkOTLPRoundTrip(t, got)
		}
	})
}

// FuzzOTLPJSON: like FuzzOTLPProto, and whatever the generated code accepts
// as protobuf JSON (base64 IDs) this decoder reads to the same spans.
func FuzzOTLPJSON(f *testing.F) {
	for _, s := range fuzzSeeds(f, "FuzzOTLPJSON") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecodeOTLPJSON(b, nil)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
		} else {
			checkOTLPRoundTrip(t, got)
		}
		var req tracepb.TracesData
		if protojson.Unmarshal(b, &req) != nil {
			return
		}
		ref, err := otlpToModel(req.ResourceSpans, nil, "otlp json")
		if err != nil {
			return
		}
		canon, err := protojson.Marshal(&req)
		if err != nil {
			t.Fatal(err)
		}
		mine, err := DecodeOTLPJSON(canon, nil)
		if err != nil {
			t.Fatalf("cannot read protojson's output %s: %v", canon, err)
		}
		if d := spansDiff(mine, ref); d != "" {
			t.Fatalf("reading %s: %s", canon, d)
		}
	})
}

// canonicalNaNs returns s with every float NaN replaced by math.NaN(): JSON
// writes any NaN as "NaN", so the payload bits of a NaN do not survive it.
func canonicalNaNs(s *model.Span) *model.Span {
	c := *s
	fix := func(kvs model.KeyValues) model.KeyValues {
		var out model.KeyValues
		for i, kv := range kvs {
			if kv.Type == model.Float64Type && math.IsNaN(kv.Float64Value()) {
				if out == nil {
					out = append(model.KeyValues(nil), kvs...)
				}
				out[i] = model.Float64(kv.Key, math.NaN())
			}
		}
		if out == nil {
			return kvs
		}
		return out
	}
	c.Tags = fix(s.Tags)
	c.Process.Tags = fix(s.Process.Tags)
	if len(s.Logs) > 0 {
		c.Logs = make([]model.Log, len(s.Logs))
		for i, l := range s.Logs {
			c.Logs[i] = model.Log{Timestamp: l.Timestamp, Fields: fix(l.Fields)}
		}
	}
	return &c
}
