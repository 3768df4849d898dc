package kafka

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
)

// TestAdmin: topic creation (idempotent), partitions, offsets, offsets for
// a time, commits with metadata outside a generation, range reads.
func TestAdmin(t *testing.T) {
	c := kafkatest.NewCluster(t)
	a, err := NewAdmin(ClientConfig{Brokers: c.Brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()
	spec := TopicSpec{Name: "t", Partitions: 2, Configs: map[string]string{"retention.ms": "604800000"}}
	if err := a.CreateTopics(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if err := a.CreateTopics(ctx, spec); err != nil {
		t.Fatalf("creating an existing topic: %v", err)
	}
	if missing, err := a.MissingTopics(ctx, "t", "nope"); err != nil || len(missing) != 1 || missing[0] != "nope" {
		t.Errorf("missing topics %v, %v; want [nope]", missing, err)
	}
	if Retriable(nil) || Retriable(kafkago.TopicAuthorizationFailed) || !Retriable(kafkago.LeaderNotAvailable) {
		t.Error("Retriable misjudges nil, an authorization failure or a leader election")
	}
	if n, err := a.Partitions(ctx, "t"); n != 2 || err != nil {
		t.Fatalf("partitions %d, %v", n, err)
	}
	base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var msgs []kafkago.Message
	for i := range 10 {
		// One partition by key: all on the same partition.
		msgs = append(msgs, kafkago.Message{Key: []byte("k"), Value: []byte{byte(i)}, Time: base.Add(time.Duration(i) * time.Minute)})
	}
	c.Produce(t, "t", msgs...)
	var p int
	for p = range 2 {
		if _, end, _ := a.Offsets(ctx, "t", p); end == 10 {
			break
		}
	}
	first, end, err := a.Offsets(ctx, "t", p)
	if first != 0 || end != 10 || err != nil {
		t.Fatalf("offsets %d %d %v", first, end, err)
	}
	at, err := a.OffsetsForTimes(ctx, "t", base.Add(4*time.Minute+time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if at[p] != 5 || at[1-p] != 0 {
		t.Errorf("offsets for 00:04:01 = %v, want partition %d at 5 and the empty one at its end 0", at, p)
	}
	if at, _ := a.OffsetsForTimes(ctx, "t", base.Add(time.Hour)); at[p] != 10 {
		t.Errorf("offsets after the last record = %v, want the end 10", at)
	}
	if cm, err := a.Committed(ctx, "nobody", "t", p); err != nil || cm.Committed() {
		t.Errorf("commit of an unknown group: %+v %v", cm, err)
	}
	want := Commit{Offset: 7, Metadata: "tracepipe/v1 lookback=3"}
	if err := a.Commit(ctx, "grp", Member{}, "t", p, want); err != nil {
		t.Fatal(err)
	}
	if cm, err := a.Committed(ctx, "grp", "t", p); cm != want || err != nil {
		t.Errorf("committed %+v %v, want %+v", cm, err, want)
	}
	var got []byte
	if missing, err := a.ReadRange(ctx, "t", p, 3, 6, func(r Record) error { got = append(got, r.Value...); return nil }); missing != 0 || err != nil || string(got) != "\x03\x04\x05" {
		t.Errorf("range [3,6): %v missing %d %v", got, missing, err)
	}
}

// TestHandler: /healthz is 200 when every check is healthy, else 503 naming
// the unhealthy one; /metrics serves the gatherer.
func TestHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "x"}))
	ok := true
	h := Handler(reg, Check{Name: "ingester", Healthy: func() bool { return true }}, Check{Name: "indexer", Healthy: func() bool { return ok }})
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get("/healthz"); code != 200 || !strings.Contains(body, "indexer ok") {
		t.Errorf("healthy: %d %q", code, body)
	}
	ok = false
	if code, body := get("/healthz"); code != 503 || !strings.Contains(body, "indexer not") {
		t.Errorf("unhealthy: %d %q", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "x_total 0") {
		t.Errorf("metrics: %d %q", code, body)
	}
}
