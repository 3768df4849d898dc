package index

import (
	"context"
	"time"

	"github.com/tracepipe/tracepipe/model"
	tpkafka "github.com/tracepipe/tracepipe/pipeline/kafka"
	"github.com/tracepipe/tracepipe/wire/assembledpb"
)

// partition is the indexer's processor of one partition (pipeline/kafka
// runs it): it collects a batch of up to BatchSize messages, writes it when
// full or BatchWait after it started, and reports as safe the offset after
// the last batch the store made durable. It produces nothing.
type partition struct {
	x       *Indexer
	recs    []tpkafka.Record
	traces  []model.AssembledTrace
	from    []int // from[i]: the index in recs of traces[i]'s message
	started time.Time
	now     time.Time // the clock's time at the last Tick
	done    int64     // every offset below is durable (or skipped); -1 none yet
}

func (x *Indexer) newPartition(tpkafka.Assignment) (tpkafka.Processor, error) {
	return &partition{x: x, done: -1,
		recs:   make([]tpkafka.Record, 0, x.cfg.BatchSize),
		traces: make([]model.AssembledTrace, 0, x.cfg.BatchSize),
		from:   make([]int, 0, x.cfg.BatchSize)}, nil
}

func (p *partition) Open(ctx context.Context, c tpkafka.Commit) (int64, error) {
	if c.Committed() {
		p.done = c.Offset
		return c.Offset, nil
	}
	return tpkafka.FirstOffset, nil
}

// Handle adds recs to the batch, writing every batch that fills: the write
// (retried until durable) holds the partition, which is the stage's
// backpressure. When ctx ends during a write, the batch stays unwritten
// and uncommitted.
func (p *partition) Handle(ctx context.Context, recs []tpkafka.Record) (int, error) {
	for i := range recs {
		if len(p.recs) == 0 {
			p.started = p.now
		}
		r := &recs[i]
		p.recs = append(p.recs, *r)
		a, err := assembledpb.Decode(r.Value)
		if err != nil {
			p.x.m.dropped.WithLabelValues("decode").Inc()
			p.x.drop.Error("decode", "undecodable assembled trace skipped", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
		} else {
			p.traces = append(p.traces, *a)
			p.from = append(p.from, len(p.recs)-1)
		}
		if len(p.recs) >= p.x.cfg.BatchSize && !p.flush(ctx) {
			return i + 1, nil // ctx ended: the runtime stops the partition
		}
	}
	return len(recs), nil
}

// flush writes the batch; false if ctx ended first.
func (p *partition) flush(ctx context.Context) bool {
	if len(p.recs) == 0 {
		return true
	}
	if len(p.traces) > 0 && !p.x.write(ctx, p.recs, p.traces, p.from) {
		return false
	}
	p.done = p.recs[len(p.recs)-1].Offset + 1
	p.x.m.batches.Inc()
	clear(p.recs)
	clear(p.traces)
	p.recs, p.traces, p.from = p.recs[:0], p.traces[:0], p.from[:0]
	return true
}

func (p *partition) Acked(tpkafka.Ack) error { return nil }

func (p *partition) Tick(ctx context.Context, now time.Time) error {
	p.now = now
	if len(p.recs) > 0 && now.Sub(p.started) >= p.x.cfg.BatchWait {
		p.flush(ctx)
	}
	return nil
}

func (p *partition) Safe() (tpkafka.Commit, bool) {
	return tpkafka.Commit{Offset: p.done}, p.done >= 0
}

// Close abandons the batch being collected: it is not committed, and the
// next owner re-reads and re-writes it idempotently.
func (p *partition) Close(context.Context) error { return nil }
