package elasticsearch

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/olivere/elastic/v7"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/storage/storagetest"
)

func TestIndexSettingsDefaults(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want time.Duration
	}{
		{"default", Config{}, 10 * time.Second},
		{"wait_for waits for the next refresh", Config{Refresh: "wait_for"}, time.Second},
		{"set", Config{RefreshInterval: 30 * time.Second, Refresh: "wait_for"}, 30 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.defaults()
			if got := settingsOf(c.cfg).refresh; got != c.want {
				t.Errorf("refresh interval %v, want %v", got, c.want)
			}
		})
	}
	if _, err := New(context.Background(), Config{URLs: []string{"http://x"}, Codec: "zstd"}); err == nil || !strings.Contains(err.Error(), "codec") {
		t.Errorf("codec zstd accepted: %v", err)
	}
}

func TestTemplateBodySettings(t *testing.T) {
	tp := newIndices("p").templates()[0]
	for _, st := range []indexSettings{
		{shards: 1},
		{shards: 3, replicas: 1, refresh: 15 * time.Second, codec: "best_compression"},
	} {
		body, err := templateBody(tp, st)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Settings map[string]any `json:"settings"`
		}
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{"index.number_of_shards": float64(st.shards), "index.number_of_replicas": float64(st.replicas)}
		if st.refresh > 0 {
			want["index.refresh_interval"] = "15000ms"
		}
		if st.codec != "" {
			want["index.codec"] = st.codec
		}
		for k, v := range want {
			if got.Settings[k] != v {
				t.Errorf("%+v: setting %s = %v, want %v", st, k, got.Settings[k], v)
			}
		}
		if _, ok := got.Settings["index.codec"]; ok != (st.codec != "") {
			t.Errorf("%+v: codec set: %v", st, got.Settings)
		}
	}
}

// TestSpanIndexSettingsAndMapping: a span index created from the template
// has the configured refresh interval and codec, keeps what Jaeger Query
// searches searchable (TestJaegerQueryReadsOurIndices runs Jaeger Query
// itself), and does not index what nobody searches.
func TestSpanIndexSettingsAndMapping(t *testing.T) {
	url := esURL(t)
	prefix := testPrefix(t, url)
	ctx := context.Background()
	s := newTestStore(t, Config{URLs: []string{url}, IndexPrefix: prefix, RefreshInterval: 7 * time.Second, Codec: "best_compression"})
	at := storagetest.Trace(storagetest.Spec{ID: model.TraceID{Low: 0xabc}, Start: storagetest.Day0, Host: "h1", ExtraSpans: 1})
	if err := s.WriteTraces(ctx, []model.AssembledTrace{at}); err != nil {
		t.Fatal(err)
	}
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	s.Close()
	c, err := elastic.NewClient(elastic.SetURL(url), elastic.SetSniff(false), elastic.SetHealthcheck(false))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	index := newIndices(prefix).span(storagetest.Day0)
	res, err := c.IndexGetSettings(index).Do(ctx)
	if err != nil {
		t.Fatal(err)
	}
	idx, _ := res[index].Settings["index"].(map[string]any)
	if idx["refresh_interval"] != "7000ms" || idx["codec"] != "best_compression" {
		t.Errorf("span index settings: refresh_interval %v, codec %v", idx["refresh_interval"], idx["codec"])
	}
	count := func(q elastic.Query) int64 {
		t.Helper()
		n, err := c.Count(index).Query(q).Do(ctx)
		if err != nil {
			t.Fatalf("count %v: %v", q, err)
		}
		return n
	}
	var sp *model.Span
	var host model.KeyValue
	for _, x := range at.Trace.Spans {
		if kv, ok := x.Process.Tags.Find("host"); ok {
			sp, host = x, kv
		}
	}
	if sp == nil {
		t.Fatal("no span with the host process tag")
	}
	for _, q := range []elastic.Query{
		elastic.NewTermQuery("traceID", sp.TraceID.String()),
		elastic.NewTermQuery("operationName", sp.Operation),
		elastic.NewTermQuery("process.serviceName", sp.Process.ServiceName),
		elastic.NewRangeQuery("startTime").Gte(sp.Start.Micros()).Lte(sp.Start.Micros()),
		elastic.NewRangeQuery("duration").Gte(0),
		elastic.NewRangeQuery("startTimeMillis").Gte(sp.Start.Time().Add(-time.Hour).UnixMilli()),
		elastic.NewNestedQuery("process.tags", elastic.NewBoolQuery().Must(
			elastic.NewTermQuery("process.tags.key", "host"), elastic.NewTermQuery("process.tags.value", host.AsString()))),
	} {
		if count(q) == 0 {
			src, _ := q.Source()
			t.Errorf("no span found by %v", src)
		}
	}
	// Never searched, so not indexed: a search on them fails or finds nothing.
	for _, q := range []elastic.Query{
		elastic.NewTermQuery("spanID", sp.SpanID.String()),
		elastic.NewNestedQuery("references", elastic.NewMatchAllQuery()),
	} {
		if n, err := c.Count(index).Query(q).Do(ctx); err == nil && n > 0 {
			src, _ := q.Source()
			t.Errorf("%d spans found by %v: the field is indexed", n, src)
		}
	}
}
