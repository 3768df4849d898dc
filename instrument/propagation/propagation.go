// Package propagation carries a span context across processes in both the
// Jaeger header (uber-trace-id, through the tracer's own injector and
// extractor) and the W3C Trace Context header (traceparent), so a
// jaeger-client-go service and an OpenTelemetry service continue each
// other's traces. The HTTP and gRPC adapters use it; use it directly for
// other carriers (Kafka record headers).
package propagation

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"

	"github.com/opentracing/opentracing-go"
	jaeger "github.com/uber/jaeger-client-go"
)

// TraceParent is the W3C Trace Context header.
const TraceParent = "traceparent"

// Inject writes sc into carrier in the tracer's format (format is
// opentracing.HTTPHeaders or opentracing.TextMap) and, when sc is a Jaeger
// span context, as traceparent.
func Inject(tracer opentracing.Tracer, sc opentracing.SpanContext, format any, carrier opentracing.TextMapWriter) error {
	err := tracer.Inject(sc, format, carrier)
	if jc, ok := sc.(jaeger.SpanContext); ok && jc.IsValid() {
		carrier.Set(TraceParent, FormatTraceParent(jc))
	}
	return err
}

// Extract reads a span context from carrier: the tracer's own header first
// (uber-trace-id), else traceparent (as a Jaeger span context, so the tracer
// must be jaeger-client-go for that). It returns
// opentracing.ErrSpanContextNotFound when the carrier has neither.
func Extract(tracer opentracing.Tracer, format any, carrier opentracing.TextMapReader) (opentracing.SpanContext, error) {
	sc, err := tracer.Extract(format, carrier)
	if err == nil && sc != nil {
		return sc, nil
	}
	if _, isJaeger := tracer.(*jaeger.Tracer); !isJaeger {
		return nil, err
	}
	var tp string
	_ = carrier.ForeachKey(func(k, v string) error {
		if strings.EqualFold(k, TraceParent) {
			tp = v
		}
		return nil
	})
	if tp == "" {
		if err == nil {
			err = opentracing.ErrSpanContextNotFound
		}
		return nil, err
	}
	jc, perr := ParseTraceParent(tp)
	if perr != nil {
		return nil, perr
	}
	return jc, nil
}

// ErrBadTraceParent reports a traceparent header that is not version 00 W3C.
var ErrBadTraceParent = errors.New("malformed traceparent")

// FormatTraceParent renders sc as a version-00 traceparent value.
func FormatTraceParent(sc jaeger.SpanContext) string {
	var b [55]byte
	b[0], b[1], b[2] = '0', '0', '-'
	tid := sc.TraceID()
	putHex(b[3:19], tid.High)
	putHex(b[19:35], tid.Low)
	b[35] = '-'
	putHex(b[36:52], uint64(sc.SpanID()))
	b[52] = '-'
	b[53], b[54] = '0', '0'
	if sc.IsSampled() {
		b[54] = '1'
	}
	return string(b[:])
}

func putHex(dst []byte, v uint64) {
	const digits = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		dst[i] = digits[v&0xf]
		v >>= 4
	}
}

// ParseTraceParent reads a traceparent value (version 00, or a later version
// read as 00 as the spec asks) into a Jaeger span context.
func ParseTraceParent(v string) (jaeger.SpanContext, error) {
	v = strings.TrimSpace(v)
	if len(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' || (v[:2] == "00" && len(v) != 55) || v[:2] == "ff" {
		return jaeger.SpanContext{}, ErrBadTraceParent
	}
	var raw [8 + 8 + 8 + 1]byte
	if _, err := hex.Decode(raw[:16], []byte(v[3:35])); err != nil {
		return jaeger.SpanContext{}, ErrBadTraceParent
	}
	if _, err := hex.Decode(raw[16:24], []byte(v[36:52])); err != nil {
		return jaeger.SpanContext{}, ErrBadTraceParent
	}
	if _, err := hex.Decode(raw[24:25], []byte(v[53:55])); err != nil {
		return jaeger.SpanContext{}, ErrBadTraceParent
	}
	be := binary.BigEndian
	tid := jaeger.TraceID{High: be.Uint64(raw[0:8]), Low: be.Uint64(raw[8:16])}
	sid := jaeger.SpanID(be.Uint64(raw[16:24]))
	if !tid.IsValid() || sid == 0 {
		return jaeger.SpanContext{}, ErrBadTraceParent
	}
	return jaeger.NewSpanContext(tid, sid, 0, raw[24]&1 == 1, nil), nil
}
