// Package fetch reads one Kafka partition in a goroutine of its own, so that
// the partition's worker can select on messages, acknowledgements and ticks.
// The ingester and the aggregator stages both use it.
package fetch

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// NewReader returns a reader of one partition with the settings every
// tracepipe stage uses: up to 16 MiB a fetch, at most 100 ms of broker-side
// wait, read-committed isolation (transactional producers' aborted records
// are never seen).
func NewReader(brokers []string, dialer *kafka.Dialer, topic string, partition int) *kafka.Reader {
	return kafka.NewReader(kafka.ReaderConfig{
		Brokers:        brokers,
		Topic:          topic,
		Partition:      partition,
		Dialer:         dialer,
		MinBytes:       1,
		MaxBytes:       16 << 20,
		MaxWait:        100 * time.Millisecond,
		QueueCapacity:  1000,
		IsolationLevel: kafka.ReadCommitted,
	})
}

// Fetcher delivers a partition's messages from a start offset on Msgs. Not
// reading from Msgs stops fetching once the buffer and the reader's small
// queue are full (backpressure). The first fetch error arrives on Errs and
// ends fetching.
type Fetcher struct {
	Msgs <-chan kafka.Message
	Errs <-chan error

	r      *kafka.Reader
	cancel context.CancelFunc
	done   chan struct{}
}

// Start positions r at offset and starts fetching into a channel of buffer
// messages. The Fetcher owns r from then on (Stop closes it, as does a
// failed Start).
func Start(r *kafka.Reader, offset int64, buffer int) (*Fetcher, error) {
	if err := r.SetOffset(offset); err != nil {
		r.Close()
		return nil, fmt.Errorf("set offset %d: %w", offset, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	msgs, errs := make(chan kafka.Message, buffer), make(chan error, 1)
	f := &Fetcher{Msgs: msgs, Errs: errs, r: r, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		for {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				if ctx.Err() == nil {
					errs <- err
				}
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	return f, nil
}

// Stop stops fetching, waits for the fetch goroutine and closes the reader;
// messages fetched and not taken are dropped. A nil Fetcher is a no-op.
func (f *Fetcher) Stop() {
	if f == nil {
		return
	}
	f.cancel()
	<-f.done
	f.r.Close()
}
