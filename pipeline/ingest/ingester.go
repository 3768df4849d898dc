package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tracepipe/tracepipe/internal/ratelog"
	"github.com/tracepipe/tracepipe/pipeline/ingest/assemble"
	"github.com/tracepipe/tracepipe/pipeline/kafka"
)

// Ingester is one member of the ingester consumer group. Build it with New,
// run it with Run; Run returns when its context is cancelled, after the
// orderly shutdown described in the package doc.
type Ingester struct {
	cfg     Config
	clock   assemble.Clock
	log     *slog.Logger
	drops   *ratelog.Logger // drop reasons, rate-limited
	metrics *Metrics
	budget  *assemble.Budget
	output  *outputBudget
	group   *kafka.Group
}

// Options are an Ingester's collaborators. Zero values mean: the real clock,
// a discarding logger, a private registry.
type Options struct {
	Clock    assemble.Clock
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// Stage names the stage in the runtime's metrics and /healthz
	// (default "ingester"; tracepipe run's re-key stage is "rekeyer").
	Stage string
	// GroupRegistry receives the consumer-group runtime's metrics
	// (tracepipe_kafka_*, labelled by Stage; default Registry). tracepipe
	// run's re-key stage prefixes its ingester metrics (Registry) but keeps
	// these under their own names, so every stage's lag is in one family.
	GroupRegistry prometheus.Registerer
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// New validates cfg and builds an Ingester. It does not contact Kafka.
func New(cfg Config, opts Options) (*Ingester, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	groupReg := opts.GroupRegistry
	if groupReg == nil {
		groupReg = opts.Registry
	}
	if opts.Stage == "" {
		opts.Stage = "ingester"
	}
	in := &Ingester{
		cfg:     cfg,
		clock:   opts.Clock,
		log:     opts.Logger,
		drops:   ratelog.New(opts.Logger, ratelog.DefaultEvery, nil),
		metrics: NewMetrics(opts.Registry),
		budget:  &assemble.Budget{MaxTraces: cfg.MaxTracesInFlight, MaxBytes: cfg.MaxBytesInFlight},
	}
	in.output = &outputBudget{max: cfg.MaxOutputBytesInFlight, gauge: in.metrics.OutputInFlightBytes}
	wc := kafka.DefaultWriterConfig()
	wc.BatchBytes = int64(cfg.MaxMessageBytes)
	// kafka-go gives every batch room for BatchSize messages (152 B each,
	// 150 KiB at the default 1000); the output's messages are whole traces,
	// of which a batch of MaxMessageBytes holds far fewer.
	wc.BatchSize = 256
	wc.Topics = []string{cfg.TracesTopic, cfg.DLQTopic}
	if cfg.RekeyTo != "" {
		wc.Topics = []string{cfg.RekeyTo, cfg.DLQTopic}
	}
	newProc := in.newAssembler
	if cfg.RekeyTo != "" {
		newProc = in.newRekeyer
	}
	g, err := kafka.NewGroup(kafka.GroupConfig{
		Client:         cfg.ClientConfig,
		Group:          cfg.Group,
		Topic:          cfg.SpansTopic,
		Stage:          opts.Stage,
		NewProcessor:   newProc,
		Writer:         &wc,
		SessionTimeout: cfg.SessionTimeout,
		CommitInterval: cfg.CommitInterval,
		TickInterval:   cfg.tickEvery(),
		CloseTimeout:   cfg.ShutdownGrace,
		OnSkip: func(partition int, from, to int64) {
			in.metrics.SkippedMessages.Add(float64(to - from))
			in.log.Warn("spans deleted by retention before they were read", "partition", partition, "from", from, "to", to)
		},
	}, kafka.GroupOptions{Logger: opts.Logger, Registry: groupReg, Clock: opts.Clock})
	if err != nil {
		return nil, fmt.Errorf("ingester: %w", err)
	}
	in.group = g
	return in, nil
}

// tickEvery is how often partitions expire traces: a fifth of the idle
// timeout, between 10 and 250 ms.
func (c *Config) tickEvery() time.Duration {
	return min(max(c.IdleTimeout/5, 10*time.Millisecond), 250*time.Millisecond)
}

// Budget exposes the instance's in-flight budget (for tests and metrics).
func (in *Ingester) Budget() *assemble.Budget { return in.budget }

// Healthy reports whether the ingester is a live group member.
func (in *Ingester) Healthy() bool { return in.group.Healthy() }

// Check is the ingester's health check for pipeline/kafka.Handler.
func (in *Ingester) Check() kafka.Check { return in.group.Check() }

// Handler serves /metrics from gatherer and /healthz (200 once the
// ingester has joined its group, 503 before and after).
func (in *Ingester) Handler(gatherer prometheus.Gatherer) http.Handler {
	return kafka.Handler(gatherer, in.Check())
}

// Run joins the consumer group and processes the partitions assigned to this
// member, generation after generation, until ctx is cancelled (see
// pipeline/kafka.Group). Then it stops fetching, lets every partition finish
// as on a revocation (optionally flushing, waiting for outputs, committing),
// leaves the group and closes the writer. It returns nil after a clean stop.
func (in *Ingester) Run(ctx context.Context) error {
	if in.cfg.CreateTopics > 0 {
		if err := in.createTopics(ctx); err != nil {
			return err
		}
	}
	return in.group.Run(ctx)
}

// lookbackPrefix starts the metadata of every offset commit:
// "tracepipe/v1 lookback=<offset>".
const lookbackPrefix = "tracepipe/v1 lookback="

// lookbackCommit is the commit of offset with the lookback offset (where a
// replay must start, <= offset) as its metadata. The committed offset is
// what the next owner treats as done; the lookback is where it starts
// reading.
func lookbackCommit(offset, lookback int64) kafka.Commit {
	return kafka.Commit{Offset: offset, Metadata: lookbackPrefix + strconv.FormatInt(lookback, 10)}
}

// parseLookback reads the lookback offset of a commit's metadata.
func parseLookback(meta string) (int64, bool) {
	if !strings.HasPrefix(meta, lookbackPrefix) {
		return 0, false
	}
	l, err := strconv.ParseInt(strings.TrimPrefix(meta, lookbackPrefix), 10, 64)
	return l, err == nil && l >= 0
}

// pending is the token of every produced message; its ack brings it back.
type pending struct {
	token  assemble.Token
	offset int64  // source offset for dead letters and re-keyed messages
	bytes  int64  // a trace's output buffer's capacity, counted in the output budget
	buf    []byte // a trace's output buffer, reused once acknowledged
	kind   int8
}

const (
	kindTrace int8 = iota
	kindDLQ
	kindRekey
)

// createTopics creates the topics the ingester uses that do not exist yet.
func (in *Ingester) createTopics(ctx context.Context) error {
	out := in.cfg.TracesTopic
	if in.cfg.RekeyTo != "" {
		out = in.cfg.RekeyTo
	}
	a, err := kafka.NewAdmin(in.cfg.ClientConfig)
	if err != nil {
		return err
	}
	defer a.Close()
	var topics []kafka.TopicSpec
	for _, t := range []string{in.cfg.SpansTopic, out, in.cfg.DLQTopic} {
		// The brokers' default replication factor: on a cluster, a topic of
		// one replica loses its partitions with their broker.
		topics = append(topics, kafka.TopicSpec{Name: t, Partitions: in.cfg.CreateTopics, ReplicationFactor: -1})
	}
	return a.CreateTopics(ctx, topics...)
}
