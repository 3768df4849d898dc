package model

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// ErrNotFound reports that a stored trace does not exist. Readers wrap it
// with the trace ID ("trace 4bf92f3577b34da6 not found").
var ErrNotFound = errors.New("not found")

// ErrBadQuery reports a query that cannot be answered as asked (bad range,
// unknown tag, negative limit). The HTTP API maps it to 400, the CLI to a
// usage error.
var ErrBadQuery = errors.New("bad query")

// Query limits.
const (
	DefaultLimit = 20
	MaxLimit     = 10000 // Elasticsearch's default max_result_window
)

// DefaultPromotedTags are the span and process tag keys whose values are
// copied into trace summaries as searchable keyword fields.
func DefaultPromotedTags() []string {
	return []string{"shard", "host", "client", "http.status_code"}
}

// TraceOrder is the order of FindTraces results.
type TraceOrder int8

const (
	// OrderSlowest: longest trace duration first, then newest, then trace ID.
	OrderSlowest TraceOrder = iota
	// OrderNewest: latest trace start first, then longest, then trace ID.
	OrderNewest
)

func (o TraceOrder) String() string {
	if o == OrderNewest {
		return "newest"
	}
	return "slowest"
}

// ParseTraceOrder reads "slowest" or "newest" ("" is slowest).
func ParseTraceOrder(s string) (TraceOrder, error) {
	switch s {
	case "", "slowest":
		return OrderSlowest, nil
	case "newest":
		return OrderNewest, nil
	}
	return 0, fmt.Errorf("%w: order %q: want slowest or newest", ErrBadQuery, s)
}

// TraceQuery selects stored traces by their summaries. Every set field must
// match (AND); zero fields match everything.
//
//   - Service: some span of the trace belongs to the service.
//   - Operation: some span has this operation (of Service, when set).
//   - Tags: for each key, some span (its own tags or its process's tags) has
//     that value, as text. Only promoted tags are searchable; others are
//     rejected with ErrBadQuery.
//   - MinDuration, MaxDuration: bounds (inclusive) on the trace's duration.
//   - Start, End: the trace started in [Start, End); zero means unbounded.
//   - Limit: at most this many results (0 means DefaultLimit, at most MaxLimit).
type TraceQuery struct {
	Service     string
	Operation   string
	Tags        map[string]string
	MinDuration time.Duration
	MaxDuration time.Duration
	Start       Timestamp
	End         Timestamp
	Order       TraceOrder
	Limit       int
}

// Normalize checks q and fills defaults: the returned query's Limit is in
// [1, MaxLimit]. Errors wrap ErrBadQuery.
func (q TraceQuery) Normalize() (TraceQuery, error) {
	switch {
	case q.Limit < 0:
		return q, fmt.Errorf("%w: limit %d is negative", ErrBadQuery, q.Limit)
	case q.Limit > MaxLimit:
		return q, fmt.Errorf("%w: limit %d is above the maximum %d", ErrBadQuery, q.Limit, MaxLimit)
	case q.MinDuration < 0 || q.MaxDuration < 0:
		return q, fmt.Errorf("%w: durations must not be negative", ErrBadQuery)
	case q.MaxDuration != 0 && q.MinDuration > q.MaxDuration:
		return q, fmt.Errorf("%w: min duration %v is above max duration %v", ErrBadQuery, q.MinDuration, q.MaxDuration)
	case q.End != 0 && q.Start > q.End:
		return q, fmt.Errorf("%w: start %s is after end %s", ErrBadQuery, q.Start.Time().Format(time.RFC3339), q.End.Time().Format(time.RFC3339))
	case q.Order != OrderSlowest && q.Order != OrderNewest:
		return q, fmt.Errorf("%w: unknown order %d", ErrBadQuery, q.Order)
	}
	for k := range q.Tags {
		if k == "" {
			return q, fmt.Errorf("%w: empty tag key", ErrBadQuery)
		}
	}
	if q.Limit == 0 {
		q.Limit = DefaultLimit
	}
	return q, nil
}

// CheckPromoted returns an ErrBadQuery error naming the first (sorted) tag of
// tags that is not in promoted.
func CheckPromoted(tags map[string]string, promoted []string) error {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		found := false
		for _, p := range promoted {
			if p == k {
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("%w: tag %q is not searchable; promoted tags are: %s", ErrBadQuery, k, strings.Join(promoted, ", "))
		}
	}
	return nil
}

// TraceSummary is the searchable digest of one stored trace version.
type TraceSummary struct {
	TraceID       TraceID
	Version       uint32
	RootService   string
	RootOperation string
	Start         Timestamp
	Duration      time.Duration
	SpanCount     int
	ErrorCount    int
	WarningCount  int
	// Services that have spans in the trace, sorted.
	Services []string
	// Operations is the trace's per-operation summary (the critical path
	// summarised by operation), in Analysis.Operations order: critical-path
	// time descending. Search results (FindTraces) leave it nil.
	Operations []OperationSummary
	// PromotedTags maps each promoted tag key present in the trace to its
	// distinct values (sorted).
	PromotedTags map[string][]string
	// Bottleneck is the operation with the largest critical-path time, and
	// BottleneckCriticalPath that time (zero key when the trace has none).
	Bottleneck             OperationKey
	BottleneckCriticalPath time.Duration
	Completion             Completion
	Truncated              bool
}

// StoredTrace is a trace as read back from storage: its summary, its spans
// and the analysis computed when it was assembled (warnings, critical path,
// self times). Analysis.Spans is aligned with Trace.Spans.
type StoredTrace struct {
	Summary  TraceSummary
	Trace    Trace
	Analysis Analysis
}

// BottleneckRow ranks one operation over the traces of a time range.
type BottleneckRow struct {
	OperationKey
	// CriticalPath is the operation's total critical-path time over the
	// traces; Share is CriticalPath divided by the sum of those traces'
	// durations (the fraction of all request time this operation was what
	// requests waited on).
	CriticalPath time.Duration
	Share        float64
	Traces       int           // traces containing the operation
	Count        int           // spans of the operation
	Errors       int           // failed spans of the operation
	Self         time.Duration // total self time
	Duration     time.Duration // total span duration
}

// BottleneckQuery selects the traces that TopBottlenecks ranks over: those
// that started in [Start, End) (zero means unbounded), optionally only those
// with a span of Service and only those with every promoted tag of Tags (as
// in TraceQuery). Limit is as in TraceQuery.
type BottleneckQuery struct {
	Service string
	Tags    map[string]string
	Start   Timestamp
	End     Timestamp
	Limit   int
}

// Normalize checks q and fills the default limit. Errors wrap ErrBadQuery.
func (q BottleneckQuery) Normalize() (BottleneckQuery, error) {
	t, err := TraceQuery{Start: q.Start, End: q.End, Limit: q.Limit, Tags: q.Tags}.Normalize()
	q.Limit = t.Limit
	return q, err
}

// RollupQuery selects rollups of one operation at one resolution whose
// window started in [Start, End) (zero means unbounded). Kind, when not
// KindUnspecified, must match; each entry of Dimensions must be present with
// that value (rollups with other dimensions too still match).
type RollupQuery struct {
	Service    string
	Operation  string
	Kind       SpanKind
	Resolution time.Duration
	Dimensions map[string]string
	Start      Timestamp
	End        Timestamp
	Limit      int // 0 means MaxLimit
}

// Normalize checks q: service, operation and a positive resolution are
// required. Errors wrap ErrBadQuery.
func (q RollupQuery) Normalize() (RollupQuery, error) {
	switch {
	case q.Service == "":
		return q, fmt.Errorf("%w: rollups need a service", ErrBadQuery)
	case q.Operation == "":
		return q, fmt.Errorf("%w: rollups need an operation", ErrBadQuery)
	case q.Resolution <= 0:
		return q, fmt.Errorf("%w: resolution must be positive", ErrBadQuery)
	case q.End != 0 && q.Start > q.End:
		return q, fmt.Errorf("%w: start is after end", ErrBadQuery)
	case q.Limit < 0 || q.Limit > MaxLimit:
		return q, fmt.Errorf("%w: limit %d is outside [0, %d]", ErrBadQuery, q.Limit, MaxLimit)
	}
	if q.Limit == 0 {
		q.Limit = MaxLimit
	}
	return q, nil
}

// MatchesDimensions reports whether r has every dimension of q.Dimensions.
func (q RollupQuery) MatchesDimensions(r *Rollup) bool {
	for k, v := range q.Dimensions {
		found := false
		for _, d := range r.Dimensions {
			if d.Name == k && d.Value == v {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
