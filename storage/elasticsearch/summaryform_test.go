package elasticsearch

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/dag"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/storage"
	"github.com/tracepipe/tracepipe/storage/dbmodel"
	"github.com/tracepipe/tracepipe/storage/storagetest"
)

// TestSummariesOfBothForms: summaries written before template version 5
// (nested per-operation entries, the analysis as JSON arrays) and compact
// ones (dbmodel.Trace.Compact) read the same: GetTrace, FindTraces by
// operation and TopBottlenecks give the same answers when one trace's
// summary is replaced by its full form, and TopBottlenecks sums both.
func TestSummariesOfBothForms(t *testing.T) {
	url := esURL(t)
	s := newTestStore(t, Config{URLs: []string{url}, IndexPrefix: testPrefix(t, url), Refresh: "wait_for"})
	defer s.Close()
	ctx := context.Background()
	day := model.TimestampOf(time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC))
	a := storagetest.Trace(storagetest.Spec{ID: model.TraceID{Low: 0xa1}, Start: day, Duration: 200 * time.Millisecond, ExtraSpans: 2})
	b := storagetest.Trace(storagetest.Spec{ID: model.TraceID{Low: 0xb2}, Start: day.Add(time.Second), Backend: "ledger", Error: true})
	if err := s.WriteTraces(ctx, []model.AssembledTrace{a, b}); err != nil {
		t.Fatal(err)
	}
	type answers struct {
		trace      model.StoredTrace
		byKey      []model.TraceSummary
		byName     []model.TraceSummary
		bottleneck []model.BottleneckRow
	}
	read := func() answers {
		t.Helper()
		var r answers
		var err error
		if r.trace, err = s.GetTrace(ctx, b.Trace.TraceID); err != nil {
			t.Fatal(err)
		}
		if r.byKey, err = s.FindTraces(ctx, model.TraceQuery{Service: "ledger", Operation: "charge", Limit: 10}); err != nil {
			t.Fatal(err)
		}
		if r.byName, err = s.FindTraces(ctx, model.TraceQuery{Operation: "charge", Limit: 10}); err != nil {
			t.Fatal(err)
		}
		if r.bottleneck, err = s.TopBottlenecks(ctx, model.BottleneckQuery{Limit: 20}); err != nil {
			t.Fatal(err)
		}
		return r
	}
	// An operation name longer than the span index's 256 characters is still
	// found (the summaries index names up to 8,191).
	long := storagetest.Trace(storagetest.Spec{ID: model.TraceID{Low: 0xc3}, Start: day.Add(2 * time.Second), Backend: "sql"})
	longName := strings.Repeat("SELECT x ", 40)
	long.Trace.Spans[1].Operation = longName
	long.Analysis = dag.Analyze(&long.Trace, dag.Options{})
	if err := s.WriteTraces(ctx, []model.AssembledTrace{long}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []model.TraceQuery{{Service: "sql", Operation: longName, Limit: 10}, {Operation: longName, Limit: 10}} {
		got, err := s.FindTraces(ctx, q)
		if err != nil || len(got) != 1 || got[0].TraceID != long.Trace.TraceID {
			t.Errorf("FindTraces by a %d-character operation (service %q): %+v, %v", len(longName), q.Service, got, err)
		}
	}
	compact := read()
	if len(compact.byKey) != 1 || len(compact.byName) != 2 || len(compact.bottleneck) == 0 ||
		len(compact.trace.Analysis.Spans) != len(b.Trace.Spans) || len(compact.trace.Analysis.CriticalPath) == 0 ||
		len(compact.trace.Summary.Operations) == 0 {
		t.Fatalf("compact summaries read back as %+v", compact)
	}
	if !reflect.DeepEqual(compact.trace.Analysis.Spans, b.Analysis.Spans) || !reflect.DeepEqual(compact.trace.Analysis.CriticalPath, b.Analysis.CriticalPath) {
		t.Errorf("analysis read back\n%+v\nwant\n%+v", compact.trace.Analysis, b.Analysis)
	}

	// b's summary in the form earlier versions wrote, over the compact one.
	sum := storage.Summarize(&b, s.cfg.PromotedTags)
	full := dbmodel.FromDomainTrace(&sum, &b.Analysis)
	if _, err := s.c.Index().Index(s.x.traces(sum.Start)).Id(full.TraceID).BodyJson(&full).
		VersionType("external_gte").Version(int64(b.Version)).Refresh("true").Do(ctx); err != nil {
		t.Fatal(err)
	}
	if got := read(); !reflect.DeepEqual(got, compact) {
		t.Errorf("with one summary of the earlier form:\n%+v\nwant as with compact ones:\n%+v", got, compact)
	}
}
