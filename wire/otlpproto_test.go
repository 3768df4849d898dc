package wire

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"testing"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tracepipe/tracepipe/model"
)

func anyStr(s string) *commonpb.AnyValue {
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}}
}

func attr(k string, v *commonpb.AnyValue) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: v}
}

// richOTLPRequest uses every part of the OTLP trace schema, built with the
// generated types (not our encoder): arrays and key-value lists, links with
// attributes, trace state, dropped counts, entity refs, scope attributes,
// several resources and scopes, unusual enum values.
func richOTLPRequest() []byte {
	tid := make16(7)
	sid := []byte{0, 0, 0, 0, 0, 0, 0, 9}
	req := &tracepb.TracesData{ResourceSpans: []*tracepb.ResourceSpans{
		{
			Resource: &resourcepb.Resource{
				Attributes: []*commonpb.KeyValue{
					attr("service.name", &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 1}}),
					attr("service.name", anyStr("cart")),
					attr("host.name", anyStr("h1")),
					attr("empty", nil),
				},
				DroppedAttributesCount: 3,
				EntityRefs:             []*commonpb.EntityRef{{Type: "service", IdKeys: []string{"service.name"}}},
			},
			SchemaUrl: "https://opentelemetry.io/schemas/1.21.0",
			ScopeSpans: []*tracepb.ScopeSpans{{
				Scope: &commonpb.InstrumentationScope{Name: "lib", Version: "2", Attributes: []*commonpb.KeyValue{attr("x", anyStr("y"))}},
				Spans: []*tracepb.Span{{
					TraceId: tid, SpanId: sid, ParentSpanId: []byte{0, 0, 0, 0, 0, 0, 0, 1}, TraceState: "k=v",
					Name: "op", Kind: 9, StartTimeUnixNano: 100, EndTimeUnixNano: 50, Flags: 0x301,
					Attributes: []*commonpb.KeyValue{
						attr("arr", &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: []*commonpb.AnyValue{
							anyStr("a"), {Value: &commonpb.AnyValue_DoubleValue{DoubleValue: math.NaN()}}, {Value: &commonpb.AnyValue_BytesValue{BytesValue: []byte{1}}}, {},
						}}}}),
						attr("map", &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: []*commonpb.KeyValue{
							attr("z", &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}}), attr("a", nil),
						}}}}),
						attr("d", &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: math.Copysign(0, -1)}}),
						attr("i", &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: -1}}),
						attr("b", &commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: []byte{}}}),
						{Key: "ks", KeyStrindex: 4, Value: anyStr("v")},
					},
					DroppedAttributesCount: 1,
					Events: []*tracepb.Span_Event{
						{TimeUnixNano: 60, Name: "e1", Attributes: []*commonpb.KeyValue{attr("k", anyStr("v"))}, DroppedAttributesCount: 2},
						{TimeUnixNano: 70},
					},
					DroppedEventsCount: 1,
					Links: []*tracepb.Span_Link{{TraceId: make16(8), SpanId: sid, TraceState: "a=b",
						Attributes: []*commonpb.KeyValue{attr("l", anyStr("m"))}, Flags: 1}},
					DroppedLinksCount: 1,
					Status:            &tracepb.Status{Code: 7, Message: "odd code"},
				}},
			}},
		},
		{
			ScopeSpans: []*tracepb.ScopeSpans{
				{Spans: []*tracepb.Span{{TraceId: tid, SpanId: []byte{0, 0, 0, 0, 0, 0, 0, 10}, Status: &tracepb.Status{}}}},
				{Scope: &commonpb.InstrumentationScope{Version: "only-version"}, Spans: []*tracepb.Span{
					{TraceId: []byte{0, 0, 0, 0, 0, 0, 0, 5}, SpanId: []byte{0, 0, 0, 0, 0, 0, 0, 11}, Status: &tracepb.Status{Code: 2}},
				}},
			},
		},
	}}
	b, err := proto.Marshal(req)
	if err != nil {
		panic(err)
	}
	return b
}

// checkOTLPDifferential: the direct decoder and the reference (generated
// code + otlpToModel) both fail or give the same spans in the same order.
func checkOTLPDifferential(t *testing.T, b []byte) []*model.Span {
	t.Helper()
	got, err := DecodeOTLPProto(b, nil)
	ref, refErr := decodeOTLPProtoReference(b, nil)
	if (err == nil) != (refErr == nil) {
		t.Fatalf("input %x\ndirect error: %v\nreference error: %v", b, err, refErr)
	}
	if err != nil {
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("input %x: error does not wrap ErrMalformed: %v", b, err)
		}
		return nil
	}
	if d := spansDiff(got, ref); d != "" {
		t.Fatalf("input %x: direct and reference decoders disagree: %s", b, d)
	}
	return got
}

func TestOTLPProtoRich(t *testing.T) {
	got := checkOTLPDifferential(t, richOTLPRequest())
	if len(got) != 3 {
		t.Fatalf("%d spans", len(got))
	}
	s := got[0]
	if s.Process.ServiceName != "cart" || len(s.Process.Tags) != 3 || s.Kind != model.KindUnspecified ||
		s.Status != model.StatusUnset || s.StatusMessage != "odd code" || s.Duration != -50 || s.Flags != 0x301 {
		t.Fatalf("%+v", *s)
	}
	if a, _ := s.Tags.Find("arr"); a.Str != `["a","NaN","AQ==",null]` {
		t.Errorf("array rendered as %q", a.Str)
	}
	if m, _ := s.Tags.Find("map"); m.Str != `{"z":true,"a":null}` {
		t.Errorf("kvlist rendered as %q", m.Str)
	}
	wantRefs := []model.Reference{
		{Type: model.ChildOf, TraceID: model.TraceID{Low: 7}, SpanID: 1},
		{Type: model.FollowsFrom, TraceID: model.TraceID{Low: 8}, SpanID: 9},
	}
	if !reflect.DeepEqual(s.References, wantRefs) {
		t.Errorf("refs %+v", s.References)
	}
	if got[1].Status != model.StatusUnset || got[2].Status != model.StatusError || got[2].TraceID != (model.TraceID{Low: 5}) {
		t.Errorf("%+v %+v", *got[1], *got[2])
	}
	if last := got[2].Tags[len(got[2].Tags)-1]; !reflect.DeepEqual(last, model.String("otel.scope.version", "only-version")) {
		t.Errorf("scope tag %+v", last)
	}
}

// TestOTLPProtoDifferentialMutations runs the differential check over every
// truncation and a set of single-byte mutations of the seed requests.
func TestOTLPProtoDifferentialMutations(t *testing.T) {
	for _, seed := range fuzzSeeds(t, "FuzzOTLPProto") {
		if len(seed) > 3000 {
			seed = seed[:3000]
		}
		for n := 0; n <= len(seed); n++ {
			checkOTLPDifferential(t, seed[:n])
		}
		m := append([]byte(nil), seed...)
		for i := range m {
			orig := m[i]
			for _, v := range []byte{0x00, 0x01, 0x7f, 0x80, 0xff, orig ^ 0x01, orig + 1, orig ^ 0x07} {
				m[i] = v
				checkOTLPDifferential(t, m)
			}
			m[i] = orig
		}
	}
}

// TestOTLPEncoderMatchesGenerated: the hand-written encoder writes the same
// bytes as proto.Marshal (deterministic) of the reference conversion.
func TestOTLPEncoderMatchesGenerated(t *testing.T) {
	rich, err := DecodeOTLPProto(richOTLPRequest(), nil)
	if err != nil {
		t.Fatal(err)
	}
	zero := minimalSpan()
	zero.Tags = model.KeyValues{model.String("", ""), model.Bool("f", false), model.Int64("z", 0), model.Float64("d", 0),
		model.Binary("b", nil), model.String("otel.scope.name", "")}
	zero.Logs = []model.Log{{}, {Fields: model.KeyValues{model.String("event", "")}}}
	zero.Status = model.StatusOK
	noName := minimalSpan()
	noName.Process.Tags = model.KeyValues{model.String("service.name", "tag")}
	cases := map[string][]*model.Span{
		"realistic":                 {realisticSpan()},
		"sdk batch":                 otlpStyleSpans(),
		"interleaved":               {otlpStyleSpans()[0], otlpStyleSpans()[2], otlpStyleSpans()[1]},
		"minimal":                   {minimalSpan()},
		"zero values":               {zero},
		"service.name only as tag":  {noName},
		"decoded from rich request": rich,
		"benchmark batch":           otlpBatch(),
	}
	for name, spans := range cases {
		got, err := EncodeOTLPProto(spans)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want, err := encodeOTLPProtoReference(spans)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: hand encoder differs from proto.Marshal\n got %x\nwant %x", name, got, want)
		}
	}
	if _, err := EncodeOTLPProto([]*model.Span{{TraceID: model.TraceID{Low: 1}, SpanID: 1, Tags: model.KeyValues{{Key: "x", Type: 9}}}}); err == nil {
		t.Error("no error for an unknown value type")
	}
}
