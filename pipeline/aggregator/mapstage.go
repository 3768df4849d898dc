package aggregator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/pipeline/aggregator/rollup"
	tpkafka "github.com/tracepipe/tracepipe/pipeline/kafka"
	"github.com/tracepipe/tracepipe/wire/assembledpb"
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

// maxOutstanding bounds the partials a map partition has produced and
// Kafka has not acknowledged yet; beyond it the partition takes no more
// traces (backpressure) until acknowledgements come back.
const maxOutstanding = 20000

// mapProc is the map stage's tpkafka.Processor of one source partition for
// one assignment: it restores the partition's state from the group's
// commit, feeds every assembled trace to a rollup.Partition, publishes
// partials on flush ticks (acknowledged asynchronously through Acked) and
// takes a checkpoint right after a flush, as one step (the partition's
// checkpoint evicts windows and needs every collected partial published),
// which Safe offers for commit once every partial of that flush and the
// ones before is acknowledged.
type mapProc struct {
	a *Aggregator
	// admin reads the traces partition's bounds and rewinds' ranges,
	// retrying what a broker may cure (see retryingLog).
	admin partitionLog
	out   *tpkafka.Output
	log   *slog.Logger
	part  int
	p     *rollup.Partition
	prev  rollup.PartitionCounters
	// lastMsg: when the last message was taken; behind: the partition has
	// messages not yet read (from the last message's high-water mark, or
	// the log end at Open); such a partition is never idle.
	lastMsg time.Time
	behind  bool
	// lastFlush, lastCk: when partials were last collected and a
	// checkpoint last taken.
	lastFlush, lastCk time.Time
	// flushes numbers the flushes; unacked counts each flush's partials
	// not acknowledged yet (the flush number is their Ack token).
	flushes uint64
	unacked map[uint64]int
	// pending: a checkpoint taken after flush pendingAt, offered by Safe
	// once no partial of that flush or an earlier one is unacknowledged.
	pending   *rollup.Commit
	pendingAt uint64
	pendingHW int64 // the high-water mark at the checkpoint
	safe      tpkafka.Commit
	safeOK    bool
	// broken: a method failed; the state may be half-way through a rewind
	// and is neither published nor checkpointed again.
	broken            bool
	open, res, traces int // gauges last reported
}

func (a *Aggregator) newMapProc(admin partitionLog, as tpkafka.Assignment) *mapProc {
	now := a.now()
	return &mapProc{a: a, admin: newRetryingLog(admin, as.Logger, "map", a.now), out: as.Out, log: as.Logger, part: as.Partition,
		lastMsg: now, lastFlush: now, lastCk: now, unacked: map[uint64]int{}}
}

// Open restores the partition from the group's commit: the re-read start
// and the checkpoint in its metadata (see commitmeta.go).
func (w *mapProc) Open(ctx context.Context, gc tpkafka.Commit) (int64, error) {
	a := w.a
	first, end, err := w.admin.Offsets(ctx, a.cfg.TracesTopic, w.part)
	if err != nil {
		return 0, err
	}
	c := rollup.Commit{Offset: first}
	switch dc, err := decodeCommit(gc); {
	case !gc.Committed():
	case gc.Metadata == "":
		// Committed by something else (a tool resetting offsets): the only
		// safe start is the log's beginning.
		w.log.Warn("map: committed offset without a checkpoint; replaying the partition from its start", "offset", gc.Offset)
	case err != nil:
		w.log.Warn("map: committed offset without a usable checkpoint; replaying the partition from its start", "offset", gc.Offset, "err", err)
	default:
		c = dc
	}
	p, err := rollup.NewPartition(a.cfg.Stats, int32(w.part), c.Offset, c.Metadata)
	if errors.Is(err, rollup.ErrConfigChanged) {
		err = fmt.Errorf("partition %d: %w (use a new --group, and new --partials-topic and --reduce-group)", w.part, err)
		w.log.Error("map: the checkpoint does not fit this configuration", "err", err)
		a.fatal(err)
		return 0, err
	}
	if err != nil {
		// Metadata not ours: the only safe start is the log's beginning.
		w.log.Warn("map: committed offset without a usable checkpoint; replaying the partition from its start", "err", err)
		if p, err = rollup.NewPartition(a.cfg.Stats, int32(w.part), first, nil); err != nil {
			return 0, err
		}
	}
	w.p = p
	w.prev = p.Counters()
	// Until the first message says otherwise, the partition is behind if
	// its log holds anything past the position.
	w.behind, w.lastMsg = p.Position() < end, a.now()
	a.m.partitions.WithLabelValues("map").Inc()
	w.log.Info("map: partition", "offset", p.Position(), "high_water", p.HighWater(), "end", end)
	return p.Position(), nil
}

func decodeMessage(r *tpkafka.Record) (rollup.Message, error) {
	at, err := assembledpb.Decode(r.Value)
	if err != nil {
		return rollup.Message{}, err
	}
	return rollup.Message{Offset: r.Offset, Time: model.TimestampOf(r.Time), Trace: at}, nil
}

// Handle takes assembled traces, until too many partials wait for their
// acknowledgement.
func (w *mapProc) Handle(ctx context.Context, recs []tpkafka.Record) (int, error) {
	for i := range recs {
		if w.out.Outstanding() >= maxOutstanding {
			return i, nil
		}
		if err := w.process(ctx, &recs[i]); err != nil {
			w.broken = true
			return i, err
		}
	}
	return len(recs), nil
}

func (w *mapProc) process(ctx context.Context, r *tpkafka.Record) error {
	a := w.a
	w.lastMsg = a.now()
	lag := max(0, r.HighWaterMark-r.Offset-1)
	w.behind = lag > 0
	a.m.lag.WithLabelValues("map", partitionLabel(w.part)).Set(float64(lag))
	m, err := decodeMessage(r)
	if err != nil {
		a.m.dropped.WithLabelValues("map", "decode").Inc()
		a.m.drops.Error("map/decode", "map: undecodable assembled trace skipped", "partition", w.part, "offset", r.Offset, "err", err)
		return w.p.Skip(r.Offset)
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
	if w.p.LastOutcome() == rollup.OutcomeLatest {
		a.m.observe(m.Trace, true)
	}
	return nil
}

// rewind re-reads the partition to rebuild windows no longer in memory.
func (w *mapProc) rewind(ctx context.Context, rw *rollup.Rewind) error {
	a := w.a
	w.log.Info("map: rewind", "from", rw.From, "to", rw.To, "windows", len(rw.Windows()))
	// A rewind may take a while: the partition holds the watermark
	// meanwhile.
	a.wm.update(w.part, w.p.MaxEventTime(), a.now(), true)
	defer func() { w.lastMsg = a.now() }()
	w.p.BeginRewind(rw)
	missing, err := w.admin.ReadRange(ctx, a.cfg.TracesTopic, w.part, rw.From, rw.To, func(r tpkafka.Record) error {
		m, err := decodeMessage(&r)
		if err != nil {
			return nil // counted when first read
		}
		return w.p.Replay(m)
	})
	if err != nil {
		return fmt.Errorf("rewind: %w", err) // the state is discarded
	}
	if missing > 0 {
		w.log.Error("map: rewind needed offsets the topic no longer retains; the rebuilt windows may miss traces", "missing", missing)
		a.m.dropped.WithLabelValues("map", "retention").Add(float64(missing))
	}
	w.p.EndRewind()
	return nil
}

// Acked: a partial was acknowledged (acks=all), or could not be published;
// then the partition restarts from its commit.
func (w *mapProc) Acked(ack tpkafka.Ack) error {
	if ack.Err != nil {
		w.a.m.writeErrors.WithLabelValues("map").Inc()
		w.broken = true
		return fmt.Errorf("publish partials: %w", ack.Err)
	}
	if seq, ok := ack.Token.(uint64); ok {
		if w.unacked[seq]--; w.unacked[seq] <= 0 {
			delete(w.unacked, seq)
		}
	}
	w.a.m.published.Inc()
	return nil
}

// Tick publishes what the watermark closed every FlushInterval and, every
// CheckpointInterval (unless the previous checkpoint still waits for
// acknowledgements), publishes and takes a checkpoint.
func (w *mapProc) Tick(ctx context.Context, now time.Time) error {
	a := w.a
	ck := now.Sub(w.lastCk) >= a.cfg.CheckpointInterval && w.pending == nil
	if ck || now.Sub(w.lastFlush) >= a.cfg.FlushInterval {
		w.lastFlush = now
		if err := w.flush(ctx, false, ck); err != nil {
			w.broken = true
			return err
		}
	}
	if ck {
		w.lastCk = now
		if err := w.checkpoint(); err != nil {
			w.broken = true
			return err
		}
	}
	return nil
}

// checkpoint evicts what event time allows and keeps the checkpoint until
// the partials collected so far are acknowledged (see Safe). It runs right
// after a flush, with nothing processed in between.
func (w *mapProc) checkpoint() error {
	c, err := w.p.Checkpoint()
	if errors.Is(err, rollup.ErrUnpublished) {
		return nil // next time
	}
	if err != nil {
		return err
	}
	w.pending, w.pendingAt, w.pendingHW = &c, w.flushes, w.p.HighWater()
	return nil
}

// flush publishes what the watermark closed (everything when the
// partition is idle or all is set; also the windows revived behind the
// horizon when ck, a checkpoint follows) and updates the gauges.
func (w *mapProc) flush(ctx context.Context, all, ck bool) error {
	a := w.a
	now := a.now()
	a.wm.update(w.part, w.p.MaxEventTime(), w.lastMsg, w.behind)
	wm := a.wm.get(now, a.cfg.IdleTimeout, a.cfg.Stats.AllowedLateness)
	if wm != math.MinInt64 && wm != math.MaxInt64 {
		a.m.watermark.Set(float64(wm) / 1e9)
	}
	idle := now.Sub(w.lastMsg) > a.cfg.IdleTimeout && !w.behind
	parts := w.p.Collect(rollup.FlushPolicy{Watermark: wm, All: all || idle, Checkpoint: ck})
	if err := w.publish(ctx, parts); err != nil {
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

// publish hands partials to the writer, keyed by family; their
// acknowledgements come back through Acked.
func (w *mapProc) publish(ctx context.Context, parts []rollup.Partial) error {
	if len(parts) == 0 {
		return nil
	}
	a := w.a
	w.flushes++
	msgs := make([]tpkafka.OutMessage, len(parts))
	for i := range parts {
		msgs[i] = tpkafka.OutMessage{Topic: a.cfg.PartialsTopic, Key: parts[i].PartitionKey(), Value: parts[i].AppendBinary(nil, a.cfg.Stats.Dimensions),
			Token: w.flushes}
	}
	// Each message is acknowledged through Acked, also after an error.
	w.unacked[w.flushes] += len(msgs)
	return w.out.Produce(ctx, msgs...)
}

func (w *mapProc) gauges(res, open, traces int) {
	a := w.a
	a.m.windowsRes.WithLabelValues("map").Add(float64(res - w.res))
	a.m.windowsOpen.Add(float64(open - w.open))
	a.m.residentTraces.Add(float64(traces - w.traces))
	w.res, w.open, w.traces = res, open, traces
}

// Safe returns the last checkpoint whose partials (of its flush and every
// earlier one) are all acknowledged: the processed position, with the
// re-read start and the checkpoint in the metadata. Traces themselves are
// written by the indexer stage.
func (w *mapProc) Safe() (tpkafka.Commit, bool) {
	if w.pending != nil && !w.broken && w.acked(w.pendingAt) {
		c := *w.pending
		w.pending = nil
		w.safe, w.safeOK = encodeCommit(c, w.pendingHW), true
		// The runtime commits it now; partials from now on carry its
		// horizon. Should the commit fail and a successor restart from
		// an older one, the reducers rewind over the partials topic for
		// windows they evicted meanwhile: slower, still exact.
		w.p.Committed(c)
	}
	return w.safe, w.safeOK
}

// acked reports whether every partial of flushes up to seq is acknowledged.
func (w *mapProc) acked(seq uint64) bool {
	for s := range w.unacked {
		if s <= seq {
			return false
		}
	}
	return true
}

// Close runs when the partition stops: publish every change and ask for a
// final checkpoint, taken by Safe once the runtime has delivered the
// acknowledgements, so that the next owner re-reads as little as possible.
func (w *mapProc) Close(ctx context.Context) error {
	if w.p == nil || w.broken {
		return nil
	}
	if err := w.flush(ctx, true, true); err != nil {
		w.broken = true
		return fmt.Errorf("map: final publish failed; the next owner re-reads from the last commit: %w", err)
	}
	if err := w.checkpoint(); err != nil {
		w.broken = true
		return fmt.Errorf("map: final checkpoint: %w", err)
	}
	return nil
}

// Release drops the partition's share of the instance's gauges and
// watermark.
func (w *mapProc) Release() {
	a := w.a
	a.wm.remove(w.part)
	a.m.lag.DeleteLabelValues("map", partitionLabel(w.part))
	a.m.windowKeys.DeleteLabelValues(partitionLabel(w.part))
	if w.p != nil {
		a.m.partitions.WithLabelValues("map").Dec()
	}
	w.gauges(0, 0, 0)
	w.p = nil
}
