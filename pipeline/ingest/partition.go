package ingest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/pipeline/assemble"
	"github.com/tracepipe/tracepipe/pipeline/fetch"
	"github.com/tracepipe/tracepipe/pipeline/tracepb"
	"github.com/tracepipe/tracepipe/wire"
)

// fetchConfig says where the spans topic's partition is (see
// fetch.Fetcher: not taking messages stops fetching, which is the
// ingester's backpressure).
func (in *Ingester) fetchConfig(partition int) fetch.Config {
	return fetch.Config{Brokers: in.cfg.Brokers, Dialer: in.dialer, Topic: in.cfg.SpansTopic, Partition: partition,
		OnSkip: func(from, to int64) {
			in.metrics.SkippedMessages.Add(float64(to - from))
			in.log.Warn("spans deleted by retention before they were read", "partition", partition, "from", from, "to", to)
		}}
}

// worker is the owner of one partition's assembly state for one generation.
type worker struct {
	in        *Ingester
	gen       *kafka.Generation
	partition int
	asm       *assemble.Assembler
	acks      chan ack
	done      chan struct{}

	next         int64 // next offset to read; -1 until the first message
	committed    int64
	outstanding  int           // produced messages not yet acknowledged
	pendingDLQ   map[int64]int // source offsets with unacknowledged dead letters
	lastCounters assemble.Counters
	outs         []assemble.Output
	batch        []kafka.Message // the fetch being handled
	fetched      []kafka.Message // the rest of it
	spans        []*model.Span
	dec          wire.JaegerProtoDecoder
	scratch      []byte
	paused       bool

	committedG, commitLagG, consumerLagG prometheus.Gauge
	hwm                                  int64
}

// runPartition assembles one partition for the lifetime of a generation (see
// the package doc for the shutdown sequence).
func (in *Ingester) runPartition(runCtx, gctx context.Context, gen *kafka.Generation, pa kafka.PartitionAssignment) error {
	label := partitionLabel(pa.ID)
	w := &worker{
		in: in, gen: gen, partition: pa.ID,
		asm:          assemble.New(in.cfg.assembleConfig(), in.clock, in.budget),
		acks:         make(chan ack, 1024),
		done:         make(chan struct{}),
		next:         -1,
		committed:    pa.Offset,
		pendingDLQ:   map[int64]int{},
		committedG:   in.metrics.Committed.WithLabelValues(label),
		commitLagG:   in.metrics.CommitLag.WithLabelValues(label),
		consumerLagG: in.metrics.ConsumerLag.WithLabelValues(label),
	}
	start := pa.Offset
	if pa.Offset >= 0 {
		w.committedG.Set(float64(pa.Offset))
		// Traces that straddle the committed offset must be rebuilt from
		// their first span: replay from the committed lookback, with the
		// offsets below the commit as a shadow range (see assemble).
		if l, ok := in.fetchLookback(gctx, pa.ID); ok && l < pa.Offset {
			start = l
			w.asm.SetShadow(pa.Offset)
			in.log.Info("replaying from lookback", "partition", pa.ID, "lookback", l, "committed", pa.Offset)
		}
		w.next = start
	}
	// Chunks of a fetch: one hand-over per chunk rather than per span.
	f := fetch.StartBatches(in.fetchConfig(pa.ID), start, 4)
	err := w.loop(gctx, f)
	f.Stop()
	w.shutdown(runCtx)
	close(w.done)
	return err
}

func (w *worker) tickEvery() time.Duration {
	d := w.in.cfg.IdleTimeout / 5
	return min(max(d, 10*time.Millisecond), 250*time.Millisecond)
}

func (w *worker) loop(ctx context.Context, f *fetch.Fetcher) error {
	tick := time.NewTicker(w.tickEvery())
	defer tick.Stop()
	lastCommit := time.Now()
	for {
		// Work through the fetch in hand while the budget has room; what
		// is left waits until acknowledgements or expiry free some.
		w.setPaused(w.asm.MakeRoom())
		for len(w.fetched) > 0 && !w.paused {
			m := w.fetched[0]
			w.fetched = w.fetched[1:]
			if len(w.fetched) == 0 {
				f.Recycle(w.batch)
				w.batch, w.fetched = nil, nil
			}
			if err := w.handle(ctx, m); err != nil {
				return err
			}
			w.setPaused(w.asm.MakeRoom())
		}
		in := f.Batches
		if w.paused || len(w.fetched) > 0 {
			in = nil // fetching stops once the fetcher's buffer is full
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-f.Errs:
			return fmt.Errorf("fetch: %w", err)
		case w.batch = <-in:
			w.fetched = w.batch
		case a := <-w.acks:
			if err := w.acked(a); err != nil {
				return err
			}
		case <-tick.C:
			if err := w.expire(ctx); err != nil {
				return err
			}
			if time.Since(lastCommit) >= w.in.cfg.CommitInterval {
				lastCommit = time.Now()
				if err := w.commit(); err != nil {
					return err
				}
			}
		}
	}
}

// setPaused records whether the budget is full (a gauge counts paused
// partitions).
func (w *worker) setPaused(full bool) {
	if full == w.paused {
		return
	}
	w.paused = full
	if full {
		w.in.metrics.Paused.Inc()
	} else {
		w.in.metrics.Paused.Dec()
	}
}

func (w *worker) handle(ctx context.Context, m kafka.Message) error {
	w.in.metrics.Messages.Inc()
	w.next = m.Offset + 1
	w.hwm = m.HighWaterMark
	w.consumerLagG.Set(float64(max(m.HighWaterMark-w.next, 0)))
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
		// Checked without building the span: the message's bytes are its
		// stored form, decoded when its trace is emitted.
		var traceID model.TraceID
		var spanID model.SpanID
		if traceID, spanID, err = w.dec.Check(m.Value); err == nil {
			w.asm.AddJaegerProto(m.Offset, traceID, spanID, m.Value)
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
	return w.deadLetter(ctx, m, fmt.Errorf("decode %s: %w", enc, err))
}

// empty counts and logs a message without spans.
func (w *worker) empty(m kafka.Message) {
	w.in.metrics.EmptyMessages.Inc()
	w.in.drops.Warn("empty", "message without spans skipped", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "bytes", len(m.Value))
}

// deadLetter writes m to the dead-letter topic with the error and its
// coordinates as headers. Its offset counts as done once acknowledged.
func (w *worker) deadLetter(ctx context.Context, m kafka.Message, cause error) error {
	return deadLetter(ctx, w.in, w.pendingDLQ, &w.outstanding, m, cause, w.acks, w.done)
}

func deadLetter(ctx context.Context, in *Ingester, pendingDLQ map[int64]int, outstanding *int, m kafka.Message, cause error, acks chan<- ack, done <-chan struct{}) error {
	value := m.Value
	var cut []kafka.Header
	if limit := in.cfg.MaxMessageBytes - 4096; len(value) > limit {
		value = value[:limit]
		cut = []kafka.Header{{Key: "tracepipe.truncated", Value: []byte(strconv.Itoa(len(m.Value)))}}
	}
	in.drops.Warn("dead-letter", "message written to the dead-letter topic", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "dead_letter_topic", in.cfg.DLQTopic, "err", cause)
	pendingDLQ[m.Offset]++
	*outstanding++
	return in.writer.WriteMessages(ctx, kafka.Message{
		Topic: in.cfg.DLQTopic,
		Key:   m.Key,
		Value: value,
		Headers: append([]kafka.Header{
			{Key: "tracepipe.error", Value: []byte(cause.Error())},
			{Key: "tracepipe.source.topic", Value: []byte(m.Topic)},
			{Key: "tracepipe.source.partition", Value: []byte(strconv.Itoa(m.Partition))},
			{Key: "tracepipe.source.offset", Value: []byte(strconv.FormatInt(m.Offset, 10))},
		}, cut...),
		WriterData: &pending{owner: acks, done: done, offset: m.Offset, kind: kindDLQ},
	})
}

func (w *worker) expire(ctx context.Context) error {
	w.outs = w.asm.Expire(w.outs[:0])
	err := w.publish(ctx)
	w.observe()
	return err
}

func (w *worker) publish(ctx context.Context) error {
	if len(w.outs) == 0 {
		return nil
	}
	msgs := make([]kafka.Message, 0, len(w.outs))
	for _, o := range w.outs {
		t := o.Trace
		w.in.metrics.AssemblyDelay.Observe(t.EmittedAt.Sub(t.FirstSeen).Seconds())
		// Encode into a reused scratch buffer, then copy out exactly: the
		// writer keeps the value until its completion callback.
		w.scratch = tracepb.Encode(w.scratch[:0], t)
		b := append([]byte(nil), w.scratch...)
		if len(b) > w.in.cfg.MaxMessageBytes-512 {
			// Cannot be published: counted and treated as done.
			w.in.metrics.DroppedTraces.WithLabelValues("too_large").Inc()
			w.in.drops.Warn("too-large", "trace version too large to publish dropped (lower --max-spans-per-trace or raise --max-message-bytes)", "trace", t.Trace.TraceID.String(), "spans", len(t.Trace.Spans), "bytes", len(b))
			w.asm.Acked(o.Token)
			continue
		}
		w.outstanding++
		msgs = append(msgs, kafka.Message{
			Topic:      w.in.cfg.TracesTopic,
			Key:        t.Trace.TraceID.AppendHex(nil),
			Value:      b,
			WriterData: &pending{owner: w.acks, done: w.done, token: o.Token, kind: kindTrace},
		})
	}
	clear(w.outs)
	if len(msgs) == 0 {
		return nil
	}
	if err := w.in.writer.WriteMessages(ctx, msgs...); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("produce: %w", err)
	}
	return nil
}

func (w *worker) acked(a ack) error {
	w.outstanding--
	if a.err != nil {
		w.in.metrics.ProduceErrors.Inc()
		return fmt.Errorf("produce to %s: %w", w.in.cfg.TracesTopic, a.err)
	}
	switch a.p.kind {
	case kindTrace:
		w.asm.Acked(a.p.token)
	case kindDLQ:
		w.in.metrics.DeadLetters.Inc()
		if w.pendingDLQ[a.p.offset]--; w.pendingDLQ[a.p.offset] <= 0 {
			delete(w.pendingDLQ, a.p.offset)
		}
	}
	return nil
}

// limit is the offset below which every message is fully reflected in
// acknowledged output: the lowest offset still buffered, retained or waiting
// for a dead-letter ack, else the next offset to read.
func (w *worker) limit() (int64, bool) {
	if w.next < 0 {
		return 0, false
	}
	lim := w.next
	if off, ok := w.asm.LowestOffset(); ok && off < lim {
		lim = off
	}
	for off := range w.pendingDLQ {
		if off < lim {
			lim = off
		}
	}
	return lim, true
}

func (w *worker) commit() error {
	lim, ok := w.limit()
	if !ok || lim <= w.committed {
		return nil
	}
	if err := w.in.commit(w.gen, w.partition, lim, w.asm.Lookback(lim)); err != nil {
		return fmt.Errorf("commit offset %d: %w", lim, err)
	}
	w.committed = lim
	w.committedG.Set(float64(lim))
	if w.hwm > 0 {
		w.commitLagG.Set(float64(max(w.hwm-lim, 0)))
	}
	return nil
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

// shutdown runs after fetching stopped: optionally flush half-built traces,
// wait (bounded by ShutdownGrace) for outstanding outputs, commit what is
// safe, release the assembler's memory.
func (w *worker) shutdown(runCtx context.Context) {
	ctx, cancel := context.WithTimeout(context.Background(), w.in.cfg.ShutdownGrace)
	defer cancel()
	if w.paused {
		w.in.metrics.Paused.Dec()
	}
	if w.in.cfg.FlushOnShutdown {
		w.outs = w.asm.Flush(w.outs[:0])
		if err := w.publish(ctx); err != nil {
			w.in.log.Warn("flush on shutdown", "partition", w.partition, "err", err)
		}
	}
	failed := false
	for w.outstanding > 0 && !failed {
		select {
		case a := <-w.acks:
			if err := w.acked(a); err != nil {
				w.in.log.Warn("output failed during shutdown; not committing", "partition", w.partition, "err", err)
				failed = true
			}
		case <-ctx.Done():
			w.in.log.Warn("shutdown grace over with outputs unacknowledged", "partition", w.partition, "outstanding", w.outstanding)
			failed = true
		}
	}
	if !failed {
		if err := w.commit(); err != nil {
			w.in.log.Warn("final commit", "partition", w.partition, "err", err)
		}
	}
	w.observe()
	w.asm.Close()
	w.observe()
}
