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
// The stage runs on pipeline/kafka's consumer-group runtime (stage
// "indexer"): one goroutine per assigned partition collects a batch of up
// to BatchSize messages and writes it when full or BatchWait after it
// started; the offset after the last durable batch is committed every
// second and when the partition is revoked or the stage stops (the batch
// being collected then is abandoned, uncommitted). Run joins the group only
// once the topic exists with a leader for every partition
// (pipeline/kafka.WaitForTopics; logged at WARN while it waits). Healthy
// (and Check, for pipeline/kafka.Handler's /healthz) is true while the
// stage is a live group member.
//
// Metrics (tracepipe_indexer_*): traces_written_total, batches_total,
// dropped_total{reason}, write_errors_total, write_duration_seconds,
// batch_size; lag, commits and membership are the runtime's
// tracepipe_kafka_*{stage="indexer"} (consumer_lag, processed_lag,
// committed_offset, last_commit_timestamp_seconds, commits_total,
// partitions_assigned, rebalances_total, group_member).
package index

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tracepipe/tracepipe/internal/ratelog"
	"github.com/tracepipe/tracepipe/internal/wait"
	"github.com/tracepipe/tracepipe/model"
	tpkafka "github.com/tracepipe/tracepipe/pipeline/kafka"
	"github.com/tracepipe/tracepipe/storage"
)

// TraceWriter is what the stage needs of a store.
type TraceWriter interface {
	WriteTraces(ctx context.Context, traces []model.AssembledTrace) error
}

// Config configures the stage.
type Config struct {
	// ClientConfig reaches the Kafka cluster: Brokers, TLS, SASL.
	tpkafka.ClientConfig
	Topic string // the ingester's output, default tracepipe-traces
	Group string // default tracepipe-indexer
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

// Validate reports every problem, joined, in terms of the flags
// (RegisterFlags); it does not change c.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if err := c.ClientConfig.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Topic == "" {
		bad("index: --topic must not be empty")
	}
	if c.Group == "" {
		bad("index: --group must not be empty")
	}
	if c.BatchSize < 1 || c.BatchSize > 100_000 {
		bad("index: --batch-size must be between 1 and 100000, not %d", c.BatchSize)
	}
	if c.BatchWait <= 0 {
		bad("index: --batch-wait must be positive, not %v", c.BatchWait)
	}
	if c.MaxBackoff <= 0 {
		bad("index: --max-backoff must be positive, not %v", c.MaxBackoff)
	}
	if c.SessionTimeout <= 0 {
		bad("index: --session-timeout must be positive, not %v", c.SessionTimeout)
	}
	return errors.Join(errs...)
}

// DeadLetter keeps a message whose trace the store rejected for good
// (pipeline/deadletter.Writer). Reject returns nil once the message is
// durably kept; an error is retried.
type DeadLetter interface {
	Reject(ctx context.Context, m tpkafka.Record, cause error) error
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
	cfg   Config
	w     TraceWriter
	dl    DeadLetter
	log   *slog.Logger
	drop  *ratelog.Logger
	m     metrics
	group *tpkafka.Group
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
	x := &Indexer{cfg: cfg, w: w, dl: opts.DeadLetter, log: opts.Logger, drop: ratelog.New(opts.Logger, ratelog.DefaultEvery, nil), m: m}
	g, err := tpkafka.NewGroup(tpkafka.GroupConfig{
		Client: cfg.ClientConfig, Group: cfg.Group, Topic: cfg.Topic, Stage: "indexer",
		NewProcessor:   x.newPartition,
		SessionTimeout: cfg.SessionTimeout,
		// Batches end BatchWait after they started, give or take a tick.
		TickInterval: min(max(cfg.BatchWait/4, 5*time.Millisecond), 250*time.Millisecond),
	}, tpkafka.GroupOptions{Logger: opts.Logger, Registry: opts.Registry})
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	x.group = g
	return x, nil
}

// Run consumes until ctx is cancelled (pipeline/kafka.Group: one goroutine
// per assigned partition), then stops fetching, abandons the batches being
// collected (uncommitted: the next owner re-reads them), commits what is
// durable, leaves the group and returns nil. It returns an error only if
// the consumer cannot be built.
func (x *Indexer) Run(ctx context.Context) error { return x.group.Run(ctx) }

// Healthy reports whether the indexer is a live member of its group.
func (x *Indexer) Healthy() bool { return x.group.Healthy() }

// Check is the indexer's health check for pipeline/kafka.Handler.
func (x *Indexer) Check() tpkafka.Check { return x.group.Check() }

// write stores the batch: true once every trace is durable or rejected for
// good and dead-lettered, false if ctx is done first. A transient failure
// is retried; a permanent one makes it store the traces one at a time.
func (x *Indexer) write(ctx context.Context, msgs []tpkafka.Record, traces []model.AssembledTrace, from []int) bool {
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
		if !wait.Sleep(ctx, backoff) {
			return false, nil
		}
		backoff = min(2*backoff, x.cfg.MaxBackoff)
	}
}

// reject hands the message of a trace the store rejected for good to the
// dead letter (retrying until it is kept), counts and logs it. False if ctx
// is done first.
func (x *Indexer) reject(ctx context.Context, m tpkafka.Record, t *model.AssembledTrace, cause error) bool {
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
		if !wait.Sleep(ctx, backoff) {
			return false
		}
		backoff = min(2*backoff, x.cfg.MaxBackoff)
	}
	x.m.dropped.WithLabelValues("rejected").Inc()
	x.drop.Error("rejected", "trace rejected by the store for good; skipped", "trace", t.Trace.TraceID.String(),
		"topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "dead_lettered", x.dl != nil, "err", cause)
	return true
}
