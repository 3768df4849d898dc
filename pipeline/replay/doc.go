// Package replay re-runs a time range of a Kafka topic through tracepipe's
// stages into a store, to backfill it (`tracepipe replay`, issue 14): the
// spans topic through the ingester, the indexer and the aggregator, or the
// assembled-traces topic through the indexer and/or the aggregator (for
// example to aggregate again with new dimensions or windows).
//
// # What is read
//
// The range [From, To) is in record time, the time a record reached Kafka:
// each source partition's offsets come from Kafka's offsets-for-times
// (ListOffsets by timestamp) at From−Margin and To+Margin, so that the
// traces near either end are read whole. The plan (every partition's
// [start, end) offsets) is fixed when a replay starts and kept in the work
// directory, so a resumed replay reads exactly the same records even when
// the topic has grown since.
//
// # How it runs
//
// The records are copied, keys, values and headers unchanged, into a
// private pipeline in the work directory: an embedded broker
// (pipeline/local) whose stages are the same code as the live ones, in
// their own consumer groups on private topics. Nothing is written to the
// source cluster. The stages write:
//
//   - traces: straight into the target store, those starting in
//     [EventFrom, EventTo) only (by default the record-time range: for live
//     traffic a trace reaches Kafka seconds after it starts);
//   - rollups and edge rollups: into a staging store in the work directory
//     (the embedded store), so the aggregator works exactly as it does live,
//     rewriting a window as more of it arrives. When every stage has
//     drained, the rollups and edges of every window lying wholly inside
//     [EventFrom, EventTo) are copied to the target store. A window only
//     partly inside is left alone (its data is not all in the range): the
//     summary counts them, per resolution.
//
// # Nothing replaced: idempotent
//
// Every write to the target store is a fill (storage.WithFill): a trace is
// written only when the store has no version of it or an older one, a
// rollup or edge rollup only when the store has none under its ID. A
// replay of data the live pipeline already processed therefore changes no
// stored document, and a second replay of the same range changes nothing.
// Rollups are created with version 0, so the live aggregator's later
// writes (versions of at least 1) still replace them.
//
// # Stopping and resuming
//
// The work directory holds the plan, the copy position of every partition
// (saved after each acknowledged batch) and the private broker's log with
// the stages' commits. Cancelling the context (Ctrl-C) stops the copy and
// the stages cleanly; running the same replay again resumes: the copy
// from its saved positions (a batch copied twice is harmless: the ingester
// drops repeated spans, the aggregator and the indexer replace a trace
// version by itself), the stages from their commits. A work directory
// holding a different replay is refused. After a replay finished, its work
// directory is removed.
//
// # Bounded
//
// The copy holds at most one batch per partition (1,000 records or 4 MiB)
// and the producer's buffer; the private stages have the live stages'
// bounds (in-flight traces, windows, keys). The work directory needs
// about twice the range's bytes on disk (the copy and the assembled
// traces) plus the staging store.
package replay
