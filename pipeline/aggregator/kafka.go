package aggregator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/pipeline/fetch"
	tpkafka "github.com/tracepipe/tracepipe/pipeline/kafka"
)

// runGroup is a member of a consumer group on one topic: for every
// generation it starts work for each assigned partition (Generation.Start
// cancels their context when the generation ends, and the next generation
// starts only after they returned). It returns when ctx is cancelled.
func (a *Aggregator) runGroup(ctx context.Context, group, topic, stage string, work func(gctx context.Context, gen *kafka.Generation, partition int, offset int64)) error {
	// Join only once the topic exists with leaders: kafka-go's group would
	// assign nothing of a missing topic and never look again.
	if err := tpkafka.WaitForTopics(ctx, a.cfg.Brokers, []string{topic}, tpkafka.TopicWait{Logger: a.log, Stage: "aggregator " + stage}); err != nil {
		return nil // ctx cancelled: WaitForTopics returns only then
	}
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                group,
		Brokers:           a.cfg.Brokers,
		Dialer:            a.dialer,
		Topics:            []string{topic},
		SessionTimeout:    a.cfg.SessionTimeout,
		HeartbeatInterval: a.cfg.SessionTimeout / 5,
		RebalanceTimeout:  30 * time.Second,
		JoinGroupBackoff:  time.Second,
		StartOffset:       kafka.FirstOffset,
		GroupBalancers:    []kafka.GroupBalancer{kafka.RangeGroupBalancer{}},
		Timeout:           10 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("%s consumer group: %w", stage, err)
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		// Closing the group ends the generation: workers see their context
		// done, finish, and Close returns after they have.
		cg.Close()
	}()
	defer func() { <-stopped }()
	for {
		gen, err := cg.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, kafka.ErrGroupClosed) {
				return nil
			}
			a.log.Warn("join group", "stage", stage, "group", group, "err", err)
			continue
		}
		assigned := gen.Assignments[topic]
		a.m.partitions.WithLabelValues(stage).Set(float64(len(assigned)))
		a.setHealthy(stage, true)
		a.log.Info("generation", "stage", stage, "id", gen.ID, "partitions", len(assigned))
		for _, pa := range assigned {
			gen.Start(func(gctx context.Context) { work(gctx, gen, pa.ID, pa.Offset) })
		}
	}
}

func (a *Aggregator) reader(topic string, partition int) *kafka.Reader {
	return fetch.NewReader(a.cfg.Brokers, a.dialer, topic, partition)
}

// startFetcher reads partition of topic, the input of stage ("map" or
// "reduce"), from offset (see fetch.Fetcher: a full channel stops fetching).
func (a *Aggregator) startFetcher(stage, topic string, partition int, offset int64) *fetch.Fetcher {
	return fetch.Start(fetch.Config{Brokers: a.cfg.Brokers, Dialer: a.dialer, Topic: topic, Partition: partition,
		OnSkip: func(from, to int64) {
			a.log.Error(stage+": messages deleted by retention before they were read", "partition", partition, "from", from, "to", to)
			a.m.dropped.WithLabelValues(stage, "retention").Add(float64(to - from))
		}}, offset, 512)
}

// readRange calls fn for every message of the partition with an offset in
// [from, to), from the log's start when from is below it (it then reports
// how many offsets were missing).
func (a *Aggregator) readRange(ctx context.Context, topic string, partition int, from, to int64, fn func(kafka.Message) error) (missing int64, err error) {
	first, _, err := a.offsets(ctx, topic, partition)
	if err != nil {
		return 0, err
	}
	if from < first {
		missing = first - from
		from = first
	}
	if from >= to {
		return missing, nil
	}
	r := a.reader(topic, partition)
	defer r.Close()
	if err := r.SetOffset(from); err != nil {
		return missing, fmt.Errorf("set offset %d: %w", from, err)
	}
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return missing, fmt.Errorf("re-read %s/%d at %d: %w", topic, partition, from, err)
		}
		if m.Offset >= to {
			return missing, nil
		}
		if err := fn(m); err != nil {
			return missing, err
		}
		if m.Offset+1 >= to {
			return missing, nil
		}
	}
}

// offsets returns the partition's first offset and end (the next offset).
func (a *Aggregator) offsets(ctx context.Context, topic string, partition int) (first, end int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := a.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		topic: {kafka.FirstOffsetOf(partition), kafka.LastOffsetOf(partition)},
	}})
	if err != nil {
		return 0, 0, fmt.Errorf("list offsets of %s/%d: %w", topic, partition, err)
	}
	for _, p := range resp.Topics[topic] {
		if p.Partition == partition {
			if p.Error != nil {
				return 0, 0, fmt.Errorf("list offsets of %s/%d: %w", topic, partition, p.Error)
			}
			return p.FirstOffset, p.LastOffset, nil
		}
	}
	return 0, 0, fmt.Errorf("list offsets of %s/%d: no answer", topic, partition)
}

// committed returns the group's committed offset of a partition and its
// metadata; ok is false when nothing is committed.
func (a *Aggregator) committed(ctx context.Context, group, topic string, partition int) (offset int64, meta string, ok bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := a.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: {partition}}})
	if err != nil {
		return 0, "", false, fmt.Errorf("fetch committed offset of %s/%d: %w", topic, partition, err)
	}
	if resp.Error != nil {
		return 0, "", false, fmt.Errorf("fetch committed offset of %s/%d: %w", topic, partition, resp.Error)
	}
	for _, p := range resp.Topics[topic] {
		if p.Partition == partition {
			if p.Error != nil {
				return 0, "", false, fmt.Errorf("fetch committed offset of %s/%d: %w", topic, partition, p.Error)
			}
			return p.CommittedOffset, p.Metadata, p.CommittedOffset >= 0, nil
		}
	}
	return 0, "", false, nil
}

// commit commits offset with metadata for a partition, as a member of gen.
func (a *Aggregator) commit(gen *kafka.Generation, group, topic string, partition int, offset int64, meta string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := a.client.OffsetCommit(ctx, &kafka.OffsetCommitRequest{
		GroupID:      group,
		GenerationID: int(gen.ID),
		MemberID:     gen.MemberID,
		Topics:       map[string][]kafka.OffsetCommit{topic: {{Partition: partition, Offset: offset, Metadata: meta}}},
	})
	if err != nil {
		return err
	}
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			return p.Error
		}
	}
	return nil
}

// ensureTopic creates topic with n partitions unless it exists.
func (a *Aggregator) ensureTopic(ctx context.Context, topic string, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := a.client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: n, ReplicationFactor: -1,
		ConfigEntries: []kafka.ConfigEntry{{ConfigName: "retention.ms", ConfigValue: "604800000"}},
	}}})
	if err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	if e := resp.Errors[topic]; e != nil && !errors.Is(e, kafka.TopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", topic, e)
	}
	return nil
}
