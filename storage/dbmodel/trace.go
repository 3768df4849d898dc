package dbmodel

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// Trace is the stored summary of one trace version (tracepipe-traces-*
// indices; the embedded store's traces table) with the analysis computed at
// assembly, so reading a trace never recomputes it.
//
// Searchable fields: traceID, rootService, rootOperation, services,
// operations (nested: service, operation and totals; in the compact form
// operationKeys and operationNames, see Compact), startNanos,
// startTimeMillis (date), durationNanos, tag (one keyword field per promoted
// tag key, dots replaced by "@", values of all spans), bottleneck. Analysis
// is stored, not indexed.
type Trace struct {
	TraceID         string      `json:"traceID"`
	Version         uint32      `json:"version"`
	RootService     string      `json:"rootService"`
	RootOperation   string      `json:"rootOperation"`
	StartNanos      int64       `json:"startNanos"`
	StartTimeMillis int64       `json:"startTimeMillis"`
	DurationNanos   int64       `json:"durationNanos"`
	SpanCount       int         `json:"spanCount"`
	ErrorCount      int         `json:"errorCount"`
	WarningCount    int         `json:"warningCount"`
	Services        []string    `json:"services"`
	Operations      []Operation `json:"operations,omitempty"`
	// The compact form of Operations (see Compact): OperationStats is read
	// back; OperationKeys and OperationNames are only searched.
	OperationStats []byte   `json:"operationStats,omitempty"`
	OperationKeys  []string `json:"operationKeys,omitempty"`
	OperationNames []string `json:"operationNames,omitempty"`
	// Tag maps promoted tag keys (dots replaced by "@") to their values.
	Tag        map[string][]string `json:"tag,omitempty"`
	Bottleneck *Bottleneck         `json:"bottleneck,omitempty"`
	Completion string              `json:"completion"`
	Truncated  bool                `json:"truncated,omitempty"`
	Analysis   Analysis            `json:"analysis"`
}

// Operation is one operation's totals in one trace. Key is OperationKey(service,
// operation), one keyword to group by.
type Operation struct {
	Key               string `json:"key"`
	Service           string `json:"service"`
	Operation         string `json:"operation"`
	Count             int    `json:"count"`
	Errors            int    `json:"errors"`
	DurationNanos     int64  `json:"durationNanos"`
	SelfNanos         int64  `json:"selfNanos"`
	CriticalPathNanos int64  `json:"criticalPathNanos"`
}

// Bottleneck is the operation with the largest critical-path time.
type Bottleneck struct {
	Service           string `json:"service"`
	Operation         string `json:"operation"`
	CriticalPathNanos int64  `json:"criticalPathNanos"`
}

// Analysis is the stored part of model.Analysis that the summary does not
// already hold.
type Analysis struct {
	RootSpanID   string            `json:"rootSpanID,omitempty"`
	CriticalPath []CriticalSection `json:"criticalPath,omitempty"`
	Spans        []SpanStats       `json:"spans,omitempty"`
	Warnings     []Warning         `json:"warnings,omitempty"`
	// Packed is CriticalPath and Spans in the compact form (see Compact).
	Packed []byte `json:"packed,omitempty"`
}

// CriticalSection is one piece of the critical path.
type CriticalSection struct {
	SpanID     string `json:"spanID"`
	StartNanos int64  `json:"startNanos"`
	EndNanos   int64  `json:"endNanos"`
}

// SpanStats is one span's self and critical-path time.
type SpanStats struct {
	SpanID            string `json:"spanID"`
	SelfNanos         int64  `json:"selfNanos"`
	CriticalPathNanos int64  `json:"criticalPathNanos"`
}

// Warning is one analysis warning.
type Warning struct {
	Kind    string `json:"kind"`
	SpanID  string `json:"spanID,omitempty"`
	Message string `json:"message"`
}

// OperationKey joins service and operation with the unit separator U+001F,
// which names do not contain.
func OperationKey(service, operation string) string { return service + "\x1f" + operation }

// TagField is the "tag" object key of a promoted tag key.
func TagField(key string) string { return strings.ReplaceAll(key, ".", "@") }

// FromDomainTrace converts a summary and its analysis.
func FromDomainTrace(s *model.TraceSummary, a *model.Analysis) Trace {
	d := Trace{
		TraceID:         s.TraceID.String(),
		Version:         s.Version,
		RootService:     s.RootService,
		RootOperation:   s.RootOperation,
		StartNanos:      int64(s.Start),
		StartTimeMillis: floorDiv(int64(s.Start), int64(time.Millisecond)),
		DurationNanos:   int64(s.Duration),
		SpanCount:       s.SpanCount,
		ErrorCount:      s.ErrorCount,
		WarningCount:    s.WarningCount,
		Services:        nonNil(s.Services),
		Operations:      make([]Operation, len(s.Operations)),
		Completion:      s.Completion.String(),
		Truncated:       s.Truncated,
		Analysis: Analysis{
			CriticalPath: make([]CriticalSection, len(a.CriticalPath)),
			Spans:        make([]SpanStats, len(a.Spans)),
		},
	}
	for i, o := range s.Operations {
		d.Operations[i] = Operation{
			Key:     OperationKey(o.Service, o.Operation),
			Service: o.Service, Operation: o.Operation, Count: o.Count, Errors: o.Errors,
			DurationNanos: int64(o.Duration), SelfNanos: int64(o.Self), CriticalPathNanos: int64(o.CriticalPath),
		}
	}
	if len(s.PromotedTags) > 0 {
		d.Tag = make(map[string][]string, len(s.PromotedTags))
		for k, v := range s.PromotedTags {
			d.Tag[TagField(k)] = v
		}
	}
	if s.Bottleneck != (model.OperationKey{}) {
		d.Bottleneck = &Bottleneck{Service: s.Bottleneck.Service, Operation: s.Bottleneck.Operation, CriticalPathNanos: int64(s.BottleneckCriticalPath)}
	}
	if a.RootSpanID != 0 {
		d.Analysis.RootSpanID = a.RootSpanID.String()
	}
	for i, c := range a.CriticalPath {
		d.Analysis.CriticalPath[i] = CriticalSection{SpanID: c.SpanID.String(), StartNanos: int64(c.Start), EndNanos: int64(c.End)}
	}
	for i, st := range a.Spans {
		d.Analysis.Spans[i] = SpanStats{SpanID: st.SpanID.String(), SelfNanos: int64(st.Self), CriticalPathNanos: int64(st.CriticalPath)}
	}
	for _, w := range a.Warnings {
		sw := Warning{Kind: string(w.Kind), Message: w.Message}
		if w.SpanID != 0 {
			sw.SpanID = w.SpanID.String()
		}
		d.Analysis.Warnings = append(d.Analysis.Warnings, sw)
	}
	return d
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// ToDomainSummary converts the stored summary back (promoted-tag keys get
// their dots back, given the promoted keys; keys not among them are returned
// as stored).
func (d *Trace) ToDomainSummary(promoted []string) (model.TraceSummary, error) {
	id, err := model.ParseTraceID(d.TraceID)
	if err != nil {
		return model.TraceSummary{}, fmt.Errorf("trace summary traceID: %w", err)
	}
	s := model.TraceSummary{
		TraceID:       id,
		Version:       d.Version,
		RootService:   d.RootService,
		RootOperation: d.RootOperation,
		Start:         model.Timestamp(d.StartNanos),
		Duration:      time.Duration(d.DurationNanos),
		SpanCount:     d.SpanCount,
		ErrorCount:    d.ErrorCount,
		WarningCount:  d.WarningCount,
		Services:      d.Services,
		Completion:    parseCompletion(d.Completion),
		Truncated:     d.Truncated,
	}
	if len(d.Operations) > 0 {
		s.Operations = make([]model.OperationSummary, len(d.Operations))
		for i, o := range d.Operations {
			s.Operations[i] = model.OperationSummary{
				OperationKey: model.OperationKey{Service: o.Service, Operation: o.Operation},
				Count:        o.Count, Errors: o.Errors,
				Duration: time.Duration(o.DurationNanos), Self: time.Duration(o.SelfNanos), CriticalPath: time.Duration(o.CriticalPathNanos),
			}
		}
	}
	if len(d.Tag) > 0 {
		byField := make(map[string]string, len(promoted))
		for _, p := range promoted {
			byField[TagField(p)] = p
		}
		s.PromotedTags = make(map[string][]string, len(d.Tag))
		for f, v := range d.Tag {
			k, ok := byField[f]
			if !ok {
				k = f
			}
			s.PromotedTags[k] = v
		}
	}
	if d.Bottleneck != nil {
		s.Bottleneck = model.OperationKey{Service: d.Bottleneck.Service, Operation: d.Bottleneck.Operation}
		s.BottleneckCriticalPath = time.Duration(d.Bottleneck.CriticalPathNanos)
	}
	return s, nil
}

// ToDomainAnalysis rebuilds the analysis from the stored summary.
func (d *Trace) ToDomainAnalysis() (model.Analysis, error) {
	s, err := d.ToDomainSummary(nil)
	if err != nil {
		return model.Analysis{}, err
	}
	a := model.Analysis{
		TraceID:    s.TraceID,
		Start:      s.Start,
		Duration:   s.Duration,
		SpanCount:  s.SpanCount,
		ErrorCount: s.ErrorCount,
		Operations: s.Operations,
	}
	if d.Analysis.RootSpanID != "" {
		if a.RootSpanID, err = model.ParseSpanID(d.Analysis.RootSpanID); err != nil {
			return a, fmt.Errorf("analysis rootSpanID: %w", err)
		}
	}
	if len(d.Analysis.CriticalPath) > 0 {
		a.CriticalPath = make([]model.CriticalSection, len(d.Analysis.CriticalPath))
		for i, c := range d.Analysis.CriticalPath {
			id, err := model.ParseSpanID(c.SpanID)
			if err != nil {
				return a, fmt.Errorf("analysis critical path: %w", err)
			}
			a.CriticalPath[i] = model.CriticalSection{SpanID: id, Start: model.Timestamp(c.StartNanos), End: model.Timestamp(c.EndNanos)}
		}
	}
	if len(d.Analysis.Spans) > 0 {
		a.Spans = make([]model.SpanStats, len(d.Analysis.Spans))
		for i, st := range d.Analysis.Spans {
			id, err := model.ParseSpanID(st.SpanID)
			if err != nil {
				return a, fmt.Errorf("analysis spans: %w", err)
			}
			a.Spans[i] = model.SpanStats{SpanID: id, Self: time.Duration(st.SelfNanos), CriticalPath: time.Duration(st.CriticalPathNanos)}
		}
	}
	for _, w := range d.Analysis.Warnings {
		mw := model.Warning{Kind: model.WarningKind(w.Kind), Message: w.Message}
		if w.SpanID != "" {
			if mw.SpanID, err = model.ParseSpanID(w.SpanID); err != nil {
				return a, fmt.Errorf("analysis warnings: %w", err)
			}
		}
		a.Warnings = append(a.Warnings, mw)
	}
	return a, nil
}

func parseCompletion(s string) model.Completion {
	for c := model.CompletionUnknown; c <= model.CompletionLate; c++ {
		if c.String() == s {
			return c
		}
	}
	return model.CompletionUnknown
}

// AlignSpans orders spans as the analysis's span stats are ordered (the
// order the spans had when analysed), so that Analysis.Spans is aligned with
// the returned slice again. Spans the analysis does not know go last, by
// start time then span ID; stats for spans that are missing are dropped
// from a copy of the analysis returned alongside.
func AlignSpans(spans []*model.Span, a model.Analysis) ([]*model.Span, model.Analysis) {
	pos := make(map[model.SpanID]int, len(a.Spans))
	for i, st := range a.Spans {
		pos[st.SpanID] = i
	}
	sort.SliceStable(spans, func(i, j int) bool {
		pi, iok := pos[spans[i].SpanID]
		pj, jok := pos[spans[j].SpanID]
		switch {
		case iok && jok:
			return pi < pj
		case iok != jok:
			return iok
		case spans[i].Start != spans[j].Start:
			return spans[i].Start < spans[j].Start
		}
		return spans[i].SpanID < spans[j].SpanID
	})
	present := make(map[model.SpanID]bool, len(spans))
	for _, s := range spans {
		present[s.SpanID] = true
	}
	for i, st := range a.Spans {
		if present[st.SpanID] {
			continue
		}
		kept := append(make([]model.SpanStats, 0, len(a.Spans)), a.Spans[:i]...)
		for _, st := range a.Spans[i+1:] {
			if present[st.SpanID] {
				kept = append(kept, st)
			}
		}
		a.Spans = kept
		break
	}
	return spans, a
}
