package ingest

import (
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/pipeline/ingest/assemble"
	"github.com/tracepipe/tracepipe/tracegen"
	"github.com/tracepipe/tracepipe/wire"
	"github.com/tracepipe/tracepipe/wire/assembledpb"
)

type fixedClock struct{ t time.Time }

func (c *fixedClock) Now() time.Time { return c.t }

// FuzzIngestPath runs bytes from outside through what the ingester does
// with a message — format detection, decoding (or the Jaeger protobuf
// check), assembly with analysis — and through the output encoding and
// back. Two messages per input, so duplicates, late spans and mixed
// encodings meet in one assembler. It must never panic, and whatever it
// emits must be well-formed: spans of the emitted trace only, an analysis
// aligned with them, and an output message that decodes to the same trace.
// The seeds (every encoding of a generated trace, empty and malformed
// messages) run in the normal test suite.
func FuzzIngestPath(f *testing.F) {
	w := tracegen.Generate(tracegen.Config{Seed: 21, Traces: 2})
	for _, enc := range []wire.Encoding{wire.JaegerProto, wire.JaegerJSON, wire.OTLPProto, wire.OTLPJSON} {
		e, err := tracegen.EncoderFor(enc)
		if err != nil {
			f.Fatal(err)
		}
		msgs, err := tracegen.Messages(w.Order(), enc, e, 4, enc == wire.OTLPProto)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(msgs[0].Value, msgs[len(msgs)-1].Value)
		f.Add(msgs[0].Value, msgs[0].Value) // a duplicate
	}
	f.Add([]byte{}, []byte("\xff\xff not a span"))
	f.Add([]byte(`{"traceId":"1","spanId":"2","duration":"-5s"}`), []byte(`{"resourceSpans":[]}`))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		clock := &fixedClock{t: time.Unix(1_800_000_000, 0)}
		asm := assemble.New(assemble.Config{MaxSpansPerTrace: 64}, clock, &assemble.Budget{MaxTraces: 100, MaxBytes: 1 << 20})
		for off, m := range [][]byte{a, b} {
			enc := wire.Detect(m)
			if enc == wire.JaegerProto {
				if id, sid, err := wire.ReadJaegerProtoIDs(m); err == nil {
					asm.AddJaegerProto(int64(off), id, sid, m, clock.Now())
				}
				continue
			}
			if spans, err := wire.Decode(enc, m, nil); err == nil {
				asm.Add(int64(off), spans)
			}
		}
		outs := asm.Flush(nil)
		clock.t = clock.t.Add(time.Hour)
		outs = asm.Expire(outs)
		emitted := 0
		for _, o := range outs {
			at := o.Trace
			emitted += len(at.Trace.Spans)
			for _, sp := range at.Trace.Spans {
				if sp.TraceID != at.Trace.TraceID {
					t.Fatalf("span of trace %s emitted in trace %s", sp.TraceID, at.Trace.TraceID)
				}
			}
			if len(at.Analysis.Spans) != len(at.Trace.Spans) {
				t.Fatalf("analysis has %d spans, the trace %d", len(at.Analysis.Spans), len(at.Trace.Spans))
			}
			back, err := assembledpb.Decode(assembledpb.Encode(nil, at))
			if err != nil {
				t.Fatalf("output does not decode: %v", err)
			}
			if back.Trace.TraceID != at.Trace.TraceID || back.Version != at.Version || len(back.Trace.Spans) != len(at.Trace.Spans) {
				t.Fatalf("output round trip: trace %s v%d %d spans, got %s v%d %d spans", at.Trace.TraceID, at.Version,
					len(at.Trace.Spans), back.Trace.TraceID, back.Version, len(back.Trace.Spans))
			}
			asm.Acked(o.Token)
		}
		rejected := asm.TakeRejected(nil)
		for _, r := range rejected {
			if _, err := wire.DecodeJaegerProto(r.Message); err == nil {
				t.Fatalf("rejected a span that decodes (%v)", r.Err)
			}
		}
		c := asm.Counters()
		if int64(emitted) > c.SpansIn {
			t.Fatalf("emitted %d spans, %d came in", emitted, c.SpansIn)
		}
		if int64(len(rejected)) != c.RejectedSpans {
			t.Fatalf("%d spans rejected, counted %d", len(rejected), c.RejectedSpans)
		}
	})
}
