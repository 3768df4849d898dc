package smoke

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/olivere/elastic/v7"

	"github.com/tracepipe/tracepipe/internal/testenv"
)

// TestElasticsearchTemplateBulkPercentiles uses olivere/elastic v7 the way
// tracepipe's storage does: an index template, a bulk write, and a search
// with a filter, a terms aggregation and a percentiles aggregation.
func TestElasticsearchTemplateBulkPercentiles(t *testing.T) {
	url := testenv.Elasticsearch(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// An own transport, so the test can close its idle connections (goleak),
	// after the cleanups below (t.Cleanup runs last-registered first).
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c, err := elastic.NewClient(elastic.SetURL(url), elastic.SetSniff(false), elastic.SetHealthcheck(false),
		elastic.SetHttpClient(&http.Client{Transport: tr}))
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	t.Cleanup(c.Stop)
	version, err := c.ElasticsearchVersion(url)
	if err != nil {
		t.Fatalf("version: %v", err)
	}
	t.Logf("engine %q version %s", testenv.Engine(), version)

	prefix := testenv.Name(t, "smoke")
	index := prefix + "-2024-01-01"
	t.Cleanup(func() {
		ctx := context.Background()
		if _, err := c.DeleteIndex(index).Do(ctx); err != nil && !elastic.IsNotFound(err) {
			t.Errorf("delete index: %v", err)
		}
		//lint:ignore SA1019 tracepipe installs legacy templates, as Jaeger does for Elasticsearch 7 (storage/elasticsearch).
		if _, err := c.IndexDeleteTemplate(prefix).Do(ctx); err != nil && !elastic.IsNotFound(err) {
			t.Errorf("delete template: %v", err)
		}
	})

	tmpl := fmt.Sprintf(`{
	  "index_patterns": [%q],
	  "settings": {"number_of_shards": 1, "number_of_replicas": 0},
	  "mappings": {
	    "dynamic_templates": [{"tags": {"path_match": "tag.*", "mapping": {"type": "keyword"}}}],
	    "properties": {
	      "service":  {"type": "keyword"},
	      "duration": {"type": "long"},
	      "start":    {"type": "date", "format": "epoch_millis"}
	    }
	  }
	}`, prefix+"-*")
	//lint:ignore SA1019 tracepipe installs legacy templates, as Jaeger does for Elasticsearch 7 (storage/elasticsearch).
	if _, err := c.IndexPutTemplate(prefix).BodyString(tmpl).Do(ctx); err != nil {
		t.Fatalf("put template: %v", err)
	}

	// 200 documents: service "api" has durations 1..100, "db" 1001..1100.
	bulk := c.Bulk().Refresh("wait_for")
	for i := 1; i <= 100; i++ {
		for _, s := range []struct {
			name string
			base int
		}{{"api", 0}, {"db", 1000}} {
			doc := map[string]any{"service": s.name, "duration": s.base + i, "start": 1704067200000 + int64(i), "tag": map[string]string{"host": "h1"}}
			// Deterministic IDs make the write idempotent.
			bulk.Add(elastic.NewBulkIndexRequest().Index(index).Id(fmt.Sprintf("%s-%d", s.name, i)).Doc(doc))
		}
	}
	resp, err := bulk.Do(ctx)
	if err != nil {
		t.Fatalf("bulk: %v", err)
	}
	if resp.Errors || len(resp.Succeeded()) != 200 {
		t.Fatalf("bulk: errors=%v, %d succeeded, failed: %+v", resp.Errors, len(resp.Succeeded()), resp.Failed())
	}

	// The template applied: tag.host is a keyword through the dynamic template.
	// (Not c.GetMapping(): without a type it asks for /{index}/_mapping/_all,
	// a typed endpoint OpenSearch 2 no longer serves.)
	mresp, err := c.PerformRequest(ctx, elastic.PerformRequestOptions{Method: "GET", Path: "/" + index + "/_mapping"})
	if err != nil {
		t.Fatalf("get mapping: %v", err)
	}
	if got := string(mresp.Body); !strings.Contains(got, `"host":{"type":"keyword"}`) || !strings.Contains(got, `"duration":{"type":"long"}`) {
		t.Fatalf("mapping does not come from the template: %s", got)
	}

	res, err := c.Search(index).
		Query(elastic.NewBoolQuery().Filter(elastic.NewTermQuery("tag.host", "h1"))).
		Size(0).
		Aggregation("by_service", elastic.NewTermsAggregation().Field("service").OrderByKeyAsc().
			SubAggregation("lat", elastic.NewPercentilesAggregation().Field("duration").Percentiles(50, 99))).
		Do(ctx)
	if err != nil {
		t.Fatalf("search: %v", err)
	}
	if res.TotalHits() != 200 {
		t.Fatalf("total hits %d, want 200", res.TotalHits())
	}
	terms, ok := res.Aggregations.Terms("by_service")
	if !ok || len(terms.Buckets) != 2 {
		t.Fatalf("terms aggregation: %+v", terms)
	}
	for i, want := range []struct {
		key      string
		p50, p99 float64
	}{{"api", 50.5, 99.5}, {"db", 1050.5, 1099.5}} {
		b := terms.Buckets[i]
		if b.Key != want.key || b.DocCount != 100 {
			t.Fatalf("bucket %d: key %v count %d, want %s 100", i, b.Key, b.DocCount, want.key)
		}
		p, ok := b.Percentiles("lat")
		if !ok {
			t.Fatalf("bucket %s: no percentiles", want.key)
		}
		// TDigest on 100 distinct values is exact to within one rank.
		if math.Abs(p.Values["50.0"]-want.p50) > 1 || math.Abs(p.Values["99.0"]-want.p99) > 1 {
			t.Fatalf("bucket %s: percentiles %v, want p50≈%v p99≈%v", want.key, p.Values, want.p50, want.p99)
		}
	}

	// Writing the same IDs again changes nothing: the count stays 200.
	if _, err := c.Index().Index(index).Id("api-1").BodyJson(map[string]any{"service": "api", "duration": 1}).Refresh("wait_for").Do(ctx); err != nil {
		t.Fatalf("re-index: %v", err)
	}
	n, err := c.Count(index).Do(ctx)
	if err != nil || n != 200 {
		t.Fatalf("count after re-index = %d, %v; want 200", n, err)
	}
}
