// Package query answers users' questions about stored traces — a trace by ID,
// the N slowest traces, a search by tags, the bottleneck operations, an
// operation's rollup series, a service edge's rollup series — over HTTP (Handler, JSON under /api/v1/) and
// as text or JSON for the CLI (the Write* functions), from any backend that
// implements Reader.
package query

import (
	"context"
	"sort"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

// Reader is what the query side needs from a store (storage.Reader,
// storage.EdgeReader and the services listing of storage.ServiceReader).
type Reader interface {
	GetTrace(ctx context.Context, id model.TraceID) (model.StoredTrace, error)
	FindTraces(ctx context.Context, q model.TraceQuery) ([]model.TraceSummary, error)
	TopBottlenecks(ctx context.Context, q model.BottleneckQuery) ([]model.BottleneckRow, error)
	RollupSeries(ctx context.Context, q model.RollupQuery) ([]model.Rollup, error)
	EdgeSeries(ctx context.Context, res time.Duration, caller, callee string, start, end model.Timestamp) ([]model.EdgeRollup, error)
	Services(ctx context.Context) ([]model.ServiceOperations, bool, error)
}

// The JSON shapes below are the API's and the CLI's `--format json` output.
// IDs are hex strings, times RFC 3339 with nanoseconds (UTC), durations
// integer nanoseconds in fields ending in "Nanos".

// Summary is a trace summary.
type Summary struct {
	TraceID       string              `json:"traceID"`
	Version       uint32              `json:"version"`
	RootService   string              `json:"rootService"`
	RootOperation string              `json:"rootOperation"`
	Start         time.Time           `json:"start"`
	DurationNanos int64               `json:"durationNanos"`
	SpanCount     int                 `json:"spanCount"`
	ErrorCount    int                 `json:"errorCount"`
	WarningCount  int                 `json:"warningCount"`
	Services      []string            `json:"services"`
	PromotedTags  map[string][]string `json:"promotedTags,omitempty"`
	Bottleneck    *Operation          `json:"bottleneck,omitempty"`
	Operations    []Operation         `json:"operations,omitempty"` // in trace results, not in search results
	Completion    string              `json:"completion"`
	Truncated     bool                `json:"truncated,omitempty"`
}

// Operation is one operation's totals within a trace (or, for Bottleneck,
// only its critical-path time).
type Operation struct {
	Service           string `json:"service"`
	Operation         string `json:"operation"`
	Count             int    `json:"count,omitempty"`
	Errors            int    `json:"errors,omitempty"`
	DurationNanos     int64  `json:"durationNanos,omitempty"`
	SelfNanos         int64  `json:"selfNanos,omitempty"`
	CriticalPathNanos int64  `json:"criticalPathNanos"`
}

// Trace is a stored trace with its analysis.
type Trace struct {
	Summary      Summary           `json:"summary"`
	Spans        []Span            `json:"spans"`
	CriticalPath []CriticalSection `json:"criticalPath"`
	Warnings     []Warning         `json:"warnings"`
}

// Span is one span with its analysis figures. Spans are in tree order
// (depth first, children by start time) with Depth their nesting level.
type Span struct {
	SpanID            string            `json:"spanID"`
	ParentSpanID      string            `json:"parentSpanID,omitempty"`
	Depth             int               `json:"depth"`
	Service           string            `json:"service"`
	Operation         string            `json:"operation"`
	Kind              string            `json:"kind,omitempty"`
	Error             bool              `json:"error,omitempty"`
	Start             time.Time         `json:"start"`
	OffsetNanos       int64             `json:"offsetNanos"`
	DurationNanos     int64             `json:"durationNanos"`
	SelfNanos         int64             `json:"selfNanos"`
	CriticalPathNanos int64             `json:"criticalPathNanos"`
	Tags              map[string]string `json:"tags,omitempty"`
	ProcessTags       map[string]string `json:"processTags,omitempty"`
	// Logs are the span's logs (OTel span events), in time order.
	Logs []Log `json:"logs,omitempty"`
}

// Log is one span log (an OTel span event): its time, its offset from the
// trace's start, and its fields (Event is the "event" field, or OTel's event
// name, when there is one; Fields hold the others).
type Log struct {
	Time        time.Time         `json:"time"`
	OffsetNanos int64             `json:"offsetNanos"`
	Event       string            `json:"event,omitempty"`
	Fields      map[string]string `json:"fields,omitempty"`
}

// CriticalSection is one piece of the critical path.
type CriticalSection struct {
	SpanID        string `json:"spanID"`
	Service       string `json:"service"`
	Operation     string `json:"operation"`
	OffsetNanos   int64  `json:"offsetNanos"`
	DurationNanos int64  `json:"durationNanos"`
}

// Warning is an analysis warning.
type Warning struct {
	Kind    string `json:"kind"`
	SpanID  string `json:"spanID,omitempty"`
	Message string `json:"message"`
}

// Bottleneck is one ranked operation.
type Bottleneck struct {
	Service           string  `json:"service"`
	Operation         string  `json:"operation"`
	CriticalPathNanos int64   `json:"criticalPathNanos"`
	Share             float64 `json:"share"`
	Traces            int     `json:"traces"`
	Count             int     `json:"count"`
	Errors            int     `json:"errors"`
	SelfNanos         int64   `json:"selfNanos"`
	DurationNanos     int64   `json:"durationNanos"`
}

// Rollup is one window of an operation's statistics.
type Rollup struct {
	ID                string            `json:"id"`
	Resolution        string            `json:"resolution"`
	WindowStart       time.Time         `json:"windowStart"`
	Service           string            `json:"service"`
	Operation         string            `json:"operation"`
	Kind              string            `json:"kind,omitempty"`
	Dimensions        map[string]string `json:"dimensions,omitempty"`
	Count             int64             `json:"count"`
	Errors            int64             `json:"errors"`
	Duration          Distribution      `json:"duration"`
	Self              Distribution      `json:"self"`
	CriticalPath      Distribution      `json:"criticalPath"`
	CriticalPathShare float64           `json:"criticalPathShare"`
	Exemplars         []Exemplar        `json:"exemplars"`
}

// Edge is one window of the calls from one service (the caller) to another
// (the callee): Latency is the distribution of the callee spans' durations,
// Exemplars the slowest calls, slowest first. A window whose calls all went
// away (a retraction) has Calls 0 and is listed like any other.
type Edge struct {
	ID          string       `json:"id"`
	Resolution  string       `json:"resolution"`
	WindowStart time.Time    `json:"windowStart"`
	Caller      string       `json:"caller"`
	Callee      string       `json:"callee"`
	Calls       int64        `json:"calls"`
	Errors      int64        `json:"errors"`
	Latency     Distribution `json:"latency"`
	Exemplars   []Exemplar   `json:"exemplars"`
}

// Distribution is a rollup distribution (the sketch is left out).
type Distribution struct {
	SumNanos int64 `json:"sumNanos"`
	P50Nanos int64 `json:"p50Nanos"`
	P90Nanos int64 `json:"p90Nanos"`
	P95Nanos int64 `json:"p95Nanos"`
	P99Nanos int64 `json:"p99Nanos"`
	MaxNanos int64 `json:"maxNanos"`
}

// Exemplar is a slow request of a rollup or edge window.
type Exemplar struct {
	TraceID       string    `json:"traceID"`
	DurationNanos int64     `json:"durationNanos"`
	Start         time.Time `json:"start"`
}

// NewSummary converts a summary.
func NewSummary(s *model.TraceSummary) Summary {
	out := Summary{
		TraceID: s.TraceID.String(), Version: s.Version, RootService: s.RootService, RootOperation: s.RootOperation,
		Start: s.Start.Time(), DurationNanos: int64(s.Duration), SpanCount: s.SpanCount, ErrorCount: s.ErrorCount,
		WarningCount: s.WarningCount, Services: s.Services, PromotedTags: s.PromotedTags,
		Operations: make([]Operation, len(s.Operations)), Completion: s.Completion.String(), Truncated: s.Truncated,
	}
	if out.Services == nil {
		out.Services = []string{}
	}
	if s.Bottleneck != (model.OperationKey{}) {
		out.Bottleneck = &Operation{Service: s.Bottleneck.Service, Operation: s.Bottleneck.Operation, CriticalPathNanos: int64(s.BottleneckCriticalPath)}
	}
	for i, o := range s.Operations {
		out.Operations[i] = Operation{
			Service: o.Service, Operation: o.Operation, Count: o.Count, Errors: o.Errors,
			DurationNanos: int64(o.Duration), SelfNanos: int64(o.Self), CriticalPathNanos: int64(o.CriticalPath),
		}
	}
	return out
}

// NewSummaries converts a result list (never nil).
func NewSummaries(sums []model.TraceSummary) []Summary {
	out := make([]Summary, len(sums))
	for i := range sums {
		out[i] = NewSummary(&sums[i])
	}
	return out
}

// NewTrace converts a stored trace, ordering spans as a tree.
func NewTrace(st *model.StoredTrace) Trace {
	out := Trace{Summary: NewSummary(&st.Summary), Spans: []Span{}, CriticalPath: []CriticalSection{}, Warnings: []Warning{}}
	stats := make(map[model.SpanID]model.SpanStats, len(st.Analysis.Spans))
	for _, s := range st.Analysis.Spans {
		stats[s.SpanID] = s
	}
	byID := make(map[model.SpanID]*model.Span, len(st.Trace.Spans))
	for _, s := range st.Trace.Spans {
		byID[s.SpanID] = s
	}
	children := map[model.SpanID][]*model.Span{}
	var roots []*model.Span
	for _, s := range st.Trace.Spans {
		if p, _, ok := s.ParentSpanID(); ok && byID[p] != nil && p != s.SpanID {
			children[p] = append(children[p], s)
		} else {
			roots = append(roots, s)
		}
	}
	byStart := func(ss []*model.Span) {
		sort.SliceStable(ss, func(i, j int) bool {
			if ss[i].Start != ss[j].Start {
				return ss[i].Start < ss[j].Start
			}
			return ss[i].SpanID < ss[j].SpanID
		})
	}
	byStart(roots)
	start := st.Summary.Start
	seen := map[model.SpanID]bool{}
	var walk func(s *model.Span, depth int)
	walk = func(s *model.Span, depth int) {
		if seen[s.SpanID] { // a cycle in bad data
			return
		}
		seen[s.SpanID] = true
		sp := Span{
			SpanID: s.SpanID.String(), Depth: depth, Service: s.Process.ServiceName, Operation: s.Operation,
			Kind: s.Kind.String(), Error: s.IsError(), Start: s.Start.Time(), OffsetNanos: int64(s.Start.Sub(start)),
			DurationNanos: int64(s.Duration), SelfNanos: int64(stats[s.SpanID].Self), CriticalPathNanos: int64(stats[s.SpanID].CriticalPath),
			Tags: kvMap(s.Tags), ProcessTags: kvMap(s.Process.Tags), Logs: newLogs(s.Logs, start),
		}
		if p, _, ok := s.ParentSpanID(); ok {
			sp.ParentSpanID = p.String()
		}
		out.Spans = append(out.Spans, sp)
		kids := children[s.SpanID]
		byStart(kids)
		for _, c := range kids {
			walk(c, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
	for _, s := range st.Trace.Spans { // spans only reachable through a cycle
		if !seen[s.SpanID] {
			walk(s, 0)
		}
	}
	for _, c := range st.Analysis.CriticalPath {
		cs := CriticalSection{SpanID: c.SpanID.String(), OffsetNanos: int64(c.Start.Sub(start)), DurationNanos: int64(c.End.Sub(c.Start))}
		if s := byID[c.SpanID]; s != nil {
			cs.Service, cs.Operation = s.Process.ServiceName, s.Operation
		}
		out.CriticalPath = append(out.CriticalPath, cs)
	}
	for _, w := range st.Analysis.Warnings {
		ww := Warning{Kind: string(w.Kind), Message: w.Message}
		if w.SpanID != 0 {
			ww.SpanID = w.SpanID.String()
		}
		out.Warnings = append(out.Warnings, ww)
	}
	return out
}

// newLogs converts span logs, ordered by time (stable).
func newLogs(logs []model.Log, start model.Timestamp) []Log {
	if len(logs) == 0 {
		return nil
	}
	out := make([]Log, len(logs))
	for i, l := range logs {
		out[i] = Log{Time: l.Timestamp.Time(), OffsetNanos: int64(l.Timestamp.Sub(start))}
		for _, kv := range l.Fields {
			if kv.Key == "event" && out[i].Event == "" {
				out[i].Event = kv.AsString()
				continue
			}
			if out[i].Fields == nil {
				out[i].Fields = make(map[string]string, len(l.Fields))
			}
			out[i].Fields[kv.Key] = kv.AsString()
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].OffsetNanos < out[j].OffsetNanos })
	return out
}

func kvMap(kvs model.KeyValues) map[string]string {
	if len(kvs) == 0 {
		return nil
	}
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = kv.AsString()
	}
	return m
}

// NewBottlenecks converts ranked rows (never nil).
func NewBottlenecks(rows []model.BottleneckRow) []Bottleneck {
	out := make([]Bottleneck, len(rows))
	for i, r := range rows {
		out[i] = Bottleneck{
			Service: r.Service, Operation: r.Operation, CriticalPathNanos: int64(r.CriticalPath), Share: r.Share,
			Traces: r.Traces, Count: r.Count, Errors: r.Errors, SelfNanos: int64(r.Self), DurationNanos: int64(r.Duration),
		}
	}
	return out
}

// NewRollups converts rollups (never nil).
func NewRollups(rs []model.Rollup) []Rollup {
	out := make([]Rollup, len(rs))
	for i := range rs {
		r := &rs[i]
		o := Rollup{
			ID: r.ID(), Resolution: model.ResolutionName(r.Resolution), WindowStart: r.WindowStart.Time(),
			Service: r.Service, Operation: r.Operation, Kind: r.Kind.String(), Count: r.Count, Errors: r.Errors,
			Duration: dist(r.Duration), Self: dist(r.Self), CriticalPath: dist(r.CriticalPath),
			CriticalPathShare: r.CriticalPathShare, Exemplars: []Exemplar{},
		}
		for _, d := range r.Dimensions {
			if o.Dimensions == nil {
				o.Dimensions = map[string]string{}
			}
			o.Dimensions[d.Name] = d.Value
		}
		for _, e := range r.Exemplars {
			o.Exemplars = append(o.Exemplars, Exemplar{TraceID: e.TraceID.String(), DurationNanos: int64(e.Duration), Start: e.Start.Time()})
		}
		out[i] = o
	}
	return out
}

// NewEdges converts edge rollups (never nil).
func NewEdges(es []model.EdgeRollup) []Edge {
	out := make([]Edge, len(es))
	for i := range es {
		e := &es[i]
		o := Edge{
			ID: e.ID(), Resolution: model.ResolutionName(e.Resolution), WindowStart: e.WindowStart.Time(),
			Caller: e.Caller, Callee: e.Callee, Calls: e.Calls, Errors: e.Errors, Latency: dist(e.Latency), Exemplars: []Exemplar{},
		}
		for _, x := range e.Exemplars {
			o.Exemplars = append(o.Exemplars, Exemplar{TraceID: x.TraceID.String(), DurationNanos: int64(x.Duration), Start: x.Start.Time()})
		}
		out[i] = o
	}
	return out
}

func dist(d model.Distribution) Distribution {
	return Distribution{SumNanos: int64(d.Sum), P50Nanos: int64(d.P50), P90Nanos: int64(d.P90), P95Nanos: int64(d.P95), P99Nanos: int64(d.P99), MaxNanos: int64(d.Max)}
}

// Services is the services listing: every service of the stored spans with
// its operations, sorted; Truncated when the store holds more than
// model.MaxServiceOperations pairs.
type Services struct {
	Services  []Service `json:"services"`
	Truncated bool      `json:"truncated,omitempty"`
}

// Service is one service and its operations.
type Service struct {
	Service    string   `json:"service"`
	Operations []string `json:"operations"`
}

// NewServices converts a services listing (never nil).
func NewServices(svcs []model.ServiceOperations, truncated bool) Services {
	out := Services{Services: make([]Service, len(svcs)), Truncated: truncated}
	for i, s := range svcs {
		ops := s.Operations
		if ops == nil {
			ops = []string{}
		}
		out.Services[i] = Service{Service: s.Service, Operations: ops}
	}
	return out
}
