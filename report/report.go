// Package report renders trace analyses for people (text) and scripts (JSON).
//
// The JSON form is a stable contract, documented in docs/analyze-json.md:
// times are microseconds since the Unix epoch (durations in microseconds),
// IDs are lowercase hex as Jaeger renders them, every span of the input
// appears in "spans" (with 0 where it is not on the critical path), and
// arrays are never null.
package report

import (
	"encoding/json"
	"io"

	"github.com/tracepipe/tracepipe/model"
)

// Document is the top-level JSON object of `tracepipe analyze --format json`.
type Document struct {
	Traces []Trace `json:"traces"`
}

// Trace is one analysed trace.
type Trace struct {
	TraceID      string      `json:"traceID"`
	StartUs      int64       `json:"startUs"`
	DurationUs   int64       `json:"durationUs"`
	SpanCount    int         `json:"spanCount"`
	ErrorCount   int         `json:"errorCount"`
	RootSpanID   string      `json:"rootSpanID,omitempty"`
	CriticalPath []Section   `json:"criticalPath"`
	Spans        []Span      `json:"spans"`
	Operations   []Operation `json:"operations"`
	Warnings     []string    `json:"warnings"`
}

// Section is one piece of the critical path.
type Section struct {
	SpanID    string `json:"spanID"`
	Service   string `json:"service"`
	Operation string `json:"operation"`
	StartUs   int64  `json:"startUs"`
	EndUs     int64  `json:"endUs"`
}

// Span is one span's self and critical-path time.
type Span struct {
	SpanID         string `json:"spanID"`
	Service        string `json:"service"`
	Operation      string `json:"operation"`
	StartUs        int64  `json:"startUs"`
	DurationUs     int64  `json:"durationUs"`
	Error          bool   `json:"error"`
	SelfUs         int64  `json:"selfUs"`
	CriticalPathUs int64  `json:"criticalPathUs"`
}

// Operation summarises one (service, operation) in one trace.
type Operation struct {
	Service        string `json:"service"`
	Operation      string `json:"operation"`
	Count          int    `json:"count"`
	Errors         int    `json:"errors"`
	DurationUs     int64  `json:"durationUs"`
	SelfUs         int64  `json:"selfUs"`
	CriticalPathUs int64  `json:"criticalPathUs"`
}

// Build converts an analysed trace into its report form. a.Spans must be
// aligned with t.Spans, as dag.Analyze guarantees.
func Build(t *model.Trace, a *model.Analysis) Trace {
	byID := make(map[model.SpanID]*model.Span, len(t.Spans))
	for _, s := range t.Spans {
		byID[s.SpanID] = s
	}
	out := Trace{
		TraceID:      t.TraceID.String(),
		StartUs:      a.Start.Micros(),
		DurationUs:   a.Duration.Microseconds(),
		SpanCount:    a.SpanCount,
		ErrorCount:   a.ErrorCount,
		CriticalPath: make([]Section, 0, len(a.CriticalPath)),
		Spans:        make([]Span, 0, len(t.Spans)),
		Operations:   make([]Operation, 0, len(a.Operations)),
		Warnings:     make([]string, 0, len(a.Warnings)),
	}
	if a.RootSpanID != 0 {
		out.RootSpanID = a.RootSpanID.String()
	}
	for _, c := range a.CriticalPath {
		sec := Section{SpanID: c.SpanID.String(), StartUs: c.Start.Micros(), EndUs: c.End.Micros()}
		if s := byID[c.SpanID]; s != nil {
			sec.Service, sec.Operation = s.Process.ServiceName, s.Operation
		}
		out.CriticalPath = append(out.CriticalPath, sec)
	}
	for i, s := range t.Spans {
		row := Span{
			SpanID:     s.SpanID.String(),
			Service:    s.Process.ServiceName,
			Operation:  s.Operation,
			StartUs:    s.Start.Micros(),
			DurationUs: s.Duration.Microseconds(),
			Error:      s.IsError(),
		}
		if i < len(a.Spans) {
			row.SelfUs = a.Spans[i].Self.Microseconds()
			row.CriticalPathUs = a.Spans[i].CriticalPath.Microseconds()
		}
		out.Spans = append(out.Spans, row)
	}
	for _, o := range a.Operations {
		out.Operations = append(out.Operations, Operation{
			Service:        o.Service,
			Operation:      o.Operation,
			Count:          o.Count,
			Errors:         o.Errors,
			DurationUs:     o.Duration.Microseconds(),
			SelfUs:         o.Self.Microseconds(),
			CriticalPathUs: o.CriticalPath.Microseconds(),
		})
	}
	for _, w := range a.Warnings {
		out.Warnings = append(out.Warnings, w.String())
	}
	return out
}

// WriteJSON writes doc as indented JSON followed by a newline.
func WriteJSON(w io.Writer, doc Document) error {
	if doc.Traces == nil {
		doc.Traces = []Trace{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}
