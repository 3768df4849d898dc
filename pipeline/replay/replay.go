package replay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tracepipe/tracepipe/internal/dirlock"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/pipeline/aggregator"
	"github.com/tracepipe/tracepipe/pipeline/index"
	"github.com/tracepipe/tracepipe/pipeline/ingest"
	"github.com/tracepipe/tracepipe/pipeline/kafka"
	"github.com/tracepipe/tracepipe/pipeline/local"
	"github.com/tracepipe/tracepipe/storage"
	"github.com/tracepipe/tracepipe/storage/embedded"
)

// Private topics and groups of the work directory's broker.
const (
	privSpans    = "replay-spans"
	privTraces   = "replay-traces"
	privDLQ      = "replay-ingester-dlq"
	privPartials = "replay-partials"
	grpIngest    = "replay-ingester"
	grpIndex     = "replay-indexer"
	grpMap       = "replay-aggregator"
	grpReduce    = "replay-aggregator-reduce"
)

// Config is one replay.
type Config struct {
	// Source reaches the cluster holding Topic.
	Source kafka.ClientConfig
	Topic  string
	// Traces: Topic holds assembled traces (the ingester's output), not
	// spans; the ingester does not run.
	Traces bool
	// From and To bound the records read, by record timestamp; Margin
	// widens the read on both sides.
	From, To time.Time
	Margin   time.Duration
	// EventFrom and EventTo bound, by event time, the traces written and
	// the windows whose rollups are written (zero: From and To).
	EventFrom, EventTo time.Time
	// Index writes the traces; Aggregate computes and writes the rollups.
	Index, Aggregate bool
	// WorkDir holds the private broker, the staging store and the state.
	WorkDir string
	// KeepWorkDir keeps the work directory after a finished replay.
	KeepWorkDir bool
	// Ingest, Indexer and Aggregator configure the private stages; their
	// Kafka settings, topics and groups are replaced by the private ones.
	Ingest     ingest.Config
	Indexer    index.Config
	Aggregator aggregator.Config
	// ProgressInterval is how often Deps.Progress is called.
	ProgressInterval time.Duration
}

// DefaultConfig returns the defaults of `tracepipe replay`: the private
// stages as the live ones, with the ingester's idle timeout and the
// aggregator's intervals shortened (a replay settles within seconds of its
// last record rather than within the live idle and checkpoint intervals).
func DefaultConfig() Config {
	ac := aggregator.DefaultConfig()
	ac.FlushInterval = 500 * time.Millisecond
	ac.CoarseInterval = time.Second
	ac.CheckpointInterval = time.Second
	ac.IdleTimeout = time.Second
	ic := ingest.DefaultConfig()
	ic.MetricsAddr = ""
	// The copy delivers a trace's spans within moments of each other
	// however far apart they reached Kafka; a span that still comes later
	// makes a new version (fill writes keep the newer one).
	ic.IdleTimeout = time.Second
	// Larger store batches: a backfill wants throughput, not latency (the
	// embedded store's transactions and Elasticsearch's bulks amortise).
	xc := index.DefaultConfig()
	xc.BatchSize, xc.BatchWait = 2000, time.Second
	return Config{
		Topic:            ic.SpansTopic,
		Margin:           2 * time.Minute,
		Index:            true,
		Aggregate:        true,
		WorkDir:          "tracepipe-replay",
		Ingest:           ic,
		Indexer:          xc,
		Aggregator:       ac,
		ProgressInterval: time.Second,
	}
}

// Validate reports every problem of c, joined, in terms of `tracepipe
// replay`'s flags; it does not change c.
func (c *Config) Validate() error {
	var errs []error
	switch {
	case c.From.IsZero() || c.To.IsZero():
		errs = append(errs, errors.New("--from and --to are required"))
	case !c.From.Before(c.To):
		errs = append(errs, fmt.Errorf("--from %s must be before --to %s", c.From.Format(time.RFC3339), c.To.Format(time.RFC3339)))
	}
	if c.EventFrom.IsZero() != c.EventTo.IsZero() {
		errs = append(errs, errors.New("--event-from and --event-to go together"))
	} else if !c.EventFrom.IsZero() && !c.EventFrom.Before(c.EventTo) {
		errs = append(errs, errors.New("--event-from must be before --event-to"))
	}
	if c.Margin < 0 {
		errs = append(errs, fmt.Errorf("--margin %s must not be negative", c.Margin))
	}
	if c.Topic == "" {
		errs = append(errs, errors.New("--topic must not be empty"))
	}
	if !c.Index && !c.Aggregate {
		errs = append(errs, errors.New("--stages names no stage: want index, aggregate or both"))
	}
	if c.WorkDir == "" {
		errs = append(errs, errors.New("--work-dir must not be empty"))
	}
	if c.ProgressInterval <= 0 {
		errs = append(errs, errors.New("progress interval must be positive"))
	}
	priv := kafka.ClientConfig{Brokers: []string{"127.0.0.1:1"}}
	ic, xc, ac := c.Ingest, c.Indexer, c.Aggregator
	ic.ClientConfig, xc.ClientConfig, ac.ClientConfig = priv, priv, priv
	for _, err := range []error{ic.Validate(), xc.Validate(), ac.Validate()} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (c *Config) eventRange() eventRange {
	if c.EventFrom.IsZero() {
		return newEventRange(c.From, c.To)
	}
	return newEventRange(c.EventFrom, c.EventTo)
}

func (c *Config) identity() identity {
	er := c.eventRange()
	return identity{Topic: c.Topic, Traces: c.Traces, From: c.From.UTC(), To: c.To.UTC(),
		EventFrom: er.from.Time(), EventTo: er.to.Time(), Margin: c.Margin,
		Index: c.Index, Aggregate: c.Aggregate, Stats: fmt.Sprintf("%+v", c.Aggregator.Stats.Normalized())}
}

// Deps are a replay's collaborators.
type Deps struct {
	// Store is the target store (the live pipeline's). Its TraceWriter is
	// used when Config.Index, its RollupWriter (and EdgeWriter, when it
	// has one) when Config.Aggregate.
	Store  storage.Store
	Logger *slog.Logger
	// Registry receives the private stages' metrics (nil: a fresh one).
	Registry *prometheus.Registry
	// DeadLetter receives traces the target store rejects for good (nil:
	// such a trace fails the replay).
	DeadLetter index.DeadLetter
	// Progress, when set, is called every ProgressInterval and once at the
	// end, from one goroutine.
	Progress func(Progress)
}

// Phase is where a replay is.
type Phase string

const (
	PhaseCopying  Phase = "copying"  // records are being copied and processed
	PhaseSettling Phase = "settling" // every record is copied; the stages finish
	PhaseRollups  Phase = "rollups"  // rollups are copied from staging to the store
	PhaseDone     Phase = "done"
)

// Progress is a replay's state at one moment.
type Progress struct {
	Phase Phase
	// Records of the range (all partitions), copied into the private
	// broker, and processed by the first stage.
	Total, Copied, Processed int64
	// Partitions, and those whose every record is processed.
	Partitions, PartitionsDone int
	Elapsed                    time.Duration
	// Resumed: this run continues an earlier one (Elapsed is this run's).
	Resumed bool
}

// Summary is what a finished replay did.
type Summary struct {
	From, To, EventFrom, EventTo time.Time
	Partitions                   int
	// Records read (the whole range with its margins) and records the
	// range had lost to retention before they were read.
	Records, Missing int64
	// Traces: trace versions in the event range handed to the store
	// (fill: one already stored as new or newer is kept unchanged);
	// OutsideTraces were read for the margins only.
	Traces, OutsideTraces int64
	// Rollups and Edges: documents of the windows wholly inside the event
	// range handed to the store (fill: one already stored is kept);
	// PartialWindows counts, per resolution, windows only partly inside
	// the range, left alone.
	Rollups, Edges int64
	PartialWindows map[time.Duration]int
	Elapsed        time.Duration
	Resumed        bool
}

// ErrInterrupted is returned when the replay's context was cancelled
// before it finished; running it again resumes it.
var ErrInterrupted = errors.New("replay interrupted; run the same command again to resume")

// Run runs the replay of cfg to its end, or until ctx is cancelled
// (ErrInterrupted: the work directory keeps what resuming needs).
func Run(ctx context.Context, cfg Config, deps Deps) (Summary, error) {
	if err := cfg.Validate(); err != nil {
		return Summary{}, err
	}
	if deps.Store == nil {
		return Summary{}, errors.New("replay: no store")
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := deps.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	t0 := time.Now()
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return Summary{}, fmt.Errorf("work directory: %w", err)
	}
	lock, err := dirlock.Acquire(cfg.WorkDir)
	if err != nil {
		return Summary{}, fmt.Errorf("work directory: %w", err)
	}
	defer lock.Unlock()

	srcAdmin, err := kafka.NewAdmin(cfg.Source)
	if err != nil {
		return Summary{}, err
	}
	defer srcAdmin.Close()
	st, resumed, err := loadState(cfg.WorkDir)
	if err != nil {
		return Summary{}, err
	}
	id := cfg.identity()
	switch {
	case resumed && st.Identity != id:
		return Summary{}, fmt.Errorf("work directory %s holds another replay (%s %s..%s); finish it with the same flags, or remove the directory, or use another --work-dir",
			cfg.WorkDir, st.Identity.Topic, st.Identity.From.Format(time.RFC3339), st.Identity.To.Format(time.RFC3339))
	case resumed:
		total, copied := st.total()
		log.Info("resuming replay", "work_dir", cfg.WorkDir, "copied", copied, "records", total)
	default:
		parts, err := plan(ctx, srcAdmin, id)
		if err != nil {
			return Summary{}, fmt.Errorf("find the range's offsets: %w", err)
		}
		st = state{Version: stateVersion, Identity: id, Started: time.Now().UTC(), Partitions: parts}
		if err := saveState(cfg.WorkDir, st); err != nil {
			return Summary{}, fmt.Errorf("work directory: %w", err)
		}
	}

	r := &run{cfg: cfg, deps: deps, log: log, reg: reg, st: st, t0: t0, resumed: resumed, er: cfg.eventRange()}
	sum, err := r.run(ctx)
	sum.Elapsed, sum.Resumed = time.Since(t0), resumed
	if err != nil {
		return sum, err
	}
	if !cfg.KeepWorkDir {
		lock.Unlock()
		if err := os.RemoveAll(cfg.WorkDir); err != nil {
			log.Warn("could not remove the work directory", "dir", cfg.WorkDir, "err", err)
		}
	}
	return sum, nil
}

// run is one execution of a replay.
type run struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	reg     *prometheus.Registry
	er      eventRange
	t0      time.Time
	resumed bool

	mu sync.Mutex // guards st's copy positions and processed
	st state
	// processed: per partition, the first stage's committed offset.
	processed map[int]int64
	phase     Phase
	filter    *traceFilter
}

func (r *run) run(ctx context.Context) (Summary, error) {
	cfg := r.cfg
	sum := Summary{From: cfg.From, To: cfg.To, EventFrom: r.er.from.Time(), EventTo: r.er.to.Time(), Partitions: len(r.st.Partitions)}
	if len(r.st.Partitions) == 0 {
		return sum, fmt.Errorf("topic %s has no partitions", cfg.Topic)
	}
	var staging *embedded.Store
	if cfg.Aggregate {
		var err error
		staging, err = embedded.Open(ctx, embedded.Options{Path: filepath.Join(cfg.WorkDir, "staging.db")})
		if err != nil {
			return sum, fmt.Errorf("staging store: %w", err)
		}
		defer staging.Close()
	}
	r.filter = &traceFilter{w: r.deps.Store, r: r.er}
	r.phase = PhaseCopying

	lc := local.DefaultConfig()
	lc.DataDir = cfg.WorkDir
	lc.BrokerListen = "127.0.0.1:0"
	lc.Partitions = len(r.st.Partitions)
	lc.QueryListen, lc.MetricsAddr = "", ""
	lc.Collector = local.DefaultConfig().Collector
	lc.Collector.JaegerCompactUDP, lc.Collector.JaegerBinaryUDP, lc.Collector.JaegerHTTP = "", "", ""
	lc.Collector.OTLPGRPC, lc.Collector.OTLPHTTP, lc.Collector.SamplingHTTP = "", "", ""
	lc.Ingest = cfg.Ingest
	lc.Ingest.SpansTopic, lc.Ingest.TracesTopic, lc.Ingest.DLQTopic, lc.Ingest.Group = privSpans, privTraces, privDLQ, grpIngest
	lc.Ingest.MetricsAddr, lc.Ingest.CreateTopics, lc.Ingest.RekeyTo = "", 0, ""
	if cfg.Traces {
		lc.Ingest.SpansTopic = privSpans // read by nobody's producer: the ingester idles
	}
	deps := local.Deps{Registry: r.reg, Logger: r.log, Stages: func(brokers []string) ([]local.Stage, error) {
		var stages []local.Stage
		priv := kafka.ClientConfig{Brokers: brokers}
		if cfg.Index {
			xc := cfg.Indexer
			xc.ClientConfig, xc.Topic, xc.Group = priv, privTraces, grpIndex
			x, err := index.New(xc, r.filter, index.Options{Logger: r.log.With("component", "replay-indexer"), Registry: r.reg, DeadLetter: r.deps.DeadLetter})
			if err != nil {
				return nil, err
			}
			stages = append(stages, x)
		}
		if cfg.Aggregate {
			ac := cfg.Aggregator
			ac.ClientConfig, ac.TracesTopic, ac.Group = priv, privTraces, grpMap
			ac.PartialsTopic, ac.ReduceGroup, ac.PartialsPartitions = privPartials, grpReduce, len(r.st.Partitions)
			ac.NoMap, ac.NoReduce = false, false
			a, err := aggregator.New(ac, staging, aggregator.Options{Logger: r.log.With("component", "replay-aggregator"), Registry: r.reg})
			if err != nil {
				return nil, err
			}
			stages = append(stages, a)
		}
		return stages, nil
	}}

	pctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	ready := make(chan []string, 1)
	pdone := make(chan error, 1)
	go func() { pdone <- local.Run(pctx, lc, deps, func(b []string) { ready <- b }) }()
	var brokers []string
	select {
	case brokers = <-ready:
	case err := <-pdone:
		return sum, fmt.Errorf("private pipeline: %w", err)
	case <-ctx.Done():
		stop()
		<-pdone
		return sum, ErrInterrupted
	}
	stopPipeline := func() error {
		stop()
		return <-pdone
	}

	err := r.drive(ctx, brokers, pdone)
	if perr := stopPipeline(); perr != nil && err == nil {
		err = fmt.Errorf("private pipeline: %w", perr)
	}
	if serr := r.save(); serr != nil && err == nil {
		err = serr
	}
	r.mu.Lock()
	for _, p := range r.st.Partitions {
		sum.Records += p.Copied - p.Start
		sum.Missing += p.Missing
	}
	r.mu.Unlock()
	sum.Traces, sum.OutsideTraces = r.filter.written.Load(), r.filter.outside.Load()
	if err != nil {
		if ctx.Err() != nil {
			return sum, ErrInterrupted
		}
		return sum, err
	}
	if cfg.Aggregate {
		r.setPhase(PhaseRollups)
		r.report()
		if err := r.copyRollups(ctx, staging, &sum); err != nil {
			if ctx.Err() != nil {
				return sum, ErrInterrupted
			}
			return sum, err
		}
	}
	r.setPhase(PhaseDone)
	r.report()
	return sum, nil
}

// drive copies the range into the private broker and waits until every
// stage has drained it, reporting progress meanwhile.
func (r *run) drive(ctx context.Context, brokers []string, pdone <-chan error) error {
	priv, err := kafka.NewAdmin(kafka.ClientConfig{Brokers: brokers})
	if err != nil {
		return err
	}
	defer priv.Close()
	cctx, ccancel := context.WithCancel(ctx)
	defer ccancel()
	copied := make(chan error, 1)
	topic := privSpans
	if r.cfg.Traces {
		topic = privTraces
	}
	go func() { copied <- r.copyAll(cctx, brokers, topic) }()

	tick := time.NewTicker(min(r.cfg.ProgressInterval, 500*time.Millisecond))
	defer tick.Stop()
	lastReport := time.Now()
	copyDone := false
	var quietSince time.Time
	var lastEnds map[string]int64
	settle := r.settle()
	for {
		select {
		case <-ctx.Done():
			ccancel()
			if !copyDone {
				<-copied
			}
			return ctx.Err()
		case err := <-pdone:
			ccancel()
			if !copyDone {
				<-copied
			}
			if err == nil {
				err = errors.New("stopped by itself")
			}
			return fmt.Errorf("private pipeline: %w", err)
		case err := <-copied:
			copyDone = true
			if err != nil {
				return err
			}
			if err := r.save(); err != nil {
				return err
			}
			r.setPhase(PhaseSettling)
			r.log.Info("replay: every record copied; waiting for the stages to drain", "settle", settle)
		case <-tick.C:
			drained, ends, err := r.poll(ctx, priv, topic)
			if err != nil {
				r.log.Warn("replay: reading the private stages' positions", "err", err)
			}
			if copyDone {
				switch {
				case !drained || !maps.Equal(ends, lastEnds):
					quietSince = time.Time{}
				case quietSince.IsZero():
					quietSince = time.Now()
				case time.Since(quietSince) >= settle:
					return nil
				}
				lastEnds = ends
			}
			if time.Since(lastReport) >= r.cfg.ProgressInterval {
				lastReport = time.Now()
				if err := r.save(); err != nil {
					r.log.Warn("replay: saving the copy position", "err", err)
				}
				r.report()
			}
		}
	}
}

// settle is how long every private group must stay caught up, with no
// topic growing, before the replay counts as drained: longer than any
// stage can hold work back once its group has committed its input's end.
// The ingester commits no offset of a trace it still buffers, so its
// commit interval is all it adds; the aggregator's map stage commits what
// it processed while windows are still open, which its idle flush
// publishes later, and the reducer writes coarse windows on its own
// interval.
func (r *run) settle() time.Duration {
	ic, ac := r.cfg.Ingest, r.cfg.Aggregator
	d := time.Duration(0)
	if !r.cfg.Traces {
		d = ic.CommitInterval
	}
	if r.cfg.Aggregate {
		d += ac.IdleTimeout + ac.FlushInterval + ac.CheckpointInterval + ac.CoarseInterval
	}
	if r.cfg.Index {
		d = max(d, r.cfg.Indexer.BatchWait+2*time.Second)
	}
	return d + 2*time.Second
}

// poll reads every private group's commits: drained when each group has
// committed the end of its topic; ends are the topics' ends. It also
// records the first stage's progress.
func (r *run) poll(ctx context.Context, priv *kafka.Admin, input string) (drained bool, ends map[string]int64, err error) {
	type gt struct{ group, topic string }
	var groups []gt
	if !r.cfg.Traces {
		groups = append(groups, gt{grpIngest, privSpans})
	}
	if r.cfg.Index {
		groups = append(groups, gt{grpIndex, privTraces})
	}
	if r.cfg.Aggregate {
		groups = append(groups, gt{grpMap, privTraces}, gt{grpReduce, privPartials})
	}
	n := len(r.st.Partitions)
	ends = map[string]int64{}
	drained = true
	processed := map[int]int64{}
	for gi, g := range groups {
		for p := range n {
			_, end, err := priv.Offsets(ctx, g.topic, p)
			if err != nil {
				return false, nil, err
			}
			ends[fmt.Sprintf("%s/%d", g.topic, p)] = end
			c, err := priv.Committed(ctx, g.group, g.topic, p)
			if err != nil {
				return false, nil, err
			}
			off := max(c.Offset, 0)
			if off < end {
				drained = false
			}
			if gi == 0 && g.topic == input {
				processed[p] = off
			}
		}
	}
	r.mu.Lock()
	r.processed = processed
	r.mu.Unlock()
	return drained, ends, nil
}

func (r *run) setPhase(p Phase) {
	r.mu.Lock()
	r.phase = p
	r.mu.Unlock()
}

func (r *run) save() error {
	r.mu.Lock()
	st := r.st
	st.Partitions = append([]partPlan(nil), r.st.Partitions...)
	r.mu.Unlock()
	return saveState(r.cfg.WorkDir, st)
}

// report calls Deps.Progress with the current progress.
func (r *run) report() {
	if r.deps.Progress == nil {
		return
	}
	r.deps.Progress(r.progress())
}

func (r *run) progress() Progress {
	r.mu.Lock()
	defer r.mu.Unlock()
	pr := Progress{Phase: r.phase, Partitions: len(r.st.Partitions), Elapsed: time.Since(r.t0), Resumed: r.resumed}
	// The private topic's offsets count the copied records from 0; the
	// first stage's commit says how many it has processed. Records
	// copied twice after a resume may make processed exceed the range:
	// it is capped.
	for _, p := range r.st.Partitions {
		total := p.End - p.Start
		pr.Total += total
		pr.Copied += p.Copied - p.Start
	}
	var processed int64
	for _, off := range r.processed {
		processed += off
	}
	pr.Processed = min(processed, pr.Copied)
	if r.phase != PhaseCopying {
		pr.Processed = pr.Copied
	}
	for _, p := range r.st.Partitions {
		if p.Copied >= p.End {
			pr.PartitionsDone++ // read whole
		}
	}
	return pr
}

// copyRollups copies the staging store's rollups and edge rollups of the
// windows wholly inside the event range to the target store (fill writes,
// version 0).
func (r *run) copyRollups(ctx context.Context, staging *embedded.Store, sum *Summary) error {
	sum.PartialWindows = map[time.Duration]int{}
	partial := map[[2]int64]bool{}
	// Windows may start before the event range (a coarse window holding
	// its start): scan from a day before.
	from, to := r.er.from.Add(-24*time.Hour), r.er.to
	fillCtx := storage.WithFill(ctx)
	err := staging.EachRollup(ctx, from, to, func(page []model.Rollup) error {
		keep := page[:0]
		for _, ru := range page {
			if !r.er.hasWindow(ru.WindowStart, ru.Resolution) {
				k := [2]int64{int64(ru.Resolution), int64(ru.WindowStart)}
				if !partial[k] {
					partial[k] = true
					sum.PartialWindows[ru.Resolution]++
				}
				continue
			}
			ru.Version = 0
			keep = append(keep, ru)
		}
		if len(keep) == 0 {
			return nil
		}
		if err := r.deps.Store.WriteRollups(fillCtx, keep); err != nil {
			return fmt.Errorf("write rollups: %w", err)
		}
		sum.Rollups += int64(len(keep))
		return nil
	})
	if err != nil {
		return err
	}
	ew, ok := r.deps.Store.(storage.EdgeWriter)
	if !ok {
		return nil
	}
	return staging.EachEdgeRollup(ctx, from, to, func(page []model.EdgeRollup) error {
		keep := page[:0]
		for _, e := range page {
			if r.er.hasWindow(e.WindowStart, e.Resolution) {
				e.Version = 0
				keep = append(keep, e)
			}
		}
		if len(keep) == 0 {
			return nil
		}
		if err := ew.WriteEdgeRollups(fillCtx, keep); err != nil {
			return fmt.Errorf("write edge rollups: %w", err)
		}
		sum.Edges += int64(len(keep))
		return nil
	})
}
