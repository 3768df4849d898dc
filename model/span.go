package model

import (
	"math"
	"strconv"
	"time"
)

// Timestamp is a point in time in nanoseconds since the Unix epoch, UTC.
type Timestamp int64

// TimestampOf converts a time.Time.
func TimestampOf(t time.Time) Timestamp { return Timestamp(t.UnixNano()) }

// Time converts to a UTC time.Time.
func (t Timestamp) Time() time.Time { return time.Unix(0, int64(t)).UTC() }

// Micros is the timestamp in microseconds since the epoch (Jaeger's JSON and
// Elasticsearch unit), truncated toward negative infinity.
func (t Timestamp) Micros() int64 {
	us := int64(t) / 1000
	if int64(t)%1000 < 0 {
		us--
	}
	return us
}

// FromMicros builds a Timestamp from microseconds since the epoch.
func FromMicros(us int64) Timestamp { return Timestamp(us * 1000) }

// Add returns t+d.
func (t Timestamp) Add(d time.Duration) Timestamp { return t + Timestamp(d) }

// Sub returns t-u.
func (t Timestamp) Sub(u Timestamp) time.Duration { return time.Duration(t - u) }

// RefType is the kind of a span reference. Values match Jaeger's SpanRefType.
type RefType int32

const (
	ChildOf     RefType = 0
	FollowsFrom RefType = 1
)

func (r RefType) String() string {
	switch r {
	case ChildOf:
		return "CHILD_OF"
	case FollowsFrom:
		return "FOLLOWS_FROM"
	}
	return "RefType(" + strconv.Itoa(int(r)) + ")"
}

// Reference links a span to another span, usually its parent.
type Reference struct {
	Type    RefType
	TraceID TraceID
	SpanID  SpanID
}

// SpanKind is the role of a span in an RPC or messaging exchange.
type SpanKind int8

const (
	KindUnspecified SpanKind = iota
	KindInternal
	KindServer
	KindClient
	KindProducer
	KindConsumer
)

var kindNames = [...]string{"", "internal", "server", "client", "producer", "consumer"}

// String returns the OpenTracing span.kind tag value ("" when unspecified).
func (k SpanKind) String() string {
	if int(k) >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return ""
}

// ParseSpanKind reads an OpenTracing span.kind value; unknown values give
// KindUnspecified.
func ParseSpanKind(s string) SpanKind {
	for i, n := range kindNames {
		if i > 0 && n == s {
			return SpanKind(i)
		}
	}
	return KindUnspecified
}

// StatusCode is a span's outcome as OTLP defines it.
type StatusCode int8

const (
	StatusUnset StatusCode = iota
	StatusOK
	StatusError
)

// ValueType is the type of a KeyValue. Values match Jaeger's ValueType.
type ValueType int8

const (
	StringType  ValueType = 0
	BoolType    ValueType = 1
	Int64Type   ValueType = 2
	Float64Type ValueType = 3
	BinaryType  ValueType = 4
)

func (v ValueType) String() string {
	switch v {
	case StringType:
		return "string"
	case BoolType:
		return "bool"
	case Int64Type:
		return "int64"
	case Float64Type:
		return "float64"
	case BinaryType:
		return "binary"
	}
	return "ValueType(" + strconv.Itoa(int(v)) + ")"
}

// KeyValue is a typed tag or log field. Str holds string values and the
// bytes of binary values; Num holds int64 values, bools as 0/1 and float64
// values as their IEEE-754 bits. Use the constructors and accessors. (Binary
// values live in a string, not a []byte field: key-values are the bulk of
// a span, and 48 bytes instead of 72 make every decoded span smaller.)
type KeyValue struct {
	Key  string
	Str  string
	Num  int64
	Type ValueType
}

// String, Bool, Int64, Float64 and Binary build typed KeyValues.
func String(k, v string) KeyValue { return KeyValue{Key: k, Type: StringType, Str: v} }
func Bool(k string, v bool) KeyValue {
	var n int64
	if v {
		n = 1
	}
	return KeyValue{Key: k, Type: BoolType, Num: n}
}
func Int64(k string, v int64) KeyValue { return KeyValue{Key: k, Type: Int64Type, Num: v} }
func Float64(k string, v float64) KeyValue {
	return KeyValue{Key: k, Type: Float64Type, Num: int64(math.Float64bits(v))}
}
func Binary(k string, v []byte) KeyValue { return KeyValue{Key: k, Type: BinaryType, Str: string(v)} }

// BoolValue, Int64Value and Float64Value read the typed value (zero for other types).
func (kv KeyValue) BoolValue() bool { return kv.Type == BoolType && kv.Num != 0 }
func (kv KeyValue) Int64Value() int64 {
	if kv.Type == Int64Type {
		return kv.Num
	}
	return 0
}
func (kv KeyValue) Float64Value() float64 {
	if kv.Type == Float64Type {
		return math.Float64frombits(uint64(kv.Num))
	}
	return 0
}

// BinaryValue returns a copy of a binary value's bytes (nil for other
// types, and for an empty value).
func (kv KeyValue) BinaryValue() []byte {
	if kv.Type == BinaryType && kv.Str != "" {
		return []byte(kv.Str)
	}
	return nil
}

// AsString renders any value as text, the way Jaeger's UI and search do.
func (kv KeyValue) AsString() string {
	switch kv.Type {
	case StringType:
		return kv.Str
	case BoolType:
		return strconv.FormatBool(kv.BoolValue())
	case Int64Type:
		return strconv.FormatInt(kv.Num, 10)
	case Float64Type:
		return strconv.FormatFloat(kv.Float64Value(), 'g', -1, 64)
	case BinaryType:
		const digits = "0123456789abcdef"
		b := make([]byte, 0, 2*len(kv.Str))
		for _, c := range []byte(kv.Str) {
			b = append(b, digits[c>>4], digits[c&15])
		}
		return string(b)
	}
	return ""
}

// KeyValues is a list of tags with lookup helpers.
type KeyValues []KeyValue

// Find returns the first value with key k.
func (kvs KeyValues) Find(k string) (KeyValue, bool) {
	for _, kv := range kvs {
		if kv.Key == k {
			return kv, true
		}
	}
	return KeyValue{}, false
}

// Log is a timestamped set of fields attached to a span.
type Log struct {
	Timestamp Timestamp
	Fields    KeyValues
}

// Process is the emitter of a span: a service name and its tags (host, ip, ...).
type Process struct {
	ServiceName string
	Tags        KeyValues
}

// Span is one timed operation in a trace.
//
// Kind and Status are the structured form of what Jaeger keeps in the
// span.kind and error tags; decoders fill both, and encoders write the tags
// only where they are missing, so a Jaeger round trip is lossless.
type Span struct {
	TraceID       TraceID
	SpanID        SpanID
	Operation     string
	References    []Reference
	Flags         uint32
	Start         Timestamp
	Duration      time.Duration
	Tags          KeyValues
	Logs          []Log
	Process       Process
	Kind          SpanKind
	Status        StatusCode
	StatusMessage string
	Warnings      []string
}

// End is Start+Duration.
func (s *Span) End() Timestamp { return s.Start.Add(s.Duration) }

// IsError reports whether the span failed: an ERROR status or a true error tag.
func (s *Span) IsError() bool { return s.Status == StatusError }

// ParentSpanID returns the span's parent: the first CHILD_OF reference within
// the same trace, else the first reference of any type within the same trace
// (FOLLOWS_FROM), with ok=false for a root. blocking reports whether the edge
// is a CHILD_OF edge.
func (s *Span) ParentSpanID() (parent SpanID, blocking bool, ok bool) {
	for _, r := range s.References {
		if r.Type == ChildOf && r.TraceID == s.TraceID {
			return r.SpanID, true, true
		}
	}
	for _, r := range s.References {
		if r.TraceID == s.TraceID {
			return r.SpanID, false, true
		}
	}
	return 0, false, false
}

// Trace is a set of spans sharing one trace ID.
type Trace struct {
	TraceID TraceID
	Spans   []*Span
}
