// Package rollup computes tracepipe's per-operation statistics from
// assembled traces: exact counts, errors and sums, DDSketch distributions of
// duration, self time and critical-path time (at most 1% relative error),
// critical-path share, the slowest exemplar traces, and service-edge
// statistics, per event-time window and key. It is the pure core of the
// aggregator: no Kafka, no storage, no clock. docs/aggregator.md has the
// operator's view; this comment is the argument for exactness.
//
// # What is computed
//
// A trace's event time is its start (Analysis.Start); its window is the
// base window (Config.Window, 1m) containing it. Keys are (service,
// operation, span kind) families split by the configured dimensions, whose
// values come from the span's tag, else its process's tag, else "". For
// every key and window:
//
//   - Count and Errors: spans of the key and failed ones.
//   - Duration, Self, CriticalPath: exact Sum and Max, and a sketch.
//   - TraceDuration: the sum of Analysis.Duration over the traces that
//     contain the key, each trace once. CriticalPathShare is
//     CriticalPath.Sum / TraceDuration: of the request time of the traces
//     that touched the operation, the fraction the operation was what they
//     waited on.
//   - Exemplars: for each trace, its slowest span of the key; the
//     Config.Exemplars slowest of those, ties by trace ID then start.
//
// Edges: a span whose parent (Span.ParentSpanID, in the same trace) belongs
// to another service is a call from the parent's service to the span's; per
// (caller, callee): calls, errors, latency (the span's duration), exemplars.
//
// The rollups of a window are exactly these statistics over the set S(W) of
// the latest version (highest AssembledTrace.Version) of every trace whose
// latest version starts in W. Coarse windows (1h, 1d) are the same over their
// longer range, built by merging base results (sketches merge exactly).
//
// The cardinality limit is a bottom-k rule: per window, family and
// dimension, the DimensionLimit values with the smallest FNV-1a hash keep
// their keys and the others become Overflow. Unlike "the first N seen" or
// "the N most frequent", bottom-k composes: the admitted values of a union
// are the bottom-k of the parts' admitted values, so folding per partition,
// per reducer and per coarse window gives exactly what folding all the data
// at once gives, for any split and any order.
//
// # The design
//
// Stage 1, Partition (one per source partition of the assembled-traces
// topic; trace IDs are the message keys, so all versions of a trace are in
// one partition): keeps, per resident window, the contribution of the
// latest version of each trace (its span values per key) and incrementally
// maintained statistics per key. A newer version is subtracted-and-added:
// counts, sums and sketch bins are integers and subtract exactly; maxima and
// exemplars are recomputed from the remaining contributions when the removed
// trace held them. It publishes family snapshots (Partial): all keys of one
// family in one window, tagged with the source partition and Hi, the offset
// below which every message has been processed.
//
// Stage 2, Reducer (one per partition of the partials topic, keyed by
// family): keeps for each (window, family, source) the complete snapshot with
// the highest Hi, merges across sources, folds, and emits rollups under
// deterministic IDs, each with a version: the position in the partials
// partition it reflects. The store keeps, per ID, the write with the
// highest version. It merges base outputs into coarse windows.
//
// # Why it is exact
//
// Claim 1 (a snapshot is a function of the log prefix). Let L be a source
// partition's log and L[<h] its messages below offset h. A Partition that has
// processed L[<h] holds, for every resident window W, exactly the
// contributions of S(W) restricted to L[<h], provided its state is complete:
// it has seen every message of L[<h] that matters for W. Then its snapshot of
// (W, family) at Hi = h is fixed by (W, family, source, h) alone. Two
// snapshots with the same identity are equal; of two, the higher Hi reflects
// more of the log, and once Hi passes the last message of W in L it is
// final. A zombie that publishes after losing its partition publishes true
// statements too; the reducer's "highest Hi wins" makes it harmless,
// provided every instance publishes a family again after any change to it,
// even one that comes back to the keys it last published: in between, a
// zombie or predecessor may have published the intermediate state at a
// higher Hi (a trace version replaced in one window by a newer one in
// another: found by the random simulations, seed 160).
//
// Claim 2 (completeness across restarts). A Partition commits offset c with
// metadata (high-water mark hw = its position, event-time horizons, history).
// It commits only after every partial it collected is acknowledged by the
// partials topic and every trace below hw is durably written to storage.
// Windows are in three tiers by event time: resident (contributions), index
// only (trace ID -> latest version, for VersionSpread more), forgotten. The
// committed offset is the lowest first offset of any window still indexed.
// So a successor that resumes at c re-reads every message of every indexed
// window: its resident windows are complete. Messages below hw for windows
// that are no longer resident were already reflected in published snapshots
// (a window is evicted only after its last change is published), so the
// successor only rebuilds its index from them, and publishes nothing until
// its position reaches hw.
//
// Claim 3 (versions across windows). A newer version may start in another
// window (a late root span that started earlier). If all versions of a
// trace start within Config.VersionSpread of each other (assumption A1), the
// index tier, kept VersionSpread beyond the resident tier, always knows
// every version relevant to a resident window, so "not in the index" means
// "new trace" there.
//
// Claim 4 (late data is never lost). A message whose window, or whose older
// version's window, is no longer resident (later than AllowedLateness +
// Retention) triggers a rewind: the caller re-reads the partition from an
// offset at or before the first message of every window within
// VersionSpread of the affected ones (the history of committed checkpoints
// gives one; 0, the log start, when unknown), rebuilding those windows
// exactly, then processes the message. The rebuilt windows are published
// and evicted again. A window older than MaxLateness before the partition's
// event time is the one deliberate exception: such messages are dropped and
// counted ("too-late"), which bounds how far a rewind reads.
//
// Claim 5 (the reducer). The reducer is the same kind of state machine over
// the partials topic: the rollup of (W, key) is a function of the newest
// complete snapshot per source, each a function of its source's log prefix.
// Its windows are evicted only when every active source's committed horizon
// has passed them (sources publish nothing older except after a rewind);
// its own checkpoint, catch-up and rewinds work as in Claims 2 and 4. On its
// first write of a window it reads what is stored, so keys that disappeared
// while a predecessor was down are retracted (written with zero counts).
// Coarse windows are resident with their children; a coarse window's
// children that are no longer resident are read back from storage (their
// final rollups, written before they were evicted) and merged.
//
// Backfills. Late data often comes in bulk — a region's spans delivered
// hours late, a topic replayed — many traces for windows evicted long ago.
// Two rules make that about as fast as live data without weakening a claim.
// (a) A window that never had a message (for a Partition: nor any window
// within VersionSpread of it) has nothing to rebuild: it starts resident
// and empty, with no rewind. Partitions and reducers know which evicted
// windows had messages (the seen runs, kept in the checkpoint since
// version 2 for partitions and 3 for reducers; merging runs only
// over-approximates, which costs a rewind, never exactness); a rewind
// starts at the first message of the run holding its window. (b) A
// Partition does not evict, at a checkpoint, a revived window (made
// resident behind the horizon by a rewind or by (a)) that received a
// message since the previous checkpoint, nor stop indexing the windows
// within VersionSpread of it (at most 32 such windows): Claim 3 holds for
// it as for any resident window; it is published at every Collect while it
// changes, so Checkpoint still finds everything published; and the
// committed offset stays at or before its first message, so a successor,
// for which it is forgotten, rewinds at its next message (Claim 2). A
// Reducer evicts as before (keeping windows longer would let a successor
// read a stale writer's intermediate coarse outputs as final, see Claim 6);
// a window it evicted while a backfill still fills it is rebuilt from that
// window's first partial, a re-read of the backfill's own partials only.
// Whether a late message is
// aggregated or dropped as too late depends on the partition's maximum
// event time alone, never on whether its window happens to be in memory.
//
// Claim 6 (stale writers in the reduce stage). A reducer that lost its
// partition without knowing it — a process paused (SIGSTOP, a GC or VM
// freeze) for longer than the group session, that resumes and flushes what
// it held, or a write the store keeps retrying after its caller gave up —
// writes outputs that were true of an older prefix of the partials log.
// Plain overwrites would let them replace newer rollups, and the successor,
// believing its own writes stored, would never repair them. So every output
// carries a version, and the store keeps the highest (Elasticsearch
// external_gte, a conditional upsert in the embedded store; an equal
// version replaces). Let S(p) be the outputs a reducer holds after
// processing the partition's prefix below p: like a snapshot (Claim 1) it is
// a function of (p, the log), so two writers at the same p write the same
// values, and a write at version p is true of the prefix below p.
//
// Let B (the barrier, Reducer.SetBarrier) be the end of the partition when
// the successor starts. Assumption A2: a stale writer's position never
// exceeds B — it stopped fetching when it stopped heartbeating, which is
// what made the group give its partition away before the successor started.
// A reducer labels its outputs 2 × B before it reaches its barrier B and
// 2 × position + 1 from the first Flush at or past it on (Reducer.version;
// without a barrier, as past it). Then every stale write has a version at
// most 2 × B + 1, and one of exactly 2 × B + 1 was made at position B and
// carries S(B). The successor:
//
//  1. labels its outputs 2 × B until it reaches B. These are statements
//     about an older prefix under a newer label, as are a stale writer's
//     that had not reached the same barrier (a reducer that itself took
//     over with the partition's end at B and lost it before reaching it:
//     no partial arrived in between); the writes the successor makes past
//     B fix both (next point). Labelled max(position, B), as until
//     2026-12-07, those two tied, and an equal version replaces: a stale
//     write landing after the successor's rewrite at B replaced it for good.
//  2. at its first Flush at or past B, rewrites every output it has
//     written (all are marked unknown), at 2 × position + 1. From then on
//     the store holds, for every key it has written, its value at a version
//     no stale write exceeds (an equal one carries the same value), and each
//     later change is written at a higher version still. A stale write
//     landing at any time loses, so "written and unchanged since" remains
//     "stored".
//     The rewrite covers resident windows only, so before it the successor
//     evicts nothing and commits nothing (Checkpoint reports
//     ErrUnpublished). A window it evicted earlier would keep for good the
//     tie of point 1: its final state written at 2 × B, then a stale writer
//     with the same barrier writing an older state of it at 2 × B, landing
//     later and replacing it (and read back as a coarse window's stored
//     child). Found by the random simulations, seeds 144, 334 and 337. A
//     successor that never crossed leaves its own successor the commit it
//     started from, which rebuilds every window it wrote (catch-up skips
//     nothing it wrote, rewinds recur at the same partials) and rewrites it
//     past its own barrier. Bounded: a reducer holds so at most
//     heldBeforeBarrier (64) base windows, which a takeover's catch-up after
//     a rebalance or a short outage needs; with more (a long backlog, a
//     fresh group replaying a partials topic) it evicts as before, and for
//     the windows it evicts so the gap remains — it takes a stale writer
//     that took over with the same barrier, flushed before reaching it and
//     whose write lands after the successor evicted the window.
//  3. rewrites or retracts every key a stale writer may hold that it would
//     otherwise never write (a key present in an older prefix and gone
//     since: a trace's newer version moved to another window, a value that
//     the cardinality limit now folds into Overflow): the ghost keys. A stale
//     writer's keys come from partials below B, which the successor reads
//     too (it resumes at the committed offset, before every resident
//     window's first partial, and replays every window it rewinds); each
//     key of those partials, with every combination of its values that
//     could overflow under the limit replaced by Overflow (a value could
//     only if DimensionLimit values of its dimension hash lower among all
//     the values seen), is written at the next Flush of its window — a
//     retraction if absent — and carried to the coarse windows above.
//     Windows evicted by the successor are final (no source publishes into
//     them except after a rewind, which the successor performs too) and,
//     evicted only after the rewrite of point 2 (within heldBeforeBarrier),
//     stored at a version no stale write exceeds.
//
// A stale writer also asks the group coordinator, before writing after a
// pause and at the end of its generation, whether it is still a member, and
// writes nothing if not; this narrows the window but is not relied on (a
// pause can fall between the question and the write). If A2 fails — a
// process cut off from the group coordinator but not from the partition's
// leader keeps fetching until its next heartbeat tells it — its writes are
// true of a newer prefix than B; the successor's later writes outrank them,
// except for a key it last wrote before that prefix and whose value, having
// changed in between, came back to exactly the same statistics.
//
// Replays compare: a fresh reduce group re-reading the same partials topic
// starts with B at the topic's end, so once it reaches that end its outputs
// carry versions at or above everything written from that topic (an equal
// one with the same value) and converge to the same values. (Versions
// written before 2026-12-07 were positions, never above the new labels.) A
// different partials topic has unrelated positions: its rollups go into
// emptied indices (or another index prefix or store file).
//
// Together: every rollup stored for a key (the write with the highest
// version) is the statistics of S(W) over the whole log, whatever instances
// crashed (SIGKILL included), paused and resumed, zombies published or
// wrote, versions were re-emitted or arrived out of order, and whatever was
// replayed: replaying with a fresh group produces the same snapshots again
// (equal Hi gives equal content; the reducer keeps the highest Hi).
//
// What it relies on: trace IDs keyed to partitions (all versions in one
// partition); a (trace ID, version) pair always carries the same spans (the
// ingester's re-emission contract); A1; A2; a store that keeps the highest
// version per rollup ID; rollups of one store written from one partials
// topic whose partition count does not change (a family's partition, and so
// its positions, must stay put); the traces topic retaining at least
// the checkpoint lag (minutes) and, for rewinds, back to MaxLateness; and the
// same Config in every instance (checkpoints carry a fingerprint and refuse
// another window or dimension set).
//
// # Time
//
// Nothing here reads a clock. Event time comes from trace starts, bounded by
// the message's log time plus MaxFuture; watermarks and idleness come from
// the caller.
package rollup
