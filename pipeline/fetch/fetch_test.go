package fetch

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
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

// next returns f's next message, failing the test on a fetch error or when
// none comes within 20 s.
func next(t *testing.T, f *Fetcher) kafka.Message {
	t.Helper()
	select {
	case m := <-f.Msgs:
		return m
	case err := <-f.Errs:
		t.Fatalf("fetch: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("no message")
	}
	return kafka.Message{}
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
		if m := next(t, f); m.Offset != want || string(m.Value) != fmt.Sprintf("v%d", want) {
			t.Fatalf("got offset %d value %q, want offset %d", m.Offset, m.Value, want)
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

// TestFetcherFollowsLeader: when the partition's leadership moves to
// another broker, the fetcher finds the new leader and goes on from where it
// was, losing and repeating nothing.
func TestFetcherFollowsLeader(t *testing.T) {
	c := kafkatest.NewCluster(t, kfake.NumBrokers(3))
	c.CreateTopic(t, "t", 1)
	c.Produce(t, "t", kafkatest.Messages("a", 50)...)
	f := StartBatches(config(c, "t"), kafka.FirstOffset, 1)
	defer f.Stop()
	next := int64(0)
	receive := func(until int64) {
		t.Helper()
		for next < until {
			select {
			case ms := <-f.Batches:
				for _, m := range ms {
					if m.Offset != next {
						t.Fatalf("got offset %d, want %d", m.Offset, next)
					}
					next++
				}
				f.Recycle(ms)
			case err := <-f.Errs:
				t.Fatalf("fetch: %v", err)
			case <-time.After(20 * time.Second):
				t.Fatalf("no message at offset %d", next)
			}
		}
	}
	receive(50)
	leader := c.Fake.LeaderFor("t", 0)
	if err := c.Fake.MoveTopicPartition("t", 0, (leader+1)%3); err != nil {
		t.Fatal(err)
	}
	c.Produce(t, "t", kafkatest.Messages("b", 50)...)
	receive(100)
}

// TestFetcherRetriesThenReports: fetch errors that reconnecting may cure
// are retried; others end fetching with the error on Errs.
func TestFetcherRetriesThenReports(t *testing.T) {
	c := kafkatest.NewCluster(t)
	c.CreateTopic(t, "t", 1)
	c.Produce(t, "t", kafkatest.Messages("v", 5)...)
	failFetches := func(code int16, times int) {
		n := 0
		c.Fake.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
			c.Fake.KeepControl()
			if n >= times {
				return nil, nil, false
			}
			n++
			fr := req.(*kmsg.FetchRequest)
			resp := fr.ResponseKind().(*kmsg.FetchResponse)
			for _, rt := range fr.Topics {
				st := kmsg.NewFetchResponseTopic()
				st.Topic, st.TopicID = rt.Topic, rt.TopicID
				for _, rp := range rt.Partitions {
					sp := kmsg.NewFetchResponseTopicPartition()
					sp.Partition, sp.ErrorCode = rp.Partition, code
					st.Partitions = append(st.Partitions, sp)
				}
				resp.Topics = append(resp.Topics, st)
			}
			return resp, nil, true
		})
	}

	failFetches(int16(kafka.NotLeaderForPartition), 3)
	f := Start(config(c, "t"), kafka.FirstOffset, 8)
	for want := int64(0); want < 5; want++ { // a retriable error reported fails next
		if m := next(t, f); m.Offset != want {
			t.Fatalf("got offset %d, want %d", m.Offset, want)
		}
	}
	f.Stop()
	c.Fake.DropControl()

	failFetches(int16(kafka.TopicAuthorizationFailed), 1000)
	f = Start(config(c, "t"), kafka.FirstOffset, 8)
	defer f.Stop()
	select {
	case err := <-f.Errs:
		if !errors.Is(err, kafka.TopicAuthorizationFailed) {
			t.Fatalf("reported %v, want the authorization error", err)
		}
	case m := <-f.Msgs:
		t.Fatalf("got offset %d despite failing fetches", m.Offset)
	case <-time.After(20 * time.Second):
		t.Fatal("no error reported")
	}
}

// TestFetcherWaitsPastTheEnd: an offset past the log's end is waited for
// (the broker answers "out of range"), not reported.
func TestFetcherWaitsPastTheEnd(t *testing.T) {
	c := kafkatest.NewCluster(t)
	c.CreateTopic(t, "t", 1)
	c.Produce(t, "t", kafkatest.Messages("v", 5)...)
	f := Start(config(c, "t"), 8, 8)
	defer f.Stop()
	time.Sleep(300 * time.Millisecond) // a few out-of-range fetches
	c.Produce(t, "t", kafkatest.Messages("w", 5)...)
	if m := next(t, f); m.Offset != 8 || string(m.Value) != "w3" {
		t.Fatalf("got offset %d value %q, want offset 8 value w3", m.Offset, m.Value)
	}
}

// TestFetcherSkipsDeletedRecords: an offset below the log's start (its
// records were deleted by retention) reads from the start.
func TestFetcherSkipsDeletedRecords(t *testing.T) {
	c := kafkatest.NewCluster(t)
	kafkatest.CreateTopicWith(t, c.Brokers, "t", 1, map[string]string{"retention.bytes": "200"})
	for i := 0; i < 10; i++ { // ten batches, so retention can drop whole ones
		c.Produce(t, "t", kafka.Message{Value: fmt.Appendf(nil, "v%d", i)})
	}
	c.Fake.ApplyRetention()
	cfg := config(c, "t")
	skipped := make(chan [2]int64, 1)
	cfg.OnSkip = func(from, to int64) { skipped <- [2]int64{from, to} }
	f := Start(cfg, 0, 8)
	defer f.Stop()
	m := next(t, f)
	if m.Offset == 0 || string(m.Value) != fmt.Sprintf("v%d", m.Offset) {
		t.Fatalf("got offset %d value %q: retention deleted nothing, or the fetcher misread", m.Offset, m.Value)
	}
	if r := <-skipped; r != [2]int64{0, m.Offset} {
		t.Errorf("OnSkip told of %v, want [0 %d]", r, m.Offset)
	}
}
