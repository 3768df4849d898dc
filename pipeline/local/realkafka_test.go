package local

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/pipeline/collector"
	"github.com/tracepipe/tracepipe/wire/assembledpb"
)

// TestRunOnRealKafkaWithNewTopics is `tracepipe run --kafka-brokers` on the
// real broker with spans, traces and dead-letter topics that do not exist
// yet, and a consumer group on the traces topic started with the pipeline
// (as the indexer and the aggregator are). Run must create the topics with
// Partitions partitions before any consumer joins: kafka-go's consumer
// groups assign nothing for a missing topic and do not look again, so
// before, the collector's first produce auto-created the spans topic (one
// partition) and the ingester never read it — no trace was stored until a
// restart.
func TestRunOnRealKafkaWithNewTopics(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	cfg := testConfig(t, t.TempDir())
	cfg.Brokers = brokers
	cfg.Ingest.SpansTopic = testenv.Name(t, "spans")
	cfg.Ingest.TracesTopic = testenv.Name(t, "traces")
	cfg.Ingest.DLQTopic = testenv.Name(t, "dlq")
	cfg.Ingest.Group = testenv.Name(t, "ingester")
	topics := []string{cfg.Ingest.SpansTopic, cfg.Ingest.TracesTopic, cfg.Ingest.DLQTopic}
	t.Cleanup(func() { deleteTopics(t, brokers, topics) })

	traces := make(chan *model.AssembledTrace, 16)
	addrs := make(chan collector.Addrs, 1)
	deps := Deps{
		Collector: func(a collector.Addrs) { addrs <- a },
		Stages: func(b []string) ([]Stage, error) {
			return []Stage{groupReader{brokers: b, topic: cfg.Ingest.TracesTopic, group: testenv.Name(t, "indexer"), out: traces}}, nil
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, deps, func([]string) { close(ready) }) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("Run: %v", err)
	case <-time.After(60 * time.Second):
		stop()
		t.Fatal("Run did not become ready")
	}
	defer stop()

	// Every topic exists once Run is ready, with the configured partitions.
	cl := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: &kafka.Transport{}, Timeout: 10 * time.Second}
	defer cl.Transport.(*kafka.Transport).CloseIdleConnections()
	md, err := cl.Metadata(context.Background(), &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range md.Topics {
		if tp.Error != nil || len(tp.Partitions) != cfg.Partitions {
			t.Errorf("topic %s at ready: %d partitions, error %v; want %d partitions", tp.Name, len(tp.Partitions), tp.Error, cfg.Partitions)
		}
	}

	// A three-span trace through the collector's OTLP/HTTP receiver.
	a := <-addrs
	const traceHex = "5b8efff798038103d269b633813fc60c"
	now := time.Now().UnixNano()
	body := fmt.Sprintf(`{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"new-topics"}}]},
"scopeSpans":[{"spans":[
{"traceId":%[1]q,"spanId":"eee19b7ec3c1b174","name":"root","kind":2,"startTimeUnixNano":"%[2]d","endTimeUnixNano":"%[3]d"},
{"traceId":%[1]q,"spanId":"eee19b7ec3c1b175","parentSpanId":"eee19b7ec3c1b174","name":"child-1","startTimeUnixNano":"%[2]d","endTimeUnixNano":"%[4]d"},
{"traceId":%[1]q,"spanId":"eee19b7ec3c1b176","parentSpanId":"eee19b7ec3c1b174","name":"child-2","startTimeUnixNano":"%[4]d","endTimeUnixNano":"%[3]d"}]}]}]}`,
		traceHex, now-int64(30*time.Millisecond), now, now-int64(10*time.Millisecond))
	// Retried on 503, as OTel exporters do: the collector refuses while
	// the topic has no leader.
	for tries := 0; ; tries++ {
		resp, err := http.Post("http://"+a.OTLPHTTP+"/v1/traces", "application/json", bytes.NewBufferString(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			break
		}
		if resp.StatusCode != http.StatusServiceUnavailable || tries == 60 {
			t.Fatalf("OTLP/HTTP export: %s after %d tries", resp.Status, tries+1)
		}
		time.Sleep(500 * time.Millisecond)
	}

	deadline := time.After(60 * time.Second)
	for {
		select {
		case tr := <-traces:
			if tr.Trace.TraceID.String() == traceHex && len(tr.Trace.Spans) == 3 {
				return
			}
		case <-deadline:
			t.Fatalf("trace %s not assembled and read from %s within 60s", traceHex, cfg.Ingest.TracesTopic)
		}
	}
}

// groupReader is a Stage reading the traces topic in a consumer group of
// its own, as the indexer does.
type groupReader struct {
	brokers      []string
	topic, group string
	out          chan<- *model.AssembledTrace
}

func (g groupReader) Run(ctx context.Context) error {
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: g.brokers, GroupID: g.group, Topic: g.topic, StartOffset: kafka.FirstOffset,
		MaxWait: 100 * time.Millisecond, SessionTimeout: 6 * time.Second, HeartbeatInterval: time.Second})
	defer r.Close()
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			return nil // ctx done
		}
		a, err := assembledpb.Decode(m.Value)
		if err != nil {
			return fmt.Errorf("decode trace at %d/%d: %w", m.Partition, m.Offset, err)
		}
		select {
		case g.out <- a:
		case <-ctx.Done():
			return nil
		}
	}
}

func deleteTopics(t *testing.T, brokers []string, topics []string) {
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	cl := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: tr, Timeout: 10 * time.Second}
	resp, err := cl.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: topics})
	if err != nil {
		t.Errorf("delete topics %v: %v", topics, err)
		return
	}
	for topic, err := range resp.Errors {
		if err != nil && err != kafka.UnknownTopicOrPartition {
			t.Errorf("delete topic %s: %v", topic, err)
		}
	}
}
