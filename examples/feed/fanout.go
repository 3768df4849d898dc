package feed

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/opentracing/opentracing-go"
	"github.com/opentracing/opentracing-go/ext"
	kafka "github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/instrument/metrics"
	"github.com/tracepipe/tracepipe/instrument/propagation"
	"github.com/tracepipe/tracepipe/instrument/tracehttp"
)

// fanoutWorker consumes fan-out messages in a consumer group: a consumer span
// per message (FollowsFrom the producer's span), writes to the followers'
// shards, then commits the message.
type fanoutWorker struct {
	cfg        Config
	in         *metrics.Instrumentation
	storageURL string
	client     *http.Client
	processed  atomic.Int64
}

func newFanoutWorker(cfg Config, in *metrics.Instrumentation, storageURL string) *fanoutWorker {
	return &fanoutWorker{cfg: cfg, in: in, storageURL: storageURL,
		client: &http.Client{Transport: &tracehttp.Transport{In: in}, Timeout: 10 * time.Second}}
}

// run consumes until ctx is cancelled; the reader is closed before it returns.
func (fw *fanoutWorker) run(ctx context.Context) error {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: fw.cfg.Brokers, GroupID: fw.cfg.Group, Topic: fw.cfg.Topic,
		MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 100 * time.Millisecond,
		StartOffset: kafka.FirstOffset, HeartbeatInterval: time.Second, SessionTimeout: 10 * time.Second,
		RebalanceTimeout: 5 * time.Second, ReadBackoffMax: 200 * time.Millisecond,
	})
	defer r.Close()
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		fw.process(ctx, m)
		fw.processed.Add(1)
		if err := r.CommitMessages(ctx, m); err != nil && ctx.Err() == nil {
			return fmt.Errorf("commit: %w", err)
		}
	}
}

func (fw *fanoutWorker) process(ctx context.Context, m kafka.Message) {
	opts := []opentracing.StartSpanOption{ext.SpanKindConsumer,
		opentracing.Tag{Key: "message_bus.destination", Value: m.Topic},
		opentracing.Tag{Key: "component", Value: "kafka"},
		opentracing.Tag{Key: "partition", Value: m.Partition},
		opentracing.Tag{Key: "offset", Value: m.Offset}}
	if parent, err := propagation.Extract(fw.in.Tracer(), opentracing.TextMap, headerCarrier{&m.Headers}); err == nil {
		opts = append(opts, opentracing.FollowsFrom(parent))
	}
	timer, ctx := fw.in.Start(ctx, "fanout.Consume", opts...)
	var err error
	defer func() { timer.StopErr(err) }()
	author, post := string(m.Key), string(m.Value)
	// Followers' timelines live on the two shards after the author's.
	shards := shardsOf(author, fw.cfg.Shards)[1:]
	var errs []error
	for _, n := range shards {
		u := fmt.Sprintf("%s/shards/%d/posts?user=%s&post=%s", fw.storageURL, n, url.QueryEscape("followers-of-"+author), url.QueryEscape(post))
		errs = append(errs, put(ctx, fw.client, u))
	}
	err = errors.Join(errs...)
}
