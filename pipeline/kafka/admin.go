package kafka

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// requestTimeout bounds one admin request.
const requestTimeout = 10 * time.Second

// Admin answers questions about topics, offsets and group commits, and
// reads ranges of a partition. Build it with NewAdmin; Close it when done.
// Safe for concurrent use.
type Admin struct {
	cc     ClientConfig
	tr     *kafkago.Transport
	client *kafkago.Client
	dialer *kafkago.Dialer
}

// NewAdmin builds an Admin for the cluster of cc; it connects lazily. With
// topics, it keeps the metadata of these only and works on no other topic
// (kafka-go would otherwise fetch and decode every topic's metadata at each
// refresh, every 6 s: on a cluster with thousands of topics a tenth of an
// ingester's CPU).
func NewAdmin(cc ClientConfig, topics ...string) (*Admin, error) {
	if err := cc.Validate(); err != nil {
		return nil, err
	}
	tr, err := cc.Transport()
	if err != nil {
		return nil, err
	}
	tr.MetadataTopics = topics
	d, err := cc.Dialer()
	if err != nil {
		return nil, err
	}
	return &Admin{cc: cc, tr: tr, dialer: d, client: &kafkago.Client{Addr: kafkago.TCP(cc.Brokers...), Transport: tr, Timeout: requestTimeout}}, nil
}

// Close closes the Admin's idle connections.
func (a *Admin) Close() { a.tr.CloseIdleConnections() }

// TopicSpec describes a topic to create.
type TopicSpec struct {
	Name       string
	Partitions int
	// ReplicationFactor: -1 (or 0) means the brokers' default.
	ReplicationFactor int
	// Configs are topic configs (e.g. "retention.ms": "604800000").
	Configs map[string]string
}

// CreateTopics creates the topics that do not exist yet; existing ones are
// left as they are.
func (a *Admin) CreateTopics(ctx context.Context, topics ...TopicSpec) error {
	if len(topics) == 0 {
		return nil
	}
	req := &kafkago.CreateTopicsRequest{}
	for _, t := range topics {
		rf := t.ReplicationFactor
		if rf == 0 {
			rf = -1
		}
		tc := kafkago.TopicConfig{Topic: t.Name, NumPartitions: t.Partitions, ReplicationFactor: rf}
		keys := make([]string, 0, len(t.Configs))
		for k := range t.Configs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			tc.ConfigEntries = append(tc.ConfigEntries, kafkago.ConfigEntry{ConfigName: k, ConfigValue: t.Configs[k]})
		}
		req.Topics = append(req.Topics, tc)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*requestTimeout)
	defer cancel()
	resp, err := a.client.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	var errs []error
	for t, err := range resp.Errors {
		if err != nil && !errors.Is(err, kafkago.TopicAlreadyExists) {
			errs = append(errs, fmt.Errorf("create topic %s: %w", t, err))
		}
	}
	return errors.Join(errs...)
}

// Partitions returns the number of partitions of topic.
func (a *Admin) Partitions(ctx context.Context, topic string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	md, err := a.client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	for _, t := range md.Topics {
		if t.Name == topic {
			if t.Error != nil {
				return 0, fmt.Errorf("metadata of %s: %w", topic, t.Error)
			}
			return len(t.Partitions), nil
		}
	}
	return 0, fmt.Errorf("metadata of %s: %w", topic, kafkago.UnknownTopicOrPartition)
}

// Offsets returns a partition's first retained offset and its end (the
// next offset to be written).
func (a *Admin) Offsets(ctx context.Context, topic string, partition int) (first, end int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := a.client.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{
		topic: {kafkago.FirstOffsetOf(partition), kafkago.LastOffsetOf(partition)},
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

// OffsetsForTimes returns, for every partition of topic, the first offset
// whose record timestamp is at or after t (Kafka's ListOffsets by
// timestamp), or the partition's end when no record is that late.
func (a *Admin) OffsetsForTimes(ctx context.Context, topic string, t time.Time) (map[int]int64, error) {
	n, err := a.Partitions(ctx, topic)
	if err != nil {
		return nil, err
	}
	reqs := make([]kafkago.OffsetRequest, n)
	for p := range n {
		reqs[p] = kafkago.TimeOffsetOf(p, t)
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := a.client.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("offsets of %s at %s: %w", topic, t.Format(time.RFC3339Nano), err)
	}
	out := make(map[int]int64, n)
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("offsets of %s/%d at %s: %w", topic, p.Partition, t.Format(time.RFC3339Nano), p.Error)
		}
		off := int64(-1)
		for o := range p.Offsets {
			if off < 0 || o < off {
				off = o
			}
		}
		if off < 0 {
			// No record at or after t: the broker answers -1; reading
			// from the end reads nothing of the range.
			_, end, err := a.Offsets(ctx, topic, p.Partition)
			if err != nil {
				return nil, err
			}
			off = end
		}
		out[p.Partition] = off
	}
	if len(out) != n {
		return nil, fmt.Errorf("offsets of %s at %s: %d of %d partitions answered", topic, t.Format(time.RFC3339Nano), len(out), n)
	}
	return out, nil
}

// Committed returns the group's commit of a partition (Offset negative
// when nothing is committed).
func (a *Admin) Committed(ctx context.Context, group, topic string, partition int) (Commit, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := a.client.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: {partition}}})
	if err == nil {
		err = resp.Error
	}
	if errors.Is(err, kafkago.GroupIdNotFound) {
		return Commit{Offset: -1}, nil // never committed (kfake's answer; Kafka answers -1)
	}
	if err != nil {
		return Commit{Offset: -1}, fmt.Errorf("committed offset of %s/%d in group %s: %w", topic, partition, group, err)
	}
	for _, p := range resp.Topics[topic] {
		if p.Partition == partition {
			if p.Error != nil {
				return Commit{Offset: -1}, fmt.Errorf("committed offset of %s/%d in group %s: %w", topic, partition, group, p.Error)
			}
			return Commit{Offset: p.CommittedOffset, Metadata: p.Metadata}, nil
		}
	}
	return Commit{Offset: -1}, nil
}

// Member is a consumer group membership a commit is made under: a
// generation's ID and the member's ID. The zero Member commits outside any
// generation (allowed only while the group has no live members).
type Member struct {
	Generation int32
	ID         string
}

// Commit stores c for a partition in group, as m.
func (a *Admin) Commit(ctx context.Context, group string, m Member, topic string, partition int, c Commit) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	gen := int(m.Generation)
	if m.ID == "" {
		gen = -1
	}
	resp, err := a.client.OffsetCommit(ctx, &kafkago.OffsetCommitRequest{
		GroupID:      group,
		GenerationID: gen,
		MemberID:     m.ID,
		Topics:       map[string][]kafkago.OffsetCommit{topic: {{Partition: partition, Offset: c.Offset, Metadata: c.Metadata}}},
	})
	if err != nil {
		return fmt.Errorf("commit %s/%d@%d in group %s: %w", topic, partition, c.Offset, group, err)
	}
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			return fmt.Errorf("commit %s/%d@%d in group %s: %w", topic, partition, c.Offset, group, p.Error)
		}
	}
	return nil
}

// ReadRange calls fn for every record of the partition with an offset in
// [from, to), in order, from the log's start when from is below it
// (missing then says how many offsets retention deleted). It stops at the
// first error of fn, returning it.
func (a *Admin) ReadRange(ctx context.Context, topic string, partition int, from, to int64, fn func(Record) error) (missing int64, err error) {
	first, _, err := a.Offsets(ctx, topic, partition)
	if err != nil {
		return 0, err
	}
	if from < first {
		missing, from = first-from, first
	}
	if from >= to {
		return missing, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f := startFetch(fetchConfig{brokers: a.cc.Brokers, dialer: a.dialer, topic: topic, partition: partition}, from, 4)
	defer f.stop()
	for {
		select {
		case <-ctx.Done():
			return missing, fmt.Errorf("read %s/%d [%d,%d): %w", topic, partition, from, to, ctx.Err())
		case err := <-f.errs:
			return missing, fmt.Errorf("read %s/%d [%d,%d): %w", topic, partition, from, to, err)
		case recs := <-f.batches:
			for _, r := range recs {
				if r.Offset >= to {
					return missing, nil
				}
				if err := fn(r); err != nil {
					return missing, err
				}
				if r.Offset+1 >= to {
					return missing, nil
				}
			}
			f.recycle(recs)
		}
	}
}

// MissingTopics returns those of topics the brokers do not know.
func (a *Admin) MissingTopics(ctx context.Context, topics ...string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	md, err := a.client.Metadata(ctx, &kafkago.MetadataRequest{Topics: topics})
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	var missing []string
	for _, t := range md.Topics {
		switch {
		case t.Error == nil:
		case errors.Is(t.Error, kafkago.UnknownTopicOrPartition):
			missing = append(missing, t.Name)
		default:
			return nil, fmt.Errorf("metadata of topic %s: %w", t.Name, t.Error)
		}
	}
	return missing, nil
}

// Retriable reports whether trying again may cure err, an error of this
// package: a broker unreachable or timing out, a leader or controller
// moving. Other errors (no permission, an invalid request) are final.
func Retriable(err error) bool { return err != nil && retriable(err) }
