package failover

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/internal/testenv"
)

// TestBrokerLoss: while `tracepipe gen` publishes with acks=all and the
// stages run, the broker leading partition 0 of the spans topic is killed
// with SIGKILL, and restarted 15 s later (it is fenced, and dropped from
// every ISR, after 6 s: leaders move to the two others, which still make
// min.insync.replicas). No stage may exit, the producer must finish, no span
// is dead-lettered, and afterwards every trace is stored exactly once and
// every operation's rollups equal the truth; the restarted broker is back in
// every ISR.
func TestBrokerLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("failure test")
	}
	began := time.Now()
	cl := testenv.Cluster(t)
	es := testenv.SpareSearch(t)
	waitInSync(t, cl.Brokers, "__consumer_offsets")
	c := newChain(t, cl.Brokers, es.URL)

	gen := c.gen(1000, 500) // ~20,000 spans over ~40 s
	time.Sleep(10 * time.Second)
	c.alive()
	victim := cl.Node(leader(t, cl.Brokers, c.spans(), 0))
	if victim == 0 {
		t.Fatal("the leader of the spans topic's partition 0 is not a node of the cluster")
	}
	t.Cleanup(func() { // never leave a node down
		if t.Failed() {
			cl.Restore(t)
		}
	})
	cl.Kill(t, victim)
	killed := time.Now()
	time.Sleep(15 * time.Second)
	c.alive()
	cl.Start(t, victim)
	t.Logf("broker-%d was down for %v", victim, time.Since(killed).Round(100*time.Millisecond))
	if err := <-gen; err != nil {
		t.Fatalf("the producer did not ride over the broker loss: %v", err)
	}
	c.waitStored(3 * time.Minute)
	for _, topic := range []string{c.name + "-dlq", c.name + "-store-dlq"} {
		if n := endOffsets(t, cl.Brokers, topic); n != 0 {
			t.Errorf("%d messages dead-lettered to %s", n, topic)
		}
	}
	waitInSync(t, cl.Brokers, c.spans(), c.traces(), c.name+"-partials", "__consumer_offsets")
	t.Logf("test took %v", time.Since(began).Round(time.Second))
}

// leader is the address of the leader of topic's partition p.
func leader(t *testing.T, brokers []string, topic string, p int) string {
	t.Helper()
	cl, done := client(brokers)
	defer done()
	md, err := cl.Metadata(context.Background(), &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil || len(md.Topics) != 1 {
		t.Fatalf("metadata of %s: %v", topic, err)
	}
	for _, part := range md.Topics[0].Partitions {
		if part.ID == p {
			return fmt.Sprintf("%s:%d", part.Leader.Host, part.Leader.Port)
		}
	}
	t.Fatalf("%s has no partition %d", topic, p)
	return ""
}

// waitInSync waits until every partition of topics has all its replicas in
// its ISR (no under-replicated partition), at most two minutes.
func waitInSync(t *testing.T, brokers []string, topics ...string) {
	t.Helper()
	cl, done := client(brokers)
	defer done()
	deadline := time.Now().Add(2 * time.Minute)
	var last string
	for {
		last = ""
		md, err := cl.Metadata(context.Background(), &kafka.MetadataRequest{Topics: topics})
		if err != nil {
			last = err.Error()
		} else {
			for _, tp := range md.Topics {
				for _, p := range tp.Partitions {
					if p.Error != nil || len(p.Isr) < len(p.Replicas) || len(p.Replicas) < 3 {
						last = fmt.Sprintf("%s/%d: replicas %d, in sync %d, error %v", tp.Name, p.ID, len(p.Replicas), len(p.Isr), p.Error)
					}
				}
			}
		}
		if last == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("partitions not back in sync within 2 minutes: %s", last)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
