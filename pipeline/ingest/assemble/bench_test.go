package assemble

import (
	"runtime"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/tracegen"
	"github.com/tracepipe/tracepipe/wire"
	"github.com/tracepipe/tracepipe/wire/assembledpb"
)

// workload returns Jaeger protobuf messages (one span each) of a generated
// workload in delivery order.
func workload(b *testing.B, traces int) ([][]byte, int) {
	w := tracegen.Generate(tracegen.Config{Seed: 11, Traces: traces})
	var msgs [][]byte
	size := 0
	for _, s := range w.Order() {
		m, err := wire.EncodeJaegerProto(s)
		if err != nil {
			b.Fatal(err)
		}
		msgs = append(msgs, m)
		size += len(m)
	}
	return msgs, size
}

// BenchmarkIngestPath measures one ingester core's work per span without
// Kafka: check the Jaeger protobuf message, assemble, and for every trace
// emitted analyse it (dag.Analyze) and encode the output message.
func BenchmarkIngestPath(b *testing.B) {
	msgs, size := workload(b, 2000)
	clk := newClock()
	a := New(Config{IdleTimeout: 50 * time.Millisecond, MaxWait: time.Second, LateHorizon: 100 * time.Millisecond}, clk, nil)
	var outs []Output
	var buf []byte
	b.ReportAllocs()
	b.SetBytes(int64(size / len(msgs)))
	b.ResetTimer()
	cpu0 := testenv.SelfUsage().CPU()
	off := int64(0)
	for i := 0; i < b.N; i++ {
		m := msgs[i%len(msgs)]
		if i > 0 && i%len(msgs) == 0 {
			// Next round: same spans would be duplicates; jump past every
			// horizon so the traces are new again.
			clk.Advance(time.Hour)
			outs = a.Expire(outs[:0])
			for _, o := range outs {
				a.Acked(o.Token)
			}
			a.Expire(nil)
			a = New(Config{IdleTimeout: 50 * time.Millisecond, MaxWait: time.Second, LateHorizon: 100 * time.Millisecond}, clk, nil)
		}
		traceID, spanID, err := wire.ReadJaegerProtoIDs(m) // as the ingester reads a span
		if err != nil {
			b.Fatal(err)
		}
		a.AddJaegerProto(off, traceID, spanID, m, clk.Now())
		off++
		clk.Advance(20 * time.Microsecond) // 50,000 spans/s of event time
		if i%256 == 0 {
			outs = a.Expire(outs[:0])
			for _, o := range outs {
				buf = assembledpb.Encode(buf[:0], o.Trace)
				a.Acked(o.Token)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "spans/s")
	b.ReportMetric(float64(b.N)/(testenv.SelfUsage().CPU()-cpu0).Seconds(), "spans/cpu-s")
}

// BenchmarkBufferedMemory measures the heap held per buffered span against
// the span's Jaeger protobuf wire size.
func BenchmarkBufferedMemory(b *testing.B) {
	msgs, size := workload(b, 3000)
	for i := 0; i < b.N; i++ {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		a := New(Config{IdleTimeout: time.Hour, MaxWait: time.Hour}, newClock(), nil)
		for j, m := range msgs {
			traceID, spanID, err := wire.ReadJaegerProtoIDs(m)
			if err != nil {
				b.Fatal(err)
			}
			// A fresh copy, as the Kafka reader hands out per message.
			a.AddJaegerProto(int64(j), traceID, spanID, append([]byte(nil), m...), a.clock.Now())
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		_, _, n, _ := a.Stats()
		held := float64(after.HeapAlloc - before.HeapAlloc)
		b.ReportMetric(held/float64(n), "heap-bytes/span")
		b.ReportMetric(float64(size)/float64(len(msgs)), "wire-bytes/span")
		b.ReportMetric(held/float64(size), "heap/wire")
		runtime.KeepAlive(a)
	}
}
