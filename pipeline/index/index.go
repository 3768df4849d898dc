// Package index is the stage that stores assembled traces: it consumes the
// ingester's output topic in a consumer group and writes every trace version
// (spans in Jaeger's schema, the trace summary and its analysis) through a
// storage writer.
//
// Guarantees: at least once, made exact by the store. A batch's offsets are
// committed only after WriteTraces returned nil for all of it, i.e. after
// the store made it durable. After a crash or a rebalance the next owner
// re-reads from the last commit and writes the same versions again; storage
// document IDs are deterministic and an older version never replaces a newer
// one, so a re-write changes nothing.
//
// A write that fails is retried with capped exponential backoff until it
// succeeds or the stage stops: skipping it would lose the traces, and not
// committing keeps them for the next owner. Fetching stops meanwhile
// (backpressure on the topic, never unbounded memory: at most one batch is
// held). An undecodable message is counted
// (tracepipe_indexer_dropped_total{reason="decode"}), logged with its
// coordinates, and committed past, so it never blocks its partition.
//
// Metrics (tracepipe_indexer_*): traces_written_total, batches_total,
// dropped_total{reason}, write_errors_total, write_duration_seconds,
// batch_size.
package index

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/pipeline/tracepb"
)

// TraceWriter is what the stage needs of a store.
type TraceWriter interface {
	WriteTraces(ctx context.Context, traces []model.AssembledTrace) error
}

// Config configures the stage.
type Config struct {
	Brokers []string
	Topic   string // the ingester's output, default tracepipe-traces
	Group   string // default tracepipe-indexer
	// BatchSize bounds the traces held and written at once.
	BatchSize int
	// BatchWait is how long a partly filled batch waits for more messages.
	BatchWait time.Duration
	// MaxBackoff caps the delay between write retries.
	MaxBackoff time.Duration
	// SessionTimeout of the consumer group membership.
	SessionTimeout time.Duration
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Topic:          "tracepipe-traces",
		Group:          "tracepipe-indexer",
		BatchSize:      500,
		BatchWait:      200 * time.Millisecond,
		MaxBackoff:     10 * time.Second,
		SessionTimeout: 10 * time.Second,
	}
}

// Validate reports the first problem.
func (c *Config) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("index: no Kafka brokers")
	case c.Topic == "" || c.Group == "":
		return errors.New("index: topic and group must be set")
	case c.BatchSize < 1 || c.BatchSize > 100_000:
		return fmt.Errorf("index: batch size must be between 1 and 100000, not %d", c.BatchSize)
	case c.BatchWait <= 0 || c.MaxBackoff <= 0:
		return errors.New("index: batch wait and max backoff must be positive")
	}
	return nil
}

// Options are the stage's collaborators; zero values mean a discarding
// logger and a private registry.
type Options struct {
	Logger   *slog.Logger
	Registry prometheus.Registerer
}

// Indexer is the stage. Build it with New and run it with Run.
type Indexer struct {
	cfg Config
	w   TraceWriter
	log *slog.Logger
	m   metrics
}

type metrics struct {
	written, batches, writeErrors prometheus.Counter
	dropped                       *prometheus.CounterVec
	writeDur, batchSize           prometheus.Histogram
}

// New validates cfg and builds the stage. It does not contact Kafka.
func New(cfg Config, w TraceWriter, opts Options) (*Indexer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if w == nil {
		return nil, errors.New("index: nil trace writer")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	const ns, sub = "tracepipe", "indexer"
	m := metrics{
		written:     prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "traces_written_total", Help: "Trace versions durably written to the store."}),
		batches:     prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "batches_total", Help: "Batches written and committed."}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "write_errors_total", Help: "Failed store writes (each is retried)."}),
		dropped:     prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "dropped_total", Help: "Messages skipped, by reason."}, []string{"reason"}),
		writeDur:    prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "write_duration_seconds", Help: "Time for one batch to become durable in the store.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
		batchSize:   prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "batch_size", Help: "Traces per written batch.", Buckets: prometheus.ExponentialBuckets(1, 2, 14)}),
	}
	for _, c := range []prometheus.Collector{m.written, m.batches, m.writeErrors, m.dropped, m.writeDur, m.batchSize} {
		if err := opts.Registry.Register(c); err != nil {
			return nil, fmt.Errorf("index: register metrics: %w", err)
		}
	}
	m.dropped.WithLabelValues("decode")
	return &Indexer{cfg: cfg, w: w, log: opts.Logger, m: m}, nil
}

// Run consumes until ctx is cancelled, then stops fetching, abandons the
// batch being collected (uncommitted: the next owner re-reads it), closes
// the reader (leaving the group) and returns nil. It returns an error only
// if the consumer cannot be built.
func (x *Indexer) Run(ctx context.Context) error {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:        x.cfg.Brokers,
		GroupID:        x.cfg.Group,
		Topic:          x.cfg.Topic,
		StartOffset:    kafka.FirstOffset,
		CommitInterval: 0, // synchronous commits, only of durable batches
		SessionTimeout: x.cfg.SessionTimeout,
		MaxWait:        x.cfg.BatchWait,
		QueueCapacity:  x.cfg.BatchSize,
	})
	defer r.Close()
	msgs := make([]kafka.Message, 0, x.cfg.BatchSize)
	traces := make([]model.AssembledTrace, 0, x.cfg.BatchSize)
	for {
		msgs, traces = msgs[:0], traces[:0]
		if err := x.collect(ctx, r, &msgs, &traces); err != nil {
			return nil // ctx cancelled
		}
		if len(traces) > 0 && !x.write(ctx, traces) {
			return nil // stopped while retrying; nothing committed
		}
		if err := r.CommitMessages(ctx, msgs...); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// The batch is durable; a failed commit only means a re-read.
			x.log.Warn("commit failed; the batch will be re-read and re-written idempotently", "err", err)
			continue
		}
		x.m.batches.Inc()
	}
}

// collect fetches one batch: it waits for the first message, then for more
// until BatchSize or BatchWait. It returns an error only when ctx is done.
func (x *Indexer) collect(ctx context.Context, r *kafka.Reader, msgs *[]kafka.Message, traces *[]model.AssembledTrace) error {
	// wait ends the batch: cancelled BatchWait after the first message.
	wait, endBatch := context.WithCancel(ctx)
	defer endBatch()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for len(*msgs) < x.cfg.BatchSize {
		m, err := r.FetchMessage(wait)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if wait.Err() != nil {
				return nil // the batch wait is over
			}
			x.log.Warn("fetch", "err", err)
			select {
			case <-wait.Done():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		if timer == nil {
			timer = time.AfterFunc(x.cfg.BatchWait, endBatch)
		}
		*msgs = append(*msgs, m)
		a, err := tracepb.Decode(m.Value)
		if err != nil {
			x.m.dropped.WithLabelValues("decode").Inc()
			x.log.Error("undecodable assembled trace skipped", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "err", err)
			continue
		}
		*traces = append(*traces, *a)
	}
	return nil
}

// write retries until the batch is durable (true) or ctx is done (false).
func (x *Indexer) write(ctx context.Context, traces []model.AssembledTrace) bool {
	backoff := 100 * time.Millisecond
	for {
		start := time.Now()
		err := x.w.WriteTraces(ctx, traces)
		if err == nil {
			x.m.writeDur.Observe(time.Since(start).Seconds())
			x.m.batchSize.Observe(float64(len(traces)))
			x.m.written.Add(float64(len(traces)))
			return true
		}
		x.m.writeErrors.Inc()
		if ctx.Err() != nil {
			return false
		}
		x.log.Warn("store write failed; retrying", "traces", len(traces), "backoff", backoff, "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, x.cfg.MaxBackoff)
	}
}
