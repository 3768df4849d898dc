package tracegen

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/wire"
)

// Message is one record to publish: Kafka key (the trace ID in Jaeger's hex
// form, or empty for a batch mixing traces) and value.
type Message struct {
	Key, Value []byte
	Spans      int
}

// Encoder encodes a group of spans (all of one trace unless mixed batches
// were asked for) as one message in some wire format.
type Encoder func(spans []*model.Span) ([]byte, error)

// PerSpan reports whether enc carries one span per message (Jaeger's Kafka
// formats) rather than batches (OTLP).
func PerSpan(enc wire.Encoding) bool { return enc == wire.JaegerProto || enc == wire.JaegerJSON }

// Messages encodes spans, in the given order, as messages. Per-span
// encodings give one message per span. Batch encodings group up to batch
// consecutive spans: of one trace (keyed), or of any traces when mixed is
// set (unkeyed, as an OTLP exporter without a trace-ID partitioner sends
// them).
func Messages(spans []*model.Span, enc wire.Encoding, encode Encoder, batch int, mixed bool) ([]Message, error) {
	if batch <= 0 {
		batch = 1
	}
	if PerSpan(enc) {
		batch, mixed = 1, false
	}
	var out []Message
	for i := 0; i < len(spans); {
		j := i + 1
		for j < len(spans) && j-i < batch && (mixed || spans[j].TraceID == spans[i].TraceID) {
			j++
		}
		b, err := encode(spans[i:j])
		if err != nil {
			return nil, fmt.Errorf("encode span %d: %w", i, err)
		}
		m := Message{Value: b, Spans: j - i}
		if !mixed {
			m.Key = []byte(spans[i].TraceID.String())
		}
		out = append(out, m)
		i = j
	}
	return out, nil
}

// WriteFile writes messages framed for a file: JSON encodings one message
// per line, protobuf encodings each preceded by its length as a 4-byte
// big-endian integer. ReadFile reads them back.
func WriteFile(w io.Writer, enc wire.Encoding, msgs []Message) error {
	bw := bufio.NewWriter(w)
	for _, m := range msgs {
		if isJSON(enc) {
			bw.Write(m.Value)
			bw.WriteByte('\n')
			continue
		}
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(m.Value)))
		bw.Write(n[:])
		bw.Write(m.Value)
	}
	return bw.Flush()
}

// ReadFile reads WriteFile's framing back into message values.
func ReadFile(r io.Reader, enc wire.Encoding) ([][]byte, error) {
	br := bufio.NewReader(r)
	var out [][]byte
	if isJSON(enc) {
		sc := bufio.NewScanner(br)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			if len(sc.Bytes()) > 0 {
				out = append(out, append([]byte(nil), sc.Bytes()...))
			}
		}
		return out, sc.Err()
	}
	for {
		var n [4]byte
		if _, err := io.ReadFull(br, n[:]); err == io.EOF {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("read frame length: %w", err)
		}
		b := make([]byte, binary.BigEndian.Uint32(n[:]))
		if _, err := io.ReadFull(br, b); err != nil {
			return nil, fmt.Errorf("read frame of %d bytes: %w", len(b), err)
		}
		out = append(out, b)
	}
}

func isJSON(enc wire.Encoding) bool { return enc == wire.JaegerJSON || enc == wire.OTLPJSON }

// MessageWriter is what Publish needs of a Kafka producer: Send returns
// once every message of msgs is acknowledged. `tracepipe gen` sends through
// pipeline/kafka's Producer; tests through internal/kafkatest.Sender.
type MessageWriter interface {
	Send(ctx context.Context, msgs []Message) error
}

// Publish writes msgs to w in chunks of up to chunk messages, at most rate
// messages per second (0: as fast as the broker takes them). It returns once
// every message is acknowledged, or on the first error.
func Publish(ctx context.Context, w MessageWriter, msgs []Message, rate float64, chunk int) error {
	if chunk <= 0 {
		chunk = 500
	}
	start := time.Now()
	for i := 0; i < len(msgs); i += chunk {
		batch := msgs[i:min(i+chunk, len(msgs))]
		if rate > 0 {
			due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
					t.Stop()
					return ctx.Err()
				case <-t.C:
				}
			}
		}
		if err := w.Send(ctx, batch); err != nil {
			return fmt.Errorf("publish messages %d..%d: %w", i, i+len(batch), err)
		}
	}
	return nil
}
