package storagetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/storage"
)

// WideTrace is a trace over every per-trace limit of a summary: beside the
// three spans of Trace(Spec{ID: id, Start: start}) it has ops spans of
// service "wide", each its own operation ("op-0000", …), and tagValues
// distinct values of the promoted tag "shard", at most 1000 per span. Its
// analysis is exact.
func WideTrace(id model.TraceID, start model.Timestamp, ops, tagValues int) model.AssembledTrace {
	at := Trace(Spec{ID: id, Start: start})
	spans, stats := at.Trace.Spans, at.Analysis.Spans
	const d = 10 * time.Microsecond
	for i := 0; i < ops; i++ {
		sp := &model.Span{
			TraceID: id, SpanID: model.SpanID(1000 + i), Operation: fmt.Sprintf("op-%04d", i),
			Start: spans[1].Start, Duration: d,
			References: []model.Reference{{Type: model.FollowsFrom, TraceID: id, SpanID: 2}},
			Process:    model.Process{ServiceName: "wide"},
		}
		for j := 0; j < 1000 && i*1000+j < tagValues; j++ {
			sp.Tags = append(sp.Tags, model.String("shard", fmt.Sprintf("%05d", i*1000+j)))
		}
		spans = append(spans, sp)
		stats = append(stats, model.SpanStats{SpanID: sp.SpanID, Self: d})
	}
	at.Trace.Spans, at.Analysis.Spans = spans, stats
	at.Analysis.SpanCount = len(spans)
	at.Analysis.Operations = Operations(spans, stats)
	return at
}

// testWideTrace: a trace with more distinct operations and promoted tag
// values than one SQLite statement can carry, and more than a summary keeps,
// is written whole, read back whole, and its summary is capped with exact
// totals.
func testWideTrace(t *testing.T, s storage.Store) {
	const ops, values = 4000, 11000
	at := WideTrace(tid(1), Day0.Add(time.Hour), ops, values)
	write(t, s, at)
	got, err := s.GetTrace(ctx(t), tid(1))
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if n := len(got.Trace.Spans); n != ops+3 {
		t.Errorf("spans read back = %d, want %d", n, ops+3)
	}
	if n := len(got.Summary.PromotedTags["shard"]); n != storage.MaxPromotedValues {
		t.Errorf("promoted shard values = %d, want the cap %d", n, storage.MaxPromotedValues)
	}
	sumOps := got.Summary.Operations
	if len(sumOps) != storage.MaxSummaryOperations {
		t.Fatalf("summary operations = %d, want the cap %d", len(sumOps), storage.MaxSummaryOperations)
	}
	last := sumOps[len(sumOps)-1]
	if last.Service != storage.OverflowOperation || last.Operation != storage.OverflowOperation {
		t.Errorf("last operation = %+v, want the overflow entry", last.OperationKey)
	}
	count, self := 0, time.Duration(0)
	for _, o := range sumOps {
		count, self = count+o.Count, self+o.Self
	}
	var wantSelf time.Duration
	for _, st := range at.Analysis.Spans {
		wantSelf += st.Self
	}
	if count != ops+3 || self != wantSelf {
		t.Errorf("summary totals: %d spans, self %v; want %d, %v", count, self, ops+3, wantSelf)
	}
	for _, q := range []model.TraceQuery{
		{Tags: map[string]string{"shard": "00000"}},
		{Service: "wide", Operation: "op-0000"},
		{Service: "frontend"},
	} {
		if res := find(t, s, q); len(res) != 1 || res[0].TraceID != tid(1) {
			t.Errorf("find %+v = %v, want the wide trace", q, ids(res))
		}
	}
}

// testNegativeDuration: a span with a negative duration (which the analysis
// counts as 0 with a bad-duration warning) is stored and read back with
// duration 0, and the trace stays readable.
func testNegativeDuration(t *testing.T, s storage.Store) {
	at := Trace(Spec{ID: tid(1), Start: Day0})
	at.Trace.Spans[2].Duration = -5 * time.Second
	at.Analysis.Warnings = []model.Warning{{Kind: model.WarnBadDuration, SpanID: 3, Message: "duration -5s is negative; counted as 0"}}
	write(t, s, at)
	got, err := s.GetTrace(ctx(t), tid(1))
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	for _, sp := range got.Trace.Spans {
		if sp.SpanID == 3 && sp.Duration != 0 {
			t.Errorf("span 3 duration = %v, want 0", sp.Duration)
		}
	}
	if len(got.Analysis.Warnings) != 1 || got.Analysis.Warnings[0].Kind != model.WarnBadDuration {
		t.Errorf("warnings = %+v", got.Analysis.Warnings)
	}
}
