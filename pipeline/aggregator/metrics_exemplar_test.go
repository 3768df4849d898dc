package aggregator

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tracepipe/tracepipe/model"
)

// TestExemplarsThrottled: a span-metric series takes an exemplar from its
// first observation, then at most one per exemplarEvery; the counts keep
// every observation.
func TestExemplarsThrottled(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(nil, 10)
	reg.MustRegister(m.collectors()...)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m.now = func() time.Time { return now }
	trace := func(id uint64) *model.AssembledTrace {
		sp := &model.Span{TraceID: model.TraceID{Low: id}, SpanID: 1, Operation: "get", Duration: time.Millisecond,
			Process: model.Process{ServiceName: "api"}}
		return &model.AssembledTrace{Trace: model.Trace{TraceID: sp.TraceID, Spans: []*model.Span{sp}}}
	}
	exemplars := func() (ids map[string]bool, count uint64) {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		ids = map[string]bool{}
		for _, mf := range mfs {
			if mf.GetName() != "tracepipe_aggregator_span_duration_seconds" {
				continue
			}
			for _, mm := range mf.GetMetric() {
				count += mm.GetHistogram().GetSampleCount()
				for _, b := range mm.GetHistogram().GetBucket() {
					for _, l := range b.GetExemplar().GetLabel() {
						ids[l.GetValue()] = true
					}
				}
			}
		}
		return ids, count
	}
	m.observe(trace(1), false)
	now = now.Add(500 * time.Millisecond)
	m.observe(trace(2), false)
	ids, n := exemplars()
	if n != 2 || len(ids) != 1 || !ids[model.TraceID{Low: 1}.String()] {
		t.Fatalf("after two traces within a second: %d observations, exemplars %v (want trace 1's only)", n, ids)
	}
	now = now.Add(exemplarEvery)
	m.observe(trace(3), false)
	if ids, n = exemplars(); n != 3 || !ids[model.TraceID{Low: 3}.String()] {
		t.Fatalf("a second later: %d observations, exemplars %v (want trace 3's)", n, ids)
	}
}
