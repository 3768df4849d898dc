// Package wire decodes and encodes the span formats tracepipe reads from
// Kafka, converting to and from package model.
//
// # Formats
//
// Jaeger protobuf (JaegerProto): one jaeger.api_v2.Span per message, as
// Jaeger collectors write to the jaeger-spans topic with the "protobuf"
// encoding (message key: the trace ID as TraceID.String() gives it, see Key).
// The schema is proto/jaeger/api_v2/model.proto, the same messages and field
// numbers as jaeger-idl's model.proto. trace_id is 16 bytes (8 accepted),
// span_id 8 bytes, start_time a Timestamp, duration a Duration. Decoding
// is done by a hand-written decoder (google.golang.org/protobuf/encoding/protowire)
// straight into model.Span: DecodeJaegerProto makes three to five
// allocations per span (the span with its reference, the copy of its bytes,
// its key-value block, its logs); JaegerProtoDecoder decodes many spans
// without copying their messages and carves spans and key-values from
// shared blocks (Decode), or only validates a message and returns its IDs
// (Check). The generated code in internal/jaegerpb is the reference all
// three are held to by a differential fuzz test (they accept the same
// inputs and give the same spans).
//
// Jaeger JSON (JaegerJSON): the protobuf JSON mapping of the same message,
// the Kafka "json" encoding: camelCase names (traceId, operationName,
// startTime, ...), IDs as base64 of their bytes, startTime in RFC 3339,
// duration as "0.000123s", 64-bit integers as strings, enums as names.
// Decoding also accepts what older producers wrote (hex IDs, Go durations;
// see DecodeJaegerJSON). The span's process_id is not kept (it only means
// something inside a Trace message).
//
// OTLP protobuf and JSON (OTLPProto, OTLPJSON): one ExportTraceServiceRequest
// per message, holding any number of spans of any number of traces, as
// Jaeger v2 and the OpenTelemetry collector's Kafka exporter write them.
// OTLP/JSON is not plain protobuf JSON: IDs are hex, enums may be integers.
// OTLP protobuf is decoded by hand too (spans, scalar attributes, events,
// status), with the generated go.opentelemetry.io/proto/otlp types for the
// once-per-resource or rare parts, and fuzzed against proto.Unmarshal plus
// the reference conversion. The types of trace/v1.TracesData are used for
// the message: it has the same fields as ExportTraceServiceRequest, without
// the collector package's gRPC dependencies.
//
// Jaeger Thrift (DecodeJaegerThrift, DecodeAgentEmitBatch): the Batch that
// jaeger-client-go sends to the agent over UDP (inside an emitBatch
// message, compact or binary protocol) and to the collector over HTTP
// (binary protocol). These are request formats of the collector, not Kafka
// message formats; the decoder is hand-written and fuzzed against
// jaeger-client-go's generated code (see jaegerthrift.go).
//
// The Jaeger UI/query JSON document ({"data":[{"traceID", "spans",
// "processes"}]}) is a file format, not a message format; package
// wire/uijson reads and writes it.
//
// # Mapping
//
// Jaeger formats carry span kind and status as tags. Decoders keep the tags
// and also set Kind from the span.kind tag, Status from otel.status_code
// ("OK", "ERROR") and from an error tag that is true (bool true or the
// string "true"; it wins), and StatusMessage from otel.status_description.
// Encoders to Jaeger formats write the tags unchanged and add those
// convention tags only when they are missing and needed to carry Kind,
// Status or StatusMessage, so Jaeger -> model -> Jaeger is lossless.
//
// OTLP follows Jaeger's OTLP translator: the resource attribute service.name
// (the first with a string value) is Process.ServiceName and the other
// resource attributes are Process.Tags; span attributes are Tags, with
// scalar types kept and arrays and key-value lists rendered as JSON text in
// a string tag; the instrumentation scope's name and version become the tags
// otel.scope.name and otel.scope.version after the attributes;
// parent_span_id becomes a CHILD_OF reference (first) and each link a
// FOLLOWS_FROM reference; kind, status code and status message map to Kind,
// Status and StatusMessage; events become logs whose first field is
// event=<name> (when the name is not empty) followed by the attributes;
// flags map to Flags. Not kept: trace_state, dropped counts, link
// attributes, scope attributes, schema URLs. Encoding to OTLP inverts this
// (trailing scope tags become the scope, a leading event field the event
// name, the first same-trace CHILD_OF reference the parent, other references
// links); Warnings have no OTLP field and are dropped, and a second CHILD_OF
// reference comes back as FOLLOWS_FROM. Spans of one resource share their
// Process.Tags backing array (cap == len, so appending copies).
//
// # Errors and limits
//
// Every decoder returns an error wrapping ErrMalformed (a *DecodeError)
// for bytes it cannot read, saying what is wrong and where (protobuf field
// path and byte offset, or JSON member path and byte offset), and never
// panics. A message must give every span a non-zero trace ID of 8 or 16
// bytes and a non-zero 8-byte span ID; reference IDs must have the right
// size; times must fit int64 nanoseconds (years 1678 to 2262); protobuf
// strings must be UTF-8, as protobuf requires. The JSON formats carry a NaN
// float as "NaN", so the payload bits of a NaN survive only the protobuf
// formats.
//
// Memory: a span from a protobuf decoder has strings that are substrings of
// one copy of that span's bytes and key-values that share one block, so it
// costs a handful of allocations (see the benchmarks) and keeps alive only
// its own bytes, not the whole message; a long-lived holder of a few of its
// strings (a map key, say) should strings.Clone them to let the rest go. The
// JSON decoders allocate each string. The spans of one OTLP resource share
// its Process. Nothing refers to the input: the caller may reuse b once
// Decode returns.
//
// Every function of the package is safe for concurrent use.
package wire

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/wire/internal/jsonscan"
)

// Encoding names a wire format.
type Encoding string

const (
	JaegerProto Encoding = "jaeger-proto"
	JaegerJSON  Encoding = "jaeger-json"
	OTLPProto   Encoding = "otlp-proto"
	OTLPJSON    Encoding = "otlp-json"
	Auto        Encoding = "auto" // detect per message
)

// Encodings lists the concrete encodings.
func Encodings() []Encoding { return []Encoding{JaegerProto, JaegerJSON, OTLPProto, OTLPJSON} }

// ParseEncoding reads an encoding name: the constants' values, or Jaeger's
// Kafka encoding names "protobuf" and "json" (and "otlp_proto", "otlp_json").
func ParseEncoding(s string) (Encoding, error) {
	switch s {
	case string(JaegerProto), "protobuf", "proto":
		return JaegerProto, nil
	case string(JaegerJSON), "json":
		return JaegerJSON, nil
	case string(OTLPProto), "otlp_proto", "otlp":
		return OTLPProto, nil
	case string(OTLPJSON), "otlp_json":
		return OTLPJSON, nil
	case string(Auto), "":
		return Auto, nil
	}
	return "", fmt.Errorf("%w %q: want one of jaeger-proto, jaeger-json, otlp-proto, otlp-json, auto", ErrUnknownEncoding, s)
}

// Key returns the Kafka message key Jaeger uses for spans of a trace: the
// trace ID as TraceID.String() renders it.
func Key(id model.TraceID) []byte {
	return id.AppendHex(make([]byte, 0, 32))
}

// Detect guesses the encoding of one message. It never fails; a wrong guess
// for bad bytes just means the decoder of that encoding reports the error.
//
// JSON: the message starts with '{' (after JSON whitespace, when the bytes
// are not also a well-framed protobuf message: a protobuf message may start
// with 0x0a, which is '\n'). It is OTLP/JSON when a top-level member is
// resourceSpans (or resource_spans) and Jaeger JSON otherwise.
//
// Protobuf: an ExportTraceServiceRequest has only field 1 (resource_spans)
// at the top level, while a Jaeger Span always has field 2 (span_id) and
// usually more; so a message whose top-level fields are all number 1 (or
// that is empty) is OTLP and anything else is Jaeger. A Jaeger span
// without span_id, which is invalid anyway, is taken for OTLP.
func Detect(b []byte) Encoding {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	if i < len(b) && b[i] == '{' && (i == 0 || !protoFramed(b)) {
		if jsonHasResourceSpans(b) {
			return OTLPJSON
		}
		return JaegerJSON
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			break
		}
		if num != 1 {
			return JaegerProto
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			break
		}
		b = b[n+m:]
	}
	return OTLPProto
}

// protoFramed reports whether b parses as a sequence of protobuf fields
// ending exactly at its end.
func protoFramed(b []byte) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return false
		}
		b = b[n+m:]
	}
	return true
}

// jsonHasResourceSpans scans the top-level members of a JSON object until
// one decides: resourceSpans means OTLP, a Jaeger span member means Jaeger.
func jsonHasResourceSpans(b []byte) bool {
	s := jsonscan.New(b)
	if !s.ObjectStart() {
		return false
	}
	for s.NextKey() {
		switch string(s.Key()) {
		case "resourceSpans", "resource_spans":
			return true
		case "traceId", "trace_id", "spanId", "span_id", "operationName", "operation_name":
			return false
		}
		s.Skip()
	}
	return false
}

// Decode appends the spans in message b to dst: one span for the Jaeger
// encodings, any number for OTLP. With Auto the encoding is detected per
// message. On error dst is returned unchanged (with its old length) and the
// error wraps ErrMalformed, or ErrUnknownEncoding for an unknown enc. It
// never panics on bad bytes; errors say what is wrong and where.
func Decode(enc Encoding, b []byte, dst []*model.Span) ([]*model.Span, error) {
	if enc == Auto {
		enc = Detect(b)
	}
	switch enc {
	case JaegerProto:
		sp, err := DecodeJaegerProto(b)
		if err != nil {
			return dst, err
		}
		return append(dst, sp), nil
	case JaegerJSON:
		sp, err := DecodeJaegerJSON(b)
		if err != nil {
			return dst, err
		}
		return append(dst, sp), nil
	case OTLPProto:
		return DecodeOTLPProto(b, dst)
	case OTLPJSON:
		return DecodeOTLPJSON(b, dst)
	}
	return dst, fmt.Errorf("decode: %w %q", ErrUnknownEncoding, enc)
}

// Encode encodes spans as Kafka messages of encoding enc: one message per
// span for the Jaeger encodings, one message holding all spans for OTLP (no
// message for no spans). Auto is not an encoding to write.
func Encode(enc Encoding, spans []*model.Span) ([][]byte, error) {
	switch enc {
	case JaegerProto, JaegerJSON:
		out := make([][]byte, 0, len(spans))
		for _, s := range spans {
			var b []byte
			var err error
			if enc == JaegerProto {
				b, err = EncodeJaegerProto(s)
			} else {
				b, err = EncodeJaegerJSON(s)
			}
			if err != nil {
				return nil, err
			}
			out = append(out, b)
		}
		return out, nil
	case OTLPProto, OTLPJSON:
		if len(spans) == 0 {
			return nil, nil
		}
		var b []byte
		var err error
		if enc == OTLPProto {
			b, err = EncodeOTLPProto(spans)
		} else {
			b, err = EncodeOTLPJSON(spans)
		}
		if err != nil {
			return nil, err
		}
		return [][]byte{b}, nil
	}
	return nil, fmt.Errorf("encode: %w %q", ErrUnknownEncoding, enc)
}
