package wire

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/wire/internal/jaegertags"
	"github.com/tracepipe/tracepipe/wire/internal/jsonscan"
)

// EncodeJaegerJSON encodes s as the protobuf JSON form of a jaeger.api_v2.Span,
// as Jaeger's collector writes to Kafka with the json encoding: camelCase
// names, IDs as base64 of their bytes, startTime as RFC 3339, duration as
// seconds ("0.001234567s"), 64-bit integers as strings, enums as names,
// zero values left out. The tags are those of EncodeJaegerProto.
func EncodeJaegerJSON(s *model.Span) ([]byte, error) {
	p, err := spanToPB(s)
	if err != nil {
		return nil, err
	}
	return protojson.Marshal(p)
}

// DecodeJaegerJSON decodes one span in the JSON form of a jaeger.api_v2.Span.
//
// It reads what Jaeger writes (see EncodeJaegerJSON) and the forms older or
// other producers use: original proto names (trace_id) as well as camelCase;
// IDs as base64 (padded or not) or as hex (what Jaeger wrote before it
// switched to base64; a string is hex when it has only hex digits and no
// '=' padding); durations as "0.0001s" or Go's "100000ns"; 64-bit integers as
// numbers or strings; enums as names or numbers. Unknown members are
// skipped. The conversion rules are those of DecodeJaegerProto.
func DecodeJaegerJSON(b []byte) (*model.Span, error) {
	s := jsonscan.New(b)
	sp := new(model.Span)
	decodeJaegerJSONSpan(s, sp)
	s.End()
	if e := s.Error(); e != nil {
		return nil, &DecodeError{What: "jaeger json", Field: e.Field, Offset: e.Offset, Msg: e.Msg}
	}
	normalizeSpan(sp)
	jaegertags.Apply(sp)
	return sp, nil
}

func decodeJaegerJSONSpan(s *jsonscan.Scanner, sp *model.Span) {
	if !s.ObjectStart() {
		return
	}
	objStart := s.Pos() - 1
	haveTrace, haveSpan := false, false
	for s.NextKey() {
		if s.Null() {
			continue
		}
		var field string
		off := s.Pos()
		switch string(s.Key()) {
		case "traceId", "trace_id", "traceID":
			field = "traceId"
			id, err := parseJSONTraceID(s.StringBytes(), true)
			if err != nil && !s.Failed() {
				s.Fail(off, "", "%v", err)
			}
			sp.TraceID, haveTrace = id, true
		case "spanId", "span_id", "spanID":
			field = "spanId"
			id, err := parseJSONSpanID(s.StringBytes(), true)
			if err != nil && !s.Failed() {
				s.Fail(off, "", "%v", err)
			}
			sp.SpanID, haveSpan = id, true
		case "operationName", "operation_name":
			field = "operationName"
			sp.Operation = s.String()
		case "references":
			field = "references"
			if s.ArrayStart() {
				for i := 0; s.NextElem(); i++ {
					var r model.Reference
					decodeJaegerJSONRef(s, &r)
					if s.Failed() {
						s.WrapIndex(i)
						break
					}
					sp.References = append(sp.References, r)
				}
			}
		case "flags":
			field = "flags"
			v := s.Uint64()
			if v > 1<<32-1 && !s.Failed() {
				s.Fail(off, "", "flags %d out of range", v)
			}
			sp.Flags = uint32(v)
		case "startTime", "start_time":
			field = "startTime"
			sp.Start = jsonTimestamp(s)
		case "duration":
			field = "duration"
			sp.Duration = jsonDuration(s)
		case "tags":
			field = "tags"
			sp.Tags = decodeJaegerJSONKVs(s, sp.Tags)
		case "logs":
			field = "logs"
			if s.ArrayStart() {
				for i := 0; s.NextElem(); i++ {
					var l model.Log
					decodeJaegerJSONLog(s, &l)
					if s.Failed() {
						s.WrapIndex(i)
						break
					}
					sp.Logs = append(sp.Logs, l)
				}
			}
		case "process":
			field = "process"
			if s.ObjectStart() {
				for s.NextKey() {
					switch string(s.Key()) {
					case "serviceName", "service_name":
						if !s.Null() {
							sp.Process.ServiceName = s.String()
						}
						if s.Failed() {
							s.WrapField("serviceName")
						}
					case "tags":
						if !s.Null() {
							sp.Process.Tags = decodeJaegerJSONKVs(s, sp.Process.Tags)
						}
						if s.Failed() {
							s.WrapField("tags")
						}
					default:
						s.Skip()
					}
				}
			}
		case "warnings":
			field = "warnings"
			if s.ArrayStart() {
				for s.NextElem() {
					sp.Warnings = append(sp.Warnings, s.String())
				}
			}
		default:
			s.Skip()
		}
		if s.Failed() {
			s.WrapField(field)
			return
		}
	}
	if s.Failed() {
		return
	}
	if !haveTrace {
		s.Fail(objStart, "traceId", "missing trace id")
	} else if !haveSpan {
		s.Fail(objStart, "spanId", "missing span id")
	}
}

func decodeJaegerJSONRef(s *jsonscan.Scanner, r *model.Reference) {
	if !s.ObjectStart() {
		return
	}
	objStart := s.Pos() - 1
	haveTrace, haveSpan := false, false
	for s.NextKey() {
		if s.Null() {
			continue
		}
		var field string
		off := s.Pos()
		switch string(s.Key()) {
		case "traceId", "trace_id", "traceID":
			field = "traceId"
			id, err := parseJSONTraceID(s.StringBytes(), false)
			if err != nil && !s.Failed() {
				s.Fail(off, "", "%v", err)
			}
			r.TraceID, haveTrace = id, true
		case "spanId", "span_id", "spanID":
			field = "spanId"
			id, err := parseJSONSpanID(s.StringBytes(), false)
			if err != nil && !s.Failed() {
				s.Fail(off, "", "%v", err)
			}
			r.SpanID, haveSpan = id, true
		case "refType", "ref_type":
			field = "refType"
			r.Type = model.RefType(jsonEnum(s, refTypeNames))
		default:
			s.Skip()
		}
		if s.Failed() {
			s.WrapField(field)
			return
		}
	}
	if s.Failed() {
		return
	}
	if !haveTrace {
		s.Fail(objStart, "traceId", "missing trace id")
	} else if !haveSpan {
		s.Fail(objStart, "spanId", "missing span id")
	}
}

func decodeJaegerJSONLog(s *jsonscan.Scanner, l *model.Log) {
	if !s.ObjectStart() {
		return
	}
	for s.NextKey() {
		if s.Null() {
			continue
		}
		switch string(s.Key()) {
		case "timestamp":
			l.Timestamp = jsonTimestamp(s)
			if s.Failed() {
				s.WrapField("timestamp")
			}
		case "fields":
			l.Fields = decodeJaegerJSONKVs(s, l.Fields)
			if s.Failed() {
				s.WrapField("fields")
			}
		default:
			s.Skip()
		}
	}
	if len(l.Fields) == 0 {
		l.Fields = nil
	}
}

var (
	valueTypeNames = []string{"STRING", "BOOL", "INT64", "FLOAT64", "BINARY"}
	refTypeNames   = []string{"CHILD_OF", "FOLLOWS_FROM"}
)

// jsonEnum reads an enum given as its name or its number; the value must be
// one of names.
func jsonEnum(s *jsonscan.Scanner, names []string) int {
	off := s.Pos()
	if s.Peek() == '"' {
		t := s.StringBytes()
		for i, n := range names {
			if string(t) == n {
				return i
			}
		}
		if !s.Failed() {
			s.Fail(off, "", "unknown value %q", t)
		}
		return 0
	}
	v := s.Int64()
	if !s.Failed() && (v < 0 || v >= int64(len(names))) {
		s.Fail(off, "", "unknown value %d", v)
		return 0
	}
	return int(v)
}

func decodeJaegerJSONKVs(s *jsonscan.Scanner, dst model.KeyValues) model.KeyValues {
	if !s.ArrayStart() {
		return dst
	}
	for i := 0; s.NextElem(); i++ {
		var kv model.KeyValue
		decodeJaegerJSONKV(s, &kv)
		if s.Failed() {
			s.WrapIndex(i)
			return dst
		}
		dst = append(dst, kv)
	}
	return dst
}

func decodeJaegerJSONKV(s *jsonscan.Scanner, kv *model.KeyValue) {
	if !s.ObjectStart() {
		return
	}
	var vtype int
	var vstr string
	var vbool bool
	var vint int64
	var vfloat float64
	var vbin []byte
	for s.NextKey() {
		if s.Null() {
			continue
		}
		var field string
		switch string(s.Key()) {
		case "key":
			field = "key"
			kv.Key = s.String()
		case "vType", "v_type":
			field = "vType"
			vtype = jsonEnum(s, valueTypeNames)
		case "vStr", "v_str":
			field = "vStr"
			vstr = s.String()
		case "vBool", "v_bool":
			field = "vBool"
			vbool = s.Bool()
		case "vInt64", "v_int64":
			field = "vInt64"
			vint = s.Int64()
		case "vFloat64", "v_float64":
			field = "vFloat64"
			vfloat = s.Float64()
		case "vBinary", "v_binary":
			field = "vBinary"
			vbin = s.Base64()
		default:
			s.Skip()
		}
		if s.Failed() {
			s.WrapField(field)
			return
		}
	}
	switch model.ValueType(vtype) {
	case model.StringType:
		kv.Type, kv.Str = model.StringType, vstr
	case model.BoolType:
		*kv = model.Bool(kv.Key, vbool)
	case model.Int64Type:
		kv.Type, kv.Num = model.Int64Type, vint
	case model.Float64Type:
		kv.Type, kv.Num = model.Float64Type, float64Bits(vfloat)
	case model.BinaryType:
		kv.Type = model.BinaryType
		kv.Str = string(vbin)
	}
}

var (
	minTime = time.Unix(0, minInt64)
	maxTime = time.Unix(0, maxInt64)
)

const (
	minInt64 = -1 << 63
	maxInt64 = 1<<63 - 1
)

// jsonTimestamp reads an RFC 3339 timestamp (the protobuf JSON form) that
// fits in int64 nanoseconds.
func jsonTimestamp(s *jsonscan.Scanner) model.Timestamp {
	off := s.Pos()
	t := s.StringBytes()
	if s.Failed() {
		return 0
	}
	ts, err := time.Parse(time.RFC3339Nano, string(t))
	if err != nil {
		s.Fail(off, "", "invalid timestamp %q", t)
		return 0
	}
	if ts.Before(minTime) || ts.After(maxTime) {
		s.Fail(off, "", "timestamp %q out of range", t)
		return 0
	}
	return model.TimestampOf(ts)
}

// jsonDuration reads a duration: the protobuf JSON form ("1.5s", "-0.000001s")
// or any form time.ParseDuration takes ("100000ns"), as gogo's jsonpb did.
func jsonDuration(s *jsonscan.Scanner) time.Duration {
	off := s.Pos()
	t := s.StringBytes()
	if s.Failed() {
		return 0
	}
	d, err := time.ParseDuration(string(t))
	if err != nil {
		s.Fail(off, "", "invalid duration %q", t)
		return 0
	}
	return d
}

// isHexID reports whether t should be read as hex rather than base64: only
// hex digits and no padding.
func isHexID(t []byte) bool {
	if len(t) == 0 {
		return false
	}
	for _, c := range t {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// parseJSONTraceID reads a trace ID given as base64 of its 8 or 16 bytes or
// as hex. own is set for a span's own ID, which must not be zero.
func parseJSONTraceID(t []byte, own bool) (model.TraceID, error) {
	var id model.TraceID
	var err error
	switch {
	case len(t) == 0:
		return id, errors.New("missing trace id")
	case isHexID(t):
		id, err = model.ParseTraceID(string(t))
	default:
		var raw []byte
		if raw, err = jsonscan.DecodeBase64(t); err != nil {
			return id, fmt.Errorf("trace id %q is neither hex nor base64", t)
		}
		id, err = model.TraceIDFromBytes(raw)
	}
	if err == nil && own && id.IsZero() {
		err = errors.New("trace id is zero")
	}
	return id, err
}

func parseJSONSpanID(t []byte, own bool) (model.SpanID, error) {
	var id model.SpanID
	var err error
	switch {
	case len(t) == 0:
		return 0, errors.New("missing span id")
	case isHexID(t):
		id, err = model.ParseSpanID(string(t))
	default:
		var raw []byte
		if raw, err = jsonscan.DecodeBase64(t); err != nil {
			return 0, fmt.Errorf("span id %q is neither hex nor base64", t)
		}
		id, err = model.SpanIDFromBytes(raw)
	}
	if err == nil && own && id == 0 {
		err = errors.New("span id is zero")
	}
	return id, err
}
