// Package kafkatest runs an in-process fake Kafka cluster (franz-go's kfake)
// for fast unit tests of code built on segmentio/kafka-go, and offers small
// helpers (create a topic, produce, read committed offsets) that work the
// same against the fake and against the real broker of internal/testenv.
//
// What kafka-go v0.4.51 does against kfake, as measured: produce, fetch,
// consumer groups (join, sync, heartbeat, leave), offset commits and fetches,
// rebalances and offset lookup by time all work.
//
// Two kafka-go habits need care, and the helpers here take it:
//   - kafka-go's package-level DefaultTransport caches metadata per address;
//     a new fake cluster may reuse a port of an old one and get stale
//     answers. Give every kafka.Writer and kafka.Client a Transport of its own
//     (NewTransport).
//   - kafka-go's Writer creates topics lazily and cannot choose partition
//     counts; create topics up front with CreateTopic (kafka.Client.CreateTopics).
//
// kfake rejects group session timeouts under its minimum (6 s by default, as
// real Kafka); NewCluster lowers that minimum to 100 ms so tests can use short
// session timeouts and heartbeat intervals.
package kafkatest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/tracepipe/tracepipe/tracegen"
)

// Cluster is a running kfake cluster, closed when the test that made it ends.
type Cluster struct {
	// Fake is the underlying cluster, for fault injection (Control, RemoveNode, ...).
	Fake *kfake.Cluster
	// Brokers are the host:port addresses its brokers listen on (127.0.0.1).
	Brokers []string
}

// NewCluster starts a one-broker kfake cluster listening on 127.0.0.1 and
// closes it in t.Cleanup. Defaults: one broker, a 100 ms minimum group
// session timeout, auto-created topics with one partition. opts are applied
// after the defaults and override them (e.g. kfake.NumBrokers(3),
// kfake.SeedTopics(4, "spans")).
func NewCluster(t testing.TB, opts ...kfake.Opt) *Cluster {
	t.Helper()
	all := append([]kfake.Opt{
		kfake.NumBrokers(1),
		kfake.GroupMinSessionTimeout(100 * time.Millisecond),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(1),
	}, opts...)
	fc, err := kfake.NewCluster(all...)
	if err != nil {
		t.Fatalf("kafkatest: start kfake: %v", err)
	}
	t.Cleanup(fc.Close)
	return &Cluster{Fake: fc, Brokers: fc.ListenAddrs()}
}

// CreateTopic creates topic with the given number of partitions on the cluster.
func (c *Cluster) CreateTopic(t testing.TB, topic string, partitions int) {
	t.Helper()
	CreateTopic(t, c.Brokers, topic, partitions)
}

// Produce writes msgs to topic on the cluster; see Produce.
func (c *Cluster) Produce(t testing.TB, topic string, msgs ...kafka.Message) {
	t.Helper()
	Produce(t, c.Brokers, topic, msgs...)
}

// Committed returns the group's committed offsets of topic; see Committed.
func (c *Cluster) Committed(t testing.TB, group, topic string, partitions int) map[int]int64 {
	t.Helper()
	return Committed(t, c.Brokers, group, topic, partitions)
}

// NewTransport returns a kafka-go Transport with its own metadata cache and
// connection pool, whose idle connections are closed when the test ends. Use
// one per cluster for every kafka.Writer and kafka.Client.
func NewTransport(t testing.TB) *kafka.Transport {
	tr := &kafka.Transport{MetadataTTL: time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// timeout bounds every helper's round trips.
const timeout = 30 * time.Second

// CreateTopic creates topic with the given number of partitions and
// replication factor 1, failing the test on any error other than "topic
// already exists" for a topic with that many partitions.
func CreateTopic(t testing.TB, brokers []string, topic string, partitions int) {
	t.Helper()
	CreateTopicWith(t, brokers, topic, partitions, nil)
}

// CreateTopicWith is CreateTopic with topic configs (e.g. retention.bytes).
func CreateTopicWith(t testing.TB, brokers []string, topic string, partitions int, configs map[string]string) {
	t.Helper()
	var entries []kafka.ConfigEntry
	for k, v := range configs {
		entries = append(entries, kafka.ConfigEntry{ConfigName: k, ConfigValue: v})
	}
	tr := &kafka.Transport{MetadataTopics: []string{topic}} // not the metadata of every topic of the shared broker
	defer tr.CloseIdleConnections()
	cl := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: tr, Timeout: timeout}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := cl.CreateTopics(ctx, &kafka.CreateTopicsRequest{
		Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: partitions, ReplicationFactor: 1, ConfigEntries: entries}},
	})
	if err != nil {
		t.Fatalf("kafkatest: create topic %s: %v", topic, err)
	}
	if err := resp.Errors[topic]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		t.Fatalf("kafkatest: create topic %s: %v", topic, err)
	}
	// Wait until the broker reports every partition with a leader, so a
	// producer or consumer started next finds them.
	for {
		md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		if err == nil && len(md.Topics) == 1 && md.Topics[0].Error == nil && len(md.Topics[0].Partitions) == partitions && led(md.Topics[0].Partitions) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("kafkatest: topic %s not ready: %v", topic, errors.Join(err, ctx.Err()))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func led(ps []kafka.Partition) bool {
	for _, p := range ps {
		if p.Error != nil || p.Leader.ID < 0 || p.Leader.Host == "" {
			return false
		}
	}
	return true
}

// Produce writes msgs to topic synchronously with acks=all in one batch,
// each to the partition kafka.Hash picks for its key (kafka-go's Writer
// ignores Message.Partition). It fails the test unless every message is
// acknowledged.
func Produce(t testing.TB, brokers []string, topic string, msgs ...kafka.Message) {
	t.Helper()
	tr := &kafka.Transport{MetadataTopics: []string{topic}}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Topic:        topic,
		Balancer:     &kafka.Hash{},
		Transport:    tr,
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond,
		BatchSize:    len(msgs),
		WriteTimeout: timeout,
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := w.WriteMessages(ctx, msgs...)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("kafkatest: produce %d messages to %s: %v", len(msgs), topic, err)
	}
}

// Committed returns the offsets group has committed for partitions
// 0..partitions-1 of topic; a partition without a commit is absent, and a
// group that never committed has an empty map.
func Committed(t testing.TB, brokers []string, group, topic string, partitions int) map[int]int64 {
	t.Helper()
	p := NewProgress(brokers, topic)
	defer p.Close()
	ps := make([]int, partitions)
	for i := range ps {
		ps[i] = i
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		out, err := p.committed(ctx, group, topic, ps)
		// A new group's coordinator may still be moving or loading: ask again.
		if coordinatorBusy(err) && ctx.Err() == nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatalf("kafkatest: committed offsets of %s on %s: %v", group, topic, err)
		}
		return out
	}
}

// Messages returns n messages with keys "k0".."k<n-1>" and values "<prefix>0"...
func Messages(prefix string, n int) []kafka.Message {
	out := make([]kafka.Message, n)
	for i := range out {
		out[i] = kafka.Message{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "%s%d", prefix, i)}
	}
	return out
}

// ConsumeGroup joins cfg.GroupID as one member with a kafka.Reader built from
// cfg, fetches n messages, commits them (synchronously, whatever
// cfg.CommitInterval says, unless commit is false), then closes the reader,
// which leaves the group. It returns the messages in fetch order, or what it
// got and ctx's error when ctx ends first.
func ConsumeGroup(ctx context.Context, cfg kafka.ReaderConfig, n int, commit bool) ([]kafka.Message, error) {
	cfg.CommitInterval = 0
	r := kafka.NewReader(cfg)
	var got []kafka.Message
	var err error
	for len(got) < n {
		var m kafka.Message
		if m, err = r.FetchMessage(ctx); err != nil {
			err = fmt.Errorf("fetch after %d of %d messages: %w", len(got), n, err)
			break
		}
		got = append(got, m)
	}
	if commit && len(got) > 0 && err == nil {
		if cerr := r.CommitMessages(ctx, got...); cerr != nil {
			err = fmt.Errorf("commit: %w", cerr)
		}
	}
	if cerr := r.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close reader: %w", cerr)
	}
	return got, err
}

// coordinatorBusy reports the group-coordinator errors a client retries.
func coordinatorBusy(err error) bool {
	return errors.Is(err, kafka.NotCoordinatorForGroup) || errors.Is(err, kafka.GroupCoordinatorNotAvailable) ||
		errors.Is(err, kafka.GroupLoadInProgress)
}

// Sender adapts a kafka-go Writer to tracegen.MessageWriter (tracegen.Publish),
// for tests that publish a workload with a writer of their own.
func Sender(w *kafka.Writer) tracegen.MessageWriter { return writerSender{w} }

type writerSender struct{ w *kafka.Writer }

func (s writerSender) Send(ctx context.Context, msgs []tracegen.Message) error {
	kms := make([]kafka.Message, len(msgs))
	for i, m := range msgs {
		kms[i] = kafka.Message{Key: m.Key, Value: m.Value}
	}
	return s.w.WriteMessages(ctx, kms...)
}

// Progress polls end offsets and committed offsets through one client, for
// tests and benchmarks that wait for consumer groups to finish.
type Progress struct {
	tr *kafka.Transport
	c  *kafka.Client
}

// NewProgress connects lazily to brokers. With topics, its client keeps
// the metadata of these only (a plain transport refetches every topic's
// metadata every 6 s, which a benchmark measuring its own process's CPU
// would count); it then works on no other topic.
func NewProgress(brokers []string, topics ...string) *Progress {
	tr := &kafka.Transport{MetadataTopics: topics}
	return &Progress{tr: tr, c: &kafka.Client{Addr: kafka.TCP(brokers...), Transport: tr, Timeout: timeout}}
}

// Close closes the client's connections.
func (p *Progress) Close() { p.tr.CloseIdleConnections() }

// Ends returns the end offset of each partition of topic.
func (p *Progress) Ends(t testing.TB, topic string, partitions int) map[int]int64 {
	t.Helper()
	var reqs []kafka.OffsetRequest
	for i := 0; i < partitions; i++ {
		reqs = append(reqs, kafka.LastOffsetOf(i))
	}
	resp, err := p.c.ListOffsets(context.Background(), &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		t.Fatal(err)
	}
	ends := map[int]int64{}
	for _, pt := range resp.Topics[topic] {
		if pt.Error != nil {
			t.Fatalf("end offset of %s/%d: %v", topic, pt.Partition, pt.Error)
		}
		ends[pt.Partition] = pt.LastOffset
	}
	return ends
}

// CommittedTo reports whether group committed every partition of topic to
// ends (false while its coordinator is still moving or loading, or a
// partition answers an error).
func (p *Progress) CommittedTo(t testing.TB, group, topic string, ends map[int]int64) bool {
	t.Helper()
	ps := make([]int, 0, len(ends))
	for i := range ends {
		ps = append(ps, i)
	}
	c, err := p.committed(context.Background(), group, topic, ps)
	var pe partitionError
	switch {
	case coordinatorBusy(err), errors.As(err, &pe):
		return false
	case err != nil:
		t.Fatalf("committed offsets of %s on %s: %v", group, topic, err)
	}
	for i, end := range ends {
		if got, ok := c[i]; !ok || got < end {
			return false
		}
	}
	return true
}

// committed asks for group's commits on partitions ps of topic; a
// partition without a commit is absent. A partition's error is a
// partitionError.
func (p *Progress) committed(ctx context.Context, group, topic string, ps []int) (map[int]int64, error) {
	resp, err := p.c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ps}})
	if err == nil {
		err = resp.Error
	}
	out := make(map[int]int64)
	if errors.Is(err, kafka.GroupIdNotFound) {
		return out, nil // kfake's answer for a group that never committed; Kafka answers with offsets of -1
	}
	if err != nil {
		return nil, err
	}
	for _, pt := range resp.Topics[topic] {
		if pt.Error != nil {
			return nil, partitionError{pt.Partition, pt.Error}
		}
		if pt.CommittedOffset >= 0 {
			out[pt.Partition] = pt.CommittedOffset
		}
	}
	return out, nil
}

// partitionError is one partition's error in an answer.
type partitionError struct {
	partition int
	err       error
}

func (e partitionError) Error() string { return fmt.Sprintf("partition %d: %v", e.partition, e.err) }
func (e partitionError) Unwrap() error { return e.err }
