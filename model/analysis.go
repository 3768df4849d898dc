package model

import (
	"fmt"
	"time"
)

// WarningKind classifies a problem found in a trace's data. Problems in the
// data never fail an analysis; they become warnings on it.
type WarningKind string

const (
	WarnMultipleRoots   WarningKind = "multiple-roots"
	WarnNoRoot          WarningKind = "no-root"
	WarnOrphan          WarningKind = "missing-parent"
	WarnDuplicateSpan   WarningKind = "duplicate-span"
	WarnConflictingSpan WarningKind = "conflicting-duplicate-span"
	WarnCycle           WarningKind = "cycle"
	WarnForeignTrace    WarningKind = "foreign-trace-id"
	WarnBadDuration     WarningKind = "bad-duration"
	WarnBadTimestamp    WarningKind = "bad-timestamp"
	WarnClockSkew       WarningKind = "clock-skew-adjusted"
	WarnSkewTooLarge    WarningKind = "clock-skew-too-large"
	WarnTruncated       WarningKind = "truncated"
	WarnEmpty           WarningKind = "empty-trace"
)

// Warning is one problem found in a trace, optionally about one span.
type Warning struct {
	Kind    WarningKind
	SpanID  SpanID // 0 when the warning is about the whole trace
	Message string
}

func (w Warning) String() string {
	if w.SpanID != 0 {
		return fmt.Sprintf("%s: span %s: %s", w.Kind, w.SpanID, w.Message)
	}
	return fmt.Sprintf("%s: %s", w.Kind, w.Message)
}

// CriticalSection is one piece of a trace's critical path: the interval
// [Start, End) during which span SpanID was what the request waited on.
type CriticalSection struct {
	SpanID SpanID
	Start  Timestamp
	End    Timestamp
}

// SpanStats is the per-span result of an analysis.
type SpanStats struct {
	SpanID       SpanID
	Self         time.Duration // duration minus the union of blocking children, clipped to the span
	CriticalPath time.Duration // time this span spends on the critical path
}

// OperationKey identifies an operation of a service.
type OperationKey struct {
	Service   string
	Operation string
}

// OperationSummary aggregates one trace's spans of one operation.
type OperationSummary struct {
	OperationKey
	Count        int
	Errors       int
	Duration     time.Duration // sum of span durations
	Self         time.Duration // sum of self times
	CriticalPath time.Duration // sum of critical-path times
}

// Analysis explains one trace.
//
// Spans is aligned with the analysed Trace.Spans (same order, same length).
// CriticalPath is ordered by time, earliest first. Operations is ordered by
// CriticalPath descending, then Self descending, then service and operation.
type Analysis struct {
	TraceID      TraceID
	RootSpanID   SpanID // 0 if the trace has no usable root
	Start        Timestamp
	Duration     time.Duration // the root span's duration (or the trace's envelope without a root)
	SpanCount    int
	ErrorCount   int
	CriticalPath []CriticalSection
	Spans        []SpanStats
	Operations   []OperationSummary
	Warnings     []Warning
}

// Bottleneck returns the operation with the largest critical-path time.
func (a *Analysis) Bottleneck() (OperationSummary, bool) {
	if len(a.Operations) == 0 {
		return OperationSummary{}, false
	}
	return a.Operations[0], true
}
