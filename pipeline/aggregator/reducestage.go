package aggregator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/aggregate"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/pipeline/fetch"
	"github.com/tracepipe/tracepipe/storage"
)

// reduceWorker owns one partials-topic partition for one generation.
type reduceWorker struct {
	a      *Aggregator
	gen    *kafka.Generation
	part   int
	r      *aggregate.Reducer
	commit aggregate.Commit
	f      *fetch.Fetcher
	prev   aggregate.ReduceCounters
	res    int
	// held: partials taken from the fetcher, processed before any other
	// (see process).
	held []heldPartial
	// confirmed: when the group coordinator last accepted a commit of this
	// generation (see member).
	confirmed time.Time
}

// errGenerationLost: the group coordinator no longer knows this
// generation's member; the partition belongs to another one.
var errGenerationLost = errors.New("the consumer group generation was lost")

// runReduce consumes one partials partition until gctx ends: it merges
// partials into rollups, writes changed rollups on flush ticks and commits
// checkpoints after the writes are durable.
//
// A slow or absent store is backpressure: reads and writes are retried
// until they succeed or the generation ends, while the group session is
// kept (kafka-go heartbeats from its own goroutine), so the partition
// stays here and no state is discarded.
func (a *Aggregator) runReduce(gctx context.Context, gen *kafka.Generation, part int) {
	w := &reduceWorker{a: a, gen: gen, part: part, confirmed: a.now()}
	defer func() {
		w.f.Stop()
		a.m.lag.DeleteLabelValues("reduce", partitionLabel(part))
		a.m.windowsRes.WithLabelValues("reduce").Sub(float64(w.res))
	}()
	if !a.startWorker(gctx, "reduce", part, w) {
		return
	}
	flush := time.NewTicker(a.cfg.FlushInterval)
	defer flush.Stop()
	coarse := time.NewTicker(a.cfg.CoarseInterval)
	defer coarse.Stop()
	ck := time.NewTicker(a.cfg.CheckpointInterval)
	defer ck.Stop()
	failures := 0
	for {
		var err error
		select {
		case <-gctx.Done():
			w.finish()
			return
		case m := <-w.f.Msgs:
			err = w.process(gctx, m)
		case <-flush.C:
			if err = w.flush(gctx, false); err == nil {
				failures = 0
			}
		case <-coarse.C:
			err = w.flush(gctx, true)
		case <-ck.C:
			if err = w.flush(gctx, true); err == nil {
				err = w.checkpoint()
			}
		case err = <-w.f.Errs:
			err = fmt.Errorf("fetch: %w", err)
		}
		if errors.Is(err, errGenerationLost) {
			// Write nothing more: wait for kafka-go to end the generation.
			a.log.Warn("reduce: generation lost; the partition's next owner re-reads from the last commit", "partition", part)
			w.discard()
			<-gctx.Done()
			return
		}
		if err != nil {
			failures++
			if !a.recoverWorker(gctx, "reduce", part, w, err, failures) {
				return
			}
		}
	}
}

func (w *reduceWorker) restore(ctx context.Context, fromGroup bool) error {
	a := w.a
	w.f.Stop()
	w.f = nil
	first, end, err := a.offsets(ctx, a.cfg.PartialsTopic, w.part)
	if err != nil {
		return err
	}
	if fromGroup {
		off, meta, ok, err := a.committed(ctx, a.cfg.ReduceGroup, a.cfg.PartialsTopic, w.part)
		if err != nil {
			return err
		}
		if ok && meta == "" {
			a.log.Warn("reduce: committed offset without a checkpoint; re-reading the partition from its start", "partition", w.part, "offset", off)
			ok = false
		}
		if !ok {
			off, meta = first, ""
		}
		w.commit = aggregate.Commit{Offset: off, Metadata: []byte(meta)}
	}
	r, err := aggregate.NewReducer(a.cfg.Stats, w.commit.Offset, w.commit.Metadata)
	if errors.Is(err, aggregate.ErrConfigChanged) {
		return fmt.Errorf("partials partition %d: %w (use new --partials-topic and --reduce-group)", w.part, err)
	}
	if err != nil {
		a.log.Warn("reduce: committed offset without a usable checkpoint; re-reading the partials partition from its start", "partition", w.part, "err", err)
		w.commit = aggregate.Commit{Offset: first}
		if r, err = aggregate.NewReducer(a.cfg.Stats, first, nil); err != nil {
			return err
		}
	}
	r.SourceIdle = a.cfg.SourceIdle
	// A predecessor may have written rollups for partials up to the end.
	r.SetBarrier(end)
	w.r = r
	w.prev = r.Counters()
	w.f = a.startFetcher("reduce", a.cfg.PartialsTopic, w.part, r.Position())
	a.log.Info("reduce: partition", "partition", w.part, "offset", r.Position(), "high_water", r.HighWater(), "end", end)
	return nil
}

func decodePartialMessage(m kafka.Message) (aggregate.PartialMessage, []string, error) {
	pt, names, err := aggregate.DecodePartial(m.Value)
	return aggregate.PartialMessage{Offset: m.Offset, Time: model.TimestampOf(m.Time), Partial: pt}, names, err
}

// heldPartial is a fetched partial waiting to be processed.
type heldPartial struct {
	km    kafka.Message
	m     aggregate.PartialMessage
	names []string
	err   error // decoding
}

// maxHeld bounds the partials taken from the fetcher ahead of processing to
// widen a rewind (each is at most a few KB).
const maxHeld = 4096

func (w *reduceWorker) process(ctx context.Context, km kafka.Message) error {
	w.held = append(w.held, w.decode(km))
	for len(w.held) > 0 {
		h := w.held[0]
		w.held = w.held[1:]
		if err := w.step(ctx, h); err != nil {
			return err
		}
	}
	w.held = nil
	return nil
}

func (w *reduceWorker) decode(km kafka.Message) heldPartial {
	m, names, err := decodePartialMessage(km)
	return heldPartial{km: km, m: m, names: names, err: err}
}

// holdFetched takes the partials the fetcher already holds, without
// waiting, into w.held (up to maxHeld).
func (w *reduceWorker) holdFetched() {
	for len(w.held) < maxHeld {
		select {
		case km := <-w.f.Msgs:
			w.held = append(w.held, w.decode(km))
		default:
			return
		}
	}
}

func (w *reduceWorker) step(ctx context.Context, h heldPartial) error {
	a := w.a
	km, m, names := h.km, h.m, h.names
	a.m.lag.WithLabelValues("reduce", partitionLabel(w.part)).Set(float64(max(0, km.HighWaterMark-km.Offset-1)))
	if h.err != nil {
		a.m.dropped.WithLabelValues("reduce", "decode").Inc()
		a.log.Error("reduce: undecodable partial skipped", "partition", w.part, "offset", km.Offset, "err", h.err)
		return w.r.Skip(km.Offset)
	}
	for {
		rw, err := w.r.Add(m, names)
		if err != nil {
			return err
		}
		if rw == nil {
			return nil
		}
		// Late partials come in bursts (a map partition that rewound
		// republishes many windows): rebuild, in the same pass, the
		// windows that the partials already fetched will need.
		w.holdFetched()
		for _, h := range w.held {
			if h.err == nil {
				w.r.Extend(rw, h.m, h.names)
			}
		}
		a.log.Info("reduce: rewind", "partition", w.part, "from", rw.From, "to", rw.To, "windows", len(rw.Windows()))
		w.r.BeginRewind(rw)
		missing, err := a.readRange(ctx, a.cfg.PartialsTopic, w.part, rw.From, rw.To, func(km kafka.Message) error {
			m, names, err := decodePartialMessage(km)
			if err != nil {
				return nil
			}
			return w.r.Replay(m, names)
		})
		if err != nil {
			return fmt.Errorf("rewind: %w", err)
		}
		if missing > 0 {
			a.log.Error("reduce: rewind needed offsets the partials topic no longer retains", "partition", w.part, "missing", missing)
			a.m.dropped.WithLabelValues("reduce", "retention").Add(float64(missing))
		}
		w.r.EndRewind()
	}
}

// flush writes changed rollups (coarse ones too with coarse) and waits
// until the store made them durable, retrying reads and writes that fail
// until ctx ends (see retryStore). It writes nothing once the generation
// is known to be lost: when the last commit accepted by the coordinator is
// older than half the session timeout (a long pause, or no commit for a
// while), it first asks the coordinator (see member).
func (w *reduceWorker) flush(ctx context.Context, coarse bool) error {
	a := w.a
	outs, err := w.r.Flush(ctx, &retryingChildren{w: w, ctx: ctx}, coarse)
	if err != nil {
		return err
	}
	if len(outs) == 0 {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if a.now().Sub(w.confirmed) > a.cfg.SessionTimeout/2 && !w.member() {
		return errGenerationLost
	}
	if err := w.retryStore(ctx, "write", func() error { return a.write(ctx, outs) }); err != nil {
		return err
	}
	c := w.r.Counters()
	a.m.reduceCounters(&w.prev, &c)
	w.prev = c
	n := w.r.Windows()
	a.m.windowsRes.WithLabelValues("reduce").Add(float64(n - w.res))
	w.res = n
	return nil
}

func (w *reduceWorker) checkpoint() error {
	a := w.a
	c, err := w.r.Checkpoint(model.TimestampOf(a.now()))
	if errors.Is(err, aggregate.ErrUnpublished) {
		return nil // catching up: nothing may be written yet
	}
	if err != nil {
		return err
	}
	if err := a.commit(w.gen, a.cfg.ReduceGroup, a.cfg.PartialsTopic, w.part, c.Offset, string(c.Metadata)); err != nil {
		a.m.commits.WithLabelValues("reduce", "error").Inc()
		a.log.Warn("reduce: commit failed", "partition", w.part, "err", err)
		return nil
	}
	a.m.commits.WithLabelValues("reduce", "ok").Inc()
	w.commit = c
	w.confirmed = a.now()
	return nil
}

// member asks the group coordinator whether this generation's member still
// exists, by committing the last checkpoint again (the same offset and
// metadata: it changes nothing). Only the coordinator's "unknown member"
// and "illegal generation" answers count as lost; when the question cannot
// be asked (no checkpoint yet) or answered (a network error), the member is
// assumed alive: the rollups' versions fence its writes in any case.
func (w *reduceWorker) member() bool {
	a := w.a
	if len(w.commit.Metadata) == 0 {
		return true
	}
	err := a.commit(w.gen, a.cfg.ReduceGroup, a.cfg.PartialsTopic, w.part, w.commit.Offset, string(w.commit.Metadata))
	switch {
	case err == nil:
		w.confirmed = a.now()
		return true
	case errors.Is(err, kafka.UnknownMemberId), errors.Is(err, kafka.IllegalGeneration), errors.Is(err, kafka.FencedInstanceID):
		return false
	}
	a.log.Warn("reduce: cannot confirm group membership; writing anyway (versions fence stale writes)", "partition", w.part, "err", err)
	return true
}

// retryStore runs op until it succeeds, ctx ends, or the store rejects it
// for good (storage.ErrPermanent). A store that is down or slow holds the
// worker here, keeping its partition and its state: the fetcher's buffer
// fills and fetching stops. Failures are counted (write_errors_total) and
// logged, at most every 10 s.
func (w *reduceWorker) retryStore(ctx context.Context, what string, op func() error) error {
	a := w.a
	var logged time.Time
	for backoff := 200 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		err := op()
		if err == nil || ctx.Err() != nil || errors.Is(err, storage.ErrPermanent) {
			return err
		}
		a.m.writeErrors.WithLabelValues("reduce").Inc()
		if now := a.now(); now.Sub(logged) >= 10*time.Second {
			logged = now
			a.log.Warn("reduce: store "+what+" failed; retrying", "partition", w.part, "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
	}
}

// retryingChildren is the ChildSource a reducer reads through: each read
// is retried as retryStore does.
type retryingChildren struct {
	w   *reduceWorker
	ctx context.Context
}

func (c *retryingChildren) Sync(ctx context.Context) error {
	sy, ok := c.w.a.children.(aggregate.Syncer)
	if !ok {
		return nil
	}
	return c.w.retryStore(ctx, "refresh", func() error { return sy.Sync(ctx) })
}

func (c *retryingChildren) Children(ctx context.Context, res time.Duration, fam aggregate.Family, from, to model.Timestamp) (out []aggregate.Output, err error) {
	err = c.w.retryStore(ctx, "read", func() error {
		out, err = c.w.a.children.Children(ctx, res, fam, from, to)
		return err
	})
	return out, err
}

// finish ends the partition's work when its generation ended: a shutdown
// or a rebalance. If the member still exists (a rebalance in progress, a
// clean shutdown) it writes what changed and commits, so the next owner
// need not redo it; after the generation was lost it writes nothing.
func (w *reduceWorker) finish() {
	if w.r == nil {
		return
	}
	if !w.member() {
		w.a.log.Info("reduce: generation lost; nothing written at the end, the next owner re-reads from the last commit", "partition", w.part)
		return
	}
	// Bounded well below the group's rebalance timeout (30 s), so that the
	// member rejoins in time even while the store is down.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.flush(ctx, true); err != nil {
		w.a.log.Warn("reduce: final write failed; the next owner re-reads from the last commit", "partition", w.part, "err", err)
		return
	}
	if err := w.checkpoint(); err != nil {
		w.a.log.Warn("reduce: final checkpoint failed", "partition", w.part, "err", err)
	}
}

// write stores outputs: operation rollups through WriteRollups, edge
// rollups through the store's edge writer, each with its version.
//
// A write abandoned when ctx ends (a rebalance, a shutdown) may still land
// later (Elasticsearch's writer keeps retrying it): it then carries versions
// below the next owner's barrier, and the next owner rewrites or retracts
// every key it may hold at a higher version (aggregate.Reducer.SetBarrier),
// so the late write loses.
func (a *Aggregator) write(ctx context.Context, outs []aggregate.Output) error {
	if len(outs) == 0 {
		return nil
	}
	var rs []model.Rollup
	var es []model.EdgeRollup
	for i := range outs {
		o := &outs[i]
		if o.Key.Edge {
			es = append(es, o.EdgeRollup())
		} else {
			rs = append(rs, o.Rollup(a.cfg.Stats.Dimensions))
		}
	}
	if len(rs) > 0 {
		if err := a.store.WriteRollups(ctx, rs); err != nil {
			return err // the stores say "write rollups: ..."
		}
	}
	if len(es) > 0 {
		if a.edges == nil {
			return errors.New("BUG: edge rollups without an edge store")
		}
		if err := a.edges.WriteEdgeRollups(ctx, es); err != nil {
			return err
		}
	}
	for _, r := range rs {
		a.m.written.WithLabelValues(resolutionName(r.Resolution)).Inc()
	}
	for _, e := range es {
		a.m.written.WithLabelValues("edge-" + resolutionName(e.Resolution)).Inc()
	}
	return nil
}

func (w *reduceWorker) discard() { w.r, w.held = nil, nil }
