package kafkatest_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/goleak"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// groupConfig is a consumer-group reader config with the short timeouts the
// kfake cluster of kafkatest.NewCluster allows.
func groupConfig(brokers []string, group, topic string) kafka.ReaderConfig {
	return kafka.ReaderConfig{
		Brokers:           brokers,
		GroupID:           group,
		Topic:             topic,
		StartOffset:       kafka.FirstOffset,
		MaxWait:           50 * time.Millisecond,
		HeartbeatInterval: 100 * time.Millisecond,
		SessionTimeout:    time.Second,
		RebalanceTimeout:  2 * time.Second,
		JoinGroupBackoff:  100 * time.Millisecond,
	}
}

func values(ms []kafka.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = string(m.Value)
	}
	return out
}

// TestGroupCommitAndRejoin proves a kafka-go consumer group works on kfake:
// a member consumes and commits, and a member that joins the group later
// resumes after the committed offsets instead of re-reading.
func TestGroupCommitAndRejoin(t *testing.T) {
	c := kafkatest.NewCluster(t)
	const topic, group = "spans", "g1"
	c.CreateTopic(t, topic, 2)
	c.Produce(t, topic, kafkatest.Messages("a", 10)...)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := kafkatest.ConsumeGroup(ctx, groupConfig(c.Brokers, group, topic), 10, true)
	if err != nil {
		t.Fatalf("first member: %v", err)
	}
	perPartition := map[int]int64{}
	for _, m := range got {
		if !strings.HasPrefix(string(m.Value), "a") {
			t.Fatalf("first member read %q, want only a*", m.Value)
		}
		perPartition[m.Partition]++
	}
	if len(perPartition) != 2 {
		t.Fatalf("messages on partitions %v, want both partitions used", perPartition)
	}
	if cm := c.Committed(t, group, topic, 2); fmt.Sprint(cm) != fmt.Sprint(perPartition) {
		t.Fatalf("committed %v, want %v (one past the last message of each partition)", cm, perPartition)
	}

	c.Produce(t, topic, kafkatest.Messages("b", 5)...)
	got, err = kafkatest.ConsumeGroup(ctx, groupConfig(c.Brokers, group, topic), 5, true)
	if err != nil {
		t.Fatalf("second member: %v", err)
	}
	for _, v := range values(got) {
		if !strings.HasPrefix(v, "b") {
			t.Fatalf("second member read %q: it did not resume after the committed offsets (got %v)", v, values(got))
		}
	}
	var total int64
	for _, o := range c.Committed(t, group, topic, 2) {
		total += o
	}
	if total != 15 {
		t.Fatalf("committed offsets add up to %d, want 15", total)
	}
}

// TestGroupRebalance proves a second member joining a live group takes over
// part of the partitions, and that between them the members consume and
// commit every message.
func TestGroupRebalance(t *testing.T) {
	c := kafkatest.NewCluster(t)
	const topic, group = "spans", "g2"
	const partitions = 2
	c.CreateTopic(t, topic, partitions)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var (
		mu   sync.Mutex
		seen = map[string]int{}            // value -> member that consumed it last
		per  = [2]int{}                    // messages per member
		maxo = map[int]int64{0: -1, 1: -1} // highest offset consumed per partition
	)
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	member := func(id int) {
		defer wg.Done()
		r := kafka.NewReader(groupConfig(c.Brokers, group, topic))
		defer r.Close()
		for {
			m, err := r.FetchMessage(runCtx)
			if err != nil {
				return
			}
			if err := r.CommitMessages(runCtx, m); err != nil {
				return
			}
			mu.Lock()
			seen[string(m.Value)] = id
			per[id]++
			if m.Offset > maxo[m.Partition] {
				maxo[m.Partition] = m.Offset
			}
			mu.Unlock()
		}
	}
	wg.Add(1)
	go member(0)

	// Produce in rounds until both members have consumed something: the
	// second one only can once the group has rebalanced.
	produced := 0
	started1 := false
	for round := 0; ; round++ {
		c.Produce(t, topic, kafkatest.Messages(fmt.Sprintf("r%d-", round), 8)...)
		produced += 8
		mu.Lock()
		first, both := per[0] > 0, per[0] > 0 && per[1] > 0
		mu.Unlock()
		if first && !started1 {
			started1 = true
			wg.Add(1)
			go member(1)
		}
		if both {
			break
		}
		select {
		case <-ctx.Done():
			stop()
			wg.Wait()
			t.Fatalf("the second member got no partition before the deadline (per member: %v)", per)
		case <-time.After(200 * time.Millisecond):
		}
	}
	// Wait until every message is consumed (and so committed).
	for {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n == produced {
			break
		}
		select {
		case <-ctx.Done():
			stop()
			wg.Wait()
			t.Fatalf("consumed %d of %d distinct messages before the deadline", n, produced)
		case <-time.After(20 * time.Millisecond):
		}
	}
	stop()
	wg.Wait()

	want := map[int]int64{}
	for p, o := range maxo {
		want[p] = o + 1
	}
	if cm := c.Committed(t, group, topic, partitions); fmt.Sprint(cm) != fmt.Sprint(want) {
		t.Fatalf("committed %v, want %v", cm, want)
	}
}

func TestCreateTopicIsIdempotent(t *testing.T) {
	c := kafkatest.NewCluster(t)
	c.CreateTopic(t, "t", 3)
	c.CreateTopic(t, "t", 3)
	if cm := c.Committed(t, "nobody", "t", 3); len(cm) != 0 {
		t.Fatalf("a group that never committed has offsets %v", cm)
	}
}

func TestMessages(t *testing.T) {
	ms := kafkatest.Messages("v", 3)
	if got := fmt.Sprint(values(ms)); got != "[v0 v1 v2]" {
		t.Fatalf("values %s", got)
	}
	if string(ms[2].Key) != "k2" {
		t.Fatalf("key %q", ms[2].Key)
	}
}
