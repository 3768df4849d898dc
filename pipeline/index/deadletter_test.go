package index

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/pipeline/deadletter"
	"github.com/tracepipe/tracepipe/storage"
	"github.com/tracepipe/tracepipe/storage/elasticsearch"
	"github.com/tracepipe/tracepipe/storage/embedded"
	"github.com/tracepipe/tracepipe/storage/storagetest"
	"github.com/tracepipe/tracepipe/wire/assembledpb"
)

// wide is the message of a trace with 4,000 distinct operations and 11,000
// values of the promoted tag "shard" (over SQLite's 32,766 variables per
// statement before inserts were chunked, and over Elasticsearch's 10,000
// nested objects per document in one span).
func wide(id model.TraceID, tagsPerSpan int) kafka.Message {
	at := storagetest.WideTrace(id, model.TimestampOf(time.Now().Add(-time.Hour)), 4000, 11000)
	if tagsPerSpan > 1000 {
		sp := at.Trace.Spans[3]
		for j := 0; j < tagsPerSpan; j++ {
			sp.Tags = append(sp.Tags, model.String(fmt.Sprintf("k%d", j), "v"))
		}
	}
	return kafka.Message{Key: []byte(id.String()), Value: assembledpb.Encode(nil, &at)}
}

// TestWideTraceDoesNotStopIndexing: a trace over every per-statement and
// per-summary limit, published before ordinary traces, is stored and does
// not keep the traces after it from being stored and committed (before:
// "too many SQL variables", retried forever, nothing committed).
func TestWideTraceDoesNotStopIndexing(t *testing.T) {
	c := kafkatest.NewCluster(t)
	c.CreateTopic(t, "traces", 1)
	msgs, ids := assembled(t, 10)
	wideID := model.TraceID{High: 7, Low: 7}
	msgs = append([]kafka.Message{wide(wideID, 0)}, msgs...)
	c.Produce(t, "traces", msgs...)
	store, err := embedded.Open(context.Background(), embedded.Options{Path: filepath.Join(t.TempDir(), "t.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	x, err := New(testConfig(c.Brokers), store, Options{})
	if err != nil {
		t.Fatal(err)
	}
	stop := runStage(t, x)
	waitFor(t, 60*time.Second, "every message committed", func() bool {
		return c.Committed(t, "indexer-test", "traces", 1)[0] == int64(len(msgs))
	})
	stop()
	for _, id := range append(ids, wideID) {
		if _, err := store.GetTrace(context.Background(), id); err != nil {
			t.Errorf("trace %s: %v", id, err)
		}
	}
}

// rejecting stores through a real store but rejects one trace for good.
type rejecting struct {
	storage.TraceWriter
	bad model.TraceID
}

func (r rejecting) WriteTraces(ctx context.Context, traces []model.AssembledTrace) error {
	for _, t := range traces {
		if t.Trace.TraceID == r.bad {
			return fmt.Errorf("write trace %s: %w: test", t.Trace.TraceID, storage.ErrPermanent)
		}
	}
	return r.TraceWriter.WriteTraces(ctx, traces)
}

func deadLetters(t *testing.T, brokers []string, topic string, n int) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: 0, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	var out []kafka.Message
	for len(out) < n {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("read dead letters (%d of %d): %v", len(out), n, err)
		}
		out = append(out, m)
	}
	return out
}

func header(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// TestPermanentFailureGoesToDeadLetter: a trace the store rejects for good
// goes to the dead-letter topic with its reason and coordinates, is counted,
// and the batch around it is stored and committed.
func TestPermanentFailureGoesToDeadLetter(t *testing.T) {
	c := kafkatest.NewCluster(t)
	c.CreateTopic(t, "traces", 1)
	c.CreateTopic(t, "dlq", 1)
	msgs, ids := assembled(t, 12)
	c.Produce(t, "traces", msgs...)
	store, err := embedded.Open(context.Background(), embedded.Options{Path: filepath.Join(t.TempDir(), "t.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	reg := prometheus.NewRegistry()
	dl, err := deadletter.New(deadletter.Config{Brokers: c.Brokers, Topic: "dlq"}, deadletter.Options{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer dl.Close()
	bad := ids[5]
	x, err := New(testConfig(c.Brokers), rejecting{store, bad}, Options{Registry: reg, DeadLetter: dl})
	if err != nil {
		t.Fatal(err)
	}
	stop := runStage(t, x)
	waitFor(t, 30*time.Second, "every message committed", func() bool {
		return c.Committed(t, "indexer-test", "traces", 1)[0] == int64(len(msgs))
	})
	stop()
	got := deadLetters(t, c.Brokers, "dlq", 1)[0]
	if string(got.Key) != bad.String() || header(got, "tracepipe.source.offset") != "5" ||
		header(got, "tracepipe.source.topic") != "traces" || header(got, "tracepipe.error") == "" {
		t.Errorf("dead letter key %q headers %v", got.Key, got.Headers)
	}
	if a, err := assembledpb.Decode(got.Value); err != nil || a.Trace.TraceID != bad {
		t.Errorf("dead letter value is not the trace's message: %v", err)
	}
	for _, id := range ids {
		_, err := store.GetTrace(context.Background(), id)
		if (id == bad) != (err != nil) {
			t.Errorf("trace %s: err = %v", id, err)
		}
	}
	if v := testutil.ToFloat64(x.m.dropped.WithLabelValues("rejected")); v != 1 {
		t.Errorf("dropped{rejected} = %v, want 1", v)
	}
}

// TestElasticsearchRejectionGoesToDeadLetter (real Elasticsearch): a span
// document the engine rejects for good (more nested tags than
// index.mapping.nested_objects.limit) goes through the writer's
// dead-letter hook to the dead-letter topic; the other traces are stored
// and the partition is committed to its end.
func TestElasticsearchRejectionGoesToDeadLetter(t *testing.T) {
	url := testenv.Elasticsearch(t)
	prefix := testenv.Name(t, "tpidx")
	t.Cleanup(func() {
		req, _ := http.NewRequest(http.MethodDelete, url+"/"+prefix+"-*", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	})
	c := kafkatest.NewCluster(t)
	c.CreateTopic(t, "traces", 1)
	c.CreateTopic(t, "dlq", 1)
	msgs, ids := assembled(t, 5)
	badID := model.TraceID{High: 9, Low: 9}
	msgs = append([]kafka.Message{wide(badID, 11000)}, msgs...)
	c.Produce(t, "traces", msgs...)

	reg := prometheus.NewRegistry()
	dl, err := deadletter.New(deadletter.Config{Brokers: c.Brokers, Topic: "dlq"}, deadletter.Options{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer dl.Close()
	store, err := elasticsearch.New(context.Background(), elasticsearch.Config{URLs: []string{url}, IndexPrefix: prefix, Refresh: "wait_for", DeadLetter: dl, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	x, err := New(testConfig(c.Brokers), store, Options{Registry: reg, DeadLetter: dl})
	if err != nil {
		t.Fatal(err)
	}
	stop := runStage(t, x)
	waitFor(t, 90*time.Second, "every message committed", func() bool {
		return c.Committed(t, "indexer-test", "traces", 1)[0] == int64(len(msgs))
	})
	stop()
	got := deadLetters(t, c.Brokers, "dlq", 1)[0]
	if header(got, "tracepipe.kind") != "span" || !contains(header(got, "tracepipe.error"), "nested") {
		t.Errorf("dead letter headers %v", got.Headers)
	}
	for _, id := range ids {
		if _, err := store.GetTrace(context.Background(), id); err != nil {
			t.Errorf("trace %s: %v", id, err)
		}
	}
	// The rest of the rejected trace is stored.
	if st, err := store.GetTrace(context.Background(), badID); err != nil || len(st.Trace.Spans) != 4002 {
		t.Errorf("wide trace: %d spans, err %v; want all but the rejected one", len(st.Trace.Spans), err)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
