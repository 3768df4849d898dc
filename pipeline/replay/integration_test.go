package replay

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/olivere/elastic/v7"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/storage/elasticsearch"
)

// TestIntegrationReplayElasticsearch is TestReplay's first two cases on
// real Kafka and the real search engine (issue 14: "into the same store,
// embedded or Elasticsearch"): the live pipeline reads its spans from real
// Kafka and writes to Elasticsearch; a replay of its record-time range into
// the same indices changes no trace, rollup or edge rollup, and a replay
// into empty indices gives every trace and every 1-minute rollup and edge
// rollup the live pipeline wrote (compared as in TestReplay). The stores
// are read through the query API only, as a user would.
func TestIntegrationReplayElasticsearch(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	brokers := testenv.KafkaBrokers(t)
	esURL := testenv.Elasticsearch(t)

	l := newLive(t)
	l.cfg.Brokers = brokers
	l.cfg.Ingest.SpansTopic = testenv.Name(t, "spans")
	l.cfg.Ingest.TracesTopic = testenv.Name(t, "traces")
	l.cfg.Ingest.DLQTopic = testenv.Name(t, "dlq")
	l.cfg.Ingest.Group = testenv.Name(t, "ingester")
	l.xc.Group = testenv.Name(t, "indexer")
	l.ac.Group = testenv.Name(t, "aggregator")
	l.ac.ReduceGroup = testenv.Name(t, "reduce")
	l.ac.PartialsTopic = testenv.Name(t, "partials")
	t.Cleanup(func() {
		deleteTopics(t, brokers, l.cfg.Ingest.SpansTopic, l.cfg.Ingest.TracesTopic, l.cfg.Ingest.DLQTopic, l.ac.PartialsTopic)
	})

	liveStore := openES(t, esURL, testenv.Name(t, "live"))
	l.start(t, liveStore)
	from, to, er := l.runWorkload(t)
	read := func(t *testing.T, s *elasticsearch.Store) snapshot {
		t.Helper()
		if err := s.Refresh(context.Background()); err != nil {
			t.Fatalf("refresh: %v", err)
		}
		return readSnapshot(t, s, er.from, er.to)
	}
	before := read(t, liveStore)
	t.Logf("live indices: %d traces, %d rollups, %d edge rollups in the event range", len(before.Traces), len(before.Rollups), len(before.Edges))
	if len(before.Traces) != workloadTraces || len(before.only(time.Minute).Rollups) == 0 || len(before.only(time.Minute).Edges) == 0 {
		t.Fatalf("the live pipeline stored %d traces, %d 1m rollups and %d 1m edge rollups; want %d traces and some of each",
			len(before.Traces), len(before.only(time.Minute).Rollups), len(before.only(time.Minute).Edges), workloadTraces)
	}

	config := func(t *testing.T) Config {
		cfg := replayConfig(t, brokers, from, to, er)
		cfg.Topic = l.cfg.Ingest.SpansTopic
		return cfg
	}

	t.Run("same indices: nothing changes", func(t *testing.T) {
		sum, err := Run(context.Background(), config(t), Deps{Store: liveStore})
		if err != nil {
			t.Fatal(err)
		}
		if sum.Traces < workloadTraces || sum.Rollups == 0 || sum.Edges == 0 {
			t.Errorf("summary %+v: want at least %d traces and some rollups and edge rollups handed to the store", sum, workloadTraces)
		}
		if d := before.diff(read(t, liveStore), true); d != "[]" {
			t.Errorf("the replay changed the indices: %s", d)
		}
	})

	t.Run("empty indices: the live pipeline's traces and rollups", func(t *testing.T) {
		fresh := openES(t, esURL, testenv.Name(t, "replay"))
		sum, err := Run(context.Background(), config(t), Deps{Store: fresh})
		if err != nil {
			t.Fatal(err)
		}
		got := read(t, fresh)
		if d := before.only(time.Minute).diff(got, false); d != "[]" {
			t.Errorf("replayed indices differ from the live ones: %s", d)
		}
		if n := len(got.Rollups) - len(got.only(time.Minute).Rollups); n != 0 {
			t.Errorf("%d rollups of windows only partly in the range were written", n)
		}
		if sum.PartialWindows[time.Hour] == 0 {
			t.Errorf("summary %+v: no partial 1h windows reported", sum)
		}
	})
}

// openES opens the search engine's indices of prefix, deleting them and
// their templates when the test ends.
func openES(t *testing.T, url, prefix string) *elasticsearch.Store {
	t.Helper()
	t.Cleanup(func() {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		defer tr.CloseIdleConnections()
		c, err := elastic.NewClient(elastic.SetURL(url), elastic.SetSniff(false), elastic.SetHealthcheck(false),
			elastic.SetHttpClient(&http.Client{Transport: tr}))
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer c.Stop()
		ctx := context.Background()
		if _, err := c.DeleteIndex(prefix + "-*").Do(ctx); err != nil && !elastic.IsNotFound(err) {
			t.Errorf("cleanup indices: %v", err)
		}
		//lint:ignore SA1019 the store installs legacy (_template) templates, as Jaeger v1 does; the test removes them
		if _, err := c.IndexDeleteTemplate(prefix + "-*").Do(ctx); err != nil && !elastic.IsNotFound(err) {
			t.Errorf("cleanup templates: %v", err)
		}
	})
	// A transport of its own, whose keep-alive connections the test
	// closes (goleak).
	tr := http.DefaultTransport.(*http.Transport).Clone()
	s, err := elasticsearch.New(context.Background(), elasticsearch.Config{URLs: []string{url}, IndexPrefix: prefix, HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		tr.CloseIdleConnections()
	})
	return s
}

// deleteTopics deletes the test's topics from the real brokers.
func deleteTopics(t *testing.T, brokers []string, topics ...string) {
	tr := &kafkago.Transport{}
	defer tr.CloseIdleConnections()
	cl := &kafkago.Client{Addr: kafkago.TCP(brokers...), Transport: tr, Timeout: 10 * time.Second}
	resp, err := cl.DeleteTopics(context.Background(), &kafkago.DeleteTopicsRequest{Topics: topics})
	if err != nil {
		t.Errorf("delete topics %v: %v", topics, err)
		return
	}
	for topic, err := range resp.Errors {
		if err != nil && err != kafkago.UnknownTopicOrPartition {
			t.Errorf("delete topic %s: %v", topic, err)
		}
	}
}
