package wire

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/wire/internal/jaegerpb"
	"github.com/tracepipe/tracepipe/wire/internal/jaegertags"
)

// This file converts between model.Span and the generated jaeger.api_v2
// types. It is the reference the direct protobuf decoder is checked against
// (the conversion rules are the same: see the differential fuzz test), and
// the path of the JSON encoder, which uses protojson on the generated type.

func pbErr(field, format string, args ...any) error {
	return &DecodeError{What: "jaeger span", Field: field, Offset: -1, Msg: fmt.Sprintf(format, args...)}
}

// spanFromPB converts a generated span by the rules of the direct decoder.
func spanFromPB(p *jaegerpb.Span) (*model.Span, error) {
	sp := &model.Span{
		Operation: p.GetOperationName(),
		Flags:     p.GetFlags(),
		Warnings:  p.GetWarnings(),
	}
	var err error
	if sp.TraceID, err = traceIDFromBytes(p.GetTraceId()); err != nil {
		return nil, pbErr("trace_id", "%v", err)
	}
	if sp.SpanID, err = spanIDFromBytes(p.GetSpanId()); err != nil {
		return nil, pbErr("span_id", "%v", err)
	}
	for i, r := range p.GetReferences() {
		var ref model.Reference
		if ref.TraceID, err = refTraceID(r.GetTraceId()); err != nil {
			return nil, pbErr(fmt.Sprintf("references[%d].trace_id", i), "%v", err)
		}
		if ref.SpanID, err = refSpanID(r.GetSpanId()); err != nil {
			return nil, pbErr(fmt.Sprintf("references[%d].span_id", i), "%v", err)
		}
		t := r.GetRefType()
		if t != jaegerpb.SpanRefType_CHILD_OF && t != jaegerpb.SpanRefType_FOLLOWS_FROM {
			return nil, pbErr(fmt.Sprintf("references[%d].ref_type", i), "unknown ref_type %d", t)
		}
		ref.Type = model.RefType(t)
		sp.References = append(sp.References, ref)
	}
	st := p.GetStartTime()
	ns, ok := timestampNanos(st.GetSeconds(), st.GetNanos())
	if !ok {
		return nil, pbErr("start_time", "timestamp %ds %dns out of range", st.GetSeconds(), st.GetNanos())
	}
	sp.Start = model.Timestamp(ns)
	du := p.GetDuration()
	dn, ok := durationNanos(du.GetSeconds(), du.GetNanos())
	if !ok {
		return nil, pbErr("duration", "duration %ds %dns out of range", du.GetSeconds(), du.GetNanos())
	}
	sp.Duration = time.Duration(dn)
	if sp.Tags, err = kvsFromPB(p.GetTags(), "tags"); err != nil {
		return nil, err
	}
	for i, l := range p.GetLogs() {
		ts := l.GetTimestamp()
		n, ok := timestampNanos(ts.GetSeconds(), ts.GetNanos())
		if !ok {
			return nil, pbErr(fmt.Sprintf("logs[%d].timestamp", i), "timestamp out of range")
		}
		fields, err := kvsFromPB(l.GetFields(), fmt.Sprintf("logs[%d].fields", i))
		if err != nil {
			return nil, err
		}
		sp.Logs = append(sp.Logs, model.Log{Timestamp: model.Timestamp(n), Fields: fields})
	}
	sp.Process.ServiceName = p.GetProcess().GetServiceName()
	if sp.Process.Tags, err = kvsFromPB(p.GetProcess().GetTags(), "process.tags"); err != nil {
		return nil, err
	}
	normalizeSpan(sp)
	jaegertags.Apply(sp)
	return sp, nil
}

func kvsFromPB(kvs []*jaegerpb.KeyValue, where string) (model.KeyValues, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	out := make(model.KeyValues, len(kvs))
	for i, kv := range kvs {
		o := &out[i]
		o.Key = kv.GetKey()
		switch kv.GetVType() {
		case jaegerpb.ValueType_STRING:
			o.Type, o.Str = model.StringType, kv.GetVStr()
		case jaegerpb.ValueType_BOOL:
			*o = model.Bool(o.Key, kv.GetVBool())
		case jaegerpb.ValueType_INT64:
			o.Type, o.Num = model.Int64Type, kv.GetVInt64()
		case jaegerpb.ValueType_FLOAT64:
			o.Type, o.Num = model.Float64Type, float64Bits(kv.GetVFloat64())
		case jaegerpb.ValueType_BINARY:
			o.Type = model.BinaryType
			o.Str = string(kv.GetVBinary())
		default:
			return nil, pbErr(fmt.Sprintf("%s[%d].v_type", where, i), "key %q: unknown v_type %d", o.Key, kv.GetVType())
		}
	}
	return out, nil
}

// spanToPB converts s to the generated type with the same content as
// AppendJaegerProto writes.
func spanToPB(s *model.Span) (*jaegerpb.Span, error) {
	extra := jaegertags.Extra(s)
	if err := checkEncodable(s, extra); err != nil {
		return nil, err
	}
	tid, sid := s.TraceID.Bytes(), s.SpanID.Bytes()
	sec, nanos := splitNanos(int64(s.Start))
	p := &jaegerpb.Span{
		TraceId:       tid[:],
		SpanId:        sid[:],
		OperationName: s.Operation,
		Flags:         s.Flags,
		StartTime:     &timestamppb.Timestamp{Seconds: sec, Nanos: nanos},
		Duration:      &durationpb.Duration{Seconds: int64(s.Duration) / 1e9, Nanos: int32(int64(s.Duration) % 1e9)},
		Process:       &jaegerpb.Process{ServiceName: s.Process.ServiceName, Tags: kvsToPB(s.Process.Tags, nil)},
		Warnings:      s.Warnings,
	}
	for _, r := range s.References {
		rt, rs := r.TraceID.Bytes(), r.SpanID.Bytes()
		p.References = append(p.References, &jaegerpb.SpanRef{TraceId: rt[:], SpanId: rs[:], RefType: jaegerpb.SpanRefType(r.Type)})
	}
	p.Tags = kvsToPB(s.Tags, extra)
	for _, l := range s.Logs {
		lsec, lnanos := splitNanos(int64(l.Timestamp))
		p.Logs = append(p.Logs, &jaegerpb.Log{
			Timestamp: &timestamppb.Timestamp{Seconds: lsec, Nanos: lnanos},
			Fields:    kvsToPB(l.Fields, nil),
		})
	}
	return p, nil
}

func kvsToPB(kvs, extra []model.KeyValue) []*jaegerpb.KeyValue {
	if len(kvs)+len(extra) == 0 {
		return nil
	}
	out := make([]*jaegerpb.KeyValue, 0, len(kvs)+len(extra))
	for _, list := range [][]model.KeyValue{kvs, extra} {
		for i := range list {
			kv := &list[i]
			o := &jaegerpb.KeyValue{Key: kv.Key, VType: jaegerpb.ValueType(kv.Type)}
			switch kv.Type {
			case model.StringType:
				o.VStr = kv.Str
			case model.BoolType:
				o.VBool = kv.Num != 0
			case model.Int64Type:
				o.VInt64 = kv.Num
			case model.Float64Type:
				o.VFloat64 = kv.Float64Value()
			case model.BinaryType:
				o.VBinary = kv.BinaryValue()
			}
			out = append(out, o)
		}
	}
	return out
}
