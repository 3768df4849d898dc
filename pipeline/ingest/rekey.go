package ingest

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/pipeline/fetch"
	"github.com/tracepipe/tracepipe/wire"
)

// maxRekeyOutstanding bounds re-key mode's unacknowledged messages per
// partition; fetching pauses above it.
const maxRekeyOutstanding = 20_000

// runRekey re-publishes one partition's spans to cfg.RekeyTo, one Jaeger
// protobuf message per span keyed by its trace ID (hex), so that a second
// ingester stage reading that topic finds every trace in one partition.
// A source offset is committed once every message derived from it (or its
// dead letter) is acknowledged.
func (in *Ingester) runRekey(runCtx, gctx context.Context, gen *kafka.Generation, pa kafka.PartitionAssignment) error {
	f := fetch.Start(in.fetchConfig(pa.ID), pa.Offset, 256)
	w := &rekeyWorker{in: in, gen: gen, partition: pa.ID, acks: make(chan ack, 4096), done: make(chan struct{}),
		committed: pa.Offset, next: -1, pendingDLQ: map[int64]int{}, index: map[int64]*rekeyEntry{}}
	if pa.Offset >= 0 {
		w.next = pa.Offset
	}
	err := w.loop(gctx, f)
	f.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), in.cfg.ShutdownGrace)
	defer cancel()
	ok := true
	for ok && w.outstanding > 0 {
		select {
		case a := <-w.acks:
			ok = w.acked(a) == nil
		case <-ctx.Done():
			ok = false
		}
	}
	if ok {
		if cerr := w.commit(); cerr != nil {
			in.log.Warn("final commit", "partition", pa.ID, "err", cerr)
		}
	}
	close(w.done)
	return err
}

type rekeyWorker struct {
	in          *Ingester
	gen         *kafka.Generation
	partition   int
	acks        chan ack
	done        chan struct{}
	next        int64
	committed   int64
	outstanding int
	// queue holds source offsets in order with their unacknowledged
	// outputs; the head's offset is the commit limit.
	queue      []*rekeyEntry
	index      map[int64]*rekeyEntry
	pendingDLQ map[int64]int
}

type rekeyEntry struct {
	offset    int64
	remaining int
}

func (w *rekeyWorker) loop(ctx context.Context, f *fetch.Fetcher) error {
	tick := time.NewTicker(w.in.cfg.CommitInterval)
	defer tick.Stop()
	for {
		in := f.Msgs
		if w.outstanding >= maxRekeyOutstanding {
			in = nil
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-f.Errs:
			return fmt.Errorf("fetch: %w", err)
		case m := <-in:
			if err := w.handle(ctx, m); err != nil {
				return err
			}
		case a := <-w.acks:
			if err := w.acked(a); err != nil {
				return err
			}
		case <-tick.C:
			if err := w.commit(); err != nil {
				return err
			}
		}
	}
}

func (w *rekeyWorker) handle(ctx context.Context, m kafka.Message) error {
	w.in.metrics.Messages.Inc()
	w.next = m.Offset + 1
	enc := w.in.cfg.Encoding
	if enc == wire.Auto {
		enc = wire.Detect(m.Value)
	}
	spans, err := wire.Decode(enc, m.Value, nil)
	if err != nil {
		w.in.metrics.DecodeErrors.Inc()
		w.queue = append(w.queue, &rekeyEntry{offset: m.Offset})
		return deadLetter(ctx, w.in, w.pendingDLQ, &w.outstanding, m, fmt.Errorf("decode %s: %w", enc, err), w.acks, w.done)
	}
	w.in.metrics.SpansIn.Add(float64(len(spans)))
	msgs := make([]kafka.Message, 0, len(spans))
	for _, s := range spans {
		b, err := wire.EncodeJaegerProto(s)
		if err != nil {
			// Decoded but not representable: dead-letter the whole message
			// only if nothing of it was published yet; else count the span.
			w.in.metrics.DroppedSpans.WithLabelValues("unencodable").Inc()
			continue
		}
		msgs = append(msgs, kafka.Message{
			Topic:      w.in.cfg.RekeyTo,
			Key:        s.TraceID.AppendHex(nil),
			Value:      b,
			WriterData: &pending{owner: w.acks, done: w.done, offset: m.Offset, kind: kindRekey},
		})
	}
	e := &rekeyEntry{offset: m.Offset, remaining: len(msgs)}
	w.queue = append(w.queue, e)
	if len(msgs) == 0 {
		return nil
	}
	w.index[m.Offset] = e
	w.outstanding += len(msgs)
	return w.in.writer.WriteMessages(ctx, msgs...)
}

func (w *rekeyWorker) acked(a ack) error {
	w.outstanding--
	if a.err != nil {
		w.in.metrics.ProduceErrors.Inc()
		return fmt.Errorf("produce: %w", a.err)
	}
	switch a.p.kind {
	case kindDLQ:
		w.in.metrics.DeadLetters.Inc()
		if w.pendingDLQ[a.p.offset]--; w.pendingDLQ[a.p.offset] <= 0 {
			delete(w.pendingDLQ, a.p.offset)
		}
	case kindRekey:
		w.in.metrics.Rekeyed.Inc()
		// Acks may complete out of order across output partitions.
		if e := w.index[a.p.offset]; e != nil {
			if e.remaining--; e.remaining == 0 {
				delete(w.index, a.p.offset)
			}
		}
	}
	return nil
}

func (w *rekeyWorker) commit() error {
	if w.next < 0 {
		return nil
	}
	n := 0
	for n < len(w.queue) && w.queue[n].remaining == 0 && w.pendingDLQ[w.queue[n].offset] == 0 {
		n++
	}
	clear(w.queue[:n])
	w.queue = w.queue[n:]
	lim := w.next
	if len(w.queue) > 0 {
		lim = w.queue[0].offset
	}
	if lim <= w.committed {
		return nil
	}
	if err := w.in.commit(w.gen, w.partition, lim, lim); err != nil {
		return fmt.Errorf("commit offset %d: %w", lim, err)
	}
	w.committed = lim
	w.in.metrics.Committed.WithLabelValues(partitionLabel(w.partition)).Set(float64(lim))
	return nil
}
