// Package deadletter keeps what a store rejected for good: it writes the
// record to a Kafka dead-letter topic with the reason, following the
// ingester's convention (headers tracepipe.error, tracepipe.source.topic,
// tracepipe.source.partition, tracepipe.source.offset, and
// tracepipe.truncated when the value was cut to fit), so the stage that
// met it can commit past it and move on.
//
// Two kinds of records arrive here: assembled-trace messages the indexer
// could not store (Reject: the message as read, value unchanged, so it can
// be replayed once the cause is fixed), and Elasticsearch documents the
// engine rejected (DeadLetter, the elasticsearch.DeadLetter hook: the
// document as sent, with tracepipe.index, tracepipe.id and tracepipe.kind
// headers). Every record is counted
// (tracepipe_store_dead_letters_total{kind}) and logged, rate-limited by
// reason (internal/ratelog). Writes are synchronous and acknowledged by all
// in-sync replicas before they return.
package deadletter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tracepipe/tracepipe/internal/ratelog"
	tpkafka "github.com/tracepipe/tracepipe/pipeline/kafka"
	"github.com/tracepipe/tracepipe/storage/elasticsearch"
)

// DefaultTopic is the dead-letter topic of the store writers.
const DefaultTopic = "tracepipe-store-dlq"

// Config configures a Writer.
type Config struct {
	Brokers []string
	// Client, when set, gives the connection its TLS and SASL (Brokers
	// still names the brokers).
	Client *tpkafka.ClientConfig
	// Topic receives the records (default DefaultTopic); it is created
	// when missing if the brokers allow it.
	Topic string
	// MaxMessageBytes bounds one record; larger values are cut (default 1 MiB,
	// Kafka's default message.max.bytes).
	MaxMessageBytes int
}

// Options are the collaborators; zero values mean a discarding logger and
// a private registry.
type Options struct {
	Logger   *slog.Logger
	Registry prometheus.Registerer
}

// Writer writes dead letters. It is safe for concurrent use; Close it when
// done.
type Writer struct {
	cfg   Config
	p     *tpkafka.Producer
	log   *ratelog.Logger
	count *prometheus.CounterVec
}

var _ elasticsearch.DeadLetter = (*Writer)(nil)

// New builds a Writer. It does not contact Kafka.
func New(cfg Config, opts Options) (*Writer, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("dead letter: no Kafka brokers")
	}
	if cfg.Topic == "" {
		cfg.Topic = DefaultTopic
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = 1 << 20
	}
	if cfg.MaxMessageBytes < 8192 {
		return nil, fmt.Errorf("dead letter: max message bytes %d is below 8192", cfg.MaxMessageBytes)
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	count := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tracepipe_store_dead_letters_total",
		Help: "Records a store rejected for good, written to the store dead-letter topic, by kind (trace: an assembled-trace message; span, service, trace-summary, rollup, edge: an Elasticsearch document).",
	}, []string{"kind"})
	if err := opts.Registry.Register(count); err != nil {
		return nil, fmt.Errorf("dead letter: register metrics: %w", err)
	}
	pc := tpkafka.DefaultProducerConfig()
	pc.Brokers, pc.Topic = cfg.Brokers, cfg.Topic
	pc.Linger = 10 * time.Millisecond
	pc.MaxMessageBytes = cfg.MaxMessageBytes
	pc.BatchBytes = int64(cfg.MaxMessageBytes)
	pc.MaxBufferedBytes = max(pc.MaxBufferedBytes, 4*int64(cfg.MaxMessageBytes))
	p, err := tpkafka.NewProducer(pc, tpkafka.Options{Name: "store-dlq", Registry: opts.Registry, Logger: opts.Logger, Client: cfg.Client})
	if err != nil {
		return nil, fmt.Errorf("dead letter: %w", err)
	}
	return &Writer{cfg: cfg, p: p, log: ratelog.New(opts.Logger, ratelog.DefaultEvery, nil), count: count}, nil
}

// send produces msgs and returns once all are acknowledged (nil), one was
// given up on, or ctx is done.
func (d *Writer) send(ctx context.Context, msgs ...tpkafka.Message) error {
	if err := d.p.Send(ctx, msgs); err != nil {
		return fmt.Errorf("dead letter: %w", err)
	}
	return nil
}

// Topic is the dead-letter topic.
func (d *Writer) Topic() string { return d.cfg.Topic }

// Reject writes the message m, whose trace the store rejected for good
// with cause, and returns once it is acknowledged.
func (d *Writer) Reject(ctx context.Context, m tpkafka.Record, cause error) error {
	msg := d.message(m.Key, m.Value, cause.Error(),
		tpkafka.Header{Key: "tracepipe.source.topic", Value: []byte(m.Topic)},
		tpkafka.Header{Key: "tracepipe.source.partition", Value: []byte(strconv.Itoa(m.Partition))},
		tpkafka.Header{Key: "tracepipe.source.offset", Value: []byte(strconv.FormatInt(m.Offset, 10))},
	)
	if err := d.send(ctx, msg); err != nil {
		return err
	}
	d.count.WithLabelValues("trace").Inc()
	d.log.Error("rejected", "trace rejected by the store for good; written to the dead-letter topic",
		"topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "key", string(m.Key), "dead_letter_topic", d.cfg.Topic, "err", cause)
	return nil
}

// DeadLetter writes documents Elasticsearch rejected for good (the
// elasticsearch.DeadLetter hook) and returns once all are acknowledged.
func (d *Writer) DeadLetter(ctx context.Context, failures []elasticsearch.Failure) error {
	msgs := make([]tpkafka.Message, len(failures))
	for i, f := range failures {
		msgs[i] = d.message([]byte(f.ID), f.Doc, fmt.Sprintf("status %d: %s", f.Status, f.Reason),
			tpkafka.Header{Key: "tracepipe.index", Value: []byte(f.Index)},
			tpkafka.Header{Key: "tracepipe.id", Value: []byte(f.ID)},
			tpkafka.Header{Key: "tracepipe.kind", Value: []byte(f.Kind)},
		)
	}
	if err := d.send(ctx, msgs...); err != nil {
		return err
	}
	for _, f := range failures {
		d.count.WithLabelValues(f.Kind).Inc()
		d.log.Error("es-rejected-"+f.Kind, "document rejected by Elasticsearch for good; written to the dead-letter topic",
			"index", f.Index, "id", f.ID, "status", f.Status, "dead_letter_topic", d.cfg.Topic, "err", f.Reason)
	}
	return nil
}

func (d *Writer) message(key, value []byte, reason string, headers ...tpkafka.Header) tpkafka.Message {
	if len(reason) > 4096 {
		reason = reason[:4096]
	}
	hs := append([]tpkafka.Header{{Key: "tracepipe.error", Value: []byte(reason)}}, headers...)
	if limit := d.cfg.MaxMessageBytes - 8192 - len(key); len(value) > limit {
		hs = append(hs, tpkafka.Header{Key: "tracepipe.truncated", Value: []byte(strconv.Itoa(len(value)))})
		value = value[:max(limit, 0)]
	}
	return tpkafka.Message{Key: key, Value: value, Headers: hs}
}

// Close waits (up to 10 s) for what is being sent, then closes the
// producer and its connections.
func (d *Writer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return d.p.Close(ctx)
}

// Hook is an elasticsearch.DeadLetter whose Writer is set after the store
// is built (when the brokers are only known later, as in `tracepipe run`).
// Until Set, and after Set(nil), DeadLetter fails, so the write fails and is
// retried. It is safe for concurrent use.
type Hook struct {
	mu sync.Mutex
	w  *Writer
}

var _ elasticsearch.DeadLetter = (*Hook)(nil)

// Set makes w the target.
func (h *Hook) Set(w *Writer) {
	h.mu.Lock()
	h.w = w
	h.mu.Unlock()
}

// DeadLetter forwards to the Writer set.
func (h *Hook) DeadLetter(ctx context.Context, failures []elasticsearch.Failure) error {
	h.mu.Lock()
	w := h.w
	h.mu.Unlock()
	if w == nil {
		return errors.New("dead letter: no dead-letter writer yet")
	}
	return w.DeadLetter(ctx, failures)
}
