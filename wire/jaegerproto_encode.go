package wire

import (
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/wire/internal/jaegertags"
)

// EncodeJaegerProto encodes s as one jaeger.api_v2.Span message, byte for
// byte what Jaeger's collector writes to Kafka for the same span: trace_id
// always 16 bytes, start_time, duration and process always present, fields
// in number order. Tags are s.Tags plus the convention tags (span.kind,
// error, otel.status_code, otel.status_description) that s's Kind, Status
// and StatusMessage need and its tags lack.
func EncodeJaegerProto(s *model.Span) ([]byte, error) {
	return AppendJaegerProto(nil, s)
}

// AppendJaegerProto appends EncodeJaegerProto's message to dst.
func AppendJaegerProto(dst []byte, s *model.Span) ([]byte, error) {
	extra := jaegertags.Extra(s)
	if err := checkEncodable(s, extra); err != nil {
		return dst, err
	}
	size := jaegerSpanSize(s, extra)
	if cap(dst)-len(dst) < size {
		nd := make([]byte, len(dst), len(dst)+size)
		copy(nd, dst)
		dst = nd
	}
	tid := s.TraceID.Bytes()
	sid := s.SpanID.Bytes()
	dst = protowire.AppendTag(dst, 1, protowire.BytesType)
	dst = protowire.AppendBytes(dst, tid[:])
	dst = protowire.AppendTag(dst, 2, protowire.BytesType)
	dst = protowire.AppendBytes(dst, sid[:])
	if s.Operation != "" {
		dst = protowire.AppendTag(dst, 3, protowire.BytesType)
		dst = protowire.AppendString(dst, s.Operation)
	}
	for i := range s.References {
		dst = appendRef(dst, &s.References[i])
	}
	if s.Flags != 0 {
		dst = protowire.AppendTag(dst, 5, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(s.Flags))
	}
	sec, nanos := splitNanos(int64(s.Start))
	dst = appendTime(dst, 6, sec, nanos)
	dsec, dnanos := int64(s.Duration)/1e9, int32(int64(s.Duration)%1e9)
	dst = appendTime(dst, 7, dsec, dnanos)
	for i := range s.Tags {
		dst = appendKV(dst, 8, &s.Tags[i])
	}
	for i := range extra {
		dst = appendKV(dst, 8, &extra[i])
	}
	for i := range s.Logs {
		l := &s.Logs[i]
		dst = protowire.AppendTag(dst, 9, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(logSize(l)))
		lsec, lnanos := splitNanos(int64(l.Timestamp))
		dst = appendTime(dst, 1, lsec, lnanos)
		for j := range l.Fields {
			dst = appendKV(dst, 2, &l.Fields[j])
		}
	}
	dst = protowire.AppendTag(dst, 10, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(processSize(&s.Process)))
	if s.Process.ServiceName != "" {
		dst = protowire.AppendTag(dst, 1, protowire.BytesType)
		dst = protowire.AppendString(dst, s.Process.ServiceName)
	}
	for i := range s.Process.Tags {
		dst = appendKV(dst, 2, &s.Process.Tags[i])
	}
	for _, w := range s.Warnings {
		dst = protowire.AppendTag(dst, 12, protowire.BytesType)
		dst = protowire.AppendString(dst, w)
	}
	return dst, nil
}

// checkEncodable rejects what no Jaeger message can carry.
func checkEncodable(s *model.Span, extra []model.KeyValue) error {
	for i := range s.References {
		if t := s.References[i].Type; t != model.ChildOf && t != model.FollowsFrom {
			return fmt.Errorf("encode span %s: reference %d: unknown type %d", s.SpanID, i, t)
		}
	}
	check := func(where string, kvs []model.KeyValue) error {
		for i := range kvs {
			if t := kvs[i].Type; t < model.StringType || t > model.BinaryType {
				return fmt.Errorf("encode span %s: %s %q: unknown value type %d", s.SpanID, where, kvs[i].Key, t)
			}
		}
		return nil
	}
	if err := check("tag", s.Tags); err != nil {
		return err
	}
	if err := check("process tag", s.Process.Tags); err != nil {
		return err
	}
	for i := range s.Logs {
		if err := check("log field", s.Logs[i].Fields); err != nil {
			return err
		}
	}
	return nil
}

func lenField(n int) int { return 1 + protowire.SizeVarint(uint64(n)) + n }

func timeSize(sec int64, nanos int32) int {
	n := 0
	if sec != 0 {
		n += 1 + protowire.SizeVarint(uint64(sec))
	}
	if nanos != 0 {
		n += 1 + protowire.SizeVarint(uint64(int64(nanos)))
	}
	return n
}

func appendTime(dst []byte, num protowire.Number, sec int64, nanos int32) []byte {
	dst = protowire.AppendTag(dst, num, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(timeSize(sec, nanos)))
	if sec != 0 {
		dst = protowire.AppendTag(dst, 1, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(sec))
	}
	if nanos != 0 {
		dst = protowire.AppendTag(dst, 2, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(int64(nanos)))
	}
	return dst
}

func kvSize(kv *model.KeyValue) int {
	n := 0
	if kv.Key != "" {
		n += lenField(len(kv.Key))
	}
	if kv.Type != model.StringType {
		n += 1 + protowire.SizeVarint(uint64(kv.Type))
	}
	switch kv.Type {
	case model.StringType:
		if kv.Str != "" {
			n += lenField(len(kv.Str))
		}
	case model.BoolType:
		if kv.Num != 0 {
			n += 2
		}
	case model.Int64Type:
		if kv.Num != 0 {
			n += 1 + protowire.SizeVarint(uint64(kv.Num))
		}
	case model.Float64Type:
		if kv.Num != 0 {
			n += 9
		}
	case model.BinaryType:
		if kv.Str != "" {
			n += lenField(len(kv.Str))
		}
	}
	return n
}

func appendKV(dst []byte, num protowire.Number, kv *model.KeyValue) []byte {
	dst = protowire.AppendTag(dst, num, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(kvSize(kv)))
	if kv.Key != "" {
		dst = protowire.AppendTag(dst, 1, protowire.BytesType)
		dst = protowire.AppendString(dst, kv.Key)
	}
	if kv.Type != model.StringType {
		dst = protowire.AppendTag(dst, 2, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(kv.Type))
	}
	switch kv.Type {
	case model.StringType:
		if kv.Str != "" {
			dst = protowire.AppendTag(dst, 3, protowire.BytesType)
			dst = protowire.AppendString(dst, kv.Str)
		}
	case model.BoolType:
		if kv.Num != 0 {
			dst = protowire.AppendTag(dst, 4, protowire.VarintType)
			dst = protowire.AppendVarint(dst, 1)
		}
	case model.Int64Type:
		if kv.Num != 0 {
			dst = protowire.AppendTag(dst, 5, protowire.VarintType)
			dst = protowire.AppendVarint(dst, uint64(kv.Num))
		}
	case model.Float64Type:
		if kv.Num != 0 {
			dst = protowire.AppendTag(dst, 6, protowire.Fixed64Type)
			dst = protowire.AppendFixed64(dst, uint64(kv.Num))
		}
	case model.BinaryType:
		if kv.Str != "" {
			dst = protowire.AppendTag(dst, 7, protowire.BytesType)
			dst = protowire.AppendString(dst, kv.Str)
		}
	}
	return dst
}

func refSize(r *model.Reference) int {
	n := lenField(16) + lenField(8)
	if r.Type != 0 {
		n += 1 + protowire.SizeVarint(uint64(r.Type))
	}
	return n
}

func appendRef(dst []byte, r *model.Reference) []byte {
	dst = protowire.AppendTag(dst, 4, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(refSize(r)))
	tid := r.TraceID.Bytes()
	sid := r.SpanID.Bytes()
	dst = protowire.AppendTag(dst, 1, protowire.BytesType)
	dst = protowire.AppendBytes(dst, tid[:])
	dst = protowire.AppendTag(dst, 2, protowire.BytesType)
	dst = protowire.AppendBytes(dst, sid[:])
	if r.Type != 0 {
		dst = protowire.AppendTag(dst, 3, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(r.Type))
	}
	return dst
}

func logSize(l *model.Log) int {
	sec, nanos := splitNanos(int64(l.Timestamp))
	n := lenField(timeSize(sec, nanos))
	for i := range l.Fields {
		n += lenField(kvSize(&l.Fields[i]))
	}
	return n
}

func processSize(p *model.Process) int {
	n := 0
	if p.ServiceName != "" {
		n += lenField(len(p.ServiceName))
	}
	for i := range p.Tags {
		n += lenField(kvSize(&p.Tags[i]))
	}
	return n
}

func jaegerSpanSize(s *model.Span, extra []model.KeyValue) int {
	n := lenField(16) + lenField(8)
	if s.Operation != "" {
		n += lenField(len(s.Operation))
	}
	for i := range s.References {
		n += lenField(refSize(&s.References[i]))
	}
	if s.Flags != 0 {
		n += 1 + protowire.SizeVarint(uint64(s.Flags))
	}
	sec, nanos := splitNanos(int64(s.Start))
	n += lenField(timeSize(sec, nanos))
	n += lenField(timeSize(int64(s.Duration)/1e9, int32(int64(s.Duration)%1e9)))
	for i := range s.Tags {
		n += lenField(kvSize(&s.Tags[i]))
	}
	for i := range extra {
		n += lenField(kvSize(&extra[i]))
	}
	for i := range s.Logs {
		n += lenField(logSize(&s.Logs[i]))
	}
	n += lenField(processSize(&s.Process))
	for _, w := range s.Warnings {
		n += lenField(len(w))
	}
	return n
}

// float64Bits is used by tests and the reference conversion.
func float64Bits(f float64) int64 { return int64(math.Float64bits(f)) }
