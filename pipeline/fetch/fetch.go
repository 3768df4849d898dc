// Package fetch reads one Kafka partition in a goroutine of its own, so that
// the partition's worker can select on messages, acknowledgements and ticks.
// The ingester and the aggregator stages both use it.
//
// A Fetcher talks to the partition's leader over one kafka-go Conn and hands
// out what each fetch returned, either message by message (Start) or in
// chunks of up to ChunkSize messages (StartBatches: one channel operation,
// and at most one wake-up of the worker, per chunk instead of per message;
// the ingester's hot path).
// It does what kafka-go's Reader does for a single partition, without the
// Reader's own goroutine and channel in between: it finds the leader, moves
// to the log's start when the offset fell below it (retention), retries
// leader changes and broken connections with backoff, and reports other
// errors.
package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/segmentio/kafka-go"
)

// Fetch settings every tracepipe stage uses.
const (
	// MaxBytes bounds one fetch (a larger single message still arrives:
	// brokers always return at least one). With the channel's buffer it
	// bounds what a Fetcher holds.
	MaxBytes = 4 << 20
	// MaxWait is how long the broker may wait for data before answering.
	MaxWait = 100 * time.Millisecond
	// ChunkSize is the most messages StartBatches hands over at once.
	ChunkSize = 512
	// maxAttempts is how many consecutive failed attempts to reach the
	// leader are made before the error is reported (with backoff, about 20
	// seconds: time for a leader election).
	maxAttempts = 10
)

// NewReader returns a kafka-go Reader of one partition with the settings
// every tracepipe stage uses: up to 16 MiB a fetch, at most MaxWait of
// broker-side wait, read-committed isolation (transactional producers'
// aborted records are never seen). For reads that are not a partition's
// main stream (the aggregator's range reads).
func NewReader(brokers []string, dialer *kafka.Dialer, topic string, partition int) *kafka.Reader {
	return kafka.NewReader(kafka.ReaderConfig{
		Brokers:        brokers,
		Topic:          topic,
		Partition:      partition,
		Dialer:         dialer,
		MinBytes:       1,
		MaxBytes:       16 << 20,
		MaxWait:        MaxWait,
		QueueCapacity:  1000,
		IsolationLevel: kafka.ReadCommitted,
	})
}

// Config says which partition to read, and how to reach the cluster.
type Config struct {
	Brokers   []string
	Dialer    *kafka.Dialer // nil: kafka.DefaultDialer
	Topic     string
	Partition int
	// OnSkip, if set, is told of offsets [from, to) that were deleted (by
	// the topic's retention) before they could be read, from the fetch
	// goroutine.
	OnSkip func(from, to int64)
}

// Fetcher delivers a partition's messages from a start offset, on Msgs
// (Start) or Batches (StartBatches; the other channel is nil). Not reading
// stops fetching once the channel's buffer is full (backpressure). The first
// error that retrying does not cure arrives on Errs and ends fetching.
type Fetcher struct {
	Msgs    <-chan kafka.Message
	Batches <-chan []kafka.Message
	Errs    <-chan error

	cfg     Config
	msgs    chan kafka.Message
	batches chan []kafka.Message
	errs    chan error
	cancel  context.CancelFunc
	done    chan struct{}
	free    chan []kafka.Message // recycled chunks
}

// Start reads cfg's partition from offset (kafka.FirstOffset and
// kafka.LastOffset are understood; an offset below the log's start reads
// from the start) into a channel of buffer messages.
func Start(cfg Config, offset int64, buffer int) *Fetcher {
	f := newFetcher(cfg)
	f.msgs = make(chan kafka.Message, buffer)
	f.Msgs = f.msgs
	f.start(offset)
	return f
}

// StartBatches is Start delivering the messages in chunks (a fetch's
// messages, up to ChunkSize at a time, never none), into a channel of buffer
// chunks. The receiver owns a chunk until it recycles it.
func StartBatches(cfg Config, offset int64, buffer int) *Fetcher {
	f := newFetcher(cfg)
	f.batches = make(chan []kafka.Message, buffer)
	f.Batches = f.batches
	f.start(offset)
	return f
}

func newFetcher(cfg Config) *Fetcher {
	if cfg.Dialer == nil {
		cfg.Dialer = kafka.DefaultDialer
	}
	errs := make(chan error, 1)
	return &Fetcher{Errs: errs, cfg: cfg, errs: errs, done: make(chan struct{}), free: make(chan []kafka.Message, 8)}
}

func (f *Fetcher) start(offset int64) {
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go func() {
		defer close(f.done)
		if err := f.run(ctx, offset); err != nil && ctx.Err() == nil {
			f.errs <- fmt.Errorf("%s/%d: %w", f.cfg.Topic, f.cfg.Partition, err)
		}
	}()
}

// Stop stops fetching and waits for the fetch goroutine; messages fetched
// and not taken are dropped. A nil Fetcher is a no-op.
func (f *Fetcher) Stop() {
	if f == nil {
		return
	}
	f.cancel()
	<-f.done
}

// run fetches until ctx ends or an error is final: connection-level
// failures and leader changes are retried with backoff (up to maxAttempts in
// a row without a successful fetch).
func (f *Fetcher) run(ctx context.Context, offset int64) error {
	failures := 0
	for {
		if failures > 0 && !sleep(ctx, backoff(failures)) {
			return nil
		}
		conn, err := f.dial(ctx)
		if err == nil {
			var progressed bool
			offset, progressed, err = f.read(ctx, conn, offset)
			conn.Close()
			if progressed {
				failures = 0
			}
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case !retriable(err):
			return err
		}
		if failures++; failures >= maxAttempts {
			return fmt.Errorf("%d attempts: %w", failures, err)
		}
	}
}

// dial connects to the partition's leader, asking each broker in turn.
func (f *Fetcher) dial(ctx context.Context) (*kafka.Conn, error) {
	var err error
	for _, b := range f.cfg.Brokers {
		var conn *kafka.Conn
		if conn, err = f.cfg.Dialer.DialLeader(ctx, "tcp", b, f.cfg.Topic, f.cfg.Partition); err == nil {
			return conn, nil
		}
	}
	if err == nil {
		err = errors.New("no brokers")
	}
	return nil, fmt.Errorf("dial leader: %w", err)
}

// read fetches from conn from offset on, delivering every message, until an
// error; it returns the next offset to read and whether any fetch succeeded.
func (f *Fetcher) read(ctx context.Context, conn *kafka.Conn, offset int64) (int64, bool, error) {
	progressed, ok := false, true
	offset, err := f.seek(conn, offset)
	if err != nil {
		return offset, false, err
	}
	for ctx.Err() == nil {
		// The broker answers within MaxWait; the rest is for reading the
		// answer.
		conn.SetReadDeadline(time.Now().Add(MaxWait + 30*time.Second))
		batch := conn.ReadBatchWith(kafka.ReadBatchConfig{
			MinBytes: 1, MaxBytes: MaxBytes, MaxWait: MaxWait, IsolationLevel: kafka.ReadCommitted,
		})
		// Handed over in chunks as they fill: a receiver that does not
		// take them holds up the read (if for longer than the deadline,
		// the connection is made again from the next offset).
		chunk := f.slice()
		for {
			m, err := batch.ReadMessage()
			if err != nil {
				break
			}
			if chunk = append(chunk, m); len(chunk) == ChunkSize {
				offset, progressed = m.Offset+1, true
				if chunk, ok = f.deliver(ctx, chunk); !ok {
					batch.Close()
					return offset, progressed, nil
				}
			}
		}
		err := batch.Close()
		if len(chunk) > 0 {
			offset = chunk[len(chunk)-1].Offset + 1
			if chunk, ok = f.deliver(ctx, chunk); !ok {
				return offset, progressed, nil
			}
		}
		f.Recycle(chunk)
		switch {
		case err == nil, errors.Is(err, kafka.RequestTimedOut):
			progressed = true
		case errors.Is(err, kafka.OffsetOutOfRange):
			// Below the log's start (retention deleted it): move up. Past
			// the end: wait for data.
			if offset, err = f.seek(conn, offset); err != nil {
				return offset, progressed, err
			}
			if !sleep(ctx, MaxWait) {
				return offset, progressed, nil
			}
		default:
			return offset, progressed, err
		}
	}
	return offset, progressed, nil
}

// seek positions conn at offset, first turning kafka.FirstOffset,
// kafka.LastOffset and an offset below the log's start into a real offset,
// which it returns.
func (f *Fetcher) seek(conn *kafka.Conn, offset int64) (int64, error) {
	offset, err := f.resolve(conn, offset)
	if err != nil {
		return offset, err
	}
	if _, err := conn.Seek(offset, kafka.SeekAbsolute|kafka.SeekDontCheck); err != nil {
		return offset, fmt.Errorf("seek %d: %w", offset, err)
	}
	return offset, nil
}

func (f *Fetcher) resolve(conn *kafka.Conn, offset int64) (int64, error) {
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	defer conn.SetDeadline(time.Time{})
	first, last, err := conn.ReadOffsets()
	if err != nil {
		return offset, fmt.Errorf("read offsets: %w", err)
	}
	switch {
	case offset >= 0 && offset < first:
		if f.cfg.OnSkip != nil {
			f.cfg.OnSkip(offset, first)
		}
		return first, nil
	case offset == kafka.FirstOffset:
		return first, nil
	case offset == kafka.LastOffset:
		return last, nil
	}
	return offset, nil
}

// Recycle gives back a chunk received from Batches, once done with it, for
// a later one to reuse (optional: it saves an allocation per chunk).
func (f *Fetcher) Recycle(msgs []kafka.Message) {
	if cap(msgs) != ChunkSize {
		return
	}
	clear(msgs[:cap(msgs)])
	select {
	case f.free <- msgs[:0]:
	default:
	}
}

// slice returns an empty chunk: a recycled one if there is one.
func (f *Fetcher) slice() []kafka.Message {
	select {
	case msgs := <-f.free:
		return msgs
	default:
		return make([]kafka.Message, 0, ChunkSize)
	}
}

// deliver hands a full chunk to the receiver and returns an empty one to
// fill next; false means ctx ended first.
func (f *Fetcher) deliver(ctx context.Context, chunk []kafka.Message) ([]kafka.Message, bool) {
	if f.batches != nil {
		select {
		case f.batches <- chunk:
			return f.slice(), true
		case <-ctx.Done():
			return nil, false
		}
	}
	for _, m := range chunk {
		select {
		case f.msgs <- m:
		case <-ctx.Done():
			return nil, false
		}
	}
	clear(chunk)
	return chunk[:0], true
}

// retriable reports errors that reconnecting may cure: leadership moved,
// the connection broke or timed out.
func retriable(err error) bool {
	var ke kafka.Error
	var ne net.Error
	switch {
	case err == nil:
		return true
	case errors.As(err, &ke): // before net.Error, which kafka.Error satisfies
		return ke.Temporary()
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.ErrNoProgress),
		errors.Is(err, net.ErrClosed), errors.As(err, &ne):
		return true
	}
	return false
}

func backoff(failures int) time.Duration {
	return min(100*time.Millisecond<<(failures-1), 5*time.Second)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
