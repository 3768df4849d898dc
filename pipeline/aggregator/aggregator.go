package aggregator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tracepipe/tracepipe/internal/ratelog"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/pipeline/aggregator/rollup"
	tpkafka "github.com/tracepipe/tracepipe/pipeline/kafka"
)

// RollupStore is what the aggregator needs of a store: writing rollups,
// and reading them back (coarse windows, restarts).
type RollupStore interface {
	WriteRollups(ctx context.Context, rollups []model.Rollup) error
	RollupSeries(ctx context.Context, q model.RollupQuery) ([]model.Rollup, error)
}

// EdgeStore stores service-edge rollups. A store that implements it gets
// them (both built-in stores do: storage/embedded and
// storage/elasticsearch); with one that does not, the aggregator computes no
// edge rollups (the edge metrics on /metrics remain).
type EdgeStore interface {
	WriteEdgeRollups(ctx context.Context, edges []model.EdgeRollup) error
	EdgeSeries(ctx context.Context, res time.Duration, caller, callee string, start, end model.Timestamp) ([]model.EdgeRollup, error)
}

// Options are the aggregator's collaborators; zero values mean a
// discarding logger, a private registry and the wall clock.
type Options struct {
	Logger   *slog.Logger
	Registry prometheus.Registerer
	Now      func() time.Time
}

// Aggregator runs the map and reduce stages. Build it with New and run it
// with Run.
type Aggregator struct {
	cfg      Config
	store    RollupStore
	edges    EdgeStore
	children rollup.ChildSource
	log      *slog.Logger
	m        *Metrics
	now      func() time.Time
	wm       *watermarks
	// mapGroup and reduceGroup run the stages (nil when not run).
	mapGroup, reduceGroup *tpkafka.Group

	fatalOnce sync.Once
	fatalErr  error
	cancel    context.CancelFunc
	mu        sync.Mutex
}

// New validates cfg and builds the aggregator. It contacts nothing.
func New(cfg Config, store RollupStore, opts Options) (*Aggregator, error) {
	cfg = cfg.Normalized()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, errors.New("aggregator: nil store")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	a := &Aggregator{cfg: cfg, store: store, log: opts.Logger, now: opts.Now,
		m:  newMetrics(opts.Registry, cfg.MaxMetricSeries),
		wm: &watermarks{parts: map[int]wmPart{}}}
	a.m.keyLimit.Set(float64(cfg.Stats.Normalized().KeyLimit))
	if es, ok := store.(EdgeStore); ok {
		a.edges = es
	} else if !a.cfg.Stats.NoEdges {
		a.log.Info("the store does not implement EdgeStore; service-edge rollups are not computed, edges are on /metrics only")
		a.cfg.Stats.NoEdges = true
	}
	a.m.drops = ratelog.New(opts.Logger, ratelog.DefaultEvery, nil)
	for _, c := range a.m.collectors() {
		if err := opts.Registry.Register(c); err != nil {
			return nil, fmt.Errorf("aggregator: register metrics: %w", err)
		}
	}
	// Partials are keyed by family and partitioned by the runtime's writer
	// (kafka.Hash): one reducer sees all of an operation.
	if err := a.newGroups(opts); err != nil {
		return nil, err
	}
	a.children = &childSource{a: a}
	return a, nil
}

// Config returns the configuration in effect (edges may have been turned
// off for the store).
func (a *Aggregator) Config() Config { return a.cfg }

// Healthy reports whether every stage that runs is a group member.
func (a *Aggregator) Healthy() bool {
	return (a.mapGroup == nil || a.mapGroup.Healthy()) && (a.reduceGroup == nil || a.reduceGroup.Healthy())
}

// Checks are the health checks of the stages that run (for
// pipeline/kafka.Handler in a process running several stages).
func (a *Aggregator) Checks() []tpkafka.Check {
	var cs []tpkafka.Check
	for _, g := range []*tpkafka.Group{a.mapGroup, a.reduceGroup} {
		if g != nil {
			cs = append(cs, g.Check())
		}
	}
	return cs
}

// Handler serves /metrics from gatherer, in the OpenMetrics format when
// the scraper asks for it (exemplars need it), and /healthz.
func (a *Aggregator) Handler(gatherer prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if a.Healthy() {
			fmt.Fprintln(w, "ok")
			return
		}
		http.Error(w, "not a member of every group", http.StatusServiceUnavailable)
	})
	return mux
}

// fatal stops the aggregator with err (a configuration the user must fix).
func (a *Aggregator) fatal(err error) {
	a.fatalOnce.Do(func() {
		a.mu.Lock()
		a.fatalErr = err
		cancel := a.cancel
		a.mu.Unlock()
		if cancel != nil {
			cancel()
		}
	})
}

// Run creates the partials topic if needed, joins both consumer groups
// (pipeline/kafka.Group, one goroutine per assigned partition driving a
// mapProc or reduceProc) and works until ctx is cancelled. Each group joins
// only once its topic (traces, partials) exists with a leader for every
// partition (logged at WARN while waiting; /healthz is 503 meanwhile).
// Shutdown: each partition stops fetching, publishes (map) or writes
// (reduce) what it has, commits, and leaves; then the writer closes. Run
// returns nil after a clean stop.
func (a *Aggregator) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.mu.Lock()
	a.cancel = cancel
	a.mu.Unlock()
	if err := a.ensurePartialsTopic(ctx); err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, g := range []*tpkafka.Group{a.mapGroup, a.reduceGroup} {
		if g == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- g.Run(ctx)
		}()
	}
	wg.Wait()
	close(errs)
	all := []error{a.fatalErr}
	for e := range errs {
		all = append(all, e)
	}
	return errors.Join(all...)
}

// childSource reads stored rollups back for the reducers.
type childSource struct {
	a *Aggregator
}

// refresher is implemented by stores whose writes become searchable only
// after a refresh (Elasticsearch).
type refresher interface {
	Refresh(ctx context.Context) error
}

// Sync makes every acknowledged write searchable (Elasticsearch refreshes
// lazily): reducers read back rollups this or another instance has just
// written.
func (c *childSource) Sync(ctx context.Context) error {
	if rf, ok := c.a.store.(refresher); ok {
		return rf.Refresh(ctx)
	}
	return nil
}

func (c *childSource) Children(ctx context.Context, res time.Duration, fam rollup.Family, from, to model.Timestamp) ([]rollup.Output, error) {
	a := c.a
	if fam.Edge {
		if a.edges == nil {
			return nil, nil
		}
		es, err := a.edges.EdgeSeries(ctx, res, fam.Service, fam.Operation, from, to)
		if err != nil {
			return nil, err
		}
		out := make([]rollup.Output, 0, len(es))
		for i := range es {
			o, err := rollup.OutputFromEdge(&es[i])
			if err != nil {
				return nil, err
			}
			out = append(out, o)
		}
		return out, nil
	}
	if fam.Service == "" || fam.Operation == "" {
		return nil, nil // not queryable (the store requires both); nothing to retract
	}
	return c.rollups(ctx, res, fam, from, to)
}

// rollups reads a family's rollups in [from, to), halving the range when a
// query hits the store's result limit.
func (c *childSource) rollups(ctx context.Context, res time.Duration, fam rollup.Family, from, to model.Timestamp) ([]rollup.Output, error) {
	rs, err := c.a.store.RollupSeries(ctx, model.RollupQuery{Service: fam.Service, Operation: fam.Operation, Kind: fam.Kind,
		Resolution: res, Start: from, End: to, Limit: model.MaxLimit})
	if err != nil {
		return nil, err
	}
	if len(rs) >= model.MaxLimit {
		if to-from <= model.Timestamp(res) {
			return nil, fmt.Errorf("more than %d rollups of %s/%s in one %s window", model.MaxLimit, fam.Service, fam.Operation, resolutionName(res))
		}
		mid := from + (to-from)/2
		mid = model.Timestamp(int64(mid) - int64(mid)%int64(res))
		if mid <= from {
			mid = from.Add(res)
		}
		a, err := c.rollups(ctx, res, fam, from, mid)
		if err != nil {
			return nil, err
		}
		b, err := c.rollups(ctx, res, fam, mid, to)
		return append(a, b...), err
	}
	out := make([]rollup.Output, 0, len(rs))
	for i := range rs {
		if rs[i].Kind != fam.Kind {
			continue
		}
		o, err := rollup.OutputFromRollup(c.a.cfg.Stats.Dimensions, &rs[i])
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}
