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
// A write that fails transiently is retried with capped exponential backoff
// until it succeeds or the stage stops: skipping it would lose the traces,
// and not committing keeps them for the next owner. Fetching stops
// meanwhile (backpressure on the topic, never unbounded memory: at most one
// batch is held). A write the store rejects for good (an error wrapping
// storage.ErrPermanent) is retried trace by trace; each trace rejected for
// good is handed to Options.DeadLetter (pipeline/deadletter: the store
// dead-letter topic, with the reason), counted
// (tracepipe_indexer_dropped_total{reason="rejected"}) and logged
// (rate-limited), and the batch is committed past it, so one bad trace never
// stops its partition. An undecodable message is counted
// (dropped_total{reason="decode"}), logged with its coordinates
// (rate-limited), and committed past likewise.
//
// Run joins the consumer group only once the topic exists with a leader for
// every partition (pipeline/kafka.WaitForTopics; logged at WARN while it
// waits): kafka-go's group would assign nothing of a missing topic and
// never look again.
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

	"github.com/tracepipe/tracepipe/internal/ratelog"
	"github.com/tracepipe/tracepipe/model"
	tpkafka "github.com/tracepipe/tracepipe/pipeline/kafka"
	"github.com/tracepipe/tracepipe/pipeline/tracepb"
	"github.com/tracepipe/tracepipe/storage"
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

// DeadLetter keeps a message whose trace the store rejected for good
// (pipeline/deadletter.Writer). Reject returns nil once the message is
// durably kept; an error is retried.
type DeadLetter interface {
	Reject(ctx context.Context, m kafka.Message, cause error) error
}

// Options are the stage's collaborators; zero values mean a discarding
// logger and a private registry. Without a DeadLetter a trace rejected for
// good is only counted and logged before the stage moves on.
type Options struct {
	Logger     *slog.Logger
	Registry   prometheus.Registerer
	DeadLetter DeadLetter
}

// Indexer is the stage. Build it with New and run it with Run.
type Indexer struct {
	cfg  Config
	w    TraceWriter
	dl   DeadLetter
	log  *slog.Logger
	drop *ratelog.Logger
	m    metrics
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
	m.dropped.WithLabelValues("rejected")
	return &Indexer{cfg: cfg, w: w, dl: opts.DeadLetter, log: opts.Logger, drop: ratelog.New(opts.Logger, ratelog.DefaultEvery, nil), m: m}, nil
}

// Run consumes until ctx is cancelled, then stops fetching, abandons the
// batch being collected (uncommitted: the next owner re-reads it), closes
// the reader (leaving the group) and returns nil. It returns an error only
// if the consumer cannot be built.
func (x *Indexer) Run(ctx context.Context) error {
	// Join only once the topic exists with leaders: kafka-go's group would
	// assign nothing of a missing topic and never look again.
	if err := tpkafka.WaitForTopics(ctx, x.cfg.Brokers, []string{x.cfg.Topic}, tpkafka.TopicWait{Logger: x.log, Stage: "indexer"}); err != nil {
		return nil // ctx cancelled: WaitForTopics returns only then
	}
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
	from := make([]int, 0, x.cfg.BatchSize)
	for {
		msgs, traces, from = msgs[:0], traces[:0], from[:0]
		if err := x.collect(ctx, r, &msgs, &traces, &from); err != nil {
			return nil // ctx cancelled
		}
		if len(traces) > 0 && !x.write(ctx, msgs, traces, from) {
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
// from[i] is the index in msgs of traces[i]'s message.
func (x *Indexer) collect(ctx context.Context, r *kafka.Reader, msgs *[]kafka.Message, traces *[]model.AssembledTrace, from *[]int) error {
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
			x.drop.Error("decode", "undecodable assembled trace skipped", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "err", err)
			continue
		}
		*traces = append(*traces, *a)
		*from = append(*from, len(*msgs)-1)
	}
	return nil
}

// write stores the batch: true once every trace is durable or rejected for
// good and dead-lettered, false if ctx is done first. A transient failure
// is retried; a permanent one makes it store the traces one at a time.
func (x *Indexer) write(ctx context.Context, msgs []kafka.Message, traces []model.AssembledTrace, from []int) bool {
	ok, err := x.retry(ctx, traces)
	if !ok {
		return false
	}
	if err == nil {
		return true
	}
	for i := range traces {
		ok, err := x.retry(ctx, traces[i:i+1])
		if !ok {
			return false
		}
		if err != nil && !x.reject(ctx, msgs[from[i]], &traces[i], err) {
			return false
		}
	}
	return true
}

// retry writes traces until they are durable (true, nil), the store
// rejects them for good (true, the error), or ctx is done (false, _).
func (x *Indexer) retry(ctx context.Context, traces []model.AssembledTrace) (bool, error) {
	backoff := 100 * time.Millisecond
	for {
		start := time.Now()
		err := x.w.WriteTraces(ctx, traces)
		if err == nil {
			x.m.writeDur.Observe(time.Since(start).Seconds())
			x.m.batchSize.Observe(float64(len(traces)))
			x.m.written.Add(float64(len(traces)))
			return true, nil
		}
		x.m.writeErrors.Inc()
		if ctx.Err() != nil {
			return false, nil
		}
		if errors.Is(err, storage.ErrPermanent) {
			return true, err
		}
		x.log.Warn("store write failed; retrying", "traces", len(traces), "backoff", backoff, "err", err)
		if !sleep(ctx, backoff) {
			return false, nil
		}
		backoff = min(2*backoff, x.cfg.MaxBackoff)
	}
}

// reject hands the message of a trace the store rejected for good to the
// dead letter (retrying until it is kept), counts and logs it. False if ctx
// is done first.
func (x *Indexer) reject(ctx context.Context, m kafka.Message, t *model.AssembledTrace, cause error) bool {
	backoff := 100 * time.Millisecond
	for x.dl != nil {
		err := x.dl.Reject(ctx, m, cause)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return false
		}
		x.log.Warn("dead letter failed; retrying", "backoff", backoff, "err", err)
		if !sleep(ctx, backoff) {
			return false
		}
		backoff = min(2*backoff, x.cfg.MaxBackoff)
	}
	x.m.dropped.WithLabelValues("rejected").Inc()
	x.drop.Error("rejected", "trace rejected by the store for good; skipped", "trace", t.Trace.TraceID.String(),
		"topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "dead_lettered", x.dl != nil, "err", cause)
	return true
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
