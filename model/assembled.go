package model

import "time"

// Completion says why the ingester emitted a trace.
type Completion int8

const (
	CompletionUnknown  Completion = iota
	CompletionIdle                // no span arrived for the idle timeout
	CompletionMaxWait             // the trace waited the maximum time
	CompletionShutdown            // emitted while the ingester stopped or lost the partition
	CompletionLate                // a new version carrying spans that arrived after an earlier version
)

var completionNames = [...]string{"unknown", "idle", "max_wait", "shutdown", "late"}

func (c Completion) String() string {
	if int(c) >= 0 && int(c) < len(completionNames) {
		return completionNames[c]
	}
	return "unknown"
}

// AssembledTrace is what the ingester publishes and the aggregator and storage
// consume: a complete (as far as known) trace, its analysis, and its identity
// as a version.
//
// A version is the number of unique spans the trace carries (so versions of
// one trace grow but need not be consecutive); a higher version carries every
// span of a lower one plus the late ones, so consumers replace, never add
// (keep the highest version). A re-emission after a crash or rebalance carries
// the same TraceID and Version and the same spans and analysis, so
// deterministic IDs built from (TraceID, Version) make it idempotent;
// Completion, DroppedSpans, FirstSeen and EmittedAt describe one emission and
// may differ between re-emissions.
type AssembledTrace struct {
	Trace      Trace
	Analysis   Analysis
	Version    uint32
	Completion Completion
	// Truncated is set when spans were dropped because the trace hit the
	// per-trace span limit; DroppedSpans counts them.
	Truncated    bool
	DroppedSpans int
	// FirstSeen and EmittedAt are ingester wall-clock times, for the assembly
	// delay metric; they are not part of the trace's identity.
	FirstSeen time.Time
	EmittedAt time.Time
}
