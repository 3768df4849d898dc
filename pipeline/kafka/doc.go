// Package kafka is tracepipe's Kafka runtime, the one place a Kafka client
// is used (issue 10): connection settings (ClientConfig), the consumer-group
// runtime every stage runs on (Group and Processor), fetching, commits with
// metadata, offset and range reads and topic administration (Admin), the
// producer the collector uses (Producer), waiting for topics
// (WaitForTopics), and one /metrics + /healthz handler (Handler). Outside
// tests no other package imports kafka-go (TestOnlyImporterOfKafkaGo keeps
// it so; examples/ and the internal/kafkatest helper excepted).
//
// # The consumer-group runtime
//
// A stage implements Processor for one partition and hands a constructor
// to a Group:
//
//	g, err := kafka.NewGroup(kafka.GroupConfig{
//		Client: cc, Group: "tracepipe-indexer", Topic: "tracepipe-traces", Stage: "indexer",
//		NewProcessor: func(a kafka.Assignment) (kafka.Processor, error) { return newPartition(a), nil },
//	}, kafka.GroupOptions{Logger: log, Registry: reg})
//	err = g.Run(ctx) // until ctx is cancelled
//
// Run waits until the topic exists with a leader for every partition
// (WaitForTopics: kafka-go's groups assign nothing of a missing topic and
// never look again), joins the group (kafka-go's ConsumerGroup, range
// assignment) and, for every generation, runs ONE goroutine per assigned
// partition. That goroutine owns the partition's Processor, so a processor
// needs no locks, and it selects on four things:
//
//   - chunks of up to ChunkSize records from the partition's fetcher (a
//     goroutine reading the partition leader over one connection, at most
//     FetchBuffer chunks ahead), handed to Handle. Handle returns how many
//     it took; fewer than offered is backpressure: the rest is kept, no
//     more is fetched (the fetcher stops once its buffer is full), and the
//     rest is offered again after the next Acked or Tick.
//   - acknowledgements of messages the processor produced through its
//     Assignment's Output (one writer per Group, acks=all, asynchronous):
//     the writer's completion routes each one back to the partition that
//     produced it, and the partition's goroutine calls Acked. A processor
//     therefore sees its acks in the same goroutine as its records.
//   - a ticker (TickInterval): Tick(ctx, now) with the group clock's time,
//     then, every CommitInterval, Safe() and a commit when the position
//     moved or its metadata changed — never backwards within an
//     assignment.
//   - the generation's end (revocation, shutdown).
//
// Commits carry metadata (Commit.Metadata, Kafka's commit metadata): what
// a restart needs besides the offset (the ingester's "lookback=N"). Open
// receives the group's commit, metadata included, and returns where to
// fetch from. Records below the offset a processor reports as Safe must be
// durably reflected in acknowledged output (or a durable store).
//
// When a partition stops (its generation ended, the member leaves, or a
// processor method returned an error) the runtime stops fetching, calls
// Close (which may still produce: a flush), delivers the outstanding acks to
// Acked for up to CloseTimeout, commits Safe() (not if an ack failed or the
// timeout ran out), then calls Release if the processor implements
// Releaser. A processor implementing Committer is told of every commit
// stored (for its own metrics). After an error the partition is restarted from the group's
// commit with a fresh processor after a capped backoff (counted in
// partition_restarts_total); the rest of the generation is not disturbed.
// A failed commit is counted and logged and retried at the next interval.
//
// Group.Healthy is true while the member is in a generation. Handler serves
// /metrics and /healthz over any number of checks (Group.Check), so one
// process running several stages (tracepipe run) answers for all of them.
//
// # Metrics
//
// Every Group registers (shared vectors when several stages share a
// registry), labelled by stage:
//
//	tracepipe_kafka_consumer_lag{stage,topic,partition}                 log end − committed offset (what kafka-consumer-groups shows)
//	tracepipe_kafka_processed_lag{stage,topic,partition}                log end − next offset to hand to the processor
//	tracepipe_kafka_committed_offset{stage,topic,partition}             last committed offset
//	tracepipe_kafka_last_commit_timestamp_seconds{stage,topic,partition} time of the last successful commit
//	tracepipe_kafka_commits_total{stage,result="ok|error"}
//	tracepipe_kafka_partitions_assigned{stage}
//	tracepipe_kafka_rebalances_total{stage}                             generations joined
//	tracepipe_kafka_group_member{stage}                                 1 while a live member
//	tracepipe_kafka_skipped_records_total{stage,topic}                  offsets deleted by retention before they were read (also told to GroupConfig.OnSkip)
//	tracepipe_kafka_partition_restarts_total{stage}                     processors restarted after an error
//
// Per-partition series are removed when the partition is revoked; lag is
// updated every tick (the log end comes from each fetch, also an empty
// one, so it stays current on an idle partition). Partition labels above
// 255 share "__overflow__".
//
// # Admin
//
// Admin (NewAdmin(ClientConfig)) creates topics, reads a partition's first
// and end offsets, the offsets for a timestamp (OffsetsForTimes, Kafka's
// ListOffsets by time: where `tracepipe replay` starts), a group's commit
// with its metadata, commits with metadata (as a generation's member or
// outside any generation), and reads a range [from, to) of a partition
// through the same fetcher as the runtime.
//
// # Waiting for topics
//
// kafka-go's consumer groups assign no partition of a topic that is missing
// when the member joins, and never look again (WatchPartitionChanges' watcher
// exits on a missing topic), so a topic created later — auto-created by the
// collector's first produce, or by the ingester after the aggregator started
// — would not be read until a restart. WaitForTopics polls the brokers'
// metadata (capped exponential backoff, without auto-creating anything)
// until every topic exists with a leader for every partition, logs
// "waiting for topic X to exist" at WARN first and then at most once per
// interval (internal/ratelog), and returns as soon as its context is done.
//
// # Producer
//
// A Producer publishes keyed messages to one topic with acks=all, batching
// per partition (kafka-go's Writer in asynchronous mode, partitioned by
// kafka.Hash: sarama's and Jaeger's collector's key hash). Its buffer is the
// bounded queue in front of Kafka: MaxBufferedBytes bounds the bytes of
// messages taken and not yet acknowledged (key + value + MessageOverhead
// each). TryProduce takes a group of
// messages whole or refuses it with ErrFull, never blocking. A message
// whose produce fails is retried (after RetryBackoff) until it is
// acknowledged or Close's grace period ends; only then is it counted as
// lost and its group's callback told the error.
//
// Send is TryProduce for callers that wait: it waits out a full buffer
// and returns once the group is acknowledged (the dead-letter writer,
// `tracepipe gen`). Options.Client gives the producer's connection its TLS
// and SASL.
//
// Close stops taking messages, waits for the buffer to drain (bounded by
// its context), then closes the writer. Every goroutine is stopped and
// waited for by Close.
//
// Metrics (registered on Options.Registry, label producer=Options.Name):
//
//	tracepipe_producer_buffered_bytes          gauge: bytes taken, not yet acknowledged
//	tracepipe_producer_buffer_limit_bytes      gauge: MaxBufferedBytes
//	tracepipe_producer_messages_total{result}  counter: acked | lost
//	tracepipe_producer_refused_total           counter: groups refused because the buffer was full
//	tracepipe_producer_retries_total           counter: messages produced again after an error
//	tracepipe_producer_ack_seconds             histogram: TryProduce to the last acknowledgement of the group
package kafka
