package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/internal/wait"
)

// GroupConfig configures a Group: one consumer group on one topic.
type GroupConfig struct {
	Client ClientConfig
	Group  string
	Topic  string
	// Stage names the stage in metrics (label stage) and logs.
	Stage string
	// NewProcessor builds the processor of every assigned partition.
	NewProcessor NewProcessor
	// Writer, when set, gives every processor an Output producing through
	// one shared writer.
	Writer *WriterConfig

	// SessionTimeout of the membership (default 10s; brokers refuse less
	// than their group.min.session.timeout.ms, 6s by default).
	SessionTimeout time.Duration
	// RebalanceTimeout is how long the coordinator waits for members to
	// rejoin in a rebalance (default CloseTimeout + 20s: a revoked
	// partition may take CloseTimeout to finish).
	RebalanceTimeout time.Duration
	// CommitInterval is how often each partition commits its processor's
	// Safe position (default 1s).
	CommitInterval time.Duration
	// TickInterval is how often Tick is called (default 250ms).
	TickInterval time.Duration
	// CloseTimeout bounds how long a stopping partition waits for its
	// outstanding acknowledgements before giving up its final commit
	// (default 10s).
	CloseTimeout time.Duration
	// FetchBuffer is how many chunks (of up to ChunkSize records) a
	// partition's fetcher holds ahead of its processor (default 4).
	FetchBuffer int
	// AckBuffer is the capacity of a partition's acknowledgement channel
	// (default 4096).
	AckBuffer int
	// OnSkip, when set, is told (from the partition's fetch goroutine) of
	// offsets [from, to) the topic's retention deleted before they were
	// read; they are counted and logged anyway.
	OnSkip func(partition int, from, to int64)
}

func (c *GroupConfig) defaults() {
	if c.SessionTimeout == 0 {
		c.SessionTimeout = 10 * time.Second
	}
	if c.CommitInterval == 0 {
		c.CommitInterval = time.Second
	}
	if c.TickInterval == 0 {
		c.TickInterval = 250 * time.Millisecond
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = 10 * time.Second
	}
	if c.RebalanceTimeout == 0 {
		c.RebalanceTimeout = c.CloseTimeout + 20*time.Second
	}
	if c.FetchBuffer == 0 {
		c.FetchBuffer = 4
	}
	if c.AckBuffer == 0 {
		c.AckBuffer = 4096
	}
}

// Validate reports every problem of c (after defaults).
func (c GroupConfig) Validate() error {
	c.defaults()
	var errs []error
	if err := c.Client.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Group == "" || c.Topic == "" || c.Stage == "" {
		errs = append(errs, errors.New("kafka group: group, topic and stage must be set"))
	}
	if c.NewProcessor == nil {
		errs = append(errs, errors.New("kafka group: no NewProcessor"))
	}
	if c.SessionTimeout < 0 || c.CommitInterval < 0 || c.TickInterval < 0 || c.CloseTimeout < 0 || c.RebalanceTimeout < 0 || c.FetchBuffer < 0 || c.AckBuffer < 0 {
		errs = append(errs, errors.New("kafka group: timeouts, intervals and buffers must not be negative"))
	}
	if c.Writer != nil {
		if err := c.Writer.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// GroupOptions are a Group's collaborators; zero values mean a discarding
// logger, a private registry and the real clock. Clock gives Tick its time
// and measures the commit interval (checked at every tick, which the real
// ticker drives) and the last-commit timestamps.
type GroupOptions struct {
	Logger   *slog.Logger
	Registry prometheus.Registerer
	Clock    Clock
}

// Group is a member of a consumer group that runs one goroutine per
// assigned partition, each driving a Processor (see the package doc).
// Build it with NewGroup, run it with Run.
type Group struct {
	cfg    GroupConfig
	log    *slog.Logger
	clock  Clock
	m      *groupMetrics
	admin  *Admin
	dialer *kafkago.Dialer
	member atomic.Bool
}

// NewGroup validates cfg and builds a Group. It does not contact Kafka.
func NewGroup(cfg GroupConfig, opts GroupOptions) (*Group, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	m, err := newGroupMetrics(opts.Registry)
	if err != nil {
		return nil, fmt.Errorf("kafka group %s: register metrics: %w", cfg.Stage, err)
	}
	admin, err := NewAdmin(cfg.Client, cfg.Topic)
	if err != nil {
		return nil, err
	}
	d, err := cfg.Client.Dialer()
	if err != nil {
		return nil, err
	}
	m.member.WithLabelValues(cfg.Stage).Set(0)
	m.assigned.WithLabelValues(cfg.Stage).Set(0)
	m.rebalances.WithLabelValues(cfg.Stage)
	m.commits.WithLabelValues(cfg.Stage, "ok")
	m.commits.WithLabelValues(cfg.Stage, "error")
	m.restarts.WithLabelValues(cfg.Stage)
	return &Group{cfg: cfg, log: opts.Logger.With("stage", cfg.Stage), clock: opts.Clock, m: m, admin: admin, dialer: d}, nil
}

// Healthy reports whether the group is a live member of its consumer group
// (joined a generation and not left it).
func (g *Group) Healthy() bool { return g.member.Load() }

// Check is g's health check for Handler.
func (g *Group) Check() Check { return Check{Name: g.cfg.Stage, Healthy: g.Healthy} }

// Admin is the group's admin client (offsets, commits, range reads), valid
// until Run returns.
func (g *Group) Admin() *Admin { return g.admin }

func (g *Group) setMember(b bool) {
	g.member.Store(b)
	v := 0.0
	if b {
		v = 1
	}
	g.m.member.WithLabelValues(g.cfg.Stage).Set(v)
}

// Run waits for the topic (WaitForTopics), joins the group and runs the
// assigned partitions, generation after generation, until ctx is
// cancelled; then every partition stops as on a revocation (Close,
// outstanding acks, final commit, Release), the member leaves the group
// and the writer is closed. It returns nil after a clean stop and an
// error only when the group cannot be built.
func (g *Group) Run(ctx context.Context) error {
	defer g.admin.Close()
	if err := WaitForTopics(ctx, g.cfg.Client.Brokers, []string{g.cfg.Topic}, TopicWait{Logger: g.log, Client: &g.cfg.Client}); err != nil {
		return nil // ctx cancelled: WaitForTopics returns only then
	}
	var w *writer
	if g.cfg.Writer != nil {
		var err error
		if w, err = newWriter(g.cfg.Client, *g.cfg.Writer); err != nil {
			return fmt.Errorf("%s writer: %w", g.cfg.Stage, err)
		}
	}
	cg, err := kafkago.NewConsumerGroup(kafkago.ConsumerGroupConfig{
		ID:                g.cfg.Group,
		Brokers:           g.cfg.Client.Brokers,
		Dialer:            g.dialer,
		Topics:            []string{g.cfg.Topic},
		SessionTimeout:    g.cfg.SessionTimeout,
		HeartbeatInterval: g.cfg.SessionTimeout / 5,
		RebalanceTimeout:  g.cfg.RebalanceTimeout,
		JoinGroupBackoff:  time.Second,
		StartOffset:       kafkago.FirstOffset,
		GroupBalancers:    []kafkago.GroupBalancer{kafkago.RangeGroupBalancer{}},
		Timeout:           10 * time.Second,
	})
	if err != nil {
		if w != nil {
			w.close()
		}
		return fmt.Errorf("%s consumer group: %w", g.cfg.Stage, err)
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
		// sees its context done and finishes; Close returns when they
		// have, and the member has left the group.
		cg.Close()
	}()
	defer func() {
		close(stop)
		<-stopped
		g.setMember(false)
		g.m.assigned.WithLabelValues(g.cfg.Stage).Set(0)
		if w != nil {
			if err := w.close(); err != nil {
				g.log.Warn("close writer", "err", err)
			}
		}
	}()
	for {
		gen, err := cg.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, kafkago.ErrGroupClosed) {
				return nil
			}
			g.setMember(false)
			g.log.Warn("join group", "group", g.cfg.Group, "err", err)
			continue
		}
		g.setMember(true)
		g.m.rebalances.WithLabelValues(g.cfg.Stage).Inc()
		assigned := gen.Assignments[g.cfg.Topic]
		g.m.assigned.WithLabelValues(g.cfg.Stage).Set(float64(len(assigned)))
		g.log.Info("generation", "group", g.cfg.Group, "id", gen.ID, "member", gen.MemberID, "partitions", len(assigned))
		for _, pa := range assigned {
			gen.Start(func(gctx context.Context) { g.partition(gctx, gen, pa.ID, w) })
		}
	}
}

// partition runs one assigned partition until its generation ends,
// restarting its processor from the commit (after a backoff) when it
// fails: returning early would end the whole generation.
func (g *Group) partition(gctx context.Context, gen *kafkago.Generation, p int, w *writer) {
	pm := g.m.partition(g.cfg.Stage, g.cfg.Topic, p)
	defer pm.remove()
	log := g.log.With("topic", g.cfg.Topic, "partition", p)
	for failures := 1; ; failures = min(failures+1, 7) {
		err := g.run(gctx, gen, p, w, pm, log)
		if gctx.Err() != nil {
			return
		}
		g.m.restarts.WithLabelValues(g.cfg.Stage).Inc()
		log.Warn("partition stopped; restarting it from its commit", "err", err, "backoff", backoff(failures))
		if !wait.Sleep(gctx, backoff(failures)) {
			return
		}
	}
}

// partitionState is what the runtime tracks of a running partition.
type partitionState struct {
	member    Member
	committed Commit
	next      int64 // the next offset to hand to the processor; -1 unknown
	hwm       int64
}

// run is one life of a partition's processor: Open, the loop, the finish.
// It returns nil only when gctx ended.
func (g *Group) run(gctx context.Context, gen *kafkago.Generation, p int, w *writer, pm *partitionMetrics, log *slog.Logger) error {
	var commit Commit
	for failures := 1; ; failures = min(failures+1, 7) {
		var err error
		if commit, err = g.admin.Committed(gctx, g.cfg.Group, g.cfg.Topic, p); err == nil {
			break
		}
		if gctx.Err() != nil {
			return nil
		}
		log.Warn("read the group's commit; retrying", "err", err)
		if !wait.Sleep(gctx, backoff(failures)) {
			return nil
		}
	}
	st := &partitionState{member: Member{Generation: gen.ID, ID: gen.MemberID}, committed: commit, next: -1, hwm: -1}
	if commit.Committed() {
		pm.committed.Set(float64(commit.Offset))
	}
	var out *Output
	if w != nil {
		out = newOutput(w, g.cfg.AckBuffer)
		defer close(out.done)
	}
	proc, err := g.cfg.NewProcessor(Assignment{Stage: g.cfg.Stage, Group: g.cfg.Group, Topic: g.cfg.Topic, Partition: p,
		Generation: gen.ID, Committed: commit, Out: out, Logger: log})
	if err != nil {
		return fmt.Errorf("new processor: %w", err)
	}
	from, err := proc.Open(gctx, commit)
	if err != nil {
		g.finish(proc, out, st, pm, log, false)
		return fmt.Errorf("open: %w", err)
	}
	if from >= 0 {
		st.next = from
	}
	f := startFetch(fetchConfig{brokers: g.cfg.Client.Brokers, dialer: g.dialer, topic: g.cfg.Topic, partition: p,
		onSkip: func(from, to int64) {
			g.m.skipped.WithLabelValues(g.cfg.Stage, g.cfg.Topic).Add(float64(to - from))
			log.Error("records deleted by retention before they were read", "from", from, "to", to)
			if g.cfg.OnSkip != nil {
				g.cfg.OnSkip(p, from, to)
			}
		}}, from, g.cfg.FetchBuffer)
	err = g.loop(gctx, proc, f, out, st, pm, log)
	f.stop()
	g.finish(proc, out, st, pm, log, true)
	if gctx.Err() != nil {
		return nil
	}
	return err
}

// loop feeds the processor until gctx ends or a step fails.
func (g *Group) loop(ctx context.Context, proc Processor, f *fetcher, out *Output, st *partitionState, pm *partitionMetrics, log *slog.Logger) error {
	tick := time.NewTicker(g.cfg.TickInterval)
	defer tick.Stop()
	lastCommit := g.clock.Now()
	var chunk, rest []Record
	var acks chan Ack
	if out != nil {
		acks = out.acks
	}
	blocked := false // the processor refused rest until the next Acked or Tick
	for {
		if len(rest) > 0 && !blocked {
			n, err := proc.Handle(ctx, rest)
			if n < 0 || n > len(rest) {
				return fmt.Errorf("processor took %d of %d records", n, len(rest))
			}
			if n > 0 {
				st.next, st.hwm = rest[n-1].Offset+1, max(st.hwm, rest[n-1].HighWaterMark)
				rest = rest[n:]
			}
			if err != nil {
				return fmt.Errorf("handle: %w", err)
			}
			if len(rest) == 0 {
				f.recycle(chunk)
				chunk, rest = nil, nil
			} else {
				blocked = true
			}
		}
		in := f.batches
		if len(rest) > 0 {
			in = nil // fetching stops once the fetcher's buffer is full
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-f.errs:
			return err
		case chunk = <-in:
			rest = chunk
		case a := <-acks:
			out.outstanding--
			blocked = false
			if err := proc.Acked(a); err != nil {
				return fmt.Errorf("acked: %w", err)
			}
		case <-tick.C:
			blocked = false
			now := g.clock.Now()
			if err := proc.Tick(ctx, now); err != nil {
				return fmt.Errorf("tick: %w", err)
			}
			if now.Sub(lastCommit) >= g.cfg.CommitInterval {
				lastCommit = now
				g.commit(proc, st, pm, log)
			}
			g.observe(f, st, pm)
		}
	}
}

// observe sets the partition's lag gauges.
func (g *Group) observe(f *fetcher, st *partitionState, pm *partitionMetrics) {
	st.hwm = max(st.hwm, f.hwm.Load())
	if st.hwm < 0 {
		return
	}
	if st.next >= 0 {
		pm.processedLag.Set(float64(max(st.hwm-st.next, 0)))
	}
	pm.consumerLag.Set(float64(max(st.hwm-max(st.committed.Offset, 0), 0)))
}

// commit stores the processor's Safe position when it moved (or its
// metadata changed). A failed commit is counted and logged; the next one
// tries again.
func (g *Group) commit(proc Processor, st *partitionState, pm *partitionMetrics, log *slog.Logger) bool {
	c, ok := proc.Safe()
	if !ok || c.Offset < 0 || c.Offset < st.committed.Offset || c == st.committed {
		return ok
	}
	err := g.admin.Commit(context.Background(), g.cfg.Group, st.member, g.cfg.Topic, pm.partition(), c)
	if err != nil {
		g.m.commits.WithLabelValues(g.cfg.Stage, "error").Inc()
		log.Warn("commit failed; the next commit tries again", "offset", c.Offset, "err", err)
		return false
	}
	g.m.commits.WithLabelValues(g.cfg.Stage, "ok").Inc()
	st.committed = c
	pm.committed.Set(float64(c.Offset))
	pm.lastCommit.Set(float64(g.clock.Now().UnixNano()) / 1e9)
	if st.hwm >= 0 {
		pm.consumerLag.Set(float64(max(st.hwm-c.Offset, 0)))
	}
	if cm, ok := proc.(Committer); ok {
		cm.Committed(c)
	}
	return true
}

// finish ends a processor's life: Close, the outstanding acks (bounded by
// CloseTimeout), the final commit (skipped when an ack failed, the timeout
// ran out, or commit is false), Release.
func (g *Group) finish(proc Processor, out *Output, st *partitionState, pm *partitionMetrics, log *slog.Logger, commit bool) {
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.CloseTimeout)
	defer cancel()
	if err := proc.Close(ctx); err != nil {
		log.Warn("close", "err", err)
	}
	for out != nil && out.outstanding > 0 && commit {
		select {
		case a := <-out.acks:
			out.outstanding--
			if err := proc.Acked(a); err != nil {
				log.Warn("output failed while stopping; not committing", "err", err)
				commit = false
			}
		case <-ctx.Done():
			log.Warn("close timeout over with outputs unacknowledged; not committing", "outstanding", out.outstanding)
			commit = false
		}
	}
	if commit {
		g.commit(proc, st, pm, log)
	}
	if r, ok := proc.(Releaser); ok {
		r.Release()
	}
}
