// Package ingest is the ingester stage: a member of a kafka-go consumer group
// on the spans topic that assembles complete traces per partition
// (pipeline/assemble), explains them (dag.Analyze) and publishes one message
// per trace version (pipeline/tracepb) to the traces topic, keyed by trace ID.
//
// # Concurrency
//
// The group is driven with kafka.ConsumerGroup and its Generations rather than
// a kafka.Reader with a GroupID: a Generation names the partitions this member
// owns, starts one worker goroutine per partition (Generation.Start) and
// tells every worker, by cancelling its context, when the assignment ends, so
// each partition has an explicit lifecycle and an explicit, per-partition
// commit (Generation.CommitOffsets). Each worker owns its partition's
// Assembler and needs no locks; a fetch goroutine per partition
// (pipeline/fetch: the partition leader read over one kafka-go Conn) feeds
// it chunks of up to 512 messages, so the hand-over costs one channel
// operation per chunk rather than per span. One async kafka.Writer
// (RequiredAcks=all) is shared; its Completion callback hands every
// acknowledgement back to the worker that produced the message.
//
// Run joins the group only once the spans topic exists with a leader for
// every partition (pipeline/kafka.WaitForTopics, after --create-topics if
// set; logged at WARN while it waits, /healthz 503 meanwhile): kafka-go's
// group would assign nothing of a missing topic and never look again, and
// the collector's first produce may create it only later.
//
// # Offsets: what is committed
//
// A partition's committed offset C is the lowest offset of any span still
// buffered or retained for late spans, of any undecodable message whose
// dead letter is not acknowledged yet, or else the next offset to read.
// Emitted traces stay retained (and hold the commit) at least until the
// broker acknowledged their output, and then for --late-horizon. So every
// span below the committed offset is part of an output message the broker
// acknowledged with acks=all, or in the dead-letter topic.
//
// # Crash, rebalance and shutdown
//
// After a crash (SIGKILL) the partition's next owner reads from the committed
// offset and rebuilds every trace that was buffered or retained: all their
// spans lie at or after it. Versions are the number of unique spans and every
// emission carries the trace's spans up to some offset, so a rebuilt version
// is identical to the one emitted before (same trace ID, version, spans,
// analysis; completion and timestamps may differ). Re-emissions are
// duplicates downstream treats as the same thing. The price is re-reading
// about (max wait + late horizon) of the partition's traffic on every
// ownership change.
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
// A produce error (after the writer's retries) ends the generation: the
// member rejoins and its partitions restart from their committed offsets.
//
// Straddling traces: a trace evicted from retention (past --late-horizon, or
// early when the in-flight budget is full) may have its first span below the
// committed offset and a later message at or after it. Each commit therefore
// carries, as its Kafka commit metadata ("tracepipe/v1 lookback=N"), the first
// offset of the earliest such trace (assemble.Lookback). The next owner reads
// from there: traces entirely below the committed offset are rebuilt but not
// emitted, straddling ones are rebuilt whole, so every re-emitted version is
// identical to the earlier one with its number. This is exact while the
// trace's tombstone is remembered (--max-tombstones per partition, oldest
// forgotten first); past that a straddling trace could be rebuilt from its
// later spans only. Spans arriving after their trace was evicted are dropped
// and counted (dropped_spans_total{reason="too_late"}); a replay that sees
// them inside its range may include them in a new, higher version.
//
// # Reading spans
//
// Jaeger protobuf spans (the collectors' Kafka format) are checked on
// arrival without being built (wire.JaegerProtoDecoder.Check: every field is
// validated, nothing allocated) and buffered as the message bytes; a
// trace's spans are decoded once, when it is emitted, in bulk and without
// copying (wire.JaegerProtoDecoder.Decode). Other encodings are decoded on
// arrival and buffered re-encoded as Jaeger protobuf.
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
// assembly_delay_seconds (histogram), committed_offset{partition},
// commit_lag{partition}, consumer_lag{partition}, assigned_partitions,
// generations_total. Partition labels above 255 share "__overflow__".
// Every drop (an empty message, a dead letter, a span past the late horizon,
// a trace too large to publish) is also logged with its reason, at most one
// line per reason every 10 s (internal/ratelog).
package ingest
