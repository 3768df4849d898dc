package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tracepipe/tracepipe/internal/kafkatest"
)

func testFetchConfig(c *kafkatest.Cluster, topic string) fetchConfig {
	return fetchConfig{brokers: c.Brokers, dialer: &kafkago.Dialer{Timeout: 5 * time.Second}, topic: topic}
}

// receive reads f's records from next until until, failing on a gap, a
// repeat, an error or 20 s without a record.
func receive(t *testing.T, f *fetcher, next *int64, until int64) {
	t.Helper()
	for *next < until {
		select {
		case recs := <-f.batches:
			if len(recs) == 0 {
				t.Fatal("empty chunk")
			}
			for _, r := range recs {
				if r.Offset != *next {
					t.Fatalf("got offset %d, want %d", r.Offset, *next)
				}
				*next++
			}
			f.recycle(recs)
		case err := <-f.errs:
			t.Fatalf("fetch: %v", err)
		case <-time.After(20 * time.Second):
			t.Fatalf("no record at offset %d", *next)
		}
	}
}

// TestFetchChunksFromAnOffset: chunks of at most ChunkSize, in order, from
// an offset, from the start and from the end; the log end is tracked.
func TestFetchChunksFromAnOffset(t *testing.T) {
	c := kafkatest.NewCluster(t)
	c.CreateTopic(t, "t", 1)
	c.Produce(t, "t", kafkatest.Messages("v", 1200)...)
	f := startFetch(testFetchConfig(c, "t"), 100, 2)
	next := int64(100)
	receive(t, f, &next, 1200)
	if got := f.hwm.Load(); got != 1200 {
		t.Errorf("log end %d, want 1200", got)
	}
	f.stop()
	last := startFetch(testFetchConfig(c, "t"), LastOffset, 2)
	defer last.stop()
	time.Sleep(300 * time.Millisecond)
	c.Produce(t, "t", kafkatest.Messages("w", 3)...)
	next = 1200
	receive(t, last, &next, 1203)
	var none *fetcher
	none.stop()
}

// TestFetchFollowsLeader: when leadership moves, fetching goes on from
// where it was, losing and repeating nothing.
func TestFetchFollowsLeader(t *testing.T) {
	c := kafkatest.NewCluster(t, kfake.NumBrokers(3))
	c.CreateTopic(t, "t", 1)
	c.Produce(t, "t", kafkatest.Messages("a", 50)...)
	f := startFetch(testFetchConfig(c, "t"), FirstOffset, 1)
	defer f.stop()
	next := int64(0)
	receive(t, f, &next, 50)
	leader := c.Fake.LeaderFor("t", 0)
	if err := c.Fake.MoveTopicPartition("t", 0, (leader+1)%3); err != nil {
		t.Fatal(err)
	}
	c.Produce(t, "t", kafkatest.Messages("b", 50)...)
	receive(t, f, &next, 100)
}

// TestFetchRetriesThenReports: errors reconnecting may cure are retried;
// others end fetching with the error.
func TestFetchRetriesThenReports(t *testing.T) {
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
	failFetches(int16(kafkago.NotLeaderForPartition), 3)
	f := startFetch(testFetchConfig(c, "t"), FirstOffset, 8)
	next := int64(0)
	receive(t, f, &next, 5)
	f.stop()
	c.Fake.DropControl()

	failFetches(int16(kafkago.TopicAuthorizationFailed), 1000)
	f = startFetch(testFetchConfig(c, "t"), FirstOffset, 8)
	defer f.stop()
	select {
	case err := <-f.errs:
		if !errors.Is(err, kafkago.TopicAuthorizationFailed) {
			t.Fatalf("reported %v, want the authorization error", err)
		}
	case recs := <-f.batches:
		t.Fatalf("got offset %d despite failing fetches", recs[0].Offset)
	case <-time.After(20 * time.Second):
		t.Fatal("no error reported")
	}
}

// TestFetchSkipsDeletedRecords: an offset below the log's start (deleted by
// retention) reads from the start and reports the skipped range; a Group
// counts it in skipped_records_total.
func TestFetchSkipsDeletedRecords(t *testing.T) {
	c := kafkatest.NewCluster(t)
	kafkatest.CreateTopicWith(t, c.Brokers, "t", 1, map[string]string{"retention.bytes": "200"})
	for i := range 10 { // ten batches, so retention can drop whole ones
		c.Produce(t, "t", kafkago.Message{Value: fmt.Appendf(nil, "v%d", i)})
	}
	c.Fake.ApplyRetention()
	cfg := testFetchConfig(c, "t")
	skipped := make(chan [2]int64, 1)
	cfg.onSkip = func(from, to int64) { skipped <- [2]int64{from, to} }
	f := startFetch(cfg, 0, 8)
	defer f.stop()
	var first Record
	select {
	case recs := <-f.batches:
		first = recs[0]
	case <-time.After(20 * time.Second):
		t.Fatal("no record")
	}
	if first.Offset == 0 || string(first.Value) != fmt.Sprintf("v%d", first.Offset) {
		t.Fatalf("got offset %d value %q: retention deleted nothing, or the fetch misread", first.Offset, first.Value)
	}
	if r := <-skipped; r != [2]int64{0, first.Offset} {
		t.Errorf("skip reported %v, want [0 %d]", r, first.Offset)
	}

	// The same through a Group whose processor starts at offset 0.
	c.CreateTopic(t, "out", 1)
	j := newJournal()
	gc := groupConfig(c, "g", "t", "out", j, 0)
	gc.NewProcessor = func(a Assignment) (Processor, error) {
		return &fromZero{echo{a: a, out: "out", log: j, unacked: map[int64]bool{}}}, nil
	}
	g, err := NewGroup(gc, GroupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	runGroup(t, g)
	waitFor(t, "skip counted", func() bool {
		return int64(testutilValue(g.m.skipped.WithLabelValues("test", "t"))) == first.Offset
	})
	a, _ := NewAdmin(ClientConfig{Brokers: c.Brokers})
	defer a.Close()
	n := 0
	missing, err := a.ReadRange(context.Background(), "t", 0, 0, 10, func(r Record) error { n++; return nil })
	if err != nil || missing != first.Offset || int64(n) != 10-first.Offset {
		t.Errorf("ReadRange [0,10): %d records, %d missing, %v; want %d, %d", n, missing, err, 10-first.Offset, first.Offset)
	}
}

type fromZero struct{ echo }

func (f *fromZero) Open(ctx context.Context, c Commit) (int64, error) {
	f.echo.Open(ctx, c)
	return 0, nil
}

// TestStopAbortsALongPoll: stopping a fetcher while the broker holds its
// fetch on an idle partition (up to FetchMaxWait) does not wait for the
// broker's answer.
func TestStopAbortsALongPoll(t *testing.T) {
	c := kafkatest.NewCluster(t)
	c.CreateTopic(t, "t", 1)
	c.Produce(t, "t", kafkatest.Messages("v", 1)...)
	var took []time.Duration
	for range 5 {
		f := startFetch(testFetchConfig(c, "t"), 0, 2)
		next := int64(0)
		receive(t, f, &next, 1) // the first fetch answered; the next one waits for data
		time.Sleep(50 * time.Millisecond)
		t0 := time.Now()
		f.stop()
		took = append(took, time.Since(t0))
	}
	slices.Sort(took)
	if took[2] > FetchMaxWait/5 {
		t.Errorf("stopping took %v (median of %v), want far less than the long poll's %v", took[2], took, FetchMaxWait)
	}
}
