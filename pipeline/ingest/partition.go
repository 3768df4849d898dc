package ingest

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/pipeline/ingest/assemble"
	"github.com/tracepipe/tracepipe/pipeline/kafka"
	"github.com/tracepipe/tracepipe/wire"
	"github.com/tracepipe/tracepipe/wire/assembledpb"
)

// producer is what a worker needs of its assignment's output
// (kafka.Output; tests fake it).
type producer interface {
	Produce(ctx context.Context, msgs ...kafka.OutMessage) error
}

// outputBudget bounds the encoded trace output of an instance that is
// produced and not yet acknowledged (--max-output-bytes-in-flight). Workers
// add to it as they encode and take back as acknowledgements arrive.
type outputBudget struct {
	max   int64
	bytes atomic.Int64
	gauge prometheus.Gauge
}

func (b *outputBudget) add(n int64) {
	b.bytes.Add(n)
	b.gauge.Add(float64(n))
}

// room reports whether more output may be produced.
func (b *outputBudget) room() bool { return b.bytes.Load() < b.max }

// worker is the owner of one partition's assembly state for one
// assignment: the kafka.Processor the runtime drives on the partition's
// goroutine.
type worker struct {
	in        *Ingester
	a         kafka.Assignment
	out       producer
	partition int
	asm       *assemble.Assembler
	// ctx is the assignment's context (Open's): Acked, which has none,
	// emits with it.
	ctx context.Context

	next         int64 // next offset to read; -1 until known
	committed    int64
	pendingDLQ   map[int64]int // source offsets with unacknowledged dead letters
	lastCounters assemble.Counters
	outs         []assemble.Output
	msgs         []kafka.OutMessage
	outBytes     int64      // this partition's share of in.output
	waiting      gaugedFlag // due traces wait for room in in.output
	closed       bool       // Close ran: nothing more is emitted
	spans        []*model.Span
	rejected     []assemble.Rejected
	scratch      []byte
	bufs         outBufs    // encoded outputs' buffers, reused once acknowledged
	paused       gaugedFlag // the in-flight budget is full: fetching waits
	failed       bool       // an output failed: nothing more is committed

	committedG, commitLagG, consumerLagG prometheus.Gauge
	hwm                                  int64
}

func (in *Ingester) newAssembler(a kafka.Assignment) (kafka.Processor, error) {
	label := partitionLabel(a.Partition)
	return &worker{
		in: in, a: a, out: a.Out, partition: a.Partition, ctx: context.Background(),
		paused:       gaugedFlag{gauge: in.metrics.Paused},
		waiting:      gaugedFlag{gauge: in.metrics.EmitWaiting},
		asm:          assemble.New(in.cfg.assembleConfig(), in.clock, in.budget),
		next:         -1,
		committed:    -1,
		pendingDLQ:   map[int64]int{},
		committedG:   in.metrics.Committed.WithLabelValues(label),
		commitLagG:   in.metrics.CommitLag.WithLabelValues(label),
		consumerLagG: in.metrics.ConsumerLag.WithLabelValues(label),
	}, nil
}

// Open starts from the committed offset, or, when the commit's metadata
// names an earlier lookback, replays from there with the offsets below the
// commit as a shadow range (see assemble): traces that straddle the
// committed offset are rebuilt from their first span.
func (w *worker) Open(ctx context.Context, c kafka.Commit) (int64, error) {
	w.ctx = ctx
	if !c.Committed() {
		return kafka.FirstOffset, nil
	}
	w.committed = c.Offset
	w.committedG.Set(float64(c.Offset))
	start := c.Offset
	if l, ok := parseLookback(c.Metadata); ok && l < c.Offset {
		start = l
		w.asm.SetShadow(c.Offset)
		w.in.log.Info("replaying from lookback", "partition", w.partition, "lookback", l, "committed", c.Offset)
	}
	w.next = start
	return start, nil
}

// Handle works through recs while the budget has room; what is left waits
// until acknowledgements or expiry free some (the runtime offers it again
// after the next Acked or Tick, and fetches nothing meanwhile).
func (w *worker) Handle(ctx context.Context, recs []kafka.Record) (int, error) {
	now := w.in.clock.Now() // the chunk's arrival
	for i := range recs {
		if w.paused.set(w.asm.MakeRoom()); w.paused.on {
			return i, nil
		}
		if err := w.handle(ctx, &recs[i], now); err != nil {
			return i + 1, err
		}
	}
	w.consumerLagG.Set(float64(max(w.hwm-w.next, 0)))
	w.paused.set(w.asm.MakeRoom())
	return len(recs), nil
}

// gaugedFlag is a partition's state that a gauge counts across partitions
// (paused, waiting): set moves the gauge only when the state changes.
type gaugedFlag struct {
	on    bool
	gauge prometheus.Gauge
}

func (f *gaugedFlag) set(on bool) {
	if on == f.on {
		return
	}
	f.on = on
	if on {
		f.gauge.Inc()
	} else {
		f.gauge.Dec()
	}
}

func (w *worker) handle(ctx context.Context, m *kafka.Record, now time.Time) error {
	w.in.metrics.Messages.Inc()
	w.next = m.Offset + 1
	w.hwm = m.HighWaterMark
	if len(m.Value) == 0 {
		w.empty(m)
		w.asm.Add(m.Offset, nil)
		return nil
	}
	enc := w.in.cfg.Encoding
	if enc == wire.Auto {
		enc = wire.Detect(m.Value)
	}
	var err error
	if enc == wire.JaegerProto {
		// Only the IDs are read: the message's bytes are the span's stored
		// form, decoded once, when its trace is emitted; a span that does
		// not decode then is dead-lettered (deadLetterRejected).
		var traceID model.TraceID
		var spanID model.SpanID
		if traceID, spanID, err = wire.ReadJaegerProtoIDs(m.Value); err == nil {
			w.asm.AddJaegerProto(m.Offset, traceID, spanID, m.Value, now)
			return nil
		}
	} else if w.spans, err = wire.Decode(enc, m.Value, w.spans[:0]); err == nil {
		if len(w.spans) == 0 {
			w.empty(m)
		}
		w.asm.Add(m.Offset, w.spans)
		clear(w.spans)
		return nil
	}
	w.in.metrics.DecodeErrors.Inc()
	return deadLetter(ctx, w.in, w.out, w.pendingDLQ, m, fmt.Errorf("decode %s: %w", enc, err))
}

// empty counts and logs a message without spans.
func (w *worker) empty(m *kafka.Record) {
	w.in.metrics.EmptyMessages.Inc()
	w.in.drops.Warn("empty", "message without spans skipped", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "bytes", len(m.Value))
}

// deadLetter writes m to the dead-letter topic with the error and its
// coordinates as headers. Its offset counts as done once acknowledged.
func deadLetter(ctx context.Context, in *Ingester, out producer, pendingDLQ map[int64]int, m *kafka.Record, cause error) error {
	value := m.Value
	var cut []kafka.Header
	if limit := in.cfg.MaxMessageBytes - 4096; len(value) > limit {
		value = value[:limit]
		cut = []kafka.Header{{Key: "tracepipe.truncated", Value: []byte(strconv.Itoa(len(m.Value)))}}
	}
	in.drops.Warn("dead-letter", "message written to the dead-letter topic", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "dead_letter_topic", in.cfg.DLQTopic, "err", cause)
	pendingDLQ[m.Offset]++
	return out.Produce(ctx, kafka.OutMessage{
		Topic: in.cfg.DLQTopic,
		Key:   m.Key,
		Value: value,
		Headers: append([]kafka.Header{
			{Key: "tracepipe.error", Value: []byte(cause.Error())},
			{Key: "tracepipe.source.topic", Value: []byte(m.Topic)},
			{Key: "tracepipe.source.partition", Value: []byte(strconv.Itoa(m.Partition))},
			{Key: "tracepipe.source.offset", Value: []byte(strconv.FormatInt(m.Offset, 10))},
		}, cut...),
		Token: &pending{offset: m.Offset, kind: kindDLQ},
	})
}

// deadLetterRejected writes the spans the assembler rejected when it
// emitted their traces (their messages did not decode) to the dead-letter
// topic, as handle writes a message whose IDs do not read: keyed by trace
// ID (as the collector keys spans), offsets committed once acknowledged.
func (w *worker) deadLetterRejected(ctx context.Context) error {
	w.rejected = w.asm.TakeRejected(w.rejected[:0])
	defer clear(w.rejected)
	for _, r := range w.rejected {
		w.in.metrics.DecodeErrors.Inc()
		m := kafka.Record{Topic: w.a.Topic, Partition: w.partition, Offset: r.Offset, Key: r.TraceID.AppendHex(nil), Value: r.Message}
		if err := deadLetter(ctx, w.in, w.out, w.pendingDLQ, &m, fmt.Errorf("decode %s: %w", wire.JaegerProto, r.Err)); err != nil {
			return err
		}
	}
	return nil
}

// Tick emits the traces that are due, as far as the output budget allows
// (emitDue).
func (w *worker) Tick(ctx context.Context, now time.Time) error {
	err := w.emitDue(ctx)
	w.observe()
	w.paused.set(w.asm.MakeRoom())
	return err
}

// emitDue emits due traces one at a time, encoding each before the next is
// decoded, while the instance's encoded output not yet acknowledged is
// under --max-output-bytes-in-flight, and always at least one while this
// partition has none in flight (so that no partition stalls, whatever the
// size of a trace). The rest stay due, in order, and wait (w.waiting) for
// the next Tick or acknowledgement: a burst of traces falling due together
// is never decoded, analysed and encoded all at once, and a slow broker
// holds at most the bound in encoded output, not every due trace. Retained
// traces past the late horizon are evicted either way.
func (w *worker) emitDue(ctx context.Context) error {
	for {
		n := 0
		if w.mayEmit() {
			n = 1
		}
		var more bool
		w.outs, more = w.asm.ExpireUpTo(w.outs[:0], n)
		w.encodeOuts()
		if err := w.deadLetterRejected(ctx); err != nil {
			return err
		}
		if n == 0 || !more {
			w.waiting.set(more)
			return w.produce(ctx)
		}
	}
}

// mayEmit says whether the next due trace may be emitted: while the
// instance's output budget has room, and always while this partition has
// nothing in flight (so that none stalls).
func (w *worker) mayEmit() bool { return w.outBytes == 0 || w.in.output.room() }

// encodeOuts encodes w.outs into w.msgs, clears w.outs and lets the
// assembler reuse the decoded spans' memory.
func (w *worker) encodeOuts() {
	for _, o := range w.outs {
		w.msgs = w.encode(w.msgs, o)
	}
	clear(w.outs)
	w.asm.Recycle()
}

// encode appends o's output message to msgs and counts its bytes in the
// output budget; a trace too large to publish is dropped, counted and
// treated as done.
func (w *worker) encode(msgs []kafka.OutMessage, o assemble.Output) []kafka.OutMessage {
	t := o.Trace
	w.in.metrics.AssemblyDelay.Observe(t.EmittedAt.Sub(t.FirstSeen).Seconds())
	// Encode into a reused scratch buffer, then copy into a buffer of its
	// size class that the writer keeps until its completion callback and
	// Acked then reuses (outBufs).
	w.scratch = assembledpb.Encode(w.scratch[:0], t)
	if len(w.scratch) > w.in.cfg.MaxMessageBytes-512 {
		// Cannot be published: counted and treated as done.
		w.in.metrics.DroppedTraces.WithLabelValues("too_large").Inc()
		w.in.drops.Warn("too-large", "trace version too large to publish dropped (lower --max-spans-per-trace or raise --max-message-bytes)", "trace", t.Trace.TraceID.String(), "spans", len(t.Trace.Spans), "bytes", len(w.scratch))
		w.asm.Acked(o.Token)
		return msgs
	}
	b := w.bufs.get(len(w.scratch))
	copy(b, w.scratch)
	size := int64(cap(b)) // the memory it holds until acknowledged
	w.outBytes += size
	w.in.output.add(size)
	return append(msgs, kafka.OutMessage{
		Topic: w.in.cfg.TracesTopic,
		Key:   t.Trace.TraceID.AppendHex(make([]byte, 0, 32)), // one allocation
		Value: b,
		Token: &pending{token: o.Token, kind: kindTrace, bytes: size, buf: b},
	})
}

// produce hands the encoded messages to the output (they are acknowledged
// through Acked, also when it fails).
func (w *worker) produce(ctx context.Context) error {
	if len(w.msgs) == 0 {
		return nil
	}
	err := w.out.Produce(ctx, w.msgs...)
	clear(w.msgs)
	w.msgs = w.msgs[:0]
	if err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// Acked takes an output's acknowledgement; a failed output stops the
// partition (it restarts from its commit). An acknowledged trace frees its
// bytes of the output budget, and due traces waiting for that room are
// emitted (until Close).
func (w *worker) Acked(a kafka.Ack) error {
	p := a.Token.(*pending)
	if p.kind == kindTrace {
		w.outBytes -= p.bytes
		w.in.output.add(-p.bytes)
	}
	if a.Err != nil {
		w.failed = true
		w.in.metrics.ProduceErrors.Inc()
		return fmt.Errorf("produce to %s: %w", w.in.cfg.TracesTopic, a.Err)
	}
	switch p.kind {
	case kindTrace:
		w.bufs.put(p.buf)
		w.asm.Acked(p.token)
	case kindDLQ:
		w.in.metrics.DeadLetters.Inc()
		if w.pendingDLQ[p.offset]--; w.pendingDLQ[p.offset] <= 0 {
			delete(w.pendingDLQ, p.offset)
		}
	}
	var err error
	if w.waiting.on && !w.closed && w.mayEmit() {
		err = w.emitDue(w.ctx)
	}
	w.paused.set(w.asm.MakeRoom())
	return err
}

// limit is the offset below which every message is fully reflected in
// acknowledged output: the lowest offset of a trace still buffered or
// waiting for an acknowledgement, or of a message waiting for its dead
// letter's, else the next offset to read. Retained traces whose output is
// acknowledged do not hold it (they are in the lookback instead), so the
// committed offset reaches the log end an idle timeout after traffic stops.
func (w *worker) limit() (int64, bool) {
	if w.next < 0 {
		return 0, false
	}
	lim := w.next
	if off, ok := w.asm.LowestUnsettled(); ok && off < lim {
		lim = off
	}
	for off := range w.pendingDLQ {
		if off < lim {
			lim = off
		}
	}
	return lim, true
}

// Safe is the commit of the limit with its lookback as metadata: the
// first offset of the earliest trace still held (retained for late spans)
// or evicted with spans at or past the limit, so that a restart rebuilds
// each of them from all its spans.
func (w *worker) Safe() (kafka.Commit, bool) {
	lim, ok := w.limit()
	if !ok || w.failed || lim <= w.committed {
		return kafka.Commit{}, false
	}
	lookback := w.asm.Lookback(lim)
	if off, ok := w.asm.LowestOffset(); ok && off < lookback {
		lookback = off
	}
	return lookbackCommit(lim, lookback), true
}

// Committed updates the commit metrics.
func (w *worker) Committed(c kafka.Commit) {
	w.committed = c.Offset
	w.committedG.Set(float64(c.Offset))
	if w.hwm > 0 {
		w.commitLagG.Set(float64(max(w.hwm-c.Offset, 0)))
	}
}

func (w *worker) observe() {
	cur := w.asm.Counters()
	if n := cur.TooLateSpans - w.lastCounters.TooLateSpans; n > 0 {
		w.in.drops.Warn("too-late", "spans dropped: their trace was emitted and is past the late horizon (--late-horizon)", "partition", w.partition, "spans", n)
	}
	w.in.metrics.addDelta(cur, w.lastCounters)
	w.lastCounters = cur
	tr, sp, by := w.in.budget.InFlight()
	w.in.metrics.InFlightTraces.Set(float64(tr))
	w.in.metrics.InFlightSpans.Set(float64(sp))
	w.in.metrics.InFlightBytes.Set(float64(by))
}

// Close runs after fetching stopped: optionally flush half-built traces.
// The runtime then waits (bounded by ShutdownGrace) for outstanding
// outputs, commits what is safe and calls Release.
//
// Due traces waiting for output room are not emitted any more: they stay
// buffered, below the commit, and the partition's next owner emits them.
// A flush emits every buffered trace at once, whatever the output budget
// (Close must not wait for acknowledgements).
func (w *worker) Close(ctx context.Context) error {
	w.closed = true
	w.waiting.set(false)
	w.paused.set(false)
	if w.in.cfg.FlushOnShutdown {
		w.outs = w.asm.Flush(w.outs[:0])
		w.encodeOuts()
		if err := w.deadLetterRejected(ctx); err != nil {
			return fmt.Errorf("flush on shutdown: %w", err)
		}
		if err := w.produce(ctx); err != nil {
			return fmt.Errorf("flush on shutdown: %w", err)
		}
	}
	return nil
}

// Release frees the assembler's memory and its shares of the budgets
// (output never acknowledged included).
func (w *worker) Release() {
	w.in.output.add(-w.outBytes)
	w.outBytes = 0
	w.observe()
	w.asm.Close()
	w.observe()
}
