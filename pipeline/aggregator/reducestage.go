package aggregator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tracepipe/tracepipe/internal/ratelog"
	"github.com/tracepipe/tracepipe/internal/wait"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/pipeline/aggregator/rollup"
	tpkafka "github.com/tracepipe/tracepipe/pipeline/kafka"
	"github.com/tracepipe/tracepipe/storage"
)

// reduceProc is the reduce stage's tpkafka.Processor of one partials-topic
// partition for one assignment: it merges partials into rollups, writes
// changed rollups on flush ticks and offers a checkpoint (Safe) after the
// writes are durable.
//
// A slow or absent store is backpressure: reads and writes are retried in
// Tick until they succeed or the assignment ends, while the group session
// is kept (kafka-go heartbeats from its own goroutine), so the partition
// stays here and no state is discarded; the runtime fetches no further
// than its buffer meanwhile. Reads of the partials partition outside the
// runtime's fetching (its bounds in Open, a rewind's range) are retried in
// place too when a broker may cure them (see retryingLog).
type reduceProc struct {
	a *Aggregator
	// admin reads the partials partition's bounds and rewinds' ranges,
	// retrying what a broker may cure (see retryingLog).
	admin partitionLog
	log   *slog.Logger
	part  int
	r     *rollup.Reducer
	prev  rollup.ReduceCounters
	res   int
	// lastFlush, lastCoarse, lastCk: when rollups, coarse rollups and the
	// checkpoint were last written and taken.
	lastFlush, lastCoarse, lastCk time.Time
	safe                          tpkafka.Commit
	safeOK                        bool
	// broken: a method failed; the state may be half-way through a rewind
	// or a write and is neither written nor checkpointed again.
	broken bool
	// storeWarn logs store failures being retried, at most every 10 s per
	// kind of access.
	storeWarn *ratelog.Logger
}

func (a *Aggregator) newReduceProc(admin partitionLog, as tpkafka.Assignment) *reduceProc {
	now := a.now()
	return &reduceProc{a: a, admin: newRetryingLog(admin, as.Logger, "reduce", a.now), log: as.Logger, part: as.Partition,
		lastFlush: now, lastCoarse: now, lastCk: now, storeWarn: ratelog.New(as.Logger, ratelog.DefaultEvery, a.now)}
}

// Open restores the reducer from the group's commit: the re-read start and
// the checkpoint in its metadata (see commitmeta.go).
func (w *reduceProc) Open(ctx context.Context, gc tpkafka.Commit) (int64, error) {
	a := w.a
	first, end, err := w.admin.Offsets(ctx, a.cfg.PartialsTopic, w.part)
	if err != nil {
		return 0, err
	}
	c := rollup.Commit{Offset: first}
	switch dc, err := decodeCommit(gc); {
	case !gc.Committed():
	case gc.Metadata == "":
		w.log.Warn("reduce: committed offset without a checkpoint; re-reading the partition from its start", "offset", gc.Offset)
	case err != nil:
		w.log.Warn("reduce: committed offset without a usable checkpoint; re-reading the partition from its start", "offset", gc.Offset, "err", err)
	default:
		c = dc
	}
	r, err := rollup.NewReducer(a.cfg.Stats, c.Offset, c.Metadata)
	if errors.Is(err, rollup.ErrConfigChanged) {
		err = fmt.Errorf("partials partition %d: %w (use new --partials-topic and --reduce-group)", w.part, err)
		w.log.Error("reduce: the checkpoint does not fit this configuration", "err", err)
		a.fatal(err)
		return 0, err
	}
	if err != nil {
		w.log.Warn("reduce: committed offset without a usable checkpoint; re-reading the partials partition from its start", "err", err)
		if r, err = rollup.NewReducer(a.cfg.Stats, first, nil); err != nil {
			return 0, err
		}
	}
	r.SourceIdle = a.cfg.SourceIdle
	// A predecessor may have written rollups for partials up to the end.
	r.SetBarrier(end)
	w.r = r
	w.prev = r.Counters()
	a.m.partitions.WithLabelValues("reduce").Inc()
	w.log.Info("reduce: partition", "offset", r.Position(), "high_water", r.HighWater(), "end", end)
	return r.Position(), nil
}

func decodePartialMessage(r *tpkafka.Record) (rollup.PartialMessage, []string, error) {
	pt, names, err := rollup.DecodePartial(r.Value)
	return rollup.PartialMessage{Offset: r.Offset, Time: model.TimestampOf(r.Time), Partial: pt}, names, err
}

// heldPartial is a fetched partial waiting to be processed.
type heldPartial struct {
	offset, hwm int64
	m           rollup.PartialMessage
	names       []string
	err         error // decoding
}

// Handle takes partials. A partial for a window already evicted starts a
// rewind over the partials topic; the partials of the same chunk are looked
// at first, so that one pass rebuilds every window they need (a map
// partition that rewound republishes many windows at once).
func (w *reduceProc) Handle(ctx context.Context, recs []tpkafka.Record) (int, error) {
	held := make([]heldPartial, len(recs))
	for i := range recs {
		r := &recs[i]
		m, names, err := decodePartialMessage(r)
		held[i] = heldPartial{offset: r.Offset, hwm: r.HighWaterMark, m: m, names: names, err: err}
	}
	for i := range held {
		if err := w.step(ctx, &held[i], held[i+1:]); err != nil {
			w.broken = true
			return i, err
		}
	}
	return len(recs), nil
}

func (w *reduceProc) step(ctx context.Context, h *heldPartial, next []heldPartial) error {
	a := w.a
	a.m.lag.WithLabelValues("reduce", partitionLabel(w.part)).Set(float64(max(0, h.hwm-h.offset-1)))
	if h.err != nil {
		a.m.dropped.WithLabelValues("reduce", "decode").Inc()
		w.log.Error("reduce: undecodable partial skipped", "offset", h.offset, "err", h.err)
		return w.r.Skip(h.offset)
	}
	for {
		rw, err := w.r.Add(h.m, h.names)
		if err != nil {
			return err
		}
		if rw == nil {
			return nil
		}
		for _, n := range next {
			if n.err == nil {
				w.r.Extend(rw, n.m, n.names)
			}
		}
		w.log.Info("reduce: rewind", "from", rw.From, "to", rw.To, "windows", len(rw.Windows()))
		w.r.BeginRewind(rw)
		missing, err := w.admin.ReadRange(ctx, a.cfg.PartialsTopic, w.part, rw.From, rw.To, func(r tpkafka.Record) error {
			m, names, err := decodePartialMessage(&r)
			if err != nil {
				return nil
			}
			return w.r.Replay(m, names)
		})
		if err != nil {
			return fmt.Errorf("rewind: %w", err)
		}
		if missing > 0 {
			w.log.Error("reduce: rewind needed offsets the partials topic no longer retains", "missing", missing)
			a.m.dropped.WithLabelValues("reduce", "retention").Add(float64(missing))
		}
		w.r.EndRewind()
	}
}

// Acked is never called: the reduce stage produces nothing.
func (w *reduceProc) Acked(tpkafka.Ack) error { return nil }

// Tick writes changed rollups every FlushInterval (coarse ones every
// CoarseInterval) and, every CheckpointInterval, writes everything and
// takes a checkpoint.
func (w *reduceProc) Tick(ctx context.Context, now time.Time) error {
	a := w.a
	var err error
	switch {
	case now.Sub(w.lastCk) >= a.cfg.CheckpointInterval:
		w.lastCk, w.lastCoarse, w.lastFlush = now, now, now
		if err = w.flush(ctx, true); err == nil {
			err = w.checkpoint()
		}
	case now.Sub(w.lastCoarse) >= a.cfg.CoarseInterval:
		w.lastCoarse, w.lastFlush = now, now
		err = w.flush(ctx, true)
	case now.Sub(w.lastFlush) >= a.cfg.FlushInterval:
		w.lastFlush = now
		err = w.flush(ctx, false)
	}
	if err != nil {
		w.broken = true
	}
	return err
}

// flush writes changed rollups (coarse ones too with coarse) and waits
// until the store made them durable, retrying reads and writes that fail
// until ctx ends (see retryStore).
func (w *reduceProc) flush(ctx context.Context, coarse bool) error {
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

// checkpoint evicts and sets what Safe returns: the processed position,
// with the re-read start and the checkpoint in the metadata.
func (w *reduceProc) checkpoint() error {
	c, err := w.r.Checkpoint(model.TimestampOf(w.a.now()))
	if errors.Is(err, rollup.ErrUnpublished) {
		return nil // catching up, or before the barrier: nothing to commit yet
	}
	if err != nil {
		return err
	}
	w.safe, w.safeOK = encodeCommit(c, w.r.HighWater()), true
	return nil
}

// Safe returns the last checkpoint: every rollup derived from the
// partials below its offset is durable.
func (w *reduceProc) Safe() (tpkafka.Commit, bool) { return w.safe, w.safeOK }

// Close ends the partition's work (a shutdown or a rebalance): it writes
// what changed and takes a checkpoint, so that the next owner need not
// redo it. ctx is bounded by the group's CloseTimeout (10 s), well below
// its rebalance timeout, so that the member rejoins in time even while
// the store is down. If the member was not in the generation any more (a
// process paused past the session timeout), the final write carries
// versions below the next owner's barrier and loses to its writes, and the
// final commit is refused by the coordinator.
func (w *reduceProc) Close(ctx context.Context) error {
	if w.r == nil || w.broken {
		return nil
	}
	if err := w.flush(ctx, true); err != nil {
		w.broken = true
		return fmt.Errorf("reduce: final write failed; the next owner re-reads from the last commit: %w", err)
	}
	return w.checkpoint()
}

// Release drops the partition's share of the gauges.
func (w *reduceProc) Release() {
	a := w.a
	a.m.lag.DeleteLabelValues("reduce", partitionLabel(w.part))
	a.m.windowsRes.WithLabelValues("reduce").Sub(float64(w.res))
	w.res = 0
	if w.r != nil {
		a.m.partitions.WithLabelValues("reduce").Dec()
	}
	w.r = nil
}

// retryStore runs op until it succeeds, ctx ends, or the store rejects it
// for good (storage.ErrPermanent). A store that is down or slow holds the
// worker here, keeping its partition and its state: the fetcher's buffer
// fills and fetching stops. Failures are counted (write_errors_total) and
// logged, at most every 10 s per kind of access (internal/ratelog).
func (w *reduceProc) retryStore(ctx context.Context, what string, op func() error) error {
	for backoff := 200 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		err := op()
		if err == nil || ctx.Err() != nil || errors.Is(err, storage.ErrPermanent) {
			return err
		}
		w.a.m.writeErrors.WithLabelValues("reduce").Inc()
		w.storeWarn.Warn("store "+what, "reduce: store "+what+" failed; retrying", "err", err)
		if !wait.Sleep(ctx, backoff) {
			return ctx.Err()
		}
	}
}

// retryingChildren is the ChildSource a reducer reads through: each read
// is retried as retryStore does.
type retryingChildren struct {
	w   *reduceProc
	ctx context.Context
}

func (c *retryingChildren) Sync(ctx context.Context) error {
	sy, ok := c.w.a.children.(rollup.Syncer)
	if !ok {
		return nil
	}
	return c.w.retryStore(ctx, "refresh", func() error { return sy.Sync(ctx) })
}

func (c *retryingChildren) Children(ctx context.Context, res time.Duration, fam rollup.Family, from, to model.Timestamp) (out []rollup.Output, err error) {
	err = c.w.retryStore(ctx, "read", func() error {
		out, err = c.w.a.children.Children(ctx, res, fam, from, to)
		return err
	})
	return out, err
}

// write stores outputs: operation rollups through WriteRollups, edge
// rollups through the store's edge writer, each with its version.
//
// A write abandoned when ctx ends (a rebalance, a shutdown) may still land
// later (Elasticsearch's writer keeps retrying it): it then carries versions
// below the next owner's barrier, and the next owner rewrites or retracts
// every key it may hold at a higher version (rollup.Reducer.SetBarrier),
// so the late write loses.
func (a *Aggregator) write(ctx context.Context, outs []rollup.Output) error {
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
