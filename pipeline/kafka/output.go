package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// WriterConfig configures the writer a Group's processors produce through
// (asynchronous, acks=all, partitioned by Hash: sarama's and Jaeger's
// collector's key hash).
type WriterConfig struct {
	// BatchSize and BatchBytes bound one produce request to a partition;
	// Linger is how long a batch waits to fill.
	BatchSize  int
	BatchBytes int64
	Linger     time.Duration
	// WriteTimeout bounds one produce request; MaxAttempts is how many
	// times a batch is tried before its messages are acked with an error.
	WriteTimeout time.Duration
	MaxAttempts  int
	// AllowAutoTopicCreation lets the brokers create missing output topics.
	AllowAutoTopicCreation bool
	// Topics are the topics the group produces to. When set, the writer
	// keeps metadata of these only; otherwise kafka-go fetches and decodes
	// every topic's metadata at each refresh (every 6 s), which on a cluster
	// with thousands of topics cost the ingester a tenth of its CPU. A
	// message to a topic not listed fails.
	Topics []string
}

// DefaultWriterConfig returns the defaults: batches of up to 1000 messages
// and 1 MiB, 5 ms linger, 30 s write timeout, 10 attempts.
func DefaultWriterConfig() WriterConfig {
	return WriterConfig{BatchSize: 1000, BatchBytes: 1 << 20, Linger: 5 * time.Millisecond, WriteTimeout: 30 * time.Second, MaxAttempts: 10}
}

// Validate reports every problem of c.
func (c WriterConfig) Validate() error {
	var errs []error
	if c.BatchSize < 1 || c.BatchBytes < 1 {
		errs = append(errs, fmt.Errorf("writer batch size %d and bytes %d must be positive", c.BatchSize, c.BatchBytes))
	}
	if c.Linger < 0 || c.WriteTimeout <= 0 || c.MaxAttempts < 1 {
		errs = append(errs, errors.New("writer linger must not be negative, write timeout and attempts positive"))
	}
	return errors.Join(errs...)
}

// writer is the kafka-go Writer shared by a Group's partitions; its
// Completion hands every acknowledgement back to the partition that
// produced the message.
type writer struct {
	w  *kafkago.Writer
	tr *kafkago.Transport
}

func newWriter(cc ClientConfig, cfg WriterConfig) (*writer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tr, err := cc.Transport()
	if err != nil {
		return nil, err
	}
	tr.MetadataTopics = cfg.Topics
	return &writer{tr: tr, w: &kafkago.Writer{
		Addr:                   kafkago.TCP(cc.Brokers...),
		Balancer:               &kafkago.Hash{},
		RequiredAcks:           kafkago.RequireAll,
		Async:                  true,
		BatchSize:              cfg.BatchSize,
		BatchBytes:             cfg.BatchBytes,
		BatchTimeout:           cfg.Linger,
		WriteTimeout:           cfg.WriteTimeout,
		MaxAttempts:            cfg.MaxAttempts,
		AllowAutoTopicCreation: cfg.AllowAutoTopicCreation,
		Transport:              tr,
		Completion:             completion,
	}}, nil
}

// close flushes pending batches (their acks are delivered, or dropped when
// their partition stopped waiting) and closes connections.
func (w *writer) close() error {
	err := w.w.Close()
	w.tr.CloseIdleConnections()
	return err
}

// pending is attached to every produced message (WriterData).
type pending struct {
	out   *Output
	token any
}

// completion routes the writer's acknowledgements to the partitions that
// produced the messages. It blocks only until the partition takes the ack
// or has stopped waiting for acks.
func completion(msgs []kafkago.Message, err error) {
	for i := range msgs {
		p, ok := msgs[i].WriterData.(*pending)
		if !ok {
			continue
		}
		select {
		case p.out.acks <- Ack{Token: p.token, Err: err}:
		case <-p.out.done:
		}
	}
}

// Output is a partition's way to produce: the acknowledgement of every
// message comes back to the partition's Processor.Acked, on the
// partition's goroutine. Only that goroutine may call its methods.
type Output struct {
	w           *writer
	acks        chan Ack
	done        chan struct{} // closed when the partition stops taking acks
	outstanding int
}

func newOutput(w *writer, buffer int) *Output {
	return &Output{w: w, acks: make(chan Ack, buffer), done: make(chan struct{})}
}

// Produce hands msgs to the writer (asynchronously; it does not wait for
// Kafka). Each message is acknowledged later through Acked, also when
// Produce returns an error (then possibly with that error).
func (o *Output) Produce(ctx context.Context, msgs ...OutMessage) error {
	if len(msgs) == 0 {
		return nil
	}
	kms := make([]kafkago.Message, len(msgs))
	for i := range msgs {
		m := &msgs[i]
		kms[i] = kafkago.Message{Topic: m.Topic, Key: m.Key, Value: m.Value, WriterData: &pending{out: o, token: m.Token}}
		if len(m.Headers) > 0 {
			hs := make([]kafkago.Header, len(m.Headers))
			for j, h := range m.Headers {
				hs[j] = kafkago.Header{Key: h.Key, Value: h.Value}
			}
			kms[i].Headers = hs
		}
	}
	// Counted before: a failed hand-over may still have queued some of
	// them, so the partition does not commit until every ack came or its
	// close timeout ran out.
	o.outstanding += len(msgs)
	if err := o.w.w.WriteMessages(ctx, kms...); err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	return nil
}

// Outstanding is the number of produced messages not yet acknowledged.
func (o *Output) Outstanding() int { return o.outstanding }
