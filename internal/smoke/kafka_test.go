package smoke

import (
	"context"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
	"github.com/tracepipe/tracepipe/internal/testenv"
)

// TestKafkaConsumerGroupResumesAfterCommit produces through the real broker,
// consumes in a kafka-go consumer group and commits, then restarts the group
// member: it must resume after the committed offsets.
func TestKafkaConsumerGroupResumesAfterCommit(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	topic, group := testenv.Name(t, "smoke"), testenv.Name(t, "group")
	const partitions = 3
	kafkatest.CreateTopic(t, brokers, topic, partitions)
	t.Cleanup(func() { deleteTopic(t, brokers, topic) })

	cfg := kafka.ReaderConfig{
		Brokers:     brokers,
		GroupID:     group,
		Topic:       topic,
		StartOffset: kafka.FirstOffset,
		MaxWait:     100 * time.Millisecond,
		// Kafka's default group.min.session.timeout.ms is 6 s.
		SessionTimeout:    6 * time.Second,
		HeartbeatInterval: time.Second,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	kafkatest.Produce(t, brokers, topic, kafkatest.Messages("a", 30)...)
	got, err := kafkatest.ConsumeGroup(ctx, cfg, 30, true)
	if err != nil {
		t.Fatalf("first member: %v", err)
	}
	want := map[int]int64{}
	for _, m := range got {
		if !strings.HasPrefix(string(m.Value), "a") {
			t.Fatalf("first member read %q", m.Value)
		}
		if m.Offset+1 > want[m.Partition] {
			want[m.Partition] = m.Offset + 1
		}
	}
	if len(want) != partitions {
		t.Fatalf("messages landed on partitions %v, want all %d used", want, partitions)
	}
	if cm := kafkatest.Committed(t, brokers, group, topic, partitions); !maps.Equal(cm, want) {
		t.Fatalf("committed %v, want %v", cm, want)
	}

	kafkatest.Produce(t, brokers, topic, kafkatest.Messages("b", 9)...)
	got, err = kafkatest.ConsumeGroup(ctx, cfg, 9, true)
	if err != nil {
		t.Fatalf("restarted member: %v", err)
	}
	for _, m := range got {
		if !strings.HasPrefix(string(m.Value), "b") {
			t.Fatalf("restarted member read %q at %d/%d: it did not resume after the commit", m.Value, m.Partition, m.Offset)
		}
	}
	var total int64
	for _, o := range kafkatest.Committed(t, brokers, group, topic, partitions) {
		total += o
	}
	if total != 39 {
		t.Fatalf("committed offsets add up to %d, want 39", total)
	}
}

func deleteTopic(t *testing.T, brokers []string, topic string) {
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	cl := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: tr, Timeout: 10 * time.Second}
	resp, err := cl.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	if err == nil {
		err = resp.Errors[topic]
	}
	if err != nil {
		t.Errorf("delete topic %s: %v", topic, err)
	}
}
