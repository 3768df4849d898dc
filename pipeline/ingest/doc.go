// Package ingest is the ingester stage: a member of a consumer group
// on the spans topic that assembles complete traces per partition
// (pipeline/ingest/assemble), explains them (dag.Analyze) and publishes one message
// per trace version (wire/assembledpb) to the traces topic, keyed by trace ID.
//
// # Concurrency
//
// The stage runs on pipeline/kafka's consumer-group runtime (Group, stage
// "ingester"): one goroutine per assigned partition drives that
// partition's worker (a kafka.Processor), so each worker owns its
// partition's Assembler and needs no locks. A fetch goroutine per
// partition (the partition leader read over one connection) feeds it
// chunks of up to 512 messages, so the hand-over costs one channel
// operation per chunk rather than per span. One asynchronous writer
// (acks=all) is shared; the runtime hands every acknowledgement back to
// the worker that produced the message, on its goroutine (Acked). Each
// partition commits explicitly, every --commit-interval and when it
// stops, with its metadata.
//
// Run joins the group only once the spans topic exists with a leader for
// every partition (pipeline/kafka.WaitForTopics, after --create-topics if
// set; logged at WARN while it waits, /healthz 503 meanwhile): kafka-go's
// group would assign nothing of a missing topic and never look again, and
// the collector's first produce may create it only later.
//
// # Offsets: what is committed
//
// A partition's committed offset C is the lowest offset of any span of a
// trace still buffered (not emitted, or with spans newer than its last
// emission) or whose emission is not acknowledged yet, of any undecodable
// message whose dead letter is not acknowledged yet, or else the next
// offset to read. So every span below the committed offset is part of an
// output message the broker acknowledged with acks=all, or in the
// dead-letter topic. Emitted, acknowledged traces retained for
// --late-horizon do not hold C: they are covered by the commit's lookback
// (below). C therefore reaches the log end about an idle timeout after
// traffic stops (plus the acknowledgement and one --commit-interval), and
// stays there after a clean shutdown: the consumer lag standard tools show
// (kafka-consumer-groups, lag exporters) returns to 0 on an idle, healthy
// pipeline.
//
// # Crash, rebalance and shutdown
//
// After a crash (SIGKILL) the partition's next owner reads from the commit's
// lookback (below), at or before the lowest offset of every trace that was
// buffered or retained, and rebuilds each of them from all its spans. Traces
// entirely below the committed offset are rebuilt as already emitted
// (retained for late spans, not emitted again); the others are emitted
// again. Versions are the number of unique spans and every emission carries
// the trace's spans up to some offset, so a rebuilt version is identical to
// the one emitted before (same trace ID, version, spans, analysis;
// completion and timestamps may differ). Re-emissions are duplicates
// downstream treats as the same thing. The price is re-reading about (max
// wait + late horizon) of the partition's traffic on every ownership change.
//
// On revocation (rebalance) and on shutdown (context cancelled, SIGTERM)
// every worker: stops fetching; with --flush-on-shutdown emits its buffered,
// half-built traces with completion "shutdown" (otherwise it emits nothing
// half-built); waits up to --shutdown-grace for outstanding outputs and dead
// letters to be acknowledged; commits the safe offset (nothing if an output
// failed or the grace ran out); frees its state. The member then leaves the
// group and the next owner re-reads the rest. Flushing gives downstream
// partial traces sooner, at the cost of extra versions: the next owner
// re-reads those spans and emits the complete trace as a higher version.
// A produce error (after the writer's retries) stops the partition without
// a commit; the runtime restarts it from its committed offset after a
// backoff (tracepipe_kafka_partition_restarts_total).
//
// The lookback: each commit carries, as its Kafka commit metadata
// ("tracepipe/v1 lookback=N"), the first offset of the earliest trace still
// held (buffered or retained for late spans) or evicted (past
// --late-horizon, or early when the in-flight budget is full) with a
// message at or after the committed offset (assemble.LowestOffset,
// assemble.Lookback). The next owner reads from there, with the offsets
// below the commit as a shadow range: traces entirely below it are rebuilt
// but not emitted, straddling ones are rebuilt whole, so every re-emitted
// version is identical to the earlier one with its number, and a late span
// of a retained trace still makes a complete next version. This is exact
// while an evicted trace's tombstone is remembered (--max-tombstones per
// partition, oldest forgotten first); past that a straddling trace could be
// rebuilt from its later spans only. Spans arriving after their trace was
// evicted are dropped and counted (dropped_spans_total{reason="too_late"});
// a replay that sees them inside its range may include them in a new,
// higher version.
//
// # Reading spans
//
// Of a Jaeger protobuf span (the collectors' Kafka format) only the trace
// and span IDs are read on arrival (wire.ReadJaegerProtoIDs: the message's
// framing and its IDs are checked, nothing allocated), and it is buffered
// as the message bytes; a trace's spans are decoded once, when it is
// emitted, in bulk and without copying (wire.JaegerProtoDecoder.Decode). A
// message whose IDs do not read is dead-lettered on arrival; a span that
// does not decode at emission is dead-lettered then and the trace emitted
// without it (assemble.Assembler.TakeRejected), its offset committed once
// the dead letter is acknowledged, like any other. Until 2026-12-07 every
// span was fully validated on arrival and decoded again at emission: a
// fourteenth of the ingester's CPU (cmd/ingester on issue 16's workload,
// six runs each alternating: 1.82 CPU-s against 1.96). Jaeger repeats the
// whole process in every span: a process seen before is neither validated
// nor decoded again, the spans of one process share its decoded form, and
// the output encoder copies its encoded bytes from the trace's first span
// of that process. Other encodings are decoded on arrival and buffered re-encoded as
// Jaeger protobuf.
//
// # Limits and backpressure
//
// --max-traces-in-flight and --max-bytes-in-flight bound buffered plus
// retained traces per instance. When full, retained traces are evicted
// (oldest emission first, acknowledged ones only); if still full, workers
// stop taking messages from their fetchers (a worker finishes the message
// in hand and keeps the rest of its chunk; fetching stops once the
// fetcher's buffer of four chunks is full) until emissions and
// acknowledgements free space.
// Limits can be exceeded by at most one message per partition. Idle timeouts
// keep running while a partition is paused, so buffered traces still leave
// and free the budget; a budget smaller than the working set (traces arriving
// within an idle timeout plus the late horizon) therefore emits traces early
// and, once their retention is evicted for space, drops their later spans as
// too late — size the budget from the in-flight metrics.
// --max-output-bytes-in-flight (default 8 MiB) bounds the encoded trace
// output per instance that is produced and not yet acknowledged (the
// capacity of the buffers holding it: each is of a power-of-two size class
// and reused once acknowledged). Due traces
// are decoded, analysed and encoded one at a time while it has room; the
// rest stay due, in order, buffered (holding the commit like any buffered
// trace), and are emitted as acknowledgements free room or at the next tick
// (tracepipe_ingester_emit_waiting_partitions counts partitions with traces
// waiting). A partition with nothing in flight always emits one trace, so
// none stalls and each may exceed the bound by one trace. So a burst that
// falls due at once (the traces of a backlog read after a restart, or of a
// paused partition) costs the memory of its buffered spans plus the bound,
// not a decoded, analysed and encoded copy of every due trace at the same
// moment; emission then runs at the pace of the acknowledgements. A flush
// on shutdown (--flush-on-shutdown) emits every buffered trace at once: it
// cannot wait for acknowledgements.
// --max-spans-per-trace truncates a trace (excess spans counted, the trace
// flagged). A trace version whose encoding exceeds --max-message-bytes is
// dropped and counted (dropped_traces_total{reason="too_large"}).
//
// # Re-key mode
//
// With --rekey-to TOPIC the stage does not assemble: every decoded span is
// re-published to TOPIC as one Jaeger protobuf message keyed by its trace ID,
// and a source offset is committed once all messages derived from it are
// acknowledged. Producers that batch spans of many traces per message (OTLP)
// then feed a second ingester group reading TOPIC, which assembles
// correctly at any scale.
//
// # Metrics
//
// tracepipe_ingester_: messages_in_total, spans_in_total, decode_errors_total,
// dead_letters_total, skipped_messages_total (deleted by retention before
// they were read), empty_messages_total, traces_out_total{completion}, truncated_traces_total,
// late_spans_total, duplicate_spans_total, dropped_spans_total{reason},
// dropped_traces_total{reason}, produce_errors_total, rekeyed_messages_total,
// inflight_traces, inflight_spans, inflight_bytes, fetch_paused_partitions,
// output_inflight_bytes, emit_waiting_partitions, assembly_delay_seconds (histogram), committed_offset{partition},
// commit_lag{partition}, consumer_lag{partition}. Partition labels above 255
// share "__overflow__". Membership, assignment and commits are the
// runtime's tracepipe_kafka_*{stage="ingester"} (partitions_assigned and
// rebalances_total replace the former tracepipe_ingester_assigned_partitions
// and generations_total, which were the same numbers).
// Every drop (an empty message, a dead letter, a span past the late horizon,
// a trace too large to publish) is also logged with its reason, at most one
// line per reason every 10 s (internal/ratelog).
package ingest
