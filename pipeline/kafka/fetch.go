package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/internal/wait"
)

// Fetch settings every stage uses.
const (
	// FetchMaxBytes bounds one fetch (a larger single message still
	// arrives: brokers always return at least one). With the chunk
	// buffer it bounds what a partition's fetcher holds.
	FetchMaxBytes = 4 << 20
	// FetchMaxWait is how long the broker may wait for data before
	// answering (the Java consumer's fetch.max.wait.ms default): it
	// answers as soon as there is data, so this is what an idle
	// partition's long poll lasts — at 100 ms an idle stage sent five
	// times the requests. It delays nothing on stopping: stopping a
	// fetcher aborts the fetch in flight.
	FetchMaxWait = 500 * time.Millisecond
	// ChunkSize is the most records handed over at once.
	ChunkSize = 512
	// fetchAttempts is how many consecutive failed attempts to reach the
	// leader are made before the error is reported (with backoff, about 20
	// seconds: time for a leader election).
	fetchAttempts = 10
)

// fetchConfig says which partition to read, and how to reach the cluster.
type fetchConfig struct {
	brokers   []string
	dialer    *kafkago.Dialer
	topic     string
	partition int
	// onSkip, if set, is told of offsets [from, to) that were deleted (by
	// the topic's retention) before they could be read, from the fetch
	// goroutine.
	onSkip func(from, to int64)
}

// fetcher reads one partition in a goroutine of its own over one
// connection to its leader and hands out what each fetch returned in
// chunks of up to ChunkSize records (one channel operation, and at most one
// wake-up of the partition's goroutine, per chunk). It moves to the log's
// start when the offset fell below it (retention), retries leader changes
// and broken connections with backoff, and reports other errors. Not
// taking chunks stops fetching once the channel's buffer is full
// (backpressure).
type fetcher struct {
	batches chan []Record
	errs    chan error
	hwm     atomic.Int64 // the partition's end at the last fetch, -1 unknown

	cfg    fetchConfig
	cancel context.CancelFunc
	done   chan struct{}
	free   chan []Record // recycled chunks
}

// startFetch reads cfg's partition from offset (FirstOffset and LastOffset
// are understood; an offset below the log's start reads from the start)
// into a channel of buffer chunks. The receiver owns a chunk until it
// recycles it.
func startFetch(cfg fetchConfig, offset int64, buffer int) *fetcher {
	if cfg.dialer == nil {
		cfg.dialer = kafkago.DefaultDialer
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &fetcher{batches: make(chan []Record, buffer), errs: make(chan error, 1), cfg: cfg, cancel: cancel,
		done: make(chan struct{}), free: make(chan []Record, 8)}
	f.hwm.Store(-1)
	go func() {
		defer close(f.done)
		if err := f.run(ctx, offset); err != nil && ctx.Err() == nil {
			f.errs <- fmt.Errorf("fetch %s/%d: %w", cfg.topic, cfg.partition, err)
		}
	}()
	return f
}

// stop stops fetching and waits for the fetch goroutine; records fetched
// and not taken are dropped. A nil fetcher is a no-op.
func (f *fetcher) stop() {
	if f == nil {
		return
	}
	f.cancel()
	<-f.done
}

// run fetches until ctx ends or an error is final: connection-level
// failures and leader changes are retried with backoff (up to
// fetchAttempts in a row without a successful fetch).
func (f *fetcher) run(ctx context.Context, offset int64) error {
	failures := 0
	for {
		if failures > 0 && !wait.Sleep(ctx, backoff(failures)) {
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
		if failures++; failures >= fetchAttempts {
			return fmt.Errorf("%d attempts: %w", failures, err)
		}
	}
}

// dial connects to the partition's leader, asking each broker in turn.
func (f *fetcher) dial(ctx context.Context) (*kafkago.Conn, error) {
	return dialLeader(ctx, f.cfg.dialer, f.cfg.brokers, f.cfg.topic, f.cfg.partition)
}

func dialLeader(ctx context.Context, d *kafkago.Dialer, brokers []string, topic string, partition int) (*kafkago.Conn, error) {
	var err error
	for _, b := range brokers {
		var conn *kafkago.Conn
		if conn, err = d.DialLeader(ctx, "tcp", b, topic, partition); err == nil {
			return conn, nil
		}
	}
	if err == nil {
		err = errors.New("no brokers")
	}
	return nil, fmt.Errorf("dial leader: %w", err)
}

// read fetches from conn from offset on, delivering every record, until an
// error; it returns the next offset to read and whether any fetch
// succeeded.
func (f *fetcher) read(ctx context.Context, conn *kafkago.Conn, offset int64) (int64, bool, error) {
	progressed, ok := false, true
	// Stopping aborts a fetch the broker holds for up to FetchMaxWait (and
	// any other read or write on conn): run sees ctx ended and returns.
	abort := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer abort()
	offset, err := f.seek(conn, offset)
	if err != nil {
		return offset, false, err
	}
	for ctx.Err() == nil {
		// The broker answers within FetchMaxWait; the rest is for reading
		// the answer.
		conn.SetReadDeadline(time.Now().Add(FetchMaxWait + 30*time.Second))
		if ctx.Err() != nil {
			break // ended before this deadline replaced the abort's
		}
		batch := conn.ReadBatchWith(kafkago.ReadBatchConfig{
			MinBytes: 1, MaxBytes: FetchMaxBytes, MaxWait: FetchMaxWait, IsolationLevel: kafkago.ReadCommitted,
		})
		if hwm := batch.HighWaterMark(); hwm > 0 {
			f.hwm.Store(hwm)
		}
		// Handed over in chunks as they fill: a receiver that does not
		// take them holds up the read (if for longer than the deadline,
		// the connection is made again from the next offset).
		chunk := f.slice()
		for {
			m, err := batch.ReadMessage()
			if err != nil {
				break
			}
			if chunk = append(chunk, toRecord(&m)); len(chunk) == ChunkSize {
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
		f.recycle(chunk)
		switch {
		case err == nil, errors.Is(err, kafkago.RequestTimedOut):
			progressed = true
		case errors.Is(err, kafkago.OffsetOutOfRange):
			// Below the log's start (retention deleted it): move up. Past
			// the end: wait for data.
			if offset, err = f.seek(conn, offset); err != nil {
				return offset, progressed, err
			}
			if !wait.Sleep(ctx, FetchMaxWait) {
				return offset, progressed, nil
			}
		default:
			return offset, progressed, err
		}
	}
	return offset, progressed, nil
}

func toRecord(m *kafkago.Message) Record {
	r := Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Key: m.Key, Value: m.Value, Time: m.Time, HighWaterMark: m.HighWaterMark}
	if len(m.Headers) > 0 {
		r.Headers = make([]Header, len(m.Headers))
		for i, h := range m.Headers {
			r.Headers[i] = Header{Key: h.Key, Value: h.Value}
		}
	}
	return r
}

// seek positions conn at offset, first turning FirstOffset, LastOffset and
// an offset below the log's start into a real offset, which it returns.
func (f *fetcher) seek(conn *kafkago.Conn, offset int64) (int64, error) {
	offset, err := f.resolve(conn, offset)
	if err != nil {
		return offset, err
	}
	if _, err := conn.Seek(offset, kafkago.SeekAbsolute|kafkago.SeekDontCheck); err != nil {
		return offset, fmt.Errorf("seek %d: %w", offset, err)
	}
	return offset, nil
}

func (f *fetcher) resolve(conn *kafkago.Conn, offset int64) (int64, error) {
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	defer conn.SetDeadline(time.Time{})
	first, last, err := conn.ReadOffsets()
	if err != nil {
		return offset, fmt.Errorf("read offsets: %w", err)
	}
	f.hwm.Store(last)
	switch {
	case offset >= 0 && offset < first:
		if f.cfg.onSkip != nil {
			f.cfg.onSkip(offset, first)
		}
		return first, nil
	case offset == FirstOffset:
		return first, nil
	case offset == LastOffset:
		return last, nil
	}
	return offset, nil
}

// recycle gives back a received chunk, once done with it, for a later one
// to reuse.
func (f *fetcher) recycle(recs []Record) {
	if cap(recs) != ChunkSize {
		return
	}
	// Only the records in use: a chunk is zero beyond its length (made
	// zero, filled by appending, cleared up to its length when recycled),
	// and an idle fetcher recycles an empty chunk after every fetch.
	clear(recs)
	select {
	case f.free <- recs[:0]:
	default:
	}
}

// slice returns an empty chunk: a recycled one if there is one.
func (f *fetcher) slice() []Record {
	select {
	case recs := <-f.free:
		return recs
	default:
		return make([]Record, 0, ChunkSize)
	}
}

// deliver hands a full chunk to the receiver and returns an empty one to
// fill next; false means ctx ended first.
func (f *fetcher) deliver(ctx context.Context, chunk []Record) ([]Record, bool) {
	select {
	case f.batches <- chunk:
		return f.slice(), true
	case <-ctx.Done():
		return nil, false
	}
}

// retriable reports errors that reconnecting may cure: leadership moved,
// the connection broke or timed out.
func retriable(err error) bool {
	var ke kafkago.Error
	var ne net.Error
	switch {
	case err == nil:
		return true
	case errors.As(err, &ke): // before net.Error, which kafkago.Error satisfies
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
