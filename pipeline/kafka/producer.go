package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/internal/wait"
)

// ErrFull is returned by TryProduce when the messages do not fit in the
// buffer; nothing was taken. Try again later.
var ErrFull = errors.New("producer buffer is full")

// ErrClosed is returned by TryProduce after Close has begun.
var ErrClosed = errors.New("producer is closed")

// ErrTooLarge is returned by TryProduce for a message larger than
// MaxMessageBytes; nothing was taken.
var ErrTooLarge = errors.New("message too large")

// metadataTimeout bounds TryProduce's wait for the topic's partitions.
const metadataTimeout = 2 * time.Second

// ProducerConfig configures a Producer.
type ProducerConfig struct {
	Brokers []string
	Topic   string
	// BatchSize and BatchBytes bound one produce request to a partition;
	// Linger is how long a batch waits to fill.
	BatchSize  int
	BatchBytes int64
	Linger     time.Duration
	// MaxBufferedBytes bounds the bytes (keys + values + MessageOverhead
	// each) taken and not yet acknowledged: the queue's limit.
	MaxBufferedBytes int64
	// MaxMessageBytes is the largest message taken (key + value).
	MaxMessageBytes int
	// RetryBackoff is the pause before producing failed messages again.
	RetryBackoff time.Duration
	// WriteTimeout bounds one produce request.
	WriteTimeout time.Duration
}

// DefaultProducerConfig returns the defaults (topic and brokers unset).
func DefaultProducerConfig() ProducerConfig {
	return ProducerConfig{
		BatchSize:        500,
		BatchBytes:       1 << 20,
		Linger:           5 * time.Millisecond,
		MaxBufferedBytes: 64 << 20,
		MaxMessageBytes:  1 << 20,
		RetryBackoff:     500 * time.Millisecond,
		WriteTimeout:     10 * time.Second,
	}
}

// Validate reports every problem of c.
func (c ProducerConfig) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("no Kafka brokers"))
	}
	if c.Topic == "" {
		errs = append(errs, errors.New("no topic"))
	}
	if c.BatchSize < 1 {
		errs = append(errs, fmt.Errorf("batch size %d must be at least 1", c.BatchSize))
	}
	if c.MaxMessageBytes < 1 || int64(c.MaxMessageBytes) > c.BatchBytes {
		errs = append(errs, fmt.Errorf("max message bytes %d must be between 1 and the batch bytes %d", c.MaxMessageBytes, c.BatchBytes))
	}
	if c.MaxBufferedBytes < int64(c.MaxMessageBytes) {
		errs = append(errs, fmt.Errorf("buffer limit %d bytes must hold at least one message of %d bytes", c.MaxBufferedBytes, c.MaxMessageBytes))
	}
	if c.RetryBackoff <= 0 || c.WriteTimeout <= 0 || c.Linger < 0 {
		errs = append(errs, errors.New("retry backoff and write timeout must be positive, linger not negative"))
	}
	return errors.Join(errs...)
}

// Options are a Producer's collaborators.
type Options struct {
	// Name labels the metrics (producer=Name): "collector".
	Name     string
	Registry prometheus.Registerer // nil: not registered
	Logger   *slog.Logger
	// Transport, when set, replaces the producer's own transport (tests
	// inject one per fake cluster).
	Transport RoundTripper
	// Client, when set, gives the producer's own transport its TLS and
	// SASL (ProducerConfig.Brokers still names the brokers).
	Client *ClientConfig
}

// RoundTripper is a transport of Kafka requests (kafka-go's), for tests
// that inject their own.
type RoundTripper = kafkago.RoundTripper

// Message is one record: key, value and optional headers. The producer
// keeps the slices until the message is acknowledged or lost; the caller
// must not change them.
type Message struct {
	Key, Value []byte
	Headers    []Header
}

// Producer: see the package documentation. Safe for concurrent use.
type Producer struct {
	cfg     ProducerConfig
	log     *slog.Logger
	w       *kafkago.Writer
	m       *producerMetrics
	limit   int64
	used    atomic.Int64
	lost    atomic.Int64 // messages given up on (only ever after Close began)
	mu      sync.Mutex   // guards closed and the retry list
	closed  bool
	giveUp  bool // Close's grace is over: failures are final
	retry   []kafkago.Message
	wake    chan struct{}
	drained chan struct{} // signalled when used drops to zero while closing
	stop    chan struct{}
	wg      sync.WaitGroup

	ownTransport *kafkago.Transport // closed by Close (nil when injected)
}

// group tracks the messages of one TryProduce call.
type group struct {
	left  atomic.Int32
	err   atomic.Pointer[error]
	start time.Time
	done  func(error)
}

// NewProducer checks cfg and builds a producer; it connects lazily.
func NewProducer(cfg ProducerConfig, opts Options) (*Producer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Producer{
		cfg:     cfg,
		log:     opts.Logger,
		m:       newProducerMetrics(opts.Registry, opts.Name),
		limit:   cfg.MaxBufferedBytes,
		wake:    make(chan struct{}, 1),
		drained: make(chan struct{}, 1),
		stop:    make(chan struct{}),
	}
	p.m.limit.Set(float64(cfg.MaxBufferedBytes))
	transport := opts.Transport
	if transport == nil {
		own := &kafkago.Transport{DialTimeout: 10 * time.Second}
		if opts.Client != nil {
			var err error
			if own, err = opts.Client.Transport(); err != nil {
				return nil, fmt.Errorf("kafka producer: %w", err)
			}
		}
		// Metadata of our topic only: on a cluster with many topics,
		// kafka-go would otherwise fetch and copy all of them.
		own.MetadataTopics = []string{cfg.Topic}
		p.ownTransport, transport = own, own
	}
	p.w = &kafkago.Writer{
		Addr:                   kafkago.TCP(cfg.Brokers...),
		Topic:                  cfg.Topic,
		Balancer:               &kafkago.Hash{},
		RequiredAcks:           kafkago.RequireAll,
		Async:                  true,
		BatchSize:              cfg.BatchSize,
		BatchBytes:             cfg.BatchBytes,
		BatchTimeout:           cfg.Linger,
		WriteTimeout:           cfg.WriteTimeout,
		MaxAttempts:            3,
		AllowAutoTopicCreation: true,
		Transport:              transport,
		Completion:             p.completion,
	}
	p.wg.Add(1)
	go p.retryLoop()
	return p, nil
}

// Limit is MaxBufferedBytes.
func (p *Producer) Limit() int64 { return p.limit }

// Buffered is the number of bytes (with MessageOverhead) taken and not yet
// acknowledged or lost.
func (p *Producer) Buffered() int64 { return p.used.Load() }

// MessageOverhead is what the buffer charges per message beyond its key
// and value: kafka-go's bookkeeping (its Message struct, about 150 bytes,
// and the slots of batches it allocates BatchSize at a time), so that the
// buffer's limit bounds the memory it really holds.
const MessageOverhead = 320

// msgSize is what the buffer charges for a message of key and value.
func msgSize(key, value []byte) int64 { return int64(len(key) + len(value) + MessageOverhead) }

// TryProduce takes msgs whole or not at all. It returns ErrFull when their
// bytes do not fit in the buffer now, ErrTooLarge for an oversized message
// or a group larger than the whole buffer,
// ErrClosed after Close began, or an error of the first produce attempt
// (topic metadata unavailable); nothing is taken then. Otherwise done (may
// be nil) is called exactly once, from a producer goroutine, after every
// message has been acknowledged by all in-sync replicas (nil) or given up
// on (the first error). done must not block for long.
func (p *Producer) TryProduce(msgs []Message, done func(error)) error {
	if len(msgs) == 0 {
		if done != nil {
			done(nil)
		}
		return nil
	}
	var size int64
	for i := range msgs {
		n := msgSize(msgs[i].Key, msgs[i].Value)
		for _, h := range msgs[i].Headers {
			n += int64(len(h.Key) + len(h.Value))
		}
		if n-MessageOverhead > int64(p.cfg.MaxMessageBytes) {
			return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, n-MessageOverhead, p.cfg.MaxMessageBytes)
		}
		size += n
	}
	if size > p.limit {
		return fmt.Errorf("%w: a group of %d bytes never fits the %d-byte buffer", ErrTooLarge, size, p.limit)
	}
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return ErrClosed
	}
	for {
		used := p.used.Load()
		if used+size > p.limit {
			p.m.refused.Inc()
			return ErrFull
		}
		if p.used.CompareAndSwap(used, used+size) {
			break
		}
	}
	p.m.buffered.Add(float64(size))
	g := &group{start: time.Now(), done: done}
	g.left.Store(int32(len(msgs)))
	kms := make([]kafkago.Message, len(msgs))
	for i := range msgs {
		kms[i] = kafkago.Message{Key: msgs[i].Key, Value: msgs[i].Value, WriterData: g}
		if hs := msgs[i].Headers; len(hs) > 0 {
			kms[i].Headers = make([]kafkago.Header, len(hs))
			for j, h := range hs {
				kms[i].Headers[j] = kafkago.Header{Key: h.Key, Value: h.Value}
			}
		}
	}
	// In asynchronous mode WriteMessages only looks up the topic's
	// partitions (cached, refreshed now and then); bound that wait.
	ctx, cancel := context.WithTimeout(context.Background(), metadataTimeout)
	err := p.w.WriteMessages(ctx, kms...)
	cancel()
	if err != nil {
		p.release(size)
		return fmt.Errorf("produce to %s: %w", p.cfg.Topic, err)
	}
	return nil
}

// Send produces msgs (TryProduce, waiting while the buffer is full or the
// topic's partitions cannot be looked up for a reason that passes, such as
// a broker restarting that does not know the topic yet) and returns once
// every one is acknowledged (nil), one was given up on, or ctx is done.
// After ctx is done the messages taken may still be delivered.
func (p *Producer) Send(ctx context.Context, msgs []Message) error {
	done := make(chan error, 1)
	for failures := 0; ; {
		err := p.TryProduce(msgs, func(err error) { done <- err })
		if err == nil {
			break
		}
		pause := 20 * time.Millisecond
		switch {
		case errors.Is(err, ErrFull):
		case errors.Is(err, ErrClosed) || !retriable(err):
			return err
		default:
			failures++
			pause = backoff(failures)
			p.log.Warn("produce: topic metadata unavailable, retrying", "topic", p.cfg.Topic, "attempt", failures, "err", err)
		}
		if !wait.Sleep(ctx, pause) {
			return fmt.Errorf("send to %s: %w", p.cfg.Topic, ctx.Err())
		}
	}
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("send to %s: %w", p.cfg.Topic, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("send to %s: %w", p.cfg.Topic, ctx.Err())
	}
}

func (p *Producer) release(n int64) {
	p.m.buffered.Sub(float64(n))
	if p.used.Add(-n) == 0 {
		select {
		case p.drained <- struct{}{}:
		default:
		}
	}
}

// completion is kafka-go's callback for one produced batch.
func (p *Producer) completion(msgs []kafkago.Message, err error) {
	if err == nil {
		p.m.acked.Add(float64(len(msgs)))
		for i := range msgs {
			p.finish(&msgs[i], nil)
		}
		return
	}
	p.mu.Lock()
	giveUp := p.giveUp
	if !giveUp {
		for i := range msgs {
			// Fresh messages: the Writer refuses ones with Topic set, as
			// completed messages have.
			m := &msgs[i]
			p.retry = append(p.retry, kafkago.Message{Key: m.Key, Value: m.Value, Headers: m.Headers, WriterData: m.WriterData})
		}
	}
	p.mu.Unlock()
	if giveUp {
		p.lose(msgs, err)
		return
	}
	p.log.Warn("produce failed, will retry", "topic", p.cfg.Topic, "messages", len(msgs), "err", err)
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *Producer) lose(msgs []kafkago.Message, err error) {
	p.lost.Add(int64(len(msgs)))
	p.m.lost.Add(float64(len(msgs)))
	p.log.Error("messages lost", "topic", p.cfg.Topic, "messages", len(msgs), "err", err)
	for i := range msgs {
		p.finish(&msgs[i], err)
	}
}

func (p *Producer) finish(m *kafkago.Message, err error) {
	n := msgSize(m.Key, m.Value)
	for _, h := range m.Headers {
		n += int64(len(h.Key) + len(h.Value))
	}
	p.release(n)
	g, ok := m.WriterData.(*group)
	if !ok {
		return
	}
	if err != nil {
		e := err // only a failure allocates
		g.err.CompareAndSwap(nil, &e)
	}
	if g.left.Add(-1) == 0 {
		p.m.ackSeconds.Observe(time.Since(g.start).Seconds())
		if g.done != nil {
			var e error
			if ep := g.err.Load(); ep != nil {
				e = *ep
			}
			g.done(e)
		}
	}
}

// retryLoop produces failed messages again after the backoff.
func (p *Producer) retryLoop() {
	defer p.wg.Done()
	t := time.NewTimer(0)
	<-t.C
	for {
		select {
		case <-p.stop:
			return
		case <-p.wake:
		}
		t.Reset(p.cfg.RetryBackoff)
		select {
		case <-p.stop:
			t.Stop()
			return
		case <-t.C:
		}
		p.mu.Lock()
		msgs := p.retry
		p.retry = nil
		giveUp := p.giveUp
		p.mu.Unlock()
		if len(msgs) == 0 {
			continue
		}
		if giveUp {
			p.lose(msgs, errors.New("producer closed before the messages were acknowledged"))
			continue
		}
		p.m.retries.Add(float64(len(msgs)))
		if err := p.w.WriteMessages(context.Background(), msgs...); err != nil {
			p.mu.Lock()
			p.retry = append(p.retry, msgs...)
			p.mu.Unlock()
			p.log.Warn("produce retry failed", "topic", p.cfg.Topic, "messages", len(msgs), "err", err)
			select {
			case p.wake <- struct{}{}:
			default:
			}
		}
	}
}

// Close stops taking messages and waits until every taken message is
// acknowledged or ctx is done; then what is left is given up on (counted
// as lost, callbacks told), the writer is closed and every goroutine has
// returned. It returns an error when messages were lost.
func (p *Producer) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	for p.used.Load() > 0 {
		select {
		case <-p.drained:
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
		if ctx.Err() != nil {
			break
		}
	}
	p.mu.Lock()
	p.giveUp = true
	left := p.retry
	p.retry = nil
	p.mu.Unlock()
	if len(left) > 0 {
		p.lose(left, errors.New("producer closed before the messages were acknowledged"))
	}
	close(p.stop)
	p.wg.Wait()
	werr := p.w.Close() // completes pending batches; failures are final now
	if p.ownTransport != nil {
		p.ownTransport.CloseIdleConnections()
	}
	if lost := p.lost.Load(); lost > 0 {
		return errors.Join(fmt.Errorf("kafka producer: %d messages lost at close", lost), werr)
	}
	return werr
}
