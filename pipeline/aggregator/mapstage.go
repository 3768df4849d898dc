package aggregator

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/aggregate"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/pipeline/fetch"
	"github.com/tracepipe/tracepipe/pipeline/tracepb"
)

// watermarks is the instance's view of event time across the source
// partitions it owns: the watermark is the lowest (max event time minus
// allowed lateness) among partitions that are not idle; with none active,
// +inf (everything may close). A partition is idle when it received no
// message within the idle timeout *and* has nothing left to read: a
// partition with a backlog (a slow fetch, a rewind, a consumer catching up)
// holds the watermark however long it takes, or its traces would all turn
// late and every one of them force a rewind.
type watermarks struct {
	mu    sync.Mutex
	parts map[int]wmPart
}

type wmPart struct {
	max    model.Timestamp
	last   time.Time
	behind bool // known to have unread messages
}

func (w *watermarks) update(p int, max model.Timestamp, last time.Time, behind bool) {
	w.mu.Lock()
	w.parts[p] = wmPart{max, last, behind}
	w.mu.Unlock()
}

func (w *watermarks) remove(p int) {
	w.mu.Lock()
	delete(w.parts, p)
	w.mu.Unlock()
}

func (w *watermarks) get(now time.Time, idle, lateness time.Duration) model.Timestamp {
	w.mu.Lock()
	defer w.mu.Unlock()
	wm := model.Timestamp(math.MaxInt64)
	for _, p := range w.parts {
		if now.Sub(p.last) > idle && !p.behind {
			continue
		}
		if p.max == math.MinInt64 {
			return math.MinInt64
		}
		wm = min(wm, p.max.Add(-lateness))
	}
	return wm
}

// mapWorker owns one source partition for one generation.
type mapWorker struct {
	a       *Aggregator
	gen     *kafka.Generation
	part    int
	p       *aggregate.Partition
	commit  aggregate.Commit // last committed (where a restart resumes)
	f       *fetch.Fetcher
	prev    aggregate.PartitionCounters
	lastMsg time.Time
	// behind: the partition has messages not yet read (from the last
	// message's high-water mark, or the log end at restore); such a
	// partition is never idle.
	behind bool
	open   int // gauges last reported
	res    int
	traces int
}

// runMap consumes one source partition until gctx ends: it restores the
// partition's state from its committed checkpoint, feeds every assembled
// trace to an aggregate.Partition, publishes partials on flush ticks and
// commits checkpoints after the partials are acknowledged.
func (a *Aggregator) runMap(gctx context.Context, gen *kafka.Generation, part int) {
	w := &mapWorker{a: a, gen: gen, part: part, lastMsg: a.now()}
	defer func() {
		w.f.Stop()
		a.wm.remove(part)
		a.m.lag.DeleteLabelValues("map", partitionLabel(part))
		a.m.windowKeys.DeleteLabelValues(partitionLabel(part))
		w.gauges(0, 0, 0)
	}()
	if !a.startWorker(gctx, "map", part, w) {
		return
	}
	flush := time.NewTicker(a.cfg.FlushInterval)
	defer flush.Stop()
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
		case <-ck.C:
			if err = w.flush(gctx, false); err == nil {
				err = w.checkpoint()
			}
		case err = <-w.f.Errs:
			err = fmt.Errorf("fetch: %w", err)
		}
		if err != nil {
			failures++
			if !a.recoverWorker(gctx, "map", part, w, err, failures) {
				return
			}
		}
	}
}

// restore (re)builds the partition's state from the last commit: the
// group's committed offset and checkpoint the first time, the one this
// worker committed afterwards.
func (w *mapWorker) restore(ctx context.Context, fromGroup bool) error {
	a := w.a
	w.f.Stop()
	w.f = nil
	if fromGroup {
		off, meta, ok, err := a.committed(ctx, a.cfg.Group, a.cfg.TracesTopic, w.part)
		if err != nil {
			return err
		}
		if ok && meta == "" {
			// Committed by something else (a tool resetting offsets): the
			// only safe start is the log's beginning.
			a.log.Warn("map: committed offset without a checkpoint; replaying the partition from its start", "partition", w.part, "offset", off)
			ok = false
		}
		if !ok {
			first, _, err := a.offsets(ctx, a.cfg.TracesTopic, w.part)
			if err != nil {
				return err
			}
			off, meta = first, ""
		}
		w.commit = aggregate.Commit{Offset: off, Metadata: []byte(meta)}
	}
	p, err := aggregate.NewPartition(a.cfg.Stats, int32(w.part), w.commit.Offset, w.commit.Metadata)
	if errors.Is(err, aggregate.ErrConfigChanged) {
		return fmt.Errorf("partition %d: %w (use a new --group, and new --partials-topic and --reduce-group)", w.part, err)
	}
	if err != nil {
		// Metadata not ours (offsets reset by a tool, say): the only safe
		// start is the log's beginning.
		first, _, ferr := a.offsets(ctx, a.cfg.TracesTopic, w.part)
		if ferr != nil {
			return ferr
		}
		a.log.Warn("map: committed offset without a usable checkpoint; replaying the partition from its start", "partition", w.part, "err", err)
		w.commit = aggregate.Commit{Offset: first}
		if p, err = aggregate.NewPartition(a.cfg.Stats, int32(w.part), first, nil); err != nil {
			return err
		}
	}
	// Until the first message says otherwise, the partition is behind if
	// its log holds anything past the position.
	_, end, err := a.offsets(ctx, a.cfg.TracesTopic, w.part)
	if err != nil {
		return err
	}
	w.p = p
	w.prev = p.Counters()
	w.behind, w.lastMsg = p.Position() < end, a.now()
	w.f = a.startFetcher("map", a.cfg.TracesTopic, w.part, p.Position())
	a.log.Info("map: partition", "partition", w.part, "offset", p.Position(), "high_water", p.HighWater())
	return nil
}

func decodeMessage(m kafka.Message) (aggregate.Message, error) {
	at, err := tracepb.Decode(m.Value)
	if err != nil {
		return aggregate.Message{}, err
	}
	return aggregate.Message{Offset: m.Offset, Time: model.TimestampOf(m.Time), Trace: at}, nil
}

func (w *mapWorker) process(ctx context.Context, km kafka.Message) error {
	a := w.a
	w.lastMsg = a.now()
	lag := max(0, km.HighWaterMark-km.Offset-1)
	w.behind = lag > 0
	a.m.lag.WithLabelValues("map", partitionLabel(w.part)).Set(float64(lag))
	m, err := decodeMessage(km)
	if err != nil {
		a.m.dropped.WithLabelValues("map", "decode").Inc()
		a.m.drops.Error("map/decode", "map: undecodable assembled trace skipped", "partition", w.part, "offset", km.Offset, "err", err)
		return w.p.Skip(km.Offset)
	}
	for {
		rw, err := w.p.Add(m)
		if err != nil {
			return err
		}
		if rw == nil {
			break
		}
		if err := w.rewind(ctx, rw); err != nil {
			return err
		}
	}
	if w.p.LastOutcome() == aggregate.OutcomeLatest {
		a.m.observe(m.Trace, true)
	}
	return nil
}

// rewind re-reads the partition to rebuild windows no longer in memory.
func (w *mapWorker) rewind(ctx context.Context, rw *aggregate.Rewind) error {
	a := w.a
	a.log.Info("map: rewind", "partition", w.part, "from", rw.From, "to", rw.To, "windows", len(rw.Windows()))
	// A rewind may take a while: the partition holds the watermark
	// meanwhile.
	a.wm.update(w.part, w.p.MaxEventTime(), a.now(), true)
	defer func() { w.lastMsg = a.now() }()
	w.p.BeginRewind(rw)
	missing, err := a.readRange(ctx, a.cfg.TracesTopic, w.part, rw.From, rw.To, func(km kafka.Message) error {
		m, err := decodeMessage(km)
		if err != nil {
			return nil // counted when first read
		}
		return w.p.Replay(m)
	})
	if err != nil {
		return fmt.Errorf("rewind: %w", err) // the state is discarded
	}
	if missing > 0 {
		a.log.Error("map: rewind needed offsets the topic no longer retains; the rebuilt windows may miss traces", "partition", w.part, "missing", missing)
		a.m.dropped.WithLabelValues("map", "retention").Add(float64(missing))
	}
	w.p.EndRewind()
	return nil
}

// flush publishes what the watermark closed (everything when the
// partition is idle or all is set) and updates the gauges.
func (w *mapWorker) flush(ctx context.Context, all bool) error {
	a := w.a
	now := a.now()
	a.wm.update(w.part, w.p.MaxEventTime(), w.lastMsg, w.behind)
	wm := a.wm.get(now, a.cfg.IdleTimeout, a.cfg.Stats.AllowedLateness)
	if wm != math.MinInt64 && wm != math.MaxInt64 {
		a.m.watermark.Set(float64(wm) / 1e9)
	}
	idle := now.Sub(w.lastMsg) > a.cfg.IdleTimeout && !w.behind
	parts := w.p.Collect(aggregate.FlushPolicy{Watermark: wm, All: all || idle})
	if err := a.publish(ctx, parts); err != nil {
		a.m.writeErrors.WithLabelValues("map").Inc()
		return fmt.Errorf("publish partials: %w", err)
	}
	c := w.p.Counters()
	a.m.partitionCounters(&w.prev, &c)
	w.prev = c
	res, open := w.p.Windows()
	w.gauges(res, open, w.p.ResidentTraces())
	a.m.windowKeys.WithLabelValues(partitionLabel(w.part)).Set(float64(w.p.MaxWindowKeys()))
	return nil
}

func (w *mapWorker) gauges(res, open, traces int) {
	a := w.a
	a.m.windowsRes.WithLabelValues("map").Add(float64(res - w.res))
	a.m.windowsOpen.Add(float64(open - w.open))
	a.m.residentTraces.Add(float64(traces - w.traces))
	w.res, w.open, w.traces = res, open, traces
}

// checkpoint evicts and commits. Every collected partial was acknowledged
// by flush before; traces themselves are written by the indexer stage.
func (w *mapWorker) checkpoint() error {
	a := w.a
	c, err := w.p.Checkpoint()
	if errors.Is(err, aggregate.ErrUnpublished) {
		return nil // next time
	}
	if err != nil {
		return err
	}
	if err := a.commit(w.gen, a.cfg.Group, a.cfg.TracesTopic, w.part, c.Offset, string(c.Metadata)); err != nil {
		a.m.commits.WithLabelValues("map", "error").Inc()
		a.log.Warn("map: commit failed; a successor re-reads from the previous commit", "partition", w.part, "err", err)
		return nil
	}
	a.m.commits.WithLabelValues("map", "ok").Inc()
	w.p.Committed(c)
	w.commit = c
	return nil
}

// finish runs when the generation ends: publish every change, commit, so
// that the next owner re-reads as little as possible.
func (w *mapWorker) finish() {
	if w.p == nil {
		return // discarded after an error
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.flush(ctx, true); err != nil {
		w.a.log.Warn("map: final publish failed; the next owner re-reads from the last commit", "partition", w.part, "err", err)
		return
	}
	if err := w.checkpoint(); err != nil {
		w.a.log.Warn("map: final checkpoint failed", "partition", w.part, "err", err)
	}
}

// publish writes partials to the partials topic, keyed by family, and
// returns once the brokers acknowledged all of them (acks=all).
func (a *Aggregator) publish(ctx context.Context, parts []aggregate.Partial) error {
	if len(parts) == 0 {
		return nil
	}
	msgs := make([]kafka.Message, len(parts))
	for i := range parts {
		msgs[i] = kafka.Message{Key: parts[i].PartitionKey(), Value: parts[i].AppendBinary(nil, a.cfg.Stats.Dimensions)}
	}
	for len(msgs) > 0 {
		n := min(len(msgs), 5000)
		if err := a.writer.WriteMessages(ctx, msgs[:n]...); err != nil {
			return err
		}
		a.m.published.Add(float64(n))
		msgs = msgs[n:]
	}
	return nil
}

func (w *mapWorker) discard() { w.p = nil }
