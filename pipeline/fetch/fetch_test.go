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

// TestFetcher reads a partition from an offset, in order, then stops
// without leaking its goroutine; a nil Fetcher stops too.
func TestFetcher(t *testing.T) {
	c := kafkatest.NewCluster(t)
	c.CreateTopic(t, "t", 1)
	c.Produce(t, "t", kafkatest.Messages("v", 5)...)

	f, err := Start(NewReader(c.Brokers, &kafka.Dialer{Timeout: 5 * time.Second}, "t", 0), 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
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
