package wire

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/wire/internal/jsonscan"
	"github.com/tracepipe/tracepipe/wire/internal/procset"
)

// Attribute keys of the OTLP mapping.
const (
	keyServiceName  = "service.name"
	keyScopeName    = "otel.scope.name"
	keyScopeVersion = "otel.scope.version"
	keyEvent        = "event"
)

// DecodeOTLPProto appends the spans of one OTLP ExportTraceServiceRequest
// (protobuf) to dst. See the package documentation for the mapping. On error
// dst is returned unchanged (no span of a bad message is appended).
func DecodeOTLPProto(b []byte, dst []*model.Span) ([]*model.Span, error) {
	return decodeOTLPProto(b, dst)
}

// EncodeOTLPProto encodes spans as one OTLP ExportTraceServiceRequest
// (protobuf). Spans are grouped into one ResourceSpans per distinct Process
// and one ScopeSpans per distinct scope (the otel.scope.name and
// otel.scope.version tags), groups in order of first appearance and spans
// in their order within a group.
func EncodeOTLPProto(spans []*model.Span) ([]byte, error) {
	return AppendOTLPProto(nil, spans)
}

// encodeOTLPProtoReference is what EncodeOTLPProto writes, by way of the
// generated types; tests hold the hand-written encoder to it.
func encodeOTLPProtoReference(spans []*model.Span) ([]byte, error) {
	req, err := modelToOTLP(spans)
	if err != nil {
		return nil, err
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(req)
}

func otlpErr(what, field, format string, args ...any) error {
	return &DecodeError{What: what, Field: field, Offset: -1, Msg: fmt.Sprintf(format, args...)}
}

// otlpToModel converts resource spans; on error dst is returned as it came.
func otlpToModel(rss []*tracepb.ResourceSpans, dst []*model.Span, what string) ([]*model.Span, error) {
	n := 0
	for _, rs := range rss {
		for _, ss := range rs.GetScopeSpans() {
			n += len(ss.GetSpans())
		}
	}
	if n == 0 {
		return dst, nil
	}
	orig := len(dst)
	// One block for all spans of the message.
	block := make([]model.Span, n)
	k := 0
	for ri, rs := range rss {
		proc, err := otlpProcess(rs.GetResource())
		if err != nil {
			return dst[:orig], otlpErr(what, fmt.Sprintf("resourceSpans[%d].resource.attributes", ri), "%v", err)
		}
		for si, ss := range rs.GetScopeSpans() {
			var scopeTags []model.KeyValue
			if name := ss.GetScope().GetName(); name != "" {
				scopeTags = append(scopeTags, model.String(keyScopeName, name))
			}
			if v := ss.GetScope().GetVersion(); v != "" {
				scopeTags = append(scopeTags, model.String(keyScopeVersion, v))
			}
			for pi, p := range ss.GetSpans() {
				sp := &block[k]
				k++
				if field, err := otlpSpan(p, sp, scopeTags); err != nil {
					return dst[:orig], otlpErr(what, fmt.Sprintf("resourceSpans[%d].scopeSpans[%d].spans[%d]%s", ri, si, pi, field), "%v", err)
				}
				sp.Process = proc
				dst = append(dst, sp)
			}
		}
	}
	return dst, nil
}

// otlpProcess maps a resource: service.name becomes the service, the other
// attributes the process tags. The spans of a resource share the returned
// Tags (with cap == len, so an append copies).
func otlpProcess(r *resourcepb.Resource) (model.Process, error) {
	var p model.Process
	attrs := r.GetAttributes()
	if len(attrs) == 0 {
		return p, nil
	}
	tags := make(model.KeyValues, 0, len(attrs))
	seenName := false
	for _, a := range attrs {
		if a.GetKey() == keyServiceName && !seenName {
			if sv, ok := a.GetValue().GetValue().(*commonpb.AnyValue_StringValue); ok {
				p.ServiceName = sv.StringValue
				seenName = true
				continue
			}
		}
		kv, err := attrToKV(a)
		if err != nil {
			return p, err
		}
		tags = append(tags, kv)
	}
	if len(tags) > 0 {
		p.Tags = tags[:len(tags):len(tags)]
	}
	return p, nil
}

// otlpSpan fills sp from p; on error it returns the field at fault
// (".traceId") and the error.
func otlpSpan(p *tracepb.Span, sp *model.Span, scopeTags []model.KeyValue) (string, error) {
	var err error
	if sp.TraceID, err = traceIDFromBytes(p.GetTraceId()); err != nil {
		return ".traceId", err
	}
	if sp.SpanID, err = spanIDFromBytes(p.GetSpanId()); err != nil {
		return ".spanId", err
	}
	sp.Operation = p.GetName()
	sp.Flags = p.GetFlags()
	nrefs := len(p.GetLinks())
	var parent model.SpanID
	if pid := p.GetParentSpanId(); len(pid) > 0 {
		if parent, err = model.SpanIDFromBytes(pid); err != nil {
			return ".parentSpanId", err
		}
		if parent != 0 {
			nrefs++
		}
	}
	if nrefs > 0 {
		sp.References = make([]model.Reference, 0, nrefs)
		if parent != 0 {
			sp.References = append(sp.References, model.Reference{Type: model.ChildOf, TraceID: sp.TraceID, SpanID: parent})
		}
		for i, l := range p.GetLinks() {
			r := model.Reference{Type: model.FollowsFrom}
			if r.TraceID, err = model.TraceIDFromBytes(l.GetTraceId()); err != nil {
				return fmt.Sprintf(".links[%d].traceId", i), err
			}
			if r.SpanID, err = model.SpanIDFromBytes(l.GetSpanId()); err != nil {
				return fmt.Sprintf(".links[%d].spanId", i), err
			}
			sp.References = append(sp.References, r)
		}
	}
	start, end := p.GetStartTimeUnixNano(), p.GetEndTimeUnixNano()
	if start > math.MaxInt64 {
		return ".startTimeUnixNano", fmt.Errorf("time %d out of range", start)
	}
	if end > math.MaxInt64 {
		return ".endTimeUnixNano", fmt.Errorf("time %d out of range", end)
	}
	sp.Start = model.Timestamp(start)
	sp.Duration = time.Duration(int64(end) - int64(start))
	if n := len(p.GetAttributes()) + len(scopeTags); n > 0 {
		sp.Tags = make(model.KeyValues, 0, n)
		for i, a := range p.GetAttributes() {
			kv, err := attrToKV(a)
			if err != nil {
				return fmt.Sprintf(".attributes[%d]", i), err
			}
			sp.Tags = append(sp.Tags, kv)
		}
		sp.Tags = append(sp.Tags, scopeTags...)
	}
	for i, e := range p.GetEvents() {
		t := e.GetTimeUnixNano()
		if t > math.MaxInt64 {
			return fmt.Sprintf(".events[%d].timeUnixNano", i), fmt.Errorf("time %d out of range", t)
		}
		l := model.Log{Timestamp: model.Timestamp(t)}
		n := len(e.GetAttributes())
		if e.GetName() != "" {
			n++
		}
		if n > 0 {
			l.Fields = make(model.KeyValues, 0, n)
			if e.GetName() != "" {
				l.Fields = append(l.Fields, model.String(keyEvent, e.GetName()))
			}
			for j, a := range e.GetAttributes() {
				kv, err := attrToKV(a)
				if err != nil {
					return fmt.Sprintf(".events[%d].attributes[%d]", i, j), err
				}
				l.Fields = append(l.Fields, kv)
			}
		}
		sp.Logs = append(sp.Logs, l)
	}
	if k := p.GetKind(); k >= 0 && k <= tracepb.Span_SPAN_KIND_CONSUMER {
		sp.Kind = model.SpanKind(k)
	}
	if st := p.GetStatus(); st != nil {
		switch st.GetCode() {
		case tracepb.Status_STATUS_CODE_OK:
			sp.Status = model.StatusOK
		case tracepb.Status_STATUS_CODE_ERROR:
			sp.Status = model.StatusError
		}
		sp.StatusMessage = st.GetMessage()
	}
	return "", nil
}

// attrToKV maps an attribute: scalar values keep their type, arrays and
// key-value lists become their JSON text (a string tag), an empty value an
// empty string.
func attrToKV(a *commonpb.KeyValue) (model.KeyValue, error) {
	k := a.GetKey()
	switch v := a.GetValue().GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return model.String(k, v.StringValue), nil
	case *commonpb.AnyValue_BoolValue:
		return model.Bool(k, v.BoolValue), nil
	case *commonpb.AnyValue_IntValue:
		return model.Int64(k, v.IntValue), nil
	case *commonpb.AnyValue_DoubleValue:
		return model.Float64(k, v.DoubleValue), nil
	case *commonpb.AnyValue_BytesValue:
		var b []byte
		if len(v.BytesValue) > 0 {
			b = v.BytesValue
		}
		return model.Binary(k, b), nil
	case *commonpb.AnyValue_ArrayValue, *commonpb.AnyValue_KvlistValue:
		b, err := appendAnyJSON(nil, a.GetValue(), 0)
		if err != nil {
			return model.KeyValue{}, fmt.Errorf("attribute %q: %w", k, err)
		}
		return model.String(k, string(b)), nil
	case *commonpb.AnyValue_StringValueStrindex:
		return model.KeyValue{}, fmt.Errorf("attribute %q: string_value_strindex is only for profiles", k)
	default:
		return model.String(k, ""), nil
	}
}

const maxAnyDepth = 64

// appendAnyJSON renders an AnyValue as plain JSON: strings, numbers (NaN and
// infinities as strings), booleans, bytes as base64 strings, arrays, and
// key-value lists as objects in their order; an empty value is null.
func appendAnyJSON(dst []byte, v *commonpb.AnyValue, depth int) ([]byte, error) {
	if depth > maxAnyDepth {
		return dst, errors.New("value nested too deeply")
	}
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return appendJSONString(dst, x.StringValue), nil
	case *commonpb.AnyValue_BoolValue:
		return strconv.AppendBool(dst, x.BoolValue), nil
	case *commonpb.AnyValue_IntValue:
		return strconv.AppendInt(dst, x.IntValue, 10), nil
	case *commonpb.AnyValue_DoubleValue:
		return appendJSONFloat(dst, x.DoubleValue), nil
	case *commonpb.AnyValue_BytesValue:
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, x.BytesValue)
		return append(dst, '"'), nil
	case *commonpb.AnyValue_ArrayValue:
		dst = append(dst, '[')
		for i, e := range x.ArrayValue.GetValues() {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = appendAnyJSON(dst, e, depth+1); err != nil {
				return dst, err
			}
		}
		return append(dst, ']'), nil
	case *commonpb.AnyValue_KvlistValue:
		dst = append(dst, '{')
		for i, e := range x.KvlistValue.GetValues() {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, e.GetKey())
			dst = append(dst, ':')
			var err error
			if dst, err = appendAnyJSON(dst, e.GetValue(), depth+1); err != nil {
				return dst, err
			}
		}
		return append(dst, '}'), nil
	case *commonpb.AnyValue_StringValueStrindex:
		return dst, errors.New("string_value_strindex is only for profiles")
	default:
		return append(dst, "null"...), nil
	}
}

// ---- model -> OTLP ----

type scopeKey struct{ name, version string }

type resourceGroup struct {
	rs     *tracepb.ResourceSpans
	scopes map[scopeKey]*tracepb.ScopeSpans
}

// modelToOTLP builds a request from spans (see EncodeOTLPProto).
func modelToOTLP(spans []*model.Span) (*tracepb.TracesData, error) {
	req := &tracepb.TracesData{}
	var groups []*resourceGroup
	procs := procset.New()
	for _, s := range spans {
		gi, added := procs.Add(&s.Process)
		if added {
			groups = append(groups, &resourceGroup{
				rs:     &tracepb.ResourceSpans{Resource: processToResource(&s.Process)},
				scopes: map[scopeKey]*tracepb.ScopeSpans{},
			})
			req.ResourceSpans = append(req.ResourceSpans, groups[gi].rs)
		}
		g := groups[gi]
		p, scope, err := spanToOTLP(s)
		if err != nil {
			return nil, err
		}
		ss := g.scopes[scope]
		if ss == nil {
			ss = &tracepb.ScopeSpans{}
			if scope != (scopeKey{}) {
				ss.Scope = &commonpb.InstrumentationScope{Name: scope.name, Version: scope.version}
			}
			g.scopes[scope] = ss
			g.rs.ScopeSpans = append(g.rs.ScopeSpans, ss)
		}
		ss.Spans = append(ss.Spans, p)
	}
	return req, nil
}

// processToResource writes service.name first when there is a service name
// (or when a tag named service.name would otherwise be read back as it).
func processToResource(p *model.Process) *resourcepb.Resource {
	r := &resourcepb.Resource{}
	if p.ServiceName != "" || hasStringTag(p.Tags, keyServiceName) {
		r.Attributes = append(r.Attributes, &commonpb.KeyValue{Key: keyServiceName,
			Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: p.ServiceName}}})
	}
	for i := range p.Tags {
		r.Attributes = append(r.Attributes, kvToAttr(&p.Tags[i]))
	}
	return r
}

func hasStringTag(kvs model.KeyValues, key string) bool {
	for i := range kvs {
		if kvs[i].Key == key && kvs[i].Type == model.StringType {
			return true
		}
	}
	return false
}

func kvToAttr(kv *model.KeyValue) *commonpb.KeyValue {
	v := &commonpb.AnyValue{}
	switch kv.Type {
	case model.StringType:
		v.Value = &commonpb.AnyValue_StringValue{StringValue: kv.Str}
	case model.BoolType:
		v.Value = &commonpb.AnyValue_BoolValue{BoolValue: kv.Num != 0}
	case model.Int64Type:
		v.Value = &commonpb.AnyValue_IntValue{IntValue: kv.Num}
	case model.Float64Type:
		v.Value = &commonpb.AnyValue_DoubleValue{DoubleValue: kv.Float64Value()}
	case model.BinaryType:
		v.Value = &commonpb.AnyValue_BytesValue{BytesValue: kv.BinaryValue()}
	}
	return &commonpb.KeyValue{Key: kv.Key, Value: v}
}

// spanToOTLP converts one span; the scope tags are taken out of the
// attributes and returned as the span's scope.
func spanToOTLP(s *model.Span) (*tracepb.Span, scopeKey, error) {
	var scope scopeKey
	if err := checkOTLPEncodable(s); err != nil {
		return nil, scope, err
	}
	end := int64(s.Start) + int64(s.Duration)
	tid, sid := s.TraceID.Bytes(), s.SpanID.Bytes()
	p := &tracepb.Span{
		TraceId:           tid[:],
		SpanId:            sid[:],
		Name:              s.Operation,
		Flags:             s.Flags,
		Kind:              tracepb.Span_SpanKind(s.Kind),
		StartTimeUnixNano: uint64(s.Start),
		EndTimeUnixNano:   uint64(end),
	}
	parentDone := false
	for _, r := range s.References {
		if !parentDone && r.Type == model.ChildOf && r.TraceID == s.TraceID && r.SpanID != 0 {
			pid := r.SpanID.Bytes()
			p.ParentSpanId = pid[:]
			parentDone = true
			continue
		}
		lt, ls := r.TraceID.Bytes(), r.SpanID.Bytes()
		p.Links = append(p.Links, &tracepb.Span_Link{TraceId: lt[:], SpanId: ls[:]})
	}
	// The decoder appends the scope as trailing otel.scope.name and
	// otel.scope.version tags; take exactly that suffix back out.
	tags := s.Tags
	if n := len(tags); n > 0 && tags[n-1].Key == keyScopeVersion && tags[n-1].Type == model.StringType && tags[n-1].Str != "" {
		scope.version, tags = tags[n-1].Str, tags[:n-1]
	}
	if n := len(tags); n > 0 && tags[n-1].Key == keyScopeName && tags[n-1].Type == model.StringType && tags[n-1].Str != "" {
		scope.name, tags = tags[n-1].Str, tags[:n-1]
	}
	if len(tags) > 0 {
		p.Attributes = make([]*commonpb.KeyValue, len(tags))
		for i := range tags {
			p.Attributes[i] = kvToAttr(&tags[i])
		}
	}
	for _, l := range s.Logs {
		e := &tracepb.Span_Event{TimeUnixNano: uint64(l.Timestamp)}
		fields := l.Fields
		// The decoder puts the event name first as an event field.
		if len(fields) > 0 && fields[0].Key == keyEvent && fields[0].Type == model.StringType && fields[0].Str != "" {
			e.Name, fields = fields[0].Str, fields[1:]
		}
		for i := range fields {
			e.Attributes = append(e.Attributes, kvToAttr(&fields[i]))
		}
		p.Events = append(p.Events, e)
	}
	if s.Status != model.StatusUnset || s.StatusMessage != "" {
		p.Status = &tracepb.Status{Code: tracepb.Status_StatusCode(s.Status), Message: s.StatusMessage}
	}
	return p, scope, nil
}

func appendJSONString(dst []byte, s string) []byte { return jsonscan.AppendString(dst, s) }
func appendJSONFloat(dst []byte, f float64) []byte { return jsonscan.AppendFloat(dst, f) }
