package elasticsearch

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/olivere/elastic/v7"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/storage"
	"github.com/tracepipe/tracepipe/storage/dbmodel"
)

// maxSpans bounds the spans GetTrace reads (Elasticsearch's default
// max_result_window); a larger trace is returned with its first maxSpans
// spans by start time.
const maxSpans = 10000

func (s *Store) search(indices ...string) *elastic.SearchService {
	return s.c.Search(indices...).IgnoreUnavailable(true).AllowNoIndices(true)
}

// GetTrace reads the summary (the highest stored version, should a trace's
// start day have changed between versions) and the spans by trace ID, in
// one _msearch round trip.
func (s *Store) GetTrace(ctx context.Context, id model.TraceID) (model.StoredTrace, error) {
	ids := id.String()
	ms, err := s.c.MultiSearch().Add(
		elastic.NewSearchRequest().Index(s.x.tracesPattern()).Query(elastic.NewIdsQuery().Ids(ids)).Size(10),
		elastic.NewSearchRequest().Index(s.x.spanPattern()).Query(elastic.NewTermQuery("traceID", ids)).
			Sort("startTime", true).Size(maxSpans).Version(true),
	).Do(ctx)
	if err != nil {
		return model.StoredTrace{}, fmt.Errorf("get trace %s: %w", id, err)
	}
	if len(ms.Responses) != 2 {
		return model.StoredTrace{}, fmt.Errorf("get trace %s: %d responses to 2 searches", id, len(ms.Responses))
	}
	for _, r := range ms.Responses {
		if r.Error != nil {
			return model.StoredTrace{}, fmt.Errorf("get trace %s: %s: %s", id, r.Error.Type, r.Error.Reason)
		}
	}
	var best *dbmodel.Trace
	for _, h := range ms.Responses[0].Hits.Hits {
		var d dbmodel.Trace
		if err := json.Unmarshal(h.Source, &d); err != nil {
			return model.StoredTrace{}, fmt.Errorf("get trace %s: decode summary: %w", id, err)
		}
		if err := d.Expand(); err != nil {
			return model.StoredTrace{}, fmt.Errorf("get trace %s: %w", id, err)
		}
		if best == nil || d.Version > best.Version {
			best = &d
		}
	}
	if best == nil {
		return model.StoredTrace{}, fmt.Errorf("trace %s %w", id, model.ErrNotFound)
	}
	res := ms.Responses[1]
	// A span stored in two daily indices (its start moved across midnight
	// between versions) is read once: the highest version wins.
	type versioned struct {
		d dbmodel.Span
		v int64
	}
	bySpan := make(map[string]int, len(res.Hits.Hits))
	var spans []versioned
	for _, h := range res.Hits.Hits {
		var d dbmodel.Span
		if err := json.Unmarshal(h.Source, &d); err != nil {
			return model.StoredTrace{}, fmt.Errorf("get trace %s: decode span: %w", id, err)
		}
		var v int64
		if h.Version != nil {
			v = *h.Version
		}
		if i, ok := bySpan[d.SpanID]; ok {
			if v > spans[i].v {
				spans[i] = versioned{d, v}
			}
			continue
		}
		bySpan[d.SpanID] = len(spans)
		spans = append(spans, versioned{d, v})
	}
	sum, err := best.ToDomainSummary(s.cfg.PromotedTags)
	if err != nil {
		return model.StoredTrace{}, err
	}
	a, err := best.ToDomainAnalysis()
	if err != nil {
		return model.StoredTrace{}, err
	}
	out := make([]*model.Span, 0, len(spans))
	for i := range spans {
		sp, err := dbmodel.ToDomainSpan(&spans[i].d, s.cfg.SpanOptions)
		if err != nil {
			return model.StoredTrace{}, fmt.Errorf("get trace %s: %w", id, err)
		}
		out = append(out, sp)
	}
	out, a = dbmodel.AlignSpans(out, a)
	return model.StoredTrace{Summary: sum, Trace: model.Trace{TraceID: id, Spans: out}, Analysis: a}, nil
}

// filter builds the bool query shared by FindTraces and TopBottlenecks.
func filter(service, operation string, tags map[string]string, minD, maxD time.Duration, start, end model.Timestamp) *elastic.BoolQuery {
	q := elastic.NewBoolQuery()
	if start != 0 || end != 0 {
		r := elastic.NewRangeQuery("startNanos")
		if start != 0 {
			r = r.Gte(int64(start))
		}
		if end != 0 {
			r = r.Lt(int64(end))
		}
		q = q.Filter(r)
	}
	if minD != 0 || maxD != 0 {
		r := elastic.NewRangeQuery("durationNanos")
		if minD != 0 {
			r = r.Gte(int64(minD))
		}
		if maxD != 0 {
			r = r.Lte(int64(maxD))
		}
		q = q.Filter(r)
	}
	switch {
	// Operations: the compact summaries' keyword arrays, or the nested
	// entries of summaries written before template version 5.
	case service != "" && operation != "":
		key := dbmodel.OperationKey(service, operation)
		q = q.Filter(elastic.NewBoolQuery().MinimumNumberShouldMatch(1).Should(
			elastic.NewTermQuery("operationKeys", key),
			elastic.NewNestedQuery("operations", elastic.NewTermQuery("operations.key", key))))
	case operation != "":
		q = q.Filter(elastic.NewBoolQuery().MinimumNumberShouldMatch(1).Should(
			elastic.NewTermQuery("operationNames", operation),
			elastic.NewNestedQuery("operations", elastic.NewTermQuery("operations.operation", operation))))
	case service != "":
		q = q.Filter(elastic.NewTermQuery("services", service))
	}
	for k, v := range tags {
		q = q.Filter(elastic.NewTermQuery("tag."+dbmodel.TagField(k), v))
	}
	return q
}

// FindTraces searches the summaries, reading them without their analysis
// and per-operation totals.
func (s *Store) FindTraces(ctx context.Context, q model.TraceQuery) ([]model.TraceSummary, error) {
	q, err := q.Normalize()
	if err != nil {
		return nil, err
	}
	if err := model.CheckPromoted(q.Tags, s.cfg.PromotedTags); err != nil {
		return nil, err
	}
	sorts := []elastic.Sorter{elastic.NewFieldSort("durationNanos").Desc(), elastic.NewFieldSort("startNanos").Desc(), elastic.NewFieldSort("traceID").Asc()}
	if q.Order == model.OrderNewest {
		sorts[0], sorts[1] = sorts[1], sorts[0]
	}
	res, err := s.search(s.x.tracesPattern()).
		Query(filter(q.Service, q.Operation, q.Tags, q.MinDuration, q.MaxDuration, q.Start, q.End)).
		SortBy(sorts...).Size(q.Limit).
		FetchSourceContext(elastic.NewFetchSourceContext(true).Exclude("analysis", "operations", "operationStats")).
		TrackTotalHits(false).Do(ctx)
	if err != nil {
		return nil, fmt.Errorf("find traces: %w", err)
	}
	out := make([]model.TraceSummary, 0, len(res.Hits.Hits))
	seen := make(map[string]int, len(res.Hits.Hits))
	for _, h := range res.Hits.Hits {
		var d dbmodel.Trace
		if err := json.Unmarshal(h.Source, &d); err != nil {
			return nil, fmt.Errorf("find traces: decode summary: %w", err)
		}
		if err := d.Expand(); err != nil {
			return nil, fmt.Errorf("find traces: %w", err)
		}
		sum, err := d.ToDomainSummary(s.cfg.PromotedTags)
		if err != nil {
			return nil, fmt.Errorf("find traces: %w", err)
		}
		if i, ok := seen[d.TraceID]; ok { // two days' copies of one trace: keep the newer
			if sum.Version > out[i].Version {
				out[i] = sum
			}
			continue
		}
		seen[d.TraceID] = len(out)
		out = append(out, sum)
	}
	return out, nil
}

// maxOperations bounds the distinct operations TopBottlenecks ranks; with
// one shard per index (the default) the ranking is exact up to that many.
// Past it, the script counts the operations it leaves out (logged).
const maxOperations = 10000

// Painless scripts of TopBottlenecks' scripted_metric aggregation over the
// compact summaries' operationStats (one binary doc value: records
// separated by \x1e, each dbmodel.ParseOperationStat's five numbers, then the
// operation key): per key, the sums of critical path, count, errors, self
// and duration, and the number of traces.
const (
	bottlenecksInit = `state.m = new HashMap(); state.over = 0L;`
	bottlenecksMap  = `if (doc.containsKey('operationStats') && doc['operationStats'].size() > 0) {
  for (String s : doc['operationStats'].value.utf8ToString().splitOnToken(String.valueOf((char)30))) {
    int p = 0; long[] v = new long[5];
    for (int i = 0; i < 5; i++) { int q = s.indexOf(' ', p); v[i] = Long.parseLong(s.substring(p, q)); p = q + 1; }
    String k = s.substring(p);
    List t = state.m.get(k);
    if (t == null) {
      if (state.m.size() >= params.max) { state.over += 1L; continue; }
      t = new ArrayList(); for (int i = 0; i < 6; i++) { t.add(0L); }
      state.m.put(k, t);
    }
    for (int i = 0; i < 5; i++) { t.set(i, t.get(i) + v[i]); }
    t.set(5, t.get(5) + 1L);
  }
}`
	bottlenecksCombine = `return state;`
	bottlenecksReduce  = `Map m = new HashMap(); long over = 0L;
for (def s : states) {
  if (s == null) { continue; }
  over += s.over;
  for (def e : s.m.entrySet()) {
    List t = m.get(e.getKey());
    if (t == null) {
      if (m.size() >= params.max) { over += 1L; continue; }
      m.put(e.getKey(), e.getValue());
    } else {
      for (int i = 0; i < 6; i++) { t.set(i, t.get(i) + e.getValue().get(i)); }
    }
  }
}
return ['ops': m, 'over': over];`
)

// TopBottlenecks aggregates the summaries' per-operation totals: the
// compact summaries' operationStats by script, and the nested entries of
// summaries written before template version 5 by a nested terms
// aggregation, summed per operation.
func (s *Store) TopBottlenecks(ctx context.Context, q model.BottleneckQuery) ([]model.BottleneckRow, error) {
	q, err := q.Normalize()
	if err != nil {
		return nil, err
	}
	if err := model.CheckPromoted(q.Tags, s.cfg.PromotedTags); err != nil {
		return nil, err
	}
	params := map[string]interface{}{"max": maxOperations}
	script := func(src string) *elastic.Script { return elastic.NewScript(src).Lang("painless").Params(params) }
	stats := elastic.NewScriptedMetricAggregation().
		InitScript(script(bottlenecksInit)).MapScript(script(bottlenecksMap)).
		CombineScript(script(bottlenecksCombine)).ReduceScript(script(bottlenecksReduce))
	terms := elastic.NewTermsAggregation().Field("operations.key").Size(maxOperations).
		Order("cp", false).
		SubAggregation("cp", elastic.NewSumAggregation().Field("operations.criticalPathNanos")).
		SubAggregation("count", elastic.NewSumAggregation().Field("operations.count")).
		SubAggregation("errors", elastic.NewSumAggregation().Field("operations.errors")).
		SubAggregation("self", elastic.NewSumAggregation().Field("operations.selfNanos")).
		SubAggregation("duration", elastic.NewSumAggregation().Field("operations.durationNanos")).
		SubAggregation("service", elastic.NewTermsAggregation().Field("operations.service").Size(1)).
		SubAggregation("operation", elastic.NewTermsAggregation().Field("operations.operation").Size(1))
	res, err := s.search(s.x.tracesPattern()).
		Query(filter(q.Service, "", q.Tags, 0, 0, q.Start, q.End)).Size(0).TrackTotalHits(false).
		Aggregation("total", elastic.NewSumAggregation().Field("durationNanos")).
		Aggregation("stats", stats).
		Aggregation("ops", elastic.NewNestedAggregation().Path("operations").SubAggregation("keys", terms)).
		Do(ctx)
	if err != nil {
		return nil, fmt.Errorf("bottlenecks: %w", err)
	}
	var total float64
	if t, ok := res.Aggregations.Sum("total"); ok && t.Value != nil {
		total = *t.Value
	}
	byKey := map[model.OperationKey]*model.BottleneckRow{}
	add := func(r model.BottleneckRow) {
		if have, ok := byKey[r.OperationKey]; ok {
			have.CriticalPath += r.CriticalPath
			have.Traces += r.Traces
			have.Count += r.Count
			have.Errors += r.Errors
			have.Self += r.Self
			have.Duration += r.Duration
			return
		}
		byKey[r.OperationKey] = &r
	}
	over, err := scriptedBottlenecks(res.Aggregations["stats"], add)
	if err != nil {
		return nil, fmt.Errorf("bottlenecks: %w", err)
	}
	if over > 0 {
		s.cfg.Logger.Warn("bottlenecks: more distinct operations than ranked; the rest left out", "max", maxOperations, "left_out", over)
	}
	nestedBottlenecks(res.Aggregations, add)
	rows := make([]model.BottleneckRow, 0, len(byKey))
	for _, r := range byKey {
		rows = append(rows, *r)
	}
	return storage.RankBottlenecks(rows, time.Duration(total), q.Limit), nil
}

// scriptedBottlenecks reads the scripted_metric result of TopBottlenecks
// ({"value":{"ops":{key:[cp,count,errors,self,duration,traces]},"over":n}})
// into rows, and returns how many operations the script left out.
func scriptedBottlenecks(raw json.RawMessage, add func(model.BottleneckRow)) (over int64, _ error) {
	if len(raw) == 0 {
		return 0, nil
	}
	var v struct {
		Value *struct {
			Ops  map[string][6]int64 `json:"ops"`
			Over int64               `json:"over"`
		} `json:"value"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return 0, fmt.Errorf("operation stats: %w", err)
	}
	if v.Value == nil {
		return 0, nil
	}
	for key, t := range v.Value.Ops {
		svc, op, ok := strings.Cut(key, "\x1f")
		if !ok {
			return 0, fmt.Errorf("operation stats: key %q without service", key)
		}
		add(model.BottleneckRow{
			OperationKey: model.OperationKey{Service: svc, Operation: op},
			CriticalPath: time.Duration(t[0]), Count: int(t[1]), Errors: int(t[2]),
			Self: time.Duration(t[3]), Duration: time.Duration(t[4]), Traces: int(t[5]),
		})
	}
	return v.Value.Over, nil
}

// nestedBottlenecks reads the nested terms aggregation over the
// per-operation entries of summaries written before template version 5.
func nestedBottlenecks(aggs elastic.Aggregations, add func(model.BottleneckRow)) {
	ops, ok := aggs.Nested("ops")
	if !ok {
		return
	}
	keys, ok := ops.Terms("keys")
	if !ok {
		return
	}
	sum := func(b *elastic.AggregationBucketKeyItem, name string) int64 {
		if v, ok := b.Sum(name); ok && v.Value != nil {
			return int64(*v.Value)
		}
		return 0
	}
	first := func(b *elastic.AggregationBucketKeyItem, name string) string {
		if t, ok := b.Terms(name); ok && len(t.Buckets) > 0 {
			if s, ok := t.Buckets[0].Key.(string); ok {
				return s
			}
		}
		return ""
	}
	for _, b := range keys.Buckets {
		add(model.BottleneckRow{
			OperationKey: model.OperationKey{Service: first(b, "service"), Operation: first(b, "operation")},
			CriticalPath: time.Duration(sum(b, "cp")), Traces: int(b.DocCount), Count: int(sum(b, "count")),
			Errors: int(sum(b, "errors")), Self: time.Duration(sum(b, "self")), Duration: time.Duration(sum(b, "duration")),
		})
	}
}

// RollupSeries reads the rollups of one operation and resolution.
func (s *Store) RollupSeries(ctx context.Context, q model.RollupQuery) ([]model.Rollup, error) {
	q, err := q.Normalize()
	if err != nil {
		return nil, err
	}
	bq := elastic.NewBoolQuery().Filter(
		elastic.NewTermQuery("service", q.Service), elastic.NewTermQuery("operation", q.Operation),
		elastic.NewTermQuery("resolutionNanos", int64(q.Resolution)))
	windowFilter(bq, q.Start, q.End)
	if q.Kind != model.KindUnspecified {
		bq = bq.Filter(elastic.NewTermQuery("kind", q.Kind.String()))
	}
	for k, v := range q.Dimensions {
		bq = bq.Filter(elastic.NewTermQuery("dim."+dbmodel.TagField(k), v))
	}
	res, err := s.search(s.x.rollupPattern(q.Resolution)).Query(bq).
		Sort("windowStartNanos", true).Size(q.Limit).TrackTotalHits(false).Do(ctx)
	if err != nil {
		return nil, fmt.Errorf("rollups: %w", err)
	}
	out := make([]model.Rollup, 0, len(res.Hits.Hits))
	for _, h := range res.Hits.Hits {
		var d dbmodel.Rollup
		if err := json.Unmarshal(h.Source, &d); err != nil {
			return nil, fmt.Errorf("rollups: decode: %w", err)
		}
		r, err := d.ToDomain()
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].WindowStart != out[j].WindowStart {
			return out[i].WindowStart < out[j].WindowStart
		}
		return out[i].ID() < out[j].ID()
	})
	return out, nil
}

// windowFilter adds to bq a filter on windowStartNanos in [start, end)
// (zero: unbounded), as the rollup and edge reads take their range.
func windowFilter(bq *elastic.BoolQuery, start, end model.Timestamp) {
	if start == 0 && end == 0 {
		return
	}
	r := elastic.NewRangeQuery("windowStartNanos")
	if start != 0 {
		r = r.Gte(int64(start))
	}
	if end != 0 {
		r = r.Lt(int64(end))
	}
	bq.Filter(r)
}

// appendEdgeRollups decodes edge rollup hits and appends them to out.
func appendEdgeRollups(out []model.EdgeRollup, hits []*elastic.SearchHit) ([]model.EdgeRollup, error) {
	for _, h := range hits {
		var d dbmodel.EdgeRollup
		if err := json.Unmarshal(h.Source, &d); err != nil {
			return nil, fmt.Errorf("edge rollups: decode: %w", err)
		}
		e, err := d.ToDomain()
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// EdgeSeries reads the edge rollups of one caller, callee and resolution
// whose window started in [start, end) (zero: unbounded), in window order.
// It pages with search_after, so the series is complete however long: an
// edge has at most one rollup per window, so the window start is a unique
// sort key.
func (s *Store) EdgeSeries(ctx context.Context, res time.Duration, caller, callee string, start, end model.Timestamp) ([]model.EdgeRollup, error) {
	if err := storage.CheckEdgeQuery(res, start, end); err != nil {
		return nil, err
	}
	bq := elastic.NewBoolQuery().Filter(
		elastic.NewTermQuery("caller", caller), elastic.NewTermQuery("callee", callee),
		elastic.NewTermQuery("resolutionNanos", int64(res)))
	windowFilter(bq, start, end)
	out := []model.EdgeRollup{}
	var after []any
	for {
		sq := s.search(s.x.edgesPattern(res)).Query(bq).Sort("windowStartNanos", true).Size(model.MaxLimit).TrackTotalHits(false)
		if after != nil {
			sq = sq.SearchAfter(after...)
		}
		r, err := sq.Do(ctx)
		if err != nil {
			return nil, fmt.Errorf("edge rollups %s->%s: %w", caller, callee, err)
		}
		if r.Hits == nil {
			break
		}
		if out, err = appendEdgeRollups(out, r.Hits.Hits); err != nil {
			return nil, err
		}
		if n := len(r.Hits.Hits); n < model.MaxLimit || len(r.Hits.Hits[n-1].Sort) == 0 {
			break
		}
		after = r.Hits.Hits[len(r.Hits.Hits)-1].Sort
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].WindowStart < out[j].WindowStart })
	return out, nil
}
