package deadletter

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
	"go.uber.org/goleak"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
	tpkafka "github.com/tracepipe/tracepipe/pipeline/kafka"
	"github.com/tracepipe/tracepipe/storage/elasticsearch"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func read(t *testing.T, brokers []string, topic string, n int) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: 0, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	var out []kafka.Message
	for len(out) < n {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("read %d of %d: %v", len(out), n, err)
		}
		out = append(out, m)
	}
	return out
}

func headers(m kafka.Message) map[string]string {
	h := map[string]string{}
	for _, x := range m.Headers {
		h[x.Key] = string(x.Value)
	}
	return h
}

// TestRejectAndDeadLetter: both kinds of records arrive with their reason
// and coordinates, an oversized value is cut and marked, and each is
// counted by kind.
func TestRejectAndDeadLetter(t *testing.T) {
	c := kafkatest.NewCluster(t)
	c.CreateTopic(t, "dlq", 1)
	reg := prometheus.NewRegistry()
	d, err := New(Config{Brokers: c.Brokers, Topic: "dlq", MaxMessageBytes: 16384}, Options{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	big := bytes.Repeat([]byte("x"), 100_000)
	if err := d.Reject(context.Background(), tpkafka.Record{Topic: "traces", Partition: 2, Offset: 41, Key: []byte("k"), Value: big}, errors.New("too many SQL variables")); err != nil {
		t.Fatal(err)
	}
	if err := d.DeadLetter(context.Background(), []elasticsearch.Failure{{Index: "jaeger-span-2026-03-10", ID: "a-1", Kind: "span", Doc: []byte(`{"x":1}`), Status: 400, Reason: "illegal_argument_exception: nested"}}); err != nil {
		t.Fatal(err)
	}
	got := read(t, c.Brokers, "dlq", 2)
	h := headers(got[0])
	if h["tracepipe.error"] != "too many SQL variables" || h["tracepipe.source.topic"] != "traces" || h["tracepipe.source.partition"] != "2" ||
		h["tracepipe.source.offset"] != "41" || h["tracepipe.truncated"] != "100000" || len(got[0].Value) >= 16384 {
		t.Errorf("rejected trace: %d bytes, headers %v", len(got[0].Value), h)
	}
	h = headers(got[1])
	if h["tracepipe.kind"] != "span" || h["tracepipe.index"] != "jaeger-span-2026-03-10" || h["tracepipe.id"] != "a-1" ||
		h["tracepipe.error"] != "status 400: illegal_argument_exception: nested" || string(got[1].Value) != `{"x":1}` {
		t.Errorf("document: %s, headers %v", got[1].Value, h)
	}
	for kind, want := range map[string]float64{"trace": 1, "span": 1} {
		if v := testutil.ToFloat64(d.count.WithLabelValues(kind)); v != want {
			t.Errorf("dead letters{kind=%s} = %v, want %v", kind, v, want)
		}
	}
}

// TestHookBeforeSet: until the writer is set, the hook fails (the write is
// retried), never drops.
func TestHookBeforeSet(t *testing.T) {
	var h Hook
	if err := h.DeadLetter(context.Background(), []elasticsearch.Failure{{ID: "x"}}); err == nil {
		t.Error("hook without a writer accepted a failure")
	}
}
