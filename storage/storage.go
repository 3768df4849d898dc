// Package storage defines what tracepipe stores and how it is read back, for
// every backend: Elasticsearch (storage/elasticsearch, for a fleet) and an
// embedded SQLite file (storage/embedded, for one machine). Both implement
// Store with the same semantics, checked by one conformance suite
// (storage/storagetest). The stored document formats are in storage/dbmodel.
//
// # Write contract
//
// WriteTraces and WriteRollups return nil only once every item is durably
// written (Elasticsearch: acknowledged by the bulk API; embedded: committed
// SQLite transaction), or handed to the configured dead-letter when the backend
// rejected it for good. Callers commit Kafka offsets only after that.
//
// WriteEdgeRollups follows the same contract.
//
// Writes are idempotent: every stored document has a deterministic ID (span:
// traceID-spanID, trace summary: traceID, rollup: Rollup.ID(), edge rollup:
// EdgeRollup.ID()). Writing the
// same trace version twice stores it once. A trace version older than the
// stored one is ignored (it never replaces a newer version); an equal or newer
// one replaces it. A rollup or edge-rollup write replaces the stored one of
// its key unless that has a higher Version (Version 0 always replaces); an
// edge rollup with no calls (a retraction) is stored like any other.
//
// # Fill writes
//
// Under a context from WithFill (tracepipe replay, which re-derives data the
// live pipeline may already have written), the writes only add what is
// missing and never change a stored document:
//
//   - WriteTraces writes a trace (spans, summary and everything derived from
//     it: search rows, bottleneck buckets) only when no version of it is
//     stored or the stored version is strictly lower. A stored equal or
//     higher version is left exactly as it is.
//   - WriteRollups and WriteEdgeRollups (and, on Elasticsearch, the Jaeger
//     dependency documents written with daily edge rollups) write a
//     document only when none with its ID is stored, whatever the versions.
//     One they add is stored unversioned (Elasticsearch's op_type=create
//     cannot carry an external version), so any later normal write of its
//     ID replaces it: the live pipeline wins over a replay.
//
// Writes skipped this way succeed (Elasticsearch counts them in
// tracepipe_es_stale_versions_total). Fill is a property of one call, read
// from its context; it passes through any wrapper of a Store unchanged.
//
// # Read contract
//
// GetTrace returns the latest stored version of a trace with its analysis, or
// an error wrapping model.ErrNotFound. FindTraces and TopBottlenecks read the
// trace summaries; RollupSeries reads the rollups and EdgeSeries the edge
// rollups. Query errors the caller can fix wrap model.ErrBadQuery.
package storage

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/tracepipe/tracepipe/model"
)

type fillKey struct{}

// WithFill returns a context under which a store's writes only add what is
// missing: a trace is written only over no stored version or a strictly
// lower one, a rollup, edge rollup or dependency document only when none
// with its ID is stored (see "Fill writes" in the package doc).
func WithFill(ctx context.Context) context.Context {
	return context.WithValue(ctx, fillKey{}, true)
}

// Fill reports whether ctx asks for fill writes (see WithFill).
func Fill(ctx context.Context) bool {
	fill, _ := ctx.Value(fillKey{}).(bool)
	return fill
}

// ErrPermanent marks a write the backend rejected for good (a document or
// statement it can never accept): retrying cannot succeed, so the caller
// dead-letters the record and moves on. Other write errors are transient.
var ErrPermanent = errors.New("rejected for good")

// Per-trace limits of a summary, well inside the engines' (Elasticsearch:
// 10,000 nested objects per document; SQLite: 32,766 variables per
// statement, which storage/embedded chunks within anyway). Summarize keeps
// what is over them out of the summary (the spans are stored whole).
const (
	// MaxSummaryOperations bounds the per-operation totals of one summary;
	// the smallest (by critical path, then self time) are merged into one
	// entry named OverflowOperation for service and operation.
	MaxSummaryOperations = 1000
	// MaxSummaryServices bounds the services listed (the first in order).
	MaxSummaryServices = 1000
	// MaxPromotedValues bounds the values of one promoted tag key per trace
	// (the first in byte order are kept and searchable).
	MaxPromotedValues = 100
)

// OverflowOperation is the service and operation name of the summary entry
// that holds the totals of the operations beyond MaxSummaryOperations.
const OverflowOperation = "__overflow__"

// TraceWriter stores assembled traces: their spans (Jaeger's schema) and one
// summary per trace, carrying the analysis.
type TraceWriter interface {
	WriteTraces(ctx context.Context, traces []model.AssembledTrace) error
}

// RollupWriter stores aggregator rollups, replacing earlier rollups of the
// same key (under WithFill: only adding missing ones).
type RollupWriter interface {
	WriteRollups(ctx context.Context, rollups []model.Rollup) error
}

// EdgeWriter stores service-edge rollups, replacing earlier edge rollups of
// the same key (EdgeRollup.ID()); under WithFill, only adding missing ones.
type EdgeWriter interface {
	WriteEdgeRollups(ctx context.Context, edges []model.EdgeRollup) error
}

// EdgeReader reads service-edge rollups back.
type EdgeReader interface {
	// EdgeSeries returns every stored edge rollup from caller to callee at
	// resolution res whose window started in [start, end) (zero start or end:
	// unbounded), ordered by window start, retractions (Calls == 0)
	// included. A non-positive res, or start after a non-zero end, is an
	// error wrapping model.ErrBadQuery.
	EdgeSeries(ctx context.Context, res time.Duration, caller, callee string, start, end model.Timestamp) ([]model.EdgeRollup, error)
}

// CheckEdgeQuery validates the arguments of EdgeSeries.
func CheckEdgeQuery(res time.Duration, start, end model.Timestamp) error {
	switch {
	case res <= 0:
		return fmt.Errorf("%w: resolution must be positive", model.ErrBadQuery)
	case end != 0 && start > end:
		return fmt.Errorf("%w: start is after end", model.ErrBadQuery)
	}
	return nil
}

// Reader answers the questions of the query command and API.
type Reader interface {
	// GetTrace returns the stored trace, or an error wrapping model.ErrNotFound.
	GetTrace(ctx context.Context, id model.TraceID) (model.StoredTrace, error)
	// FindTraces returns the summaries of the traces matching q, in q.Order.
	// They are listing summaries: Operations is nil (GetTrace has it), which
	// keeps result pages small on both backends.
	FindTraces(ctx context.Context, q model.TraceQuery) ([]model.TraceSummary, error)
	// TopBottlenecks ranks operations by their total critical-path time over
	// the trace summaries selected by q, largest first (ties: service, then
	// operation). It reads trace summaries, not rollups, so it is exact for
	// any range and needs no aggregator.
	TopBottlenecks(ctx context.Context, q model.BottleneckQuery) ([]model.BottleneckRow, error)
	// RollupSeries returns the rollups matching q ordered by window start,
	// then ID.
	RollupSeries(ctx context.Context, q model.RollupQuery) ([]model.Rollup, error)
}

// RetentionReport says what DeleteBefore removed.
type RetentionReport struct {
	// Indices are the Elasticsearch indices deleted (empty for the embedded store).
	Indices []string
	// Traces, Rollups and EdgeRollups count removed embedded rows (zero for
	// Elasticsearch, which deletes whole indices).
	Traces, Rollups, EdgeRollups int64
}

// Store is a whole backend.
type Store interface {
	TraceWriter
	RollupWriter
	EdgeWriter
	Reader
	EdgeReader
	ServiceReader
	// DeleteBefore removes the data of every UTC day that ended at or before
	// cutoff: traces (by start), spans, rollups and edge rollups (by window
	// start) of days before cutoff's UTC day. Data of cutoff's own day is kept.
	DeleteBefore(ctx context.Context, cutoff time.Time) (RetentionReport, error)
	// Close releases the backend; the store must not be used afterwards.
	Close() error
}

// RetentionCutoff is the start of the UTC day that is olderThan before now:
// DeleteBefore(RetentionCutoff(now, 7*24h)) keeps the last 7 full days plus
// today.
func RetentionCutoff(now time.Time, olderThan time.Duration) time.Time {
	return DayStart(now.Add(-olderThan))
}

// DayStart truncates t to the start of its UTC day.
func DayStart(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// Summarize builds the searchable summary of an assembled trace. promoted
// lists the tag keys whose values (span and process tags, as text) become
// searchable. When HostTag is promoted, the values of HostTagAliases are
// searchable as HostTag too.
//
// The root is the analysis's root span; without one, the earliest-starting
// span. Start, duration and counts come from the analysis, which the ingester
// computed on the same spans.
func Summarize(at *model.AssembledTrace, promoted []string) model.TraceSummary {
	a := &at.Analysis
	s := model.TraceSummary{
		TraceID:      at.Trace.TraceID,
		Version:      at.Version,
		Start:        a.Start,
		Duration:     a.Duration,
		SpanCount:    a.SpanCount,
		ErrorCount:   a.ErrorCount,
		WarningCount: len(a.Warnings),
		Operations:   a.Operations,
		Completion:   at.Completion,
		Truncated:    at.Truncated,
	}
	if s.TraceID.IsZero() {
		s.TraceID = a.TraceID
	}
	var root *model.Span
	for _, sp := range at.Trace.Spans {
		if a.RootSpanID != 0 && sp.SpanID == a.RootSpanID {
			root = sp
			break
		}
		if a.RootSpanID == 0 && (root == nil || sp.Start < root.Start) {
			root = sp
		}
	}
	if root != nil {
		s.RootService = root.Process.ServiceName
		s.RootOperation = root.Operation
	}
	services := map[string]struct{}{}
	var tags map[string]map[string]struct{}
	addTags := func(kvs model.KeyValues) {
		for _, kv := range kvs {
			for _, p := range promoted {
				if kv.Key != p && (p != HostTag || !isHostAlias(kv.Key)) {
					continue
				}
				if tags == nil {
					tags = map[string]map[string]struct{}{}
				}
				if tags[p] == nil {
					tags[p] = map[string]struct{}{}
				}
				tags[p][kv.AsString()] = struct{}{}
			}
		}
	}
	for _, sp := range at.Trace.Spans {
		services[sp.Process.ServiceName] = struct{}{}
		addTags(sp.Tags)
		addTags(sp.Process.Tags)
	}
	s.Services = capped(sortedKeys(services), MaxSummaryServices)
	if tags != nil {
		s.PromotedTags = make(map[string][]string, len(tags))
		for k, vs := range tags {
			s.PromotedTags[k] = capped(sortedKeys(vs), MaxPromotedValues)
		}
	}
	s.Operations = capOperations(s.Operations, MaxSummaryOperations)
	if b, ok := a.Bottleneck(); ok {
		s.Bottleneck = b.OperationKey
		s.BottleneckCriticalPath = b.CriticalPath
	}
	if s.SpanCount == 0 {
		s.SpanCount = len(at.Trace.Spans)
	}
	return s
}

func capped(s []string, n int) []string {
	if len(s) > n {
		return s[:n:n]
	}
	return s
}

// capOperations keeps the first n-1 operations of ops (the analysis orders
// them by critical path, then self time, descending) and merges the rest
// into one OverflowOperation entry, so totals stay exact. ops is not
// modified.
func capOperations(ops []model.OperationSummary, n int) []model.OperationSummary {
	if len(ops) <= n {
		return ops
	}
	out := make([]model.OperationSummary, n)
	copy(out, ops[:n-1])
	o := model.OperationSummary{OperationKey: model.OperationKey{Service: OverflowOperation, Operation: OverflowOperation}}
	for _, x := range ops[n-1:] {
		o.Count += x.Count
		o.Errors += x.Errors
		o.Duration += x.Duration
		o.Self += x.Self
		o.CriticalPath += x.CriticalPath
	}
	out[n-1] = o
	return out
}

// HostTag is the promoted tag that also collects the host names real clients
// send under other keys (HostTagAliases), so `--tag host=…` finds them.
const HostTag = "host"

// HostTagAliases are the tag keys searched as HostTag: jaeger-client-go's
// process tag "hostname" and OpenTelemetry's resource attribute "host.name".
var HostTagAliases = []string{"hostname", "host.name"}

func isHostAlias(key string) bool {
	for _, a := range HostTagAliases {
		if key == a {
			return true
		}
	}
	return false
}

func sortedKeys(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// RankBottlenecks turns per-operation totals into BottleneckRows ordered by
// critical-path time descending (ties: service, operation), computing each
// share against totalTraceDuration, and keeps the first limit rows.
func RankBottlenecks(rows []model.BottleneckRow, totalTraceDuration time.Duration, limit int) []model.BottleneckRow {
	for i := range rows {
		if totalTraceDuration > 0 {
			rows[i].Share = float64(rows[i].CriticalPath) / float64(totalTraceDuration)
		}
	}
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if a.CriticalPath != b.CriticalPath {
			return a.CriticalPath > b.CriticalPath
		}
		if a.Service != b.Service {
			return a.Service < b.Service
		}
		return a.Operation < b.Operation
	})
	if limit > 0 && len(rows) > limit {
		rows = rows[:limit]
	}
	return rows
}
