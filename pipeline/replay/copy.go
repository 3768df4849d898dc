package replay

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/tracepipe/tracepipe/pipeline/kafka"
)

// Copy batches: a batch is sent once it holds copyBatch records or
// copyBatchBytes bytes; maxCopiers partitions are copied at once.
const (
	copyBatch      = 1000
	copyBatchBytes = 4 << 20
	maxCopiers     = 4
	// maxRecordBytes is the largest record copied (key + value): the
	// private broker takes what the source cluster took, up to this.
	maxRecordBytes = 16 << 20
)

// copyAll copies every partition's remaining range into the private topic,
// keys, values and headers unchanged, advancing each partition's Copied
// after every acknowledged batch.
func (r *run) copyAll(ctx context.Context, brokers []string, topic string) error {
	src := r.cfg.Source
	pc := kafka.DefaultProducerConfig()
	pc.Brokers, pc.Topic = brokers, topic
	pc.BatchBytes, pc.MaxMessageBytes, pc.MaxBufferedBytes = maxRecordBytes, maxRecordBytes, 4*maxRecordBytes
	prod, err := kafka.NewProducer(pc, kafka.Options{Name: "replay", Logger: r.log})
	if err != nil {
		return err
	}
	defer prod.Close(context.WithoutCancel(ctx))
	admin, err := kafka.NewAdmin(src)
	if err != nil {
		return err
	}
	defer admin.Close()

	r.mu.Lock()
	parts := append([]partPlan(nil), r.st.Partitions...)
	r.mu.Unlock()
	sem := make(chan struct{}, maxCopiers)
	var wg sync.WaitGroup
	errs := make([]error, len(parts))
	for i, p := range parts {
		if p.Copied >= p.End {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = ctx.Err()
				return
			}
			defer func() { <-sem }()
			errs[i] = r.copyPartition(ctx, admin, prod, i, p)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// copyPartition copies [Copied, End) of one source partition.
func (r *run) copyPartition(ctx context.Context, admin *kafka.Admin, prod *kafka.Producer, i int, p partPlan) error {
	var (
		batch []kafka.Message
		bytes int
		next  int64 // the offset after the batch's last record
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := prod.Send(ctx, batch); err != nil {
			return fmt.Errorf("copy %s/%d: %w", r.cfg.Topic, p.Partition, err)
		}
		r.mu.Lock()
		r.st.Partitions[i].Copied = next
		r.mu.Unlock()
		batch, bytes = nil, 0
		return nil
	}
	missing, err := admin.ReadRange(ctx, r.cfg.Topic, p.Partition, p.Copied, p.End, func(rec kafka.Record) error {
		if len(rec.Key)+len(rec.Value) > maxRecordBytes {
			r.log.Warn("replay: record larger than the copy's limit skipped", "partition", p.Partition, "offset", rec.Offset,
				"bytes", len(rec.Key)+len(rec.Value), "limit", maxRecordBytes)
		} else {
			batch = append(batch, kafka.Message{Key: rec.Key, Value: rec.Value, Headers: rec.Headers})
			bytes += len(rec.Key) + len(rec.Value)
		}
		next = rec.Offset + 1
		if len(batch) >= copyBatch || bytes >= copyBatchBytes {
			return flush()
		}
		return nil
	})
	if err == nil {
		next = p.End
		err = flush()
		if err == nil {
			r.mu.Lock()
			r.st.Partitions[i].Copied = p.End
			r.mu.Unlock()
		}
	}
	if missing > 0 {
		r.log.Warn("replay: part of the range was deleted by retention before it was read", "partition", p.Partition, "missing", missing)
		r.mu.Lock()
		r.st.Partitions[i].Missing = missing
		r.mu.Unlock()
	}
	return err
}
