package elasticsearch

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/olivere/elastic/v7"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/storage"
)

// servicePage is the composite aggregation's page size in Services.
const servicePage = 1000

// Services pages through a composite aggregation of (serviceName,
// operationName) over the jaeger-service-* indices (Jaeger's own service
// list, one small document per service, operation and day), which returns
// the pairs in sorted order and never holds more than one page of buckets:
// at most model.MaxServiceOperations/servicePage+1 round trips.
func (s *Store) Services(ctx context.Context) ([]model.ServiceOperations, bool, error) {
	var pairs [][2]string
	var after map[string]any
	for len(pairs) <= model.MaxServiceOperations {
		agg := elastic.NewCompositeAggregation().Size(servicePage).Sources(
			elastic.NewCompositeAggregationTermsValuesSource("service").Field("serviceName"),
			elastic.NewCompositeAggregationTermsValuesSource("operation").Field("operationName"),
		)
		if after != nil {
			agg = agg.AggregateAfter(after)
		}
		res, err := s.search(s.x.prefix+familyService+"-*").Size(0).TrackTotalHits(false).Aggregation("pairs", agg).Do(ctx)
		if err != nil {
			return nil, false, fmt.Errorf("services: %w", err)
		}
		c, ok := res.Aggregations.Composite("pairs")
		if !ok {
			break
		}
		for _, b := range c.Buckets {
			svc, _ := b.Key["service"].(string)
			op, _ := b.Key["operation"].(string)
			pairs = append(pairs, [2]string{svc, op})
		}
		if len(c.Buckets) < servicePage || c.AfterKey == nil {
			break
		}
		after = c.AfterKey
	}
	services, truncated := storage.GroupServices(pairs)
	return services, truncated, nil
}

// EdgeRollups reads the edge rollups of every pair at one resolution in a
// range, in one search of at most limit hits (limit is at most
// model.MaxLimit, Elasticsearch's default max_result_window).
func (s *Store) EdgeRollups(ctx context.Context, res time.Duration, start, end model.Timestamp, limit int) ([]model.EdgeRollup, error) {
	if err := storage.CheckEdgeRollupsQuery(res, start, end, limit); err != nil {
		return nil, err
	}
	bq := elastic.NewBoolQuery().Filter(elastic.NewTermQuery("resolutionNanos", int64(res)))
	windowFilter(bq, start, end)
	r, err := s.search(s.x.edgesPattern(res)).Query(bq).
		SortBy(elastic.NewFieldSort("caller").Asc(), elastic.NewFieldSort("callee").Asc(), elastic.NewFieldSort("windowStartNanos").Asc()).
		Size(limit).TrackTotalHits(false).Do(ctx)
	if err != nil {
		return nil, fmt.Errorf("edge rollups: %w", err)
	}
	out := []model.EdgeRollup{}
	if r.Hits == nil {
		return out, nil
	}
	if out, err = appendEdgeRollups(out, r.Hits.Hits); err != nil {
		return nil, err
	}
	// Sorted again in Go: Elasticsearch's keyword order is by bytes, as Go's.
	sort.SliceStable(out, func(i, j int) bool {
		a, b := &out[i], &out[j]
		if a.Caller != b.Caller {
			return a.Caller < b.Caller
		}
		if a.Callee != b.Callee {
			return a.Callee < b.Callee
		}
		return a.WindowStart < b.WindowStart
	})
	return out, nil
}
