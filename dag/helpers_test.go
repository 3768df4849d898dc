package dag

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

var testTraceID = model.TraceID{High: 0xabc, Low: 0x123}

// base is an arbitrary, realistic epoch for test traces.
const base = model.Timestamp(1_700_000_000_000_000_000)

// ms converts test milliseconds relative to base into a Timestamp.
func ms(v int64) model.Timestamp { return base + model.Timestamp(v*int64(time.Millisecond)) }

// sp describes a test span. Times are milliseconds relative to base.
type sp struct {
	id, parent uint64 // parent 0: no reference
	ref        model.RefType
	start, dur int64
	kind       model.SpanKind
	host       string // "" no host tag; "ip:x" gives an ip tag
	svc, op    string
	err        bool
	trace      *model.TraceID // nil: testTraceID
	rawDur     *time.Duration // overrides dur
}

func (s sp) span() *model.Span {
	out := &model.Span{
		TraceID:   testTraceID,
		SpanID:    model.SpanID(s.id),
		Operation: s.op,
		Start:     ms(s.start),
		Duration:  time.Duration(s.dur) * time.Millisecond,
		Kind:      s.kind,
		Process:   model.Process{ServiceName: s.svc},
	}
	if out.Operation == "" {
		out.Operation = "op"
	}
	if out.Process.ServiceName == "" {
		out.Process.ServiceName = "svc"
	}
	if s.trace != nil {
		out.TraceID = *s.trace
	}
	if s.rawDur != nil {
		out.Duration = *s.rawDur
	}
	if s.parent != 0 {
		out.References = []model.Reference{{Type: s.ref, TraceID: out.TraceID, SpanID: model.SpanID(s.parent)}}
	}
	if s.err {
		out.Status = model.StatusError
	}
	switch {
	case len(s.host) > 3 && s.host[:3] == "ip:":
		out.Process.Tags = model.KeyValues{model.String("ip", s.host[3:])}
	case s.host != "":
		out.Process.Tags = model.KeyValues{model.String("hostname", s.host)}
	}
	return out
}

func buildTrace(spans ...sp) *model.Trace {
	t := &model.Trace{TraceID: testTraceID}
	for _, s := range spans {
		t.Spans = append(t.Spans, s.span())
	}
	return t
}

// cloneTrace deep-copies the parts of a trace Analyze may modify or read.
func cloneTrace(t *model.Trace) *model.Trace {
	c := &model.Trace{TraceID: t.TraceID, Spans: make([]*model.Span, len(t.Spans))}
	for i, s := range t.Spans {
		if s == nil {
			continue
		}
		x := *s
		x.References = slices.Clone(s.References)
		x.Tags = slices.Clone(s.Tags)
		x.Logs = slices.Clone(s.Logs)
		x.Process.Tags = slices.Clone(s.Process.Tags)
		x.Warnings = slices.Clone(s.Warnings)
		c.Spans[i] = &x
	}
	return c
}

var knownKinds = map[model.WarningKind]bool{
	model.WarnMultipleRoots: true, model.WarnNoRoot: true, model.WarnOrphan: true,
	model.WarnDuplicateSpan: true, model.WarnConflictingSpan: true, model.WarnCycle: true,
	model.WarnForeignTrace: true, model.WarnBadDuration: true, model.WarnBadTimestamp: true,
	model.WarnClockSkew: true, model.WarnSkewTooLarge: true, model.WarnEmpty: true,
}

// checkInvariants verifies the properties every analysis must have, whatever
// the input. tr is the trace after Analyze.
func checkInvariants(t testing.TB, tr *model.Trace, an model.Analysis, opts Options) {
	t.Helper()
	opts = opts.withDefaults()
	if an.SpanCount != len(tr.Spans) || len(an.Spans) != len(tr.Spans) {
		t.Fatalf("SpanCount %d, len(Spans) %d, len(trace.Spans) %d", an.SpanCount, len(an.Spans), len(tr.Spans))
	}
	if an.TraceID != tr.TraceID {
		t.Fatalf("TraceID %v, trace %v", an.TraceID, tr.TraceID)
	}
	seen := make(map[model.SpanID]int, len(tr.Spans))
	errs := 0
	for i, s := range tr.Spans {
		if s == nil {
			t.Fatalf("span %d is nil after Analyze", i)
		}
		if s.TraceID != tr.TraceID {
			t.Fatalf("span %s of foreign trace %v kept", s.SpanID, s.TraceID)
		}
		if _, dup := seen[s.SpanID]; dup {
			t.Fatalf("duplicate span ID %s kept", s.SpanID)
		}
		seen[s.SpanID] = i
		if an.Spans[i].SpanID != s.SpanID {
			t.Fatalf("Spans[%d].SpanID %s, trace span %s", i, an.Spans[i].SpanID, s.SpanID)
		}
		if s.IsError() {
			errs++
		}
		d := s.Duration
		if d < 0 || d > opts.MaxSpanDuration {
			d = 0
		}
		if res := opts.TimeResolution; res > 1 && int64(s.Start) > math.MinInt64/2 && int64(s.Start) < math.MaxInt64/2 {
			// (Absurd starts, which shifts may saturate at the ends of
			// the int64 range, are not.)
			// One time unit: the spans as they will be stored are on the
			// analysis's grid, so stored and analysed figures agree.
			if int64(s.Start)%int64(res) != 0 || int64(s.Duration)%int64(res) != 0 {
				t.Fatalf("span %s: start %d or duration %d not a multiple of %v", s.SpanID, s.Start, s.Duration, res)
			}
			for _, l := range s.Logs {
				if int64(l.Timestamp)%int64(res) != 0 {
					t.Fatalf("span %s: log at %d not a multiple of %v", s.SpanID, l.Timestamp, res)
				}
			}
		}
		st := an.Spans[i]
		if st.Self < 0 || st.Self > d {
			t.Fatalf("span %s: self %v outside [0, %v]", s.SpanID, st.Self, d)
		}
		if st.CriticalPath < 0 || st.CriticalPath > d {
			t.Fatalf("span %s: critical path %v outside [0, %v]", s.SpanID, st.CriticalPath, d)
		}
	}
	if errs != an.ErrorCount {
		t.Fatalf("ErrorCount %d, want %d", an.ErrorCount, errs)
	}
	if an.RootSpanID != 0 {
		if _, ok := seen[an.RootSpanID]; !ok {
			t.Fatalf("root %s not in trace", an.RootSpanID)
		}
	}

	// Critical path: ordered, non-empty, merged, within the root's interval.
	perSpan := make(map[model.SpanID]time.Duration)
	var sum time.Duration
	end := model.Timestamp(addSat(int64(an.Start), int64(an.Duration)))
	for k, sec := range an.CriticalPath {
		if sec.Start >= sec.End {
			t.Fatalf("section %d %+v is empty or reversed", k, sec)
		}
		if sec.Start < an.Start || sec.End > end {
			t.Fatalf("section %d %+v outside [%d, %d]", k, sec, an.Start, end)
		}
		if _, ok := seen[sec.SpanID]; !ok {
			t.Fatalf("section %d names span %s not in trace", k, sec.SpanID)
		}
		if k > 0 {
			prev := an.CriticalPath[k-1]
			if prev.End > sec.Start {
				t.Fatalf("sections %d and %d overlap or are out of order: %+v %+v", k-1, k, prev, sec)
			}
			if an.RootSpanID != 0 && prev.End != sec.Start {
				t.Fatalf("sections %d and %d not contiguous: %+v %+v", k-1, k, prev, sec)
			}
			if prev.SpanID == sec.SpanID && prev.End == sec.Start {
				t.Fatalf("sections %d and %d of the same span not merged", k-1, k)
			}
		}
		d := sec.End.Sub(sec.Start)
		sum += d
		perSpan[sec.SpanID] += d
	}
	if an.RootSpanID != 0 {
		if sum != an.Duration {
			t.Fatalf("critical path sums to %v, root duration %v", sum, an.Duration)
		}
		if len(an.CriticalPath) > 0 && (an.CriticalPath[0].Start != an.Start || an.CriticalPath[len(an.CriticalPath)-1].End != end) {
			t.Fatalf("critical path %v does not span the root [%d, %d]", an.CriticalPath, an.Start, end)
		}
	} else if sum > an.Duration {
		t.Fatalf("critical path sums to %v, more than the envelope %v", sum, an.Duration)
	}
	var spanSum time.Duration
	for i, st := range an.Spans {
		spanSum += st.CriticalPath
		if st.CriticalPath != perSpan[tr.Spans[i].SpanID] {
			t.Fatalf("span %s: critical path %v, sections give %v", st.SpanID, st.CriticalPath, perSpan[st.SpanID])
		}
	}
	if spanSum != sum {
		t.Fatalf("per-span critical path sums to %v, sections to %v", spanSum, sum)
	}

	// Operations: sorted, and adding up to the spans.
	var count, opErrs int
	var opCP, opSelf, spanSelf time.Duration
	for k, o := range an.Operations {
		if k > 0 && compareOps(an.Operations[k-1], o) >= 0 {
			t.Fatalf("operations %d and %d out of order: %+v %+v", k-1, k, an.Operations[k-1], o)
		}
		if o.Self > o.Duration || o.CriticalPath > o.Duration {
			t.Fatalf("operation %+v: self or critical path above duration", o)
		}
		count += o.Count
		opErrs += o.Errors
		opCP += o.CriticalPath
		opSelf += o.Self
	}
	for _, st := range an.Spans {
		spanSelf += st.Self
	}
	if count != an.SpanCount || opErrs != an.ErrorCount || opCP != sum || opSelf != spanSelf {
		t.Fatalf("operations add up to count %d errors %d cp %v self %v; want %d %d %v %v",
			count, opErrs, opCP, opSelf, an.SpanCount, an.ErrorCount, sum, spanSelf)
	}
	for _, w := range an.Warnings {
		if !knownKinds[w.Kind] {
			t.Fatalf("unknown warning kind %q", w.Kind)
		}
	}
}
