package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
)

func TestMain(m *testing.M) {
	// kfake's goroutines of a held request whose connection timed out may
	// outlive the cluster (its run loop waits for the slept control); they
	// are the fake's, not the producer's.
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*Cluster).runControl.func1"),
		goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*Cluster).run"))
}

func newTestProducer(t *testing.T, cl *kafkatest.Cluster, mut func(*ProducerConfig)) (*Producer, *prometheus.Registry) {
	t.Helper()
	cfg := DefaultProducerConfig()
	cfg.Brokers = cl.Brokers
	cfg.Topic = "t"
	cfg.RetryBackoff = 20 * time.Millisecond
	if mut != nil {
		mut(&cfg)
	}
	reg := prometheus.NewRegistry()
	p, err := NewProducer(cfg, Options{Name: "test", Registry: reg, Transport: kafkatest.NewTransport(t), Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return p, reg
}

func msgs(prefix string, n, size int) []Message {
	out := make([]Message, n)
	for i := range out {
		out[i] = Message{Key: fmt.Appendf(nil, "%s-%d", prefix, i), Value: make([]byte, size)}
	}
	return out
}

// count reads every message of topic t (partitions 0..n-1).
func count(t *testing.T, brokers []string, partitions int) int {
	t.Helper()
	cl := &kafkago.Client{Addr: kafkago.TCP(brokers...), Transport: kafkatest.NewTransport(t)}
	total := 0
	for p := range partitions {
		resp, err := cl.ListOffsets(context.Background(), &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{"t": {kafkago.LastOffsetOf(p)}}})
		if err != nil {
			t.Fatal(err)
		}
		for _, po := range resp.Topics["t"] {
			total += int(po.LastOffset)
		}
	}
	return total
}

// TestProducerAcks: every group's callback is told nil once all its
// messages are acknowledged; the buffer empties.
func TestProducerAcks(t *testing.T) {
	cl := kafkatest.NewCluster(t)
	cl.CreateTopic(t, "t", 3)
	p, reg := newTestProducer(t, cl, nil)
	var wg sync.WaitGroup
	var failed atomic.Int32
	for g := range 50 {
		wg.Add(1)
		if err := p.TryProduce(msgs(fmt.Sprint(g), 20, 100), func(err error) {
			if err != nil {
				failed.Add(1)
			}
			wg.Done()
		}); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if failed.Load() != 0 || p.Buffered() != 0 {
		t.Errorf("%d groups failed, %d bytes still buffered", failed.Load(), p.Buffered())
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := count(t, cl.Brokers, 3); n != 1000 {
		t.Errorf("%d messages in Kafka, want 1000", n)
	}
	if n := testutil.ToFloat64(p.m.acked); n != 1000 {
		t.Errorf("acked counter %g", n)
	}
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
	if err := p.TryProduce(msgs("x", 1, 1), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
}

// TestProducerFull: a group that does not fit is refused whole, nothing is
// taken; a message over the limit is refused.
func TestProducerFull(t *testing.T) {
	cl := kafkatest.NewCluster(t)
	cl.CreateTopic(t, "t", 1)
	p, _ := newTestProducer(t, cl, func(c *ProducerConfig) { c.MaxBufferedBytes = 12_000; c.MaxMessageBytes = 2000 })
	if err := p.TryProduce(msgs("warm", 1, 10), nil); err != nil {
		t.Fatal(err)
	}
	for p.Buffered() > 0 {
		time.Sleep(time.Millisecond)
	}
	release := make(chan struct{})
	cl.Fake.ControlKey(kmsg.Produce.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
		cl.Fake.KeepControl()
		cl.Fake.SleepControl(func() { <-release })
		return nil, nil, false
	})
	if err := p.TryProduce(msgs("a", 8, 1000), nil); err != nil {
		t.Fatal(err)
	}
	before := p.Buffered()
	if err := p.TryProduce(msgs("b", 2, 1000), nil); !errors.Is(err, ErrFull) {
		t.Errorf("over the limit: %v, want ErrFull", err)
	}
	if p.Buffered() != before {
		t.Errorf("a refused group took %d bytes", p.Buffered()-before)
	}
	if err := p.TryProduce(msgs("c", 1, 3000), nil); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized message: %v, want ErrTooLarge", err)
	}
	close(release)
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := count(t, cl.Brokers, 1); n != 9 {
		t.Errorf("%d messages in Kafka, want 9", n)
	}
}

// TestProducerRetries: produce errors beyond kafka-go's own attempts are
// retried until acknowledged; nothing is lost or written twice.
func TestProducerRetries(t *testing.T) {
	cl := kafkatest.NewCluster(t)
	cl.CreateTopic(t, "t", 1)
	p, _ := newTestProducer(t, cl, nil)
	if err := p.TryProduce(msgs("warm", 1, 10), nil); err != nil {
		t.Fatal(err)
	}
	for p.Buffered() > 0 {
		time.Sleep(time.Millisecond)
	}
	var fails atomic.Int32
	cl.Fake.ControlKey(kmsg.Produce.Int16(), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		if fails.Add(1) > 5 {
			return nil, nil, false // let the cluster handle it, and drop this control
		}
		cl.Fake.KeepControl()
		req := kr.(*kmsg.ProduceRequest)
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.NotEnoughReplicas.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	done := make(chan error, 1)
	if err := p.TryProduce(msgs("r", 10, 10), func(err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("group failed: %v", err)
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := count(t, cl.Brokers, 1); n != 11 {
		t.Errorf("%d messages in Kafka, want 11", n)
	}
	if testutil.ToFloat64(p.m.retries) == 0 {
		t.Error("no retry counted")
	}
}

// TestProducerCloseGivesUp: what Kafka has not acknowledged when Close's
// context ends is counted lost and its callbacks are told.
func TestProducerCloseGivesUp(t *testing.T) {
	cl := kafkatest.NewCluster(t)
	cl.CreateTopic(t, "t", 1)
	p, _ := newTestProducer(t, cl, func(c *ProducerConfig) { c.WriteTimeout = 200 * time.Millisecond })
	if err := p.TryProduce(msgs("warm", 1, 10), nil); err != nil {
		t.Fatal(err)
	}
	for p.Buffered() > 0 {
		time.Sleep(time.Millisecond)
	}
	release := make(chan struct{})
	defer close(release)
	cl.Fake.ControlKey(kmsg.Produce.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
		cl.Fake.KeepControl()
		cl.Fake.SleepControl(func() { <-release })
		return nil, nil, false
	})
	done := make(chan error, 1)
	if err := p.TryProduce(msgs("l", 3, 10), func(err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := p.Close(ctx); err == nil {
		t.Error("Close reported no loss")
	}
	if err := <-done; err == nil {
		t.Error("callback told success")
	}
	if n := testutil.ToFloat64(p.m.lost); n != 3 {
		t.Errorf("lost counter %g, want 3", n)
	}
	if p.Buffered() != 0 {
		t.Errorf("%d bytes buffered after Close", p.Buffered())
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) { w.t.Log(string(b)); return len(b), nil }

// TestProducerSendWaitsOutUnknownTopic: while the brokers' metadata does
// not know the topic yet (a broker restarting, say), Send retries with
// backoff instead of failing, and delivers once it does.
func TestProducerSendWaitsOutUnknownTopic(t *testing.T) {
	cl := kafkatest.NewCluster(t)
	cl.CreateTopic(t, "t", 1)
	var unknown atomic.Int32
	cl.Fake.ControlKey(kmsg.Metadata.Int16(), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		if unknown.Add(1) > 3 {
			return nil, nil, false // from now on the cluster answers, and this control is dropped
		}
		cl.Fake.KeepControl()
		req := kr.(*kmsg.MetadataRequest)
		resp := req.ResponseKind().(*kmsg.MetadataResponse)
		for _, b := range cl.Fake.ListenAddrs() {
			host, port, _ := strings.Cut(b, ":")
			n, _ := strconv.Atoi(port)
			mb := kmsg.NewMetadataResponseBroker()
			mb.Host, mb.Port = host, int32(n)
			resp.Brokers = append(resp.Brokers, mb)
		}
		for _, rt := range req.Topics {
			mt := kmsg.NewMetadataResponseTopic()
			mt.Topic = rt.Topic
			mt.ErrorCode = kerr.UnknownTopicOrPartition.Code
			resp.Topics = append(resp.Topics, mt)
		}
		return resp, nil, true
	})
	p, _ := newTestProducer(t, cl, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Send(ctx, msgs("s", 5, 10)); err != nil {
		t.Fatalf("send: %v", err)
	}
	if unknown.Load() <= 3 {
		t.Fatalf("the topic was never unknown (%d metadata requests)", unknown.Load())
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := count(t, cl.Brokers, 1); n != 5 {
		t.Errorf("%d messages in Kafka, want 5", n)
	}
}
