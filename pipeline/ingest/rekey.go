package ingest

import (
	"context"
	"fmt"
	"time"

	"github.com/tracepipe/tracepipe/pipeline/kafka"
	"github.com/tracepipe/tracepipe/wire"
)

// maxRekeyOutstanding bounds re-key mode's unacknowledged messages per
// partition; fetching pauses above it.
const maxRekeyOutstanding = 20_000

// rekeyWorker re-publishes one partition's spans to cfg.RekeyTo, one Jaeger
// protobuf message per span keyed by its trace ID (hex), so that a second
// ingester stage reading that topic finds every trace in one partition.
// A source offset is committed once every message derived from it (or its
// dead letter) is acknowledged.
type rekeyWorker struct {
	in        *Ingester
	a         kafka.Assignment
	next      int64
	committed int64
	failed    bool
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

func (in *Ingester) newRekeyer(a kafka.Assignment) (kafka.Processor, error) {
	return &rekeyWorker{in: in, a: a, next: -1, committed: -1, pendingDLQ: map[int64]int{}, index: map[int64]*rekeyEntry{}}, nil
}

func (w *rekeyWorker) Open(ctx context.Context, c kafka.Commit) (int64, error) {
	if !c.Committed() {
		return kafka.FirstOffset, nil
	}
	w.committed, w.next = c.Offset, c.Offset
	w.in.metrics.Committed.WithLabelValues(partitionLabel(w.a.Partition)).Set(float64(c.Offset))
	return c.Offset, nil
}

func (w *rekeyWorker) Handle(ctx context.Context, recs []kafka.Record) (int, error) {
	for i := range recs {
		if w.a.Out.Outstanding() >= maxRekeyOutstanding {
			return i, nil
		}
		if err := w.handle(ctx, &recs[i]); err != nil {
			return i + 1, err
		}
	}
	return len(recs), nil
}

func (w *rekeyWorker) handle(ctx context.Context, m *kafka.Record) error {
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
		return deadLetter(ctx, w.in, w.a.Out, w.pendingDLQ, m, fmt.Errorf("decode %s: %w", enc, err))
	}
	w.in.metrics.SpansIn.Add(float64(len(spans)))
	msgs := make([]kafka.OutMessage, 0, len(spans))
	for _, s := range spans {
		b, err := wire.EncodeJaegerProto(s)
		if err != nil {
			// Decoded but not representable: dead-letter the whole message
			// only if nothing of it was published yet; else count the span.
			w.in.metrics.DroppedSpans.WithLabelValues("unencodable").Inc()
			continue
		}
		msgs = append(msgs, kafka.OutMessage{
			Topic: w.in.cfg.RekeyTo,
			Key:   s.TraceID.AppendHex(nil),
			Value: b,
			Token: &pending{offset: m.Offset, kind: kindRekey},
		})
	}
	e := &rekeyEntry{offset: m.Offset, remaining: len(msgs)}
	w.queue = append(w.queue, e)
	if len(msgs) == 0 {
		return nil
	}
	w.index[m.Offset] = e
	return w.a.Out.Produce(ctx, msgs...)
}

func (w *rekeyWorker) Acked(a kafka.Ack) error {
	if a.Err != nil {
		w.failed = true
		w.in.metrics.ProduceErrors.Inc()
		return fmt.Errorf("produce: %w", a.Err)
	}
	p := a.Token.(*pending)
	switch p.kind {
	case kindDLQ:
		w.in.metrics.DeadLetters.Inc()
		if w.pendingDLQ[p.offset]--; w.pendingDLQ[p.offset] <= 0 {
			delete(w.pendingDLQ, p.offset)
		}
	case kindRekey:
		w.in.metrics.Rekeyed.Inc()
		// Acks may complete out of order across output partitions.
		if e := w.index[p.offset]; e != nil {
			if e.remaining--; e.remaining == 0 {
				delete(w.index, p.offset)
			}
		}
	}
	return nil
}

func (w *rekeyWorker) Tick(context.Context, time.Time) error { return nil }

// Safe is the lowest source offset with an unacknowledged output, else the
// next offset to read; its lookback is itself (re-key mode keeps no
// state).
func (w *rekeyWorker) Safe() (kafka.Commit, bool) {
	if w.next < 0 || w.failed {
		return kafka.Commit{}, false
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
		return kafka.Commit{}, false
	}
	return lookbackCommit(lim, lim), true
}

func (w *rekeyWorker) Committed(c kafka.Commit) {
	w.committed = c.Offset
	w.in.metrics.Committed.WithLabelValues(partitionLabel(w.a.Partition)).Set(float64(c.Offset))
}

func (w *rekeyWorker) Close(context.Context) error { return nil }
