package dbmodel

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// AppendSpanJSON appends the JSON of s's stored document to b: exactly the
// bytes of json.Marshal(FromDomainSpan(s, o)), without building the
// document. Writing spans to Elasticsearch is mostly this encoding, and
// reflection-based encoding of the intermediate document cost several times
// as much (TestAppendSpanJSONSameAsMarshal and FuzzAppendSpanJSON hold the
// two equal).
func AppendSpanJSON(b []byte, s *model.Span, o SpanOptions) []byte {
	tags := s.Tags
	if extra := derivedTags(s); len(extra) > 0 {
		tags = append(append(model.KeyValues(nil), s.Tags...), extra...)
	}
	b = append(b, `{"traceID":"`...)
	b = s.TraceID.AppendHex(b)
	b = append(b, `","spanID":"`...)
	b = s.SpanID.AppendHex(b)
	b = append(b, '"')
	if s.Flags != 0 {
		b = append(b, `,"flags":`...)
		b = strconv.AppendUint(b, uint64(s.Flags), 10)
	}
	b = append(b, `,"operationName":`...)
	b = AppendJSONString(b, s.Operation)
	b = append(b, `,"references":[`...)
	for i, r := range s.References {
		if i > 0 {
			b = append(b, ',')
		}
		t := ChildOf
		if r.Type == model.FollowsFrom {
			t = FollowsFrom
		}
		b = append(b, `{"refType":"`...)
		b = append(b, t...)
		b = append(b, `","traceID":"`...)
		b = r.TraceID.AppendHex(b)
		b = append(b, `","spanID":"`...)
		b = r.SpanID.AppendHex(b)
		b = append(b, `"}`...)
	}
	b = append(b, `],"startTime":`...)
	b = strconv.AppendInt(b, s.Start.Micros(), 10)
	b = append(b, `,"startTimeMillis":`...)
	b = strconv.AppendInt(b, floorDiv(s.Start.Micros(), 1000), 10)
	b = append(b, `,"duration":`...)
	b = strconv.AppendInt(b, max(int64(s.Duration/time.Microsecond), 0), 10)
	b = append(b, `,"tags":`...)
	b = appendTags(b, tags, o)
	b = append(b, `,"logs":[`...)
	for i, l := range s.Logs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"timestamp":`...)
		b = strconv.AppendInt(b, l.Timestamp.Micros(), 10)
		b = append(b, `,"fields":[`...)
		for j, kv := range l.Fields {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendKeyValue(b, kv)
		}
		b = append(b, "]}"...)
	}
	b = append(b, `],"process":{"serviceName":`...)
	b = AppendJSONString(b, s.Process.ServiceName)
	b = append(b, `,"tags":`...)
	b = appendTags(b, s.Process.Tags, o)
	return append(b, "}}"...)
}

// field is one tag stored as a field: its field name and value.
type field struct {
	name string
	kv   *model.KeyValue
}

// appendTags appends kvs as fromKeyValues splits them: the nested list,
// then, when any, `,"tag":{...}` with the fields sorted by name as
// encoding/json sorts map keys.
func appendTags(b []byte, kvs model.KeyValues, o SpanOptions) []byte {
	var fields []field
	b = append(b, '[')
	n := 0
	for i := range kvs {
		kv := &kvs[i]
		if name, ok := o.fieldName(kv); ok {
			if !slices.ContainsFunc(fields, func(f field) bool { return f.name == name }) {
				fields = append(fields, field{name, kv})
				continue
			}
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = appendKeyValue(b, *kv)
	}
	b = append(b, ']')
	if len(fields) == 0 {
		return b
	}
	slices.SortFunc(fields, func(x, y field) int { return strings.Compare(x.name, y.name) })
	b = append(b, `,"tag":{`...)
	for i, f := range fields {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendJSONString(b, f.name)
		b = append(b, ':')
		switch f.kv.Type {
		case model.BoolType:
			b = strconv.AppendBool(b, f.kv.BoolValue())
		case model.Int64Type:
			b = strconv.AppendInt(b, f.kv.Int64Value(), 10)
		case model.Float64Type:
			b = append(b, floatNumber(f.kv.Float64Value())...)
		default:
			b = AppendJSONString(b, f.kv.Str)
		}
	}
	return append(b, '}')
}

// appendKeyValue appends fromKeyValue(kv)'s JSON.
func appendKeyValue(b []byte, kv model.KeyValue) []byte {
	b = append(b, `{"key":`...)
	b = AppendJSONString(b, kv.Key)
	if t := kv.Type.String(); t != "" {
		b = append(b, `,"type":`...)
		b = AppendJSONString(b, t)
	}
	b = append(b, `,"value":`...)
	b = AppendJSONString(b, kv.AsString())
	return append(b, '}')
}

// AppendJSONString appends s as encoding/json writes a string: as it is when
// every byte is printable ASCII that needs no escape (the common case),
// else through json.Marshal (escapes, HTML-safe <, > and &, invalid UTF-8
// replaced).
func AppendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
