package aggregator

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/pipeline/aggregator/rollup/rolluptest"
)

// observeReference is observe as it was before it resolved series once per
// trace (one lock, one clock reading) and kept the edge counters: what
// TestObserveSameMetrics compares it with.
func (m *Metrics) observeReference(at *model.AssembledTrace, edges bool) {
	opLabels := func(svc, op, kind string) (*opSeries, bool) {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.opLabels(svc, op, kind, m.now())
	}
	edgeLabels := func(caller, callee string) (string, string) {
		k := [2]string{caller, callee}
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.edges[k] != nil || len(m.edges) < m.limit {
			m.edges[k] = &edgeSeries{}
			return caller, callee
		}
		m.seriesOverflow.Inc()
		return overflow, overflow
	}
	var ex prometheus.Labels
	var byID map[model.SpanID]*model.Span
	if edges {
		byID = make(map[model.SpanID]*model.Span, len(at.Trace.Spans))
		for _, sp := range at.Trace.Spans {
			byID[sp.SpanID] = sp
		}
	}
	for i, sp := range at.Trace.Spans {
		kind := sp.Kind.String()
		if kind == "" {
			kind = "unspecified"
		}
		se, withExemplar := opLabels(sp.Process.ServiceName, sp.Operation, kind)
		if withExemplar {
			if ex == nil {
				ex = prometheus.Labels{"trace_id": at.Trace.TraceID.String()}
			}
			se.duration.(prometheus.ExemplarObserver).ObserveWithExemplar(sp.Duration.Seconds(), ex)
			if i < len(at.Analysis.Spans) {
				se.critical.(prometheus.ExemplarObserver).ObserveWithExemplar(at.Analysis.Spans[i].CriticalPath.Seconds(), ex)
			}
		} else {
			se.duration.Observe(sp.Duration.Seconds())
			if i < len(at.Analysis.Spans) {
				se.critical.Observe(at.Analysis.Spans[i].CriticalPath.Seconds())
			}
		}
		se.calls.Inc()
		if sp.IsError() {
			se.errors.Inc()
		}
		if !edges {
			continue
		}
		if pid, _, ok := sp.ParentSpanID(); ok {
			if p := byID[pid]; p != nil && p.Process.ServiceName != sp.Process.ServiceName {
				caller, callee := edgeLabels(p.Process.ServiceName, sp.Process.ServiceName)
				m.edgeCalls.WithLabelValues(caller, callee).Inc()
				if sp.IsError() {
					m.edgeErr.WithLabelValues(caller, callee).Inc()
				}
			}
		}
	}
}

// TestObserveSameMetrics: observe exposes exactly what observeReference
// does (counts, buckets, native buckets, exemplars, overflow series) on a
// generated workload, with a series limit that overflows.
func TestObserveSameMetrics(t *testing.T) {
	msgs := rolluptest.Generate(5, rolluptest.DefaultOptions(3000, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)))
	for i, m := range msgs {
		if i%5 == 0 {
			m.Trace.Trace.Spans[len(m.Trace.Trace.Spans)-1].Status = model.StatusError
		}
	}
	for _, limit := range []int{3, 2000} {
		var got [2][]*dto.MetricFamily
		for k, observe := range []func(*Metrics, *model.AssembledTrace, bool){(*Metrics).observe, (*Metrics).observeReference} {
			reg := prometheus.NewRegistry()
			m := newMetrics(nil, limit)
			reg.MustRegister(m.collectors()...)
			now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			m.now = func() time.Time { return now }
			for i, msg := range msgs {
				now = now.Add(time.Duration(i%7) * 100 * time.Millisecond)
				observe(m, msg.Trace, i%3 != 0)
			}
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			// Exemplar and creation times come from the wall clock.
			for _, mf := range mfs {
				for _, mm := range mf.GetMetric() {
					if h := mm.GetHistogram(); h != nil {
						h.CreatedTimestamp = nil
						for _, b := range h.GetBucket() {
							if b.GetExemplar() != nil {
								b.GetExemplar().Timestamp = nil
							}
						}
						for _, e := range h.GetExemplars() {
							e.Timestamp = nil
						}
					}
					if c := mm.GetCounter(); c != nil {
						c.CreatedTimestamp = nil
					}
				}
			}
			got[k] = mfs
		}
		if len(got[0]) != len(got[1]) {
			t.Fatalf("limit %d: %d metric families, reference %d", limit, len(got[0]), len(got[1]))
		}
		for i := range got[0] {
			if !proto.Equal(got[0][i], got[1][i]) {
				t.Errorf("limit %d: observe differs from the reference:\n%s\nreference:\n%s", limit,
					prototext.Format(got[0][i]), prototext.Format(got[1][i]))
			}
		}
	}
}

// BenchmarkObserve: the span metrics of one trace (edges included), on the
// end-to-end benchmark's workload.
func BenchmarkObserve(b *testing.B) {
	msgs := rolluptest.Generate(1, rolluptest.DefaultOptions(4096, time.Now()))
	m := newMetrics(prometheus.NewRegistry(), 2000)
	spans := 0
	for _, msg := range msgs {
		spans += len(msg.Trace.Trace.Spans)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m.observe(msgs[i%len(msgs)].Trace, true)
	}
	b.ReportMetric(float64(b.N)*float64(spans)/float64(len(msgs))/b.Elapsed().Seconds(), "spans/s")
}
