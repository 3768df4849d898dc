package wire

import (
	"encoding/base64"
	"encoding/hex"
	"strconv"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/wire/internal/jsonscan"
)

// DecodeOTLPJSON appends the spans of one OTLP/JSON ExportTraceServiceRequest
// to dst. It follows the OTLP/JSON rules, which differ from the protobuf
// JSON mapping: trace and span IDs are hex strings (base64 is accepted too,
// as some old producers wrote it), enums may be integers or names, 64-bit
// integers may be numbers or strings. Member names may be lowerCamelCase or
// the original snake_case; the pre-1.0 instrumentationLibrarySpans and
// instrumentationLibrary are read as scopeSpans and scope. Unknown members
// are skipped. On error dst is returned unchanged.
func DecodeOTLPJSON(b []byte, dst []*model.Span) ([]*model.Span, error) {
	s := jsonscan.New(b)
	var req tracepb.TracesData
	otlpJSONRequest(s, &req)
	s.End()
	if e := s.Error(); e != nil {
		return dst, &DecodeError{What: "otlp json", Field: e.Field, Offset: e.Offset, Msg: e.Msg}
	}
	return otlpToModel(req.ResourceSpans, dst, "otlp json")
}

// jsonObject runs member for each member of an object (null members are
// skipped) and adds the member's name to the path of an error.
func jsonObject(s *jsonscan.Scanner, member func(key []byte)) {
	if s.Null() || !s.ObjectStart() {
		return
	}
	for s.NextKey() {
		if s.Null() {
			continue
		}
		key := s.StableKey()
		member(key)
		if s.Failed() {
			s.WrapField(string(key))
			return
		}
	}
}

// jsonArray runs elem for each element of an array, adding the index to the
// path of an error.
func jsonArray(s *jsonscan.Scanner, elem func()) {
	if s.Null() || !s.ArrayStart() {
		return
	}
	for i := 0; s.NextElem(); i++ {
		elem()
		if s.Failed() {
			s.WrapIndex(i)
			return
		}
	}
}

func otlpJSONRequest(s *jsonscan.Scanner, req *tracepb.TracesData) {
	if s.Peek() != '{' {
		s.ObjectStart() // records the error
		return
	}
	jsonObject(s, func(key []byte) {
		switch string(key) {
		case "resourceSpans", "resource_spans":
			jsonArray(s, func() {
				rs := &tracepb.ResourceSpans{}
				otlpJSONResourceSpans(s, rs)
				req.ResourceSpans = append(req.ResourceSpans, rs)
			})
		default:
			s.Skip()
		}
	})
}

func otlpJSONResourceSpans(s *jsonscan.Scanner, rs *tracepb.ResourceSpans) {
	jsonObject(s, func(key []byte) {
		switch string(key) {
		case "resource":
			rs.Resource = &resourcepb.Resource{}
			jsonObject(s, func(key []byte) {
				if string(key) == "attributes" {
					rs.Resource.Attributes = otlpJSONAttributes(s, rs.Resource.Attributes)
				} else {
					s.Skip()
				}
			})
		case "scopeSpans", "scope_spans", "instrumentationLibrarySpans", "instrumentation_library_spans":
			jsonArray(s, func() {
				ss := &tracepb.ScopeSpans{}
				otlpJSONScopeSpans(s, ss)
				rs.ScopeSpans = append(rs.ScopeSpans, ss)
			})
		default:
			s.Skip()
		}
	})
}

func otlpJSONScopeSpans(s *jsonscan.Scanner, ss *tracepb.ScopeSpans) {
	jsonObject(s, func(key []byte) {
		switch string(key) {
		case "scope", "instrumentationLibrary", "instrumentation_library":
			ss.Scope = &commonpb.InstrumentationScope{}
			jsonObject(s, func(key []byte) {
				switch string(key) {
				case "name":
					ss.Scope.Name = s.String()
				case "version":
					ss.Scope.Version = s.String()
				default:
					s.Skip()
				}
			})
		case "spans":
			jsonArray(s, func() {
				sp := &tracepb.Span{}
				otlpJSONSpan(s, sp)
				ss.Spans = append(ss.Spans, sp)
			})
		default:
			s.Skip()
		}
	})
}

var (
	spanKindNames   = []string{"SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER", "SPAN_KIND_CLIENT", "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER"}
	statusCodeNames = []string{"STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"}
)

// otlpJSONEnum reads an enum as a name from names or as any int32.
func otlpJSONEnum(s *jsonscan.Scanner, names []string) int32 {
	if s.Peek() == '"' {
		return int32(jsonEnum(s, names))
	}
	off := s.Pos()
	v := s.Int64()
	if !s.Failed() && (v < -1<<31 || v > 1<<31-1) {
		s.Fail(off, "", "enum value %d out of range", v)
	}
	return int32(v)
}

func otlpJSONSpan(s *jsonscan.Scanner, sp *tracepb.Span) {
	jsonObject(s, func(key []byte) {
		switch string(key) {
		case "traceId", "trace_id":
			sp.TraceId = otlpJSONID(s, 16, 8)
		case "spanId", "span_id":
			sp.SpanId = otlpJSONID(s, 8)
		case "parentSpanId", "parent_span_id":
			sp.ParentSpanId = otlpJSONID(s, 8)
		case "name":
			sp.Name = s.String()
		case "kind":
			sp.Kind = tracepb.Span_SpanKind(otlpJSONEnum(s, spanKindNames))
		case "flags":
			off := s.Pos()
			v := s.Uint64()
			if v > 1<<32-1 && !s.Failed() {
				s.Fail(off, "", "flags %d out of range", v)
			}
			sp.Flags = uint32(v)
		case "startTimeUnixNano", "start_time_unix_nano":
			sp.StartTimeUnixNano = s.Uint64()
		case "endTimeUnixNano", "end_time_unix_nano":
			sp.EndTimeUnixNano = s.Uint64()
		case "attributes":
			sp.Attributes = otlpJSONAttributes(s, sp.Attributes)
		case "events":
			jsonArray(s, func() {
				e := &tracepb.Span_Event{}
				jsonObject(s, func(key []byte) {
					switch string(key) {
					case "timeUnixNano", "time_unix_nano":
						e.TimeUnixNano = s.Uint64()
					case "name":
						e.Name = s.String()
					case "attributes":
						e.Attributes = otlpJSONAttributes(s, e.Attributes)
					default:
						s.Skip()
					}
				})
				sp.Events = append(sp.Events, e)
			})
		case "links":
			jsonArray(s, func() {
				l := &tracepb.Span_Link{}
				jsonObject(s, func(key []byte) {
					switch string(key) {
					case "traceId", "trace_id":
						l.TraceId = otlpJSONID(s, 16, 8)
					case "spanId", "span_id":
						l.SpanId = otlpJSONID(s, 8)
					default:
						s.Skip()
					}
				})
				sp.Links = append(sp.Links, l)
			})
		case "status":
			sp.Status = &tracepb.Status{}
			jsonObject(s, func(key []byte) {
				switch string(key) {
				case "message":
					sp.Status.Message = s.String()
				case "code":
					sp.Status.Code = tracepb.Status_StatusCode(otlpJSONEnum(s, statusCodeNames))
				default:
					s.Skip()
				}
			})
		default:
			s.Skip()
		}
	})
}

// otlpJSONID reads a trace or span ID: hex, as OTLP/JSON specifies, or
// base64 of one of the sizes an ID may have (16 or 8 bytes for a trace ID, 8
// for a span ID), as some old producers wrote. Hex of the full size wins;
// hex of another even length is taken as it is (the conversion then judges
// its length). The empty string is an absent ID.
func otlpJSONID(s *jsonscan.Scanner, sizes ...int) []byte {
	off := s.Pos()
	t := s.StringBytes()
	if s.Failed() || len(t) == 0 {
		return nil
	}
	hexOK := isHexID(t) && len(t)%2 == 0
	if hexOK && len(t) == 2*sizes[0] {
		return hexBytes(t)
	}
	if out, err := jsonscan.DecodeBase64(t); err == nil {
		for _, n := range sizes {
			if len(out) == n {
				return out
			}
		}
	}
	if hexOK {
		return hexBytes(t)
	}
	s.Fail(off, "", "id %q is neither hex nor base64 of %d bytes", t, sizes[0])
	return nil
}

func hexBytes(t []byte) []byte {
	out := make([]byte, len(t)/2)
	hex.Decode(out, t) // the caller checked the digits
	return out
}

func otlpJSONAttributes(s *jsonscan.Scanner, dst []*commonpb.KeyValue) []*commonpb.KeyValue {
	jsonArray(s, func() {
		kv := &commonpb.KeyValue{}
		otlpJSONKeyValue(s, kv, 0)
		dst = append(dst, kv)
	})
	return dst
}

func otlpJSONKeyValue(s *jsonscan.Scanner, kv *commonpb.KeyValue, depth int) {
	jsonObject(s, func(key []byte) {
		switch string(key) {
		case "key":
			kv.Key = s.String()
		case "value":
			kv.Value = otlpJSONAnyValue(s, depth)
		default:
			s.Skip()
		}
	})
}

func otlpJSONAnyValue(s *jsonscan.Scanner, depth int) *commonpb.AnyValue {
	v := &commonpb.AnyValue{}
	if depth > maxAnyDepth {
		s.Fail(s.Pos(), "", "value nested more than %d deep", maxAnyDepth)
		return v
	}
	jsonObject(s, func(key []byte) {
		switch string(key) {
		case "stringValue", "string_value":
			v.Value = &commonpb.AnyValue_StringValue{StringValue: s.String()}
		case "boolValue", "bool_value":
			v.Value = &commonpb.AnyValue_BoolValue{BoolValue: s.Bool()}
		case "intValue", "int_value":
			v.Value = &commonpb.AnyValue_IntValue{IntValue: s.Int64()}
		case "doubleValue", "double_value":
			v.Value = &commonpb.AnyValue_DoubleValue{DoubleValue: s.Float64()}
		case "bytesValue", "bytes_value":
			v.Value = &commonpb.AnyValue_BytesValue{BytesValue: s.Base64()}
		case "arrayValue", "array_value":
			arr := &commonpb.ArrayValue{}
			jsonObject(s, func(key []byte) {
				if string(key) == "values" {
					jsonArray(s, func() { arr.Values = append(arr.Values, otlpJSONAnyValue(s, depth+1)) })
				} else {
					s.Skip()
				}
			})
			v.Value = &commonpb.AnyValue_ArrayValue{ArrayValue: arr}
		case "kvlistValue", "kvlist_value":
			list := &commonpb.KeyValueList{}
			jsonObject(s, func(key []byte) {
				if string(key) == "values" {
					jsonArray(s, func() {
						kv := &commonpb.KeyValue{}
						otlpJSONKeyValue(s, kv, depth+1)
						list.Values = append(list.Values, kv)
					})
				} else {
					s.Skip()
				}
			})
			v.Value = &commonpb.AnyValue_KvlistValue{KvlistValue: list}
		default:
			s.Skip()
		}
	})
	return v
}

// EncodeOTLPJSON encodes spans as one OTLP/JSON ExportTraceServiceRequest,
// grouped as EncodeOTLPProto groups them: IDs as hex, enums as integers,
// 64-bit integers as strings, zero values left out.
func EncodeOTLPJSON(spans []*model.Span) ([]byte, error) {
	req, err := modelToOTLP(spans)
	if err != nil {
		return nil, err
	}
	return appendOTLPJSON(make([]byte, 0, 512*len(spans)+64), req), nil
}

func appendOTLPJSON(b []byte, req *tracepb.TracesData) []byte {
	b = append(b, `{"resourceSpans":[`...)
	for i, rs := range req.ResourceSpans {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"resource":{"attributes":`...)
		b = appendAttrsJSON(b, rs.GetResource().GetAttributes())
		b = append(b, `},"scopeSpans":[`...)
		for j, ss := range rs.ScopeSpans {
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, '{')
			if sc := ss.GetScope(); sc != nil {
				b = append(b, `"scope":{`...)
				sep := false
				if sc.Name != "" {
					b = append(b, `"name":`...)
					b = appendJSONString(b, sc.Name)
					sep = true
				}
				if sc.Version != "" {
					if sep {
						b = append(b, ',')
					}
					b = append(b, `"version":`...)
					b = appendJSONString(b, sc.Version)
				}
				b = append(b, "},"...)
			}
			b = append(b, `"spans":[`...)
			for k, sp := range ss.Spans {
				if k > 0 {
					b = append(b, ',')
				}
				b = appendSpanJSON(b, sp)
			}
			b = append(b, "]}"...)
		}
		b = append(b, "]}"...)
	}
	return append(b, "]}"...)
}

func appendSpanJSON(b []byte, sp *tracepb.Span) []byte {
	b = append(b, `{"traceId":"`...)
	b = hex.AppendEncode(b, sp.TraceId)
	b = append(b, `","spanId":"`...)
	b = hex.AppendEncode(b, sp.SpanId)
	b = append(b, '"')
	if len(sp.ParentSpanId) > 0 {
		b = append(b, `,"parentSpanId":"`...)
		b = hex.AppendEncode(b, sp.ParentSpanId)
		b = append(b, '"')
	}
	if sp.Flags != 0 {
		b = append(b, `,"flags":`...)
		b = strconv.AppendUint(b, uint64(sp.Flags), 10)
	}
	b = append(b, `,"name":`...)
	b = appendJSONString(b, sp.Name)
	if sp.Kind != 0 {
		b = append(b, `,"kind":`...)
		b = strconv.AppendInt(b, int64(sp.Kind), 10)
	}
	b = append(b, `,"startTimeUnixNano":"`...)
	b = strconv.AppendUint(b, sp.StartTimeUnixNano, 10)
	b = append(b, `","endTimeUnixNano":"`...)
	b = strconv.AppendUint(b, sp.EndTimeUnixNano, 10)
	b = append(b, '"')
	if len(sp.Attributes) > 0 {
		b = append(b, `,"attributes":`...)
		b = appendAttrsJSON(b, sp.Attributes)
	}
	if len(sp.Events) > 0 {
		b = append(b, `,"events":[`...)
		for i, e := range sp.Events {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"timeUnixNano":"`...)
			b = strconv.AppendUint(b, e.TimeUnixNano, 10)
			b = append(b, '"')
			if e.Name != "" {
				b = append(b, `,"name":`...)
				b = appendJSONString(b, e.Name)
			}
			if len(e.Attributes) > 0 {
				b = append(b, `,"attributes":`...)
				b = appendAttrsJSON(b, e.Attributes)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if len(sp.Links) > 0 {
		b = append(b, `,"links":[`...)
		for i, l := range sp.Links {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"traceId":"`...)
			b = hex.AppendEncode(b, l.TraceId)
			b = append(b, `","spanId":"`...)
			b = hex.AppendEncode(b, l.SpanId)
			b = append(b, `"}`...)
		}
		b = append(b, ']')
	}
	if st := sp.Status; st != nil {
		b = append(b, `,"status":{`...)
		sep := false
		if st.Message != "" {
			b = append(b, `"message":`...)
			b = appendJSONString(b, st.Message)
			sep = true
		}
		if st.Code != 0 {
			if sep {
				b = append(b, ',')
			}
			b = append(b, `"code":`...)
			b = strconv.AppendInt(b, int64(st.Code), 10)
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

func appendAttrsJSON(b []byte, attrs []*commonpb.KeyValue) []byte {
	b = append(b, '[')
	for i, kv := range attrs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"key":`...)
		b = appendJSONString(b, kv.Key)
		b = append(b, `,"value":`...)
		b = appendAnyValueJSON(b, kv.Value)
		b = append(b, '}')
	}
	return append(b, ']')
}

// appendAnyValueJSON writes the OTLP/JSON form of a scalar AnyValue (the
// encoder only produces scalars).
func appendAnyValueJSON(b []byte, v *commonpb.AnyValue) []byte {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		b = append(b, `{"stringValue":`...)
		b = appendJSONString(b, x.StringValue)
	case *commonpb.AnyValue_BoolValue:
		b = append(b, `{"boolValue":`...)
		b = strconv.AppendBool(b, x.BoolValue)
	case *commonpb.AnyValue_IntValue:
		b = append(b, `{"intValue":"`...)
		b = strconv.AppendInt(b, x.IntValue, 10)
		b = append(b, '"')
	case *commonpb.AnyValue_DoubleValue:
		b = append(b, `{"doubleValue":`...)
		b = appendJSONFloat(b, x.DoubleValue)
	case *commonpb.AnyValue_BytesValue:
		b = append(b, `{"bytesValue":"`...)
		b = base64.StdEncoding.AppendEncode(b, x.BytesValue)
		b = append(b, '"')
	default:
		return append(b, "{}"...)
	}
	return append(b, '}')
}
