package ingest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/tracegen"
	"github.com/tracepipe/tracepipe/wire"
	"github.com/tracepipe/tracepipe/wire/assembledpb"
)

// TestRebalance streams a workload while a second ingester joins and the
// first one leaves (graceful stop = revocation for its partitions): every
// trace comes out complete, re-emissions are identical, and in the end
// nothing is held and every partition is committed to its end.
func TestRebalance(t *testing.T) {
	for _, flush := range []bool{false, true} {
		t.Run(fmt.Sprintf("flush=%v", flush), func(t *testing.T) {
			const partitions = 4
			brokers := newCluster(t, partitions, "spans", "traces", "dlq")
			w := tracegen.Generate(tracegen.Config{Seed: 8, Traces: 600, Interleave: 20})
			truth := w.Truth()
			enc, _ := tracegen.EncoderFor(wire.JaegerProto)
			msgs, err := tracegen.Messages(w.Order(), wire.JaegerProto, enc, 1, false)
			if err != nil {
				t.Fatal(err)
			}
			cfg := testConfig(brokers)
			cfg.LateHorizon = time.Second
			cfg.FlushOnShutdown = flush
			start := func() (*Ingester, context.CancelFunc, chan error) {
				in, err := New(cfg, Options{Registry: prometheus.NewRegistry()})
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- in.Run(ctx) }()
				return in, cancel, done
			}
			a, stopA, doneA := start()
			third := len(msgs) / 3
			produce(t, brokers, "spans", msgs[:third])
			b, stopB, doneB := start()
			produce(t, brokers, "spans", msgs[third:2*third])
			stopA()
			if err := <-doneA; err != nil {
				t.Fatal(err)
			}
			produce(t, brokers, "spans", msgs[2*third:])

			var mu sync.Mutex
			seen := map[string][]byte{}
			best := map[string]int{}
			var problems []string
			consume(t, brokers, "traces", partitions, 60*time.Second, func(ms []kafka.Message) bool {
				tr, err := assembledpb.Decode(ms[len(ms)-1].Value)
				if err != nil {
					problems = append(problems, err.Error())
					return false
				}
				mu.Lock()
				defer mu.Unlock()
				id := tr.Trace.TraceID.String()
				k := fmt.Sprintf("%s/%d", id, tr.Version)
				ident := identity(tr)
				if prev, ok := seen[k]; ok && string(prev) != string(ident) {
					problems = append(problems, k+" re-emitted with other content")
				}
				seen[k] = ident
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
					t.Errorf("trace %s: best version %d of %d spans", id, best[id], n)
				}
			}
			for _, p := range problems {
				t.Error(p)
			}
			waitFor(t, 20*time.Second, func() bool { tr, _, _ := b.Budget().InFlight(); return tr == 0 })
			t.Logf("b: too_late=%v late=%v dup=%v", value(b.metrics.DroppedSpans.WithLabelValues("too_late")), value(b.metrics.LateSpans), value(b.metrics.DuplicateSpans))
			_ = a
			stopB()
			if err := <-doneB; err != nil {
				t.Fatal(err)
			}
		})
	}
}
