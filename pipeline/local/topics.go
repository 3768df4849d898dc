package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"

	tpkafka "github.com/tracepipe/tracepipe/pipeline/kafka"
)

// topics are the topics Run's stages read and write: the spans, the
// re-keyed spans (with RekeyTo), the traces and the ingester's dead letters.
// startBroker seeds them on the embedded broker, ensureTopics on real ones.
func (c *Config) topics() []string {
	ts := []string{c.Ingest.SpansTopic, c.Ingest.TracesTopic, c.Ingest.DLQTopic}
	if c.RekeyTo != "" {
		ts = append(ts, c.RekeyTo)
	}
	return ts
}

// topicReadyTimeout bounds the wait for created topics to have a leader for
// every partition.
const topicReadyTimeout = 30 * time.Second

// ensureTopics creates on real brokers every topic of cfg.topics() that
// does not exist yet, with cfg.Partitions partitions and the brokers'
// default replication factor, and waits (kafka.WaitForTopics, at most
// topicReadyTimeout) until every partition of each has a leader. It runs
// before any consumer joins its group, so that the topics have Partitions
// partitions rather than the broker's num.partitions of a topic
// auto-created by the collector's first produce. (Each stage also waits for
// its input topic before joining: kafka-go's consumer groups assign no
// partition of a missing topic and never look again.) Existing topics are
// left as they are.
//
// A broker that cannot be reached is retried (logged) until ctx is done; a
// refused creation (no permission, invalid name or partition count) is
// returned, naming the topic.
func ensureTopics(ctx context.Context, brokers []string, cfg Config, log *slog.Logger) error {
	tr := &kafka.Transport{DialTimeout: 10 * time.Second}
	defer tr.CloseIdleConnections()
	cl := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: tr, Timeout: 10 * time.Second}
	want := cfg.topics()
	for backoff := time.Second; ; backoff = min(2*backoff, 30*time.Second) {
		missing, err := missingTopics(ctx, cl, want)
		if err == nil && len(missing) > 0 {
			err = createTopics(ctx, cl, missing, cfg.Partitions, log)
		}
		if err == nil {
			// Before the consumer groups join: they are assigned only
			// partitions with a leader.
			wctx, cancel := context.WithTimeout(ctx, topicReadyTimeout)
			defer cancel()
			return tpkafka.WaitForTopics(wctx, brokers, want, tpkafka.TopicWait{Logger: log, Stage: "run"})
		}
		var refused *refusedError
		if errors.As(err, &refused) {
			return err
		}
		log.Warn("create topics: brokers unavailable; retrying", "brokers", brokers, "in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("create topics on %v: %w (last error: %v)", brokers, ctx.Err(), err)
		case <-time.After(backoff):
		}
	}
}

// refusedError is a topic creation the brokers refused for good.
type refusedError struct {
	topic string
	err   error
}

func (e *refusedError) Error() string {
	return fmt.Sprintf("create topic %s: %v (create it by hand, or let tracepipe create topics)", e.topic, e.err)
}

func (e *refusedError) Unwrap() error { return e.err }

// missingTopics returns those of topics the brokers do not know.
func missingTopics(ctx context.Context, cl *kafka.Client, topics []string) ([]string, error) {
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	var missing []string
	for _, t := range md.Topics {
		switch {
		case t.Error == nil:
		case errors.Is(t.Error, kafka.UnknownTopicOrPartition):
			missing = append(missing, t.Name)
		default:
			return nil, fmt.Errorf("metadata of topic %s: %w", t.Name, t.Error)
		}
	}
	return missing, nil
}

func createTopics(ctx context.Context, cl *kafka.Client, topics []string, partitions int, log *slog.Logger) error {
	req := &kafka.CreateTopicsRequest{}
	for _, t := range topics {
		req.Topics = append(req.Topics, kafka.TopicConfig{Topic: t, NumPartitions: partitions, ReplicationFactor: -1})
	}
	resp, err := cl.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	for _, t := range topics {
		switch err := resp.Errors[t]; {
		case err == nil:
			log.Info("created topic", "topic", t, "partitions", partitions)
		case errors.Is(err, kafka.TopicAlreadyExists): // created meanwhile by someone else
		case errors.Is(err, kafka.RequestTimedOut), errors.Is(err, kafka.NotController), errors.Is(err, kafka.LeaderNotAvailable):
			return fmt.Errorf("create topic %s: %w", t, err) // transient: retried
		default:
			return &refusedError{topic: t, err: err}
		}
	}
	return nil
}
