package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tracepipe/tracepipe/pipeline/kafka"
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
	cc := cfg.ClientConfig
	cc.Brokers = brokers
	admin, err := kafka.NewAdmin(cc)
	if err != nil {
		return err
	}
	defer admin.Close()
	want := cfg.topics()
	for backoff := time.Second; ; backoff = min(2*backoff, 30*time.Second) {
		missing, err := admin.MissingTopics(ctx, want...)
		if err == nil && len(missing) > 0 {
			err = createTopics(ctx, admin, missing, cfg.Partitions, log)
		}
		if err == nil {
			// Before the consumer groups join: they are assigned only
			// partitions with a leader.
			wctx, cancel := context.WithTimeout(ctx, topicReadyTimeout)
			defer cancel()
			return kafka.WaitForTopics(wctx, brokers, want, kafka.TopicWait{Logger: log, Stage: "run", Client: &cc})
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
	return fmt.Sprintf("%v (create it by hand, or let tracepipe create topics)", e.err) // e.err names the topic
}

func (e *refusedError) Unwrap() error { return e.err }

// createTopics creates topics one by one (an existing one is fine): a
// transient failure is returned as is (retried), a refusal as a
// refusedError.
func createTopics(ctx context.Context, admin *kafka.Admin, topics []string, partitions int, log *slog.Logger) error {
	for _, t := range topics {
		err := admin.CreateTopics(ctx, kafka.TopicSpec{Name: t, Partitions: partitions, ReplicationFactor: -1})
		switch {
		case err == nil:
			log.Info("created topic", "topic", t, "partitions", partitions)
		case kafka.Retriable(err):
			return err
		default:
			return &refusedError{topic: t, err: err}
		}
	}
	return nil
}
