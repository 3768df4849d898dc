package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/internal/ratelog"
)

// TopicWait configures WaitForTopics. The zero value is usable.
type TopicWait struct {
	// Logger receives the waiting lines (nil: discard).
	Logger *slog.Logger
	// Stage names the waiting stage in the log lines (leave it empty when
	// Logger already carries it).
	Stage string
	// MinBackoff and MaxBackoff bound the delay between metadata polls,
	// which doubles from MinBackoff (default 100ms) to MaxBackoff (default
	// 5s).
	MinBackoff, MaxBackoff time.Duration
	// LogEvery is the least interval between two waiting lines about the
	// same topic (default ratelog.DefaultEvery).
	LogEvery time.Duration
	// Client, when set, supplies TLS and SASL for the metadata requests
	// (the brokers argument still names where to ask).
	Client *ClientConfig
}

// WaitForTopics returns nil once every one of topics exists and every
// partition of each has a leader. Until then it polls the brokers' metadata
// with capped exponential backoff, logging "waiting for topic" at WARN the
// first time and then at most once per LogEvery per topic; brokers that
// cannot be reached are waited for alike. It returns ctx's error (wrapped,
// with what was still missing) as soon as ctx is done.
//
// Stages call it before joining a consumer group: kafka-go's consumer
// groups assign no partition of a topic missing when they join and never
// look again, so a topic created later would not be read until a restart.
func WaitForTopics(ctx context.Context, brokers []string, topics []string, w TopicWait) error {
	if len(topics) == 0 {
		return nil
	}
	if w.MinBackoff <= 0 {
		w.MinBackoff = 100 * time.Millisecond
	}
	if w.MaxBackoff < w.MinBackoff {
		w.MaxBackoff = max(5*time.Second, w.MinBackoff)
	}
	log := w.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if w.Stage != "" {
		log = log.With("stage", w.Stage)
	}
	rl := ratelog.New(log, w.LogEvery, nil)
	waited := false
	for backoff := w.MinBackoff; ; backoff = min(2*backoff, w.MaxBackoff) {
		notReady, err := topicsNotReady(ctx, brokers, topics, w.Client)
		if err == nil && len(notReady) == 0 {
			if waited {
				log.Info("topics ready", "topics", topics)
			}
			return nil
		}
		if ctx.Err() != nil {
			return waitErr(ctx, brokers, notReady, err)
		}
		waited = true
		if err != nil {
			rl.Log(slog.LevelWarn, "brokers", "waiting for topics: brokers unavailable", "brokers", brokers, "topics", topics, "err", err)
		}
		for _, t := range notReady {
			rl.Log(slog.LevelWarn, "topic "+t.name, "waiting for topic "+t.name+" to exist", "topic", t.name, "state", t.why.Error())
		}
		select {
		case <-ctx.Done():
			return waitErr(ctx, brokers, notReady, err)
		case <-time.After(backoff):
		}
	}
}

func waitErr(ctx context.Context, brokers []string, notReady []notReadyTopic, err error) error {
	var what []string
	for _, t := range notReady {
		what = append(what, t.why.Error())
	}
	if err != nil {
		what = append(what, err.Error())
	}
	return fmt.Errorf("wait for topics on %v: %w (%s)", brokers, ctx.Err(), strings.Join(what, "; "))
}

// notReadyTopic is a topic that does not exist or has a partition without
// a leader, and why.
type notReadyTopic struct {
	name string
	why  error
}

// topicsNotReady asks the brokers for the metadata of topics. A fresh
// transport each time: kafka-go's Transport answers metadata requests from
// a cache refreshed only every MetadataTTL.
func topicsNotReady(ctx context.Context, brokers []string, topics []string, cc *ClientConfig) ([]notReadyTopic, error) {
	tr := &kafkago.Transport{DialTimeout: 5 * time.Second}
	if cc != nil {
		var err error
		if tr, err = cc.Transport(); err != nil {
			return nil, err
		}
		tr.DialTimeout = 5 * time.Second
	}
	defer tr.CloseIdleConnections()
	cl := &kafkago.Client{Addr: kafkago.TCP(brokers...), Transport: tr, Timeout: 5 * time.Second}
	md, err := cl.Metadata(ctx, &kafkago.MetadataRequest{Topics: topics})
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	seen := map[string]bool{}
	var out []notReadyTopic
	for _, t := range md.Topics {
		seen[t.Name] = true
		if err := led(t); err != nil {
			out = append(out, notReadyTopic{name: t.Name, why: err})
		}
	}
	for _, t := range topics {
		if !seen[t] {
			out = append(out, notReadyTopic{name: t, why: fmt.Errorf("topic %s: %w", t, kafkago.UnknownTopicOrPartition)})
		}
	}
	return out, nil
}

// led reports why t is not ready: it is unknown, has no partitions, or a
// partition has no leader.
func led(t kafkago.Topic) error {
	switch {
	case errors.Is(t.Error, kafkago.UnknownTopicOrPartition):
		return fmt.Errorf("topic %s does not exist", t.Name)
	case t.Error != nil:
		return fmt.Errorf("topic %s: %w", t.Name, t.Error)
	case len(t.Partitions) == 0:
		return fmt.Errorf("topic %s: no partitions", t.Name)
	}
	for _, p := range t.Partitions {
		if p.Error != nil || p.Leader.ID < 0 || p.Leader.Host == "" {
			return fmt.Errorf("topic %s partition %d: no leader (%v)", t.Name, p.ID, p.Error)
		}
	}
	return nil
}
