package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/internal/ratelog"
	"github.com/tracepipe/tracepipe/pipeline/assemble"
	tpkafka "github.com/tracepipe/tracepipe/pipeline/kafka"
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
	writer  *kafka.Writer
	dialer  *kafka.Dialer

	client  *kafka.Client // offset commits and fetches (via the coordinator)
	healthy atomic.Bool
}

// Options are an Ingester's collaborators. Zero values mean: the real clock,
// a discarding logger, a private registry.
type Options struct {
	Clock    assemble.Clock
	Logger   *slog.Logger
	Registry prometheus.Registerer
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
	in := &Ingester{
		cfg:     cfg,
		clock:   opts.Clock,
		log:     opts.Logger,
		drops:   ratelog.New(opts.Logger, ratelog.DefaultEvery, nil),
		metrics: NewMetrics(opts.Registry),
		budget:  &assemble.Budget{MaxTraces: cfg.MaxTracesInFlight, MaxBytes: cfg.MaxBytesInFlight},
		dialer:  &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true},
	}
	in.writer = &kafka.Writer{
		Addr:         kafka.TCP(cfg.Brokers...),
		Balancer:     &kafka.Hash{}, // sarama-compatible, as Jaeger's collector partitions
		RequiredAcks: kafka.RequireAll,
		Async:        true,
		BatchSize:    1000,
		BatchBytes:   int64(cfg.MaxMessageBytes),
		BatchTimeout: 5 * time.Millisecond,
		WriteTimeout: 30 * time.Second,
		Transport:    &kafka.Transport{DialTimeout: 10 * time.Second},
		Completion:   completion,
	}
	in.client = &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: in.writer.Transport, Timeout: 10 * time.Second}
	return in, nil
}

// Budget exposes the instance's in-flight budget (for tests and metrics).
func (in *Ingester) Budget() *assemble.Budget { return in.budget }

// Healthy reports whether the ingester is a live group member.
func (in *Ingester) Healthy() bool { return in.healthy.Load() }

// Handler serves /metrics from gatherer and /healthz (200 once the
// ingester has joined its group, 503 before and after).
func (in *Ingester) Handler(gatherer prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if in.Healthy() {
			fmt.Fprintln(w, "ok")
			return
		}
		http.Error(w, "not a group member", http.StatusServiceUnavailable)
	})
	return mux
}

// Run joins the consumer group and processes the partitions assigned to this
// member, generation after generation, until ctx is cancelled. Then it stops
// fetching, lets every partition finish as on a revocation (optionally
// flushing, waiting for outputs, committing), leaves the group and closes the
// writer. It returns nil after a clean stop.
func (in *Ingester) Run(ctx context.Context) error {
	if in.cfg.CreateTopics > 0 {
		if err := in.createTopics(ctx); err != nil {
			return err
		}
	}
	// Join only once the spans topic exists with leaders: kafka-go's group
	// would assign nothing of a missing topic and never look again.
	if err := tpkafka.WaitForTopics(ctx, in.cfg.Brokers, []string{in.cfg.SpansTopic}, tpkafka.TopicWait{Logger: in.log, Stage: "ingester"}); err != nil {
		in.writer.Close()
		in.writer.Transport.(*kafka.Transport).CloseIdleConnections()
		return nil // ctx cancelled: WaitForTopics returns only then
	}
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                in.cfg.Group,
		Brokers:           in.cfg.Brokers,
		Dialer:            in.dialer,
		Topics:            []string{in.cfg.SpansTopic},
		SessionTimeout:    in.cfg.SessionTimeout,
		HeartbeatInterval: in.cfg.SessionTimeout / 5,
		RebalanceTimeout:  in.cfg.ShutdownGrace + 20*time.Second,
		JoinGroupBackoff:  time.Second,
		StartOffset:       kafka.FirstOffset,
		GroupBalancers:    []kafka.GroupBalancer{kafka.RangeGroupBalancer{}},
		Timeout:           10 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("consumer group: %w", err)
	}
	stop := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-ctx.Done():
		case <-stop:
		}
		// Closing the group ends the current generation: every partition
		// worker sees its context done and shuts down; Close returns when
		// they have, and the member has left the group.
		cg.Close()
	}()
	defer func() {
		close(stop)
		<-stopped
		in.healthy.Store(false)
		in.writer.Close()
		in.writer.Transport.(*kafka.Transport).CloseIdleConnections()
	}()
	for {
		gen, err := cg.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, kafka.ErrGroupClosed) {
				return nil
			}
			in.healthy.Store(false)
			in.log.Warn("join group", "group", in.cfg.Group, "err", err)
			continue
		}
		in.healthy.Store(true)
		in.metrics.Rebalances.Inc()
		assigned := gen.Assignments[in.cfg.SpansTopic]
		in.metrics.Partitions.Set(float64(len(assigned)))
		in.log.Info("generation", "id", gen.ID, "member", gen.MemberID, "partitions", len(assigned))
		for _, pa := range assigned {
			pa := pa
			gen.Start(func(gctx context.Context) {
				var err error
				if in.cfg.RekeyTo != "" {
					err = in.runRekey(ctx, gctx, gen, pa)
				} else {
					err = in.runPartition(ctx, gctx, gen, pa)
				}
				if err != nil && gctx.Err() == nil {
					in.log.Warn("partition stopped; the generation restarts from committed offsets", "partition", pa.ID, "err", err)
				}
			})
		}
	}
}

// lookbackPrefix starts the metadata of every offset commit:
// "tracepipe/v1 lookback=<offset>".
const lookbackPrefix = "tracepipe/v1 lookback="

// commit commits offset for partition as a member of gen, with the lookback
// offset (where a replay must start, <= offset) as the commit's metadata.
// The committed offset is what the next owner treats as done; the lookback
// is where it starts reading.
func (in *Ingester) commit(gen *kafka.Generation, partition int, offset, lookback int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := in.client.OffsetCommit(ctx, &kafka.OffsetCommitRequest{
		GroupID:      in.cfg.Group,
		GenerationID: int(gen.ID),
		MemberID:     gen.MemberID,
		Topics: map[string][]kafka.OffsetCommit{in.cfg.SpansTopic: {{
			Partition: partition, Offset: offset, Metadata: lookbackPrefix + strconv.FormatInt(lookback, 10),
		}}},
	})
	if err != nil {
		return err
	}
	for _, p := range resp.Topics[in.cfg.SpansTopic] {
		if p.Error != nil {
			return p.Error
		}
	}
	return nil
}

// fetchLookback reads the lookback offset stored with partition's committed
// offset, if any.
func (in *Ingester) fetchLookback(ctx context.Context, partition int) (int64, bool) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := in.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: in.cfg.Group, Topics: map[string][]int{in.cfg.SpansTopic: {partition}}})
	if err != nil {
		in.log.Warn("fetch committed lookback; replaying from the committed offset only", "partition", partition, "err", err)
		return 0, false
	}
	for _, p := range resp.Topics[in.cfg.SpansTopic] {
		if p.Partition == partition && strings.HasPrefix(p.Metadata, lookbackPrefix) {
			l, err := strconv.ParseInt(strings.TrimPrefix(p.Metadata, lookbackPrefix), 10, 64)
			return l, err == nil && l >= 0
		}
	}
	return 0, false
}

// pending is attached to every produced message (kafka.Message.WriterData);
// the writer's Completion hands it back to its worker.
type pending struct {
	owner  chan<- ack
	done   <-chan struct{}
	token  assemble.Token
	offset int64 // source offset for dead letters and re-keyed messages
	kind   int8
}

const (
	kindTrace int8 = iota
	kindDLQ
	kindRekey
)

type ack struct {
	p   *pending
	err error
}

// completion routes the writer's acknowledgements to the workers that
// produced the messages. It blocks only until the worker takes the ack or
// has stopped.
func completion(msgs []kafka.Message, err error) {
	for i := range msgs {
		p, ok := msgs[i].WriterData.(*pending)
		if !ok {
			continue
		}
		select {
		case p.owner <- ack{p: p, err: err}:
		case <-p.done:
		}
	}
}

// createTopics creates the topics the ingester uses that do not exist yet.
func (in *Ingester) createTopics(ctx context.Context) error {
	out := in.cfg.TracesTopic
	if in.cfg.RekeyTo != "" {
		out = in.cfg.RekeyTo
	}
	var topics []kafka.TopicConfig
	for _, t := range []string{in.cfg.SpansTopic, out, in.cfg.DLQTopic} {
		topics = append(topics, kafka.TopicConfig{Topic: t, NumPartitions: in.cfg.CreateTopics, ReplicationFactor: 1})
	}
	resp, err := in.client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: topics})
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	for t, err := range resp.Errors {
		if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", t, err)
		}
	}
	return nil
}
