package wire

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/wire/internal/jaegerpb"
)

// Benchmarks report spans/s (per core with -cpu 1) and, through
// ReportAllocs, allocations per message: for the Jaeger encodings a message
// is one span, for OTLP a batch of otlpBatchSize spans.

func reportSpans(b *testing.B, spansPerOp int) {
	b.ReportMetric(float64(b.N)*float64(spansPerOp)/b.Elapsed().Seconds(), "spans/s")
}

const otlpBatchSize = 100

// otlpBatch is what an SDK exporter sends: 100 realistic spans of 10
// traces from 3 services, 2 scopes each.
func otlpBatch() []*model.Span {
	services := []string{"frontend", "orders", "payments"}
	var spans []*model.Span
	for i := 0; i < otlpBatchSize; i++ {
		s := realisticSpan()
		s.TraceID.Low += uint64(i / 10)
		s.References[0].TraceID = s.TraceID
		s.SpanID += model.SpanID(i)
		s.Start = s.Start.Add(time.Duration(i) * time.Microsecond)
		s.Process.ServiceName = services[i%3]
		s.Kind = model.KindServer
		s.Tags = append(s.Tags[1:], model.String("otel.scope.name", []string{"otelhttp", "otelsql"}[i%2]))
		spans = append(spans, s)
	}
	return spans
}

func benchDecode(b *testing.B, enc Encoding, spans []*model.Span) {
	msgs, err := Encode(enc, spans)
	if err != nil {
		b.Fatal(err)
	}
	msg := msgs[0]
	per := 1
	if enc == OTLPProto || enc == OTLPJSON {
		per = len(spans)
	}
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	var dst []*model.Span
	for b.Loop() {
		dst, err = Decode(enc, msg, dst[:0])
		if err != nil {
			b.Fatal(err)
		}
	}
	reportSpans(b, per)
}

func BenchmarkDecodeJaegerProto(b *testing.B) {
	benchDecode(b, JaegerProto, []*model.Span{realisticSpan()})
}

// benchJaegerSpan runs op on the realistic span's Jaeger protobuf message.
func benchJaegerSpan(b *testing.B, op func(msg []byte) error) {
	msg, err := EncodeJaegerProto(realisticSpan())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if err := op(msg); err != nil {
			b.Fatal(err)
		}
	}
	reportSpans(b, 1)
}

// BenchmarkDecodeJaegerProtoBulk decodes the same span with
// JaegerProtoDecoder.Decode: no copy of the message, spans and key-values
// carved from shared blocks (how the ingester decodes a trace to emit).
func BenchmarkDecodeJaegerProtoBulk(b *testing.B) {
	var dec JaegerProtoDecoder
	benchJaegerSpan(b, func(msg []byte) error {
		_, err := dec.Decode(msg)
		return err
	})
}

// BenchmarkReadJaegerProtoIDs reads the same span's IDs (how the ingester
// reads a span on arrival; it decodes the span when its trace is emitted).
func BenchmarkReadJaegerProtoIDs(b *testing.B) {
	benchJaegerSpan(b, func(msg []byte) error {
		_, _, err := ReadJaegerProtoIDs(msg)
		return err
	})
}

// BenchmarkDecodeJaegerProtoGenerated is the reference path the direct
// decoder replaces: proto.Unmarshal into the generated type, then
// conversion.
func BenchmarkDecodeJaegerProtoGenerated(b *testing.B) {
	benchJaegerSpan(b, func(msg []byte) error {
		var p jaegerpb.Span
		if err := proto.Unmarshal(msg, &p); err != nil {
			return err
		}
		_, err := spanFromPB(&p)
		return err
	})
}

func BenchmarkDecodeJaegerJSON(b *testing.B) {
	benchDecode(b, JaegerJSON, []*model.Span{realisticSpan()})
}

func BenchmarkDecodeOTLPProto(b *testing.B) { benchDecode(b, OTLPProto, otlpBatch()) }
func BenchmarkDecodeOTLPJSON(b *testing.B)  { benchDecode(b, OTLPJSON, otlpBatch()) }

func BenchmarkDetect(b *testing.B) {
	var msgs [][]byte
	for _, enc := range Encodings() {
		m, err := Encode(enc, []*model.Span{realisticSpan()})
		if err != nil {
			b.Fatal(err)
		}
		msgs = append(msgs, m[0])
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		Detect(msgs[i%len(msgs)])
		i++
	}
}

func benchEncode(b *testing.B, enc Encoding, spans []*model.Span) {
	b.ReportAllocs()
	var n int
	for b.Loop() {
		msgs, err := Encode(enc, spans)
		if err != nil {
			b.Fatal(err)
		}
		n = len(msgs[0])
	}
	b.SetBytes(int64(n))
	reportSpans(b, len(spans))
}

func BenchmarkEncodeJaegerProto(b *testing.B) {
	s := realisticSpan()
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = AppendJaegerProto(buf[:0], s); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
	reportSpans(b, 1)
}

func BenchmarkEncodeJaegerJSON(b *testing.B) {
	benchEncode(b, JaegerJSON, []*model.Span{realisticSpan()})
}
func BenchmarkEncodeOTLPProto(b *testing.B) { benchEncode(b, OTLPProto, otlpBatch()) }
func BenchmarkEncodeOTLPJSON(b *testing.B)  { benchEncode(b, OTLPJSON, otlpBatch()) }
