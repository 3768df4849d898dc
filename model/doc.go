// Package model holds tracepipe's domain types: spans, traces, the analysis that
// explains a trace (critical path, self time, per-operation summaries, warnings)
// and the assembled-trace envelope that flows between pipeline stages.
//
// The package imports no Kafka, Elasticsearch, Prometheus or protobuf package.
// Wire formats live in package wire, storage documents in storage/...; both
// convert to and from these types.
//
// Time: timestamps are nanoseconds since the Unix epoch (Timestamp) and
// durations are time.Duration, so every wire format (OTLP's nanoseconds,
// Jaeger's protobuf Timestamp, Jaeger JSON's microseconds) fits without loss.
package model
