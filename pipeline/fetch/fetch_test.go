package fetch

import (
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/goleak"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// kafka-go's package-level dialer caches and the kfake cluster's
		// own goroutines in their last moments.
		goleak.IgnoreAnyFunction("github.com/segmentio/kafka-go.(*connPool).discover"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*Cluster).run"),
	)
}

func config(c *kafkatest.Cluster, topic string) Config {
	return Config{Brokers: c.Brokers, Dialer: &kafka.Dialer{Timeout: 5 * time.Second}, Topic: topic}
}

// TestFetcher reads a partition from an offset, in order, then stops
// without leaking its goroutine; a nil Fetcher stops too.
func TestFetcher(t *testing.T) {
	c := kafkatest.NewCluster(t)
	c.CreateTopic(t, "t", 1)
	c.Produce(t, "t", kafkatest.Messages("v", 5)...)

	f := Start(config(c, "t"), 2, 1)
	defer f.Stop()
	if f.Batches != nil {
		t.Fatal("Start feeds Batches")
	}
	for want := int64(2); want < 5; want++ {
		select {
		case m := <-f.Msgs:
			if m.Offset != want || string(m.Value) != fmt.Sprintf("v%d", want) {
				t.Fatalf("got offset %d value %q, want offset %d", m.Offset, m.Value, want)
			}
		case err := <-f.Errs:
			t.Fatalf("fetch: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatalf("no message at offset %d", want)
		}
	}
	var none *Fetcher
	none.Stop()
}

// TestFetcherBatches reads whole fetches, from the log's start and from its
// end (only what is produced afterwards), every message once and in order.
func TestFetcherBatches(t *testing.T) {
	c := kafkatest.NewCluster(t)
	c.CreateTopic(t, "t", 1)
	c.Produce(t, "t", kafkatest.Messages("v", 300)...)

	collect := func(f *Fetcher, from, n int64) {
		t.Helper()
		want := from
		for want < from+n {
			select {
			case ms := <-f.Batches:
				if len(ms) == 0 {
					t.Fatal("an empty batch")
				}
				for _, m := range ms {
					if m.Offset != want || string(m.Value) != fmt.Sprintf("v%d", want%300) {
						t.Fatalf("got offset %d value %q, want offset %d", m.Offset, m.Value, want)
					}
					want++
				}
			case err := <-f.Errs:
				t.Fatalf("fetch: %v", err)
			case <-time.After(10 * time.Second):
				t.Fatalf("no message at offset %d", want)
			}
		}
	}
	first := StartBatches(config(c, "t"), kafka.FirstOffset, 2)
	defer first.Stop()
	if first.Msgs != nil {
		t.Fatal("StartBatches feeds Msgs")
	}
	collect(first, 0, 300)

	last := StartBatches(config(c, "t"), kafka.LastOffset, 2)
	defer last.Stop()
	// The fetcher resolves LastOffset when it connects; give it the time to
	// before producing what it should see.
	time.Sleep(500 * time.Millisecond)
	c.Produce(t, "t", kafkatest.Messages("v", 300)[:3]...)
	collect(last, 300, 3)
	select {
	case ms := <-last.Batches:
		t.Fatalf("unexpected messages from offset %d", ms[0].Offset)
	case <-time.After(300 * time.Millisecond):
	}
}
