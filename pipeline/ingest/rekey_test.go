package ingest

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/tracegen"
	"github.com/tracepipe/tracepipe/wire"
	"github.com/tracepipe/tracepipe/wire/assembledpb"
)

// TestRekeyThenAssemble: OTLP batches mixing spans of many traces, unkeyed,
// land in arbitrary partitions; a re-key stage re-publishes them per span
// keyed by trace ID, and an assembling stage finds every trace complete.
func TestRekeyThenAssemble(t *testing.T) {
	const partitions = 4
	brokers := newCluster(t, partitions, "otlp", "spans", "traces", "dlq")
	w := tracegen.Generate(tracegen.Config{Seed: 13, Traces: 200})
	truth := w.Truth()
	enc, err := tracegen.EncoderFor(wire.OTLPProto)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := tracegen.Messages(w.Order(), wire.OTLPProto, enc, 25, true)
	if err != nil {
		t.Fatal(err)
	}
	// Unkeyed: spread round-robin by giving each message a distinct key.
	for i := range msgs {
		msgs[i].Key = []byte{byte(i), byte(i >> 8)}
	}
	produce(t, brokers, "otlp", msgs)

	run := func(cfg Config) (*Ingester, func()) {
		in, err := New(cfg, Options{Registry: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- in.Run(ctx) }()
		return in, func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}
	rcfg := testConfig(brokers)
	rcfg.SpansTopic, rcfg.RekeyTo, rcfg.Group, rcfg.Encoding = "otlp", "spans", "rekeyer", wire.Auto
	rekeyer, stopR := run(rcfg)
	acfg := testConfig(brokers)
	acfg.LateHorizon = 5 * time.Second // the re-key stage's partitions progress unevenly: late versions happen
	assembler, stopA := run(acfg)

	best := map[string]int{}
	consume(t, brokers, "traces", partitions, 60*time.Second, func(ms []kafka.Message) bool {
		tr, err := assembledpb.Decode(ms[len(ms)-1].Value)
		if err != nil {
			t.Errorf("decode: %v", err)
			return false
		}
		id := tr.Trace.TraceID.String()
		best[id] = max(best[id], int(tr.Version))
		for id, n := range truth.TraceSpans {
			if best[id] < n {
				return false
			}
		}
		return true
	})
	for id, n := range truth.TraceSpans {
		if best[id] != n {
			t.Errorf("trace %s: %d of %d spans", id, best[id], n)
		}
	}
	if v := value(rekeyer.metrics.Rekeyed); int(v) != truth.Spans {
		t.Errorf("rekeyed %v messages, want %d", v, truth.Spans)
	}
	if v := value(assembler.metrics.DroppedSpans.WithLabelValues("too_late")); v != 0 {
		t.Errorf("%v spans dropped as too late", v)
	}
	stopA()
	stopR()
}
