//lint:file-ignore SA1019 legacy (_template) index templates are deliberate: what Jaeger v1 installs for ES 7, accepted by ES 7.x and OpenSearch 2.x

package elasticsearch

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/olivere/elastic/v7"

	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/storage"
)

// TemplateVersion is written into every index template's "version" field.
// Start installs a template when it is missing or older, never downgrades
// one; bump it whenever a mapping below changes.
const TemplateVersion = 6

// Index families. Every index is <prefix><family>-YYYY-MM-DD (UTC day of the
// span's start, the trace's start or the rollup window's start); rollup and
// edge indices add the resolution: <prefix>tracepipe-rollups-1m-YYYY-MM-DD,
// <prefix>tracepipe-edges-1m-YYYY-MM-DD.
const (
	familySpan    = "jaeger-span"
	familyService = "jaeger-service"
	familyTraces  = "tracepipe-traces"
	familyRollups = "tracepipe-rollups"
	familyEdges   = "tracepipe-edges"
	// familyDependencies is Jaeger's dependency-link index, read by Jaeger
	// Query's /api/dependencies (the UI's System Architecture view) and
	// written from the daily edge rollups.
	familyDependencies = "jaeger-dependencies"
	dateLayout         = "2006-01-02"
)

// indices names the indices of one prefix. Following Jaeger, a non-empty
// prefix is joined with "-".
type indices struct{ prefix string }

func newIndices(prefix string) indices {
	if prefix != "" && !strings.HasSuffix(prefix, "-") {
		prefix += "-"
	}
	return indices{prefix: prefix}
}

func day(t model.Timestamp) string { return t.Time().Format(dateLayout) }

func (x indices) span(t model.Timestamp) string    { return x.prefix + familySpan + "-" + day(t) }
func (x indices) service(t model.Timestamp) string { return x.prefix + familyService + "-" + day(t) }
func (x indices) traces(t model.Timestamp) string  { return x.prefix + familyTraces + "-" + day(t) }
func (x indices) rollup(res time.Duration, t model.Timestamp) string {
	return x.prefix + familyRollups + "-" + model.ResolutionName(res) + "-" + day(t)
}
func (x indices) edges(res time.Duration, t model.Timestamp) string {
	return x.prefix + familyEdges + "-" + model.ResolutionName(res) + "-" + day(t)
}
func (x indices) dependencies(t model.Timestamp) string {
	return x.prefix + familyDependencies + "-" + day(t)
}
func (x indices) spanPattern() string   { return x.prefix + familySpan + "-*" }
func (x indices) tracesPattern() string { return x.prefix + familyTraces + "-*" }
func (x indices) rollupPattern(res time.Duration) string {
	return x.prefix + familyRollups + "-" + model.ResolutionName(res) + "-*"
}
func (x indices) edgesPattern(res time.Duration) string {
	return x.prefix + familyEdges + "-" + model.ResolutionName(res) + "-*"
}

var (
	datedRE  = regexp.MustCompile(`^(jaeger-span|jaeger-service|jaeger-dependencies|tracepipe-traces)-(\d{4}-\d{2}-\d{2})$`)
	rollupRE = regexp.MustCompile(`^tracepipe-(?:rollups|edges)-\d+[smhd]-(\d{4}-\d{2}-\d{2})$`)
)

// dayOf returns the day of an index of this prefix, ok=false for any other
// index (other prefixes, other families, non-date suffixes).
func (x indices) dayOf(name string) (time.Time, bool) {
	if !strings.HasPrefix(name, x.prefix) {
		return time.Time{}, false
	}
	rest := name[len(x.prefix):]
	var date string
	if m := datedRE.FindStringSubmatch(rest); m != nil {
		date = m[2]
	} else if m := rollupRE.FindStringSubmatch(rest); m != nil {
		date = m[1]
	} else {
		return time.Time{}, false
	}
	t, err := time.Parse(dateLayout, date)
	return t, err == nil
}

const keyword = `{"type":"keyword","ignore_above":256}`

// Field types of the span mapping that do less work than Jaeger's own for
// the same queries: searchable but without doc values (nothing sorts or
// aggregates on them), or kept in _source only (nothing searches them).
const (
	keywordSearch = `{"type":"keyword","ignore_above":256,"doc_values":false}`
	keywordStored = `{"type":"keyword","index":false,"doc_values":false}`
)

// spanMapping keeps the fields and types of Jaeger v1's span mapping
// (plugin/storage/es/mappings/jaeger-span-7.json; the benchmark in
// engine_bench_test.go keeps a copy) wherever Jaeger Query or tracepipe's
// reader uses them, so that Jaeger Query reads the indices as its own, and
// drops the index work nobody uses:
//
//   - traceID and startTime keep index and doc values: Jaeger Query's trace
//     search aggregates on traceID with the max startTime, sorts on startTime
//     and filters both; tracepipe's reader filters traceID and sorts on
//     startTime.
//   - operationName, process.serviceName, duration, startTimeMillis and the
//     tag keys and values (tags, process.tags, logs.fields and the tag.* /
//     process.tag.* fields) are searched only: no doc values.
//   - spanID, parentSpanID, flags, logs.timestamp and the tags' tagType are
//     never searched: _source only.
//   - references are never searched: a disabled object instead of nested
//     documents (one Lucene document fewer per child span).
const spanMapping = `{
  "dynamic_templates":[
    {"span_tags_map":{"mapping":` + keywordSearch + `,"path_match":"tag.*"}},
    {"process_tags_map":{"mapping":` + keywordSearch + `,"path_match":"process.tag.*"}}
  ],
  "properties":{
    "traceID":` + keyword + `,
    "parentSpanID":` + keywordStored + `,
    "spanID":` + keywordStored + `,
    "operationName":` + keywordSearch + `,
    "startTime":{"type":"long"},
    "startTimeMillis":{"type":"date","format":"epoch_millis","doc_values":false},
    "duration":{"type":"long","doc_values":false},
    "flags":{"type":"integer","index":false,"doc_values":false},
    "logs":{"type":"nested","dynamic":false,"properties":{
      "timestamp":{"type":"long","index":false,"doc_values":false},
      "fields":{"type":"nested","dynamic":false,"properties":{"key":` + keywordSearch + `,"value":` + keywordSearch + `,"tagType":` + keywordStored + `}}
    }},
    "process":{"properties":{
      "serviceName":` + keywordSearch + `,
      "tag":{"type":"object"},
      "tags":{"type":"nested","dynamic":false,"properties":{"key":` + keywordSearch + `,"value":` + keywordSearch + `,"tagType":` + keywordStored + `}}
    }},
    "references":{"type":"object","enabled":false},
    "tag":{"type":"object"},
    "tags":{"type":"nested","dynamic":false,"properties":{"key":` + keywordSearch + `,"value":` + keywordSearch + `,"tagType":` + keywordStored + `}}
  }
}`

// Jaeger v1's service mapping (jaeger-service-7.json).
const serviceMapping = `{
  "dynamic_templates":[
    {"span_tags_map":{"mapping":` + keyword + `,"path_match":"tag.*"}},
    {"process_tags_map":{"mapping":` + keyword + `,"path_match":"process.tag.*"}}
  ],
  "properties":{"serviceName":` + keyword + `,"operationName":` + keyword + `}
}`

// Field types of the summaries' per-operation entries that TopBottlenecks
// only aggregates: doc values without an index. operationStats, all of a
// summary's records in one value, is one binary doc value: no terms
// dictionary to sort and merge, unlike a keyword's.
const (
	keywordAggregated = `{"type":"keyword","index":false}`
	longAggregated    = `{"type":"long","index":false}`
	statsAggregated   = `{"type":"binary","doc_values":true}`
	// The summaries' operation keys and names: searched only, up to 8,191
	// characters (an operation name may be a long SQL statement; a term
	// over Lucene's limit would fail the whole document).
	keywordSearchLong = `{"type":"keyword","ignore_above":8191,"doc_values":false}`
)

// Trace summaries: see dbmodel.Trace. Unknown fields are kept in _source but
// not indexed; promoted tags (tag.*) are keywords; the analysis is stored
// only. The Store writes summaries in their compact form (dbmodel.Trace.Compact,
// template version 5): one Lucene document per trace, operationKeys and
// operationNames searched, operationStats kept as doc values for
// TopBottlenecks' script, the per-span analysis packed. The nested
// operations of earlier versions' summaries stay mapped, so that searches
// and TopBottlenecks read indices of both forms.
//
// Nothing is left out of _source (template version 6): with _source
// excludes the engine parses and rebuilds every document's source and keeps
// the original besides (_recovery_source), which cost it more than the
// excluded keys saved (a quarter of the summaries' indexing time).
const tracesMapping = `{
  "dynamic":false,
  "properties":{
    "traceID":{"type":"keyword"},
    "version":{"type":"long"},
    "rootService":{"type":"keyword"},
    "rootOperation":{"type":"keyword"},
    "startNanos":{"type":"long"},
    "startTimeMillis":{"type":"date","format":"epoch_millis"},
    "durationNanos":{"type":"long"},
    "spanCount":{"type":"integer"},
    "errorCount":{"type":"integer"},
    "warningCount":{"type":"integer"},
    "services":{"type":"keyword"},
    "operationKeys":` + keywordSearchLong + `,
    "operationNames":` + keywordSearchLong + `,
    "operationStats":` + statsAggregated + `,
    "operations":{"type":"nested","dynamic":false,"properties":{
      "key":{"type":"keyword"},
      "service":` + keywordAggregated + `,
      "operation":{"type":"keyword"},
      "count":` + longAggregated + `,
      "errors":` + longAggregated + `,
      "durationNanos":` + longAggregated + `,
      "selfNanos":` + longAggregated + `,
      "criticalPathNanos":` + longAggregated + `
    }},
    "tag":{"type":"object","dynamic":true},
    "bottleneck":{"properties":{"service":{"type":"keyword"},"operation":{"type":"keyword"},"criticalPathNanos":{"type":"long"}}},
    "completion":{"type":"keyword"},
    "truncated":{"type":"boolean"},
    "analysis":{"type":"object","enabled":false}
  },
  "dynamic_templates":[{"promoted_tags":{"path_match":"tag.*","mapping":{"type":"keyword","ignore_above":256}}}]
}`

const distMapping = `{"properties":{"sumNanos":{"type":"long"},"p50Nanos":{"type":"long"},"p90Nanos":{"type":"long"},"p95Nanos":{"type":"long"},"p99Nanos":{"type":"long"},"maxNanos":{"type":"long"},"sketch":{"type":"binary"}}}`

// windowFields are the window fields of rollups and edge rollups.
const windowFields = `"resolution":{"type":"keyword"},"resolutionNanos":{"type":"long"},` +
	`"windowStart":{"type":"date","format":"epoch_millis"},"windowStartNanos":{"type":"long"}`

// exemplarsMapping is dbmodel.Exemplar's.
const exemplarsMapping = `{"properties":{"traceID":{"type":"keyword"},"durationNanos":{"type":"long"},"startNanos":{"type":"long"}}}`

// Rollups: see dbmodel.Rollup.
const rollupsMapping = `{
  "dynamic":false,
  "properties":{
    ` + windowFields + `,
    "service":{"type":"keyword"},
    "operation":{"type":"keyword"},
    "kind":{"type":"keyword"},
    "dim":{"type":"object","dynamic":true},
    "dimensions":{"type":"object","enabled":false},
    "count":{"type":"long"},
    "errors":{"type":"long"},
    "duration":` + distMapping + `,
    "self":` + distMapping + `,
    "criticalPath":` + distMapping + `,
    "traceDurationSumNanos":{"type":"long"},
    "criticalPathShare":{"type":"double"},
    "exemplars":` + exemplarsMapping + `
  },
  "dynamic_templates":[{"dimensions":{"path_match":"dim.*","mapping":{"type":"keyword","ignore_above":256}}}]
}`

// Edge rollups: see dbmodel.EdgeRollup.
const edgesMapping = `{
  "dynamic":false,
  "properties":{
    ` + windowFields + `,
    "caller":{"type":"keyword"},
    "callee":{"type":"keyword"},
    "calls":{"type":"long"},
    "errors":{"type":"long"},
    "latency":` + distMapping + `,
    "exemplars":` + exemplarsMapping + `
  }
}`

// Jaeger's dependency links (dependencystore.TimeDependencies): Jaeger
// creates the index with dynamic mappings; the template pins the types
// Jaeger Query's range query on timestamp relies on.
const dependenciesMapping = `{
  "properties":{
    "timestamp":{"type":"date"},
    "dependencies":{"properties":{"parent":` + keyword + `,"child":` + keyword + `,"callCount":{"type":"long"},"source":` + keyword + `}}
  }
}`

type template struct {
	name, pattern, mapping string
}

func (x indices) templates() []template {
	return []template{
		{x.prefix + familySpan, x.prefix + familySpan + "-*", spanMapping},
		{x.prefix + familyService, x.prefix + familyService + "-*", serviceMapping},
		{x.prefix + familyTraces, x.prefix + familyTraces + "-*", tracesMapping},
		{x.prefix + familyRollups, x.prefix + familyRollups + "-*", rollupsMapping},
		{x.prefix + familyEdges, x.prefix + familyEdges + "-*", edgesMapping},
		{x.prefix + familyDependencies, x.prefix + familyDependencies + "-*", dependenciesMapping},
	}
}

// indexSettings are the settings every template gives new indices.
type indexSettings struct {
	shards, replicas int
	refresh          time.Duration // index.refresh_interval
	codec            string        // index.codec; "" leaves the engine's default
}

func settingsOf(cfg Config) indexSettings {
	return indexSettings{shards: cfg.Shards, replicas: cfg.Replicas, refresh: cfg.RefreshInterval, codec: cfg.Codec}
}

func templateBody(t template, st indexSettings) (string, error) {
	extra := ""
	if st.refresh > 0 {
		extra += fmt.Sprintf(`,"index.refresh_interval":"%dms"`, st.refresh.Milliseconds())
	}
	if st.codec != "" {
		extra += fmt.Sprintf(`,"index.codec":%q`, st.codec)
	}
	body := fmt.Sprintf(`{"index_patterns":[%q],"version":%d,"settings":{"index.number_of_shards":%d,"index.number_of_replicas":%d,"index.mapping.nested_fields.limit":50,"index.requests.cache.enable":true%s},"mappings":%s}`,
		t.pattern, TemplateVersion, st.shards, st.replicas, extra, t.mapping)
	if !json.Valid([]byte(body)) {
		return "", fmt.Errorf("BUG: template %s is not valid JSON", t.name)
	}
	return body, nil
}

// installTemplates puts each (legacy, _template) index template unless the
// cluster already has it at TemplateVersion or newer. Legacy templates are
// what Jaeger v1 installs for ES 7 and what both ES 7.x and OpenSearch 2.x
// accept. Idempotent; safe to run from many instances at once.
func installTemplates(ctx context.Context, c *elastic.Client, x indices, st indexSettings) error {
	for _, t := range x.templates() {
		got, err := c.IndexGetTemplate(t.name).Do(ctx)
		if err != nil && !elastic.IsNotFound(err) {
			return fmt.Errorf("get index template %s: %w", t.name, err)
		}
		if cur, ok := got[t.name]; ok && cur != nil && cur.Version >= TemplateVersion {
			continue
		}
		body, err := templateBody(t, st)
		if err != nil {
			return err
		}
		if _, err := c.IndexPutTemplate(t.name).BodyString(body).Do(ctx); err != nil {
			return fmt.Errorf("put index template %s: %w", t.name, err)
		}
	}
	return nil
}

// deleteBefore deletes this prefix's indices of days before cutoff's UTC day.
func deleteBefore(ctx context.Context, c *elastic.Client, x indices, cutoff time.Time) (storage.RetentionReport, error) {
	var rep storage.RetentionReport
	limit := storage.DayStart(cutoff)
	res, err := c.CatIndices().Index(x.prefix + "*").Columns("index").Do(ctx)
	if err != nil {
		return rep, fmt.Errorf("retention: list indices: %w", err)
	}
	for _, row := range res {
		if d, ok := x.dayOf(row.Index); ok && d.Before(limit) {
			rep.Indices = append(rep.Indices, row.Index)
		}
	}
	sort.Strings(rep.Indices)
	// Delete in small groups to keep the URL short.
	for i := 0; i < len(rep.Indices); i += 20 {
		group := rep.Indices[i:min(i+20, len(rep.Indices))]
		if _, err := c.DeleteIndex(group...).Do(ctx); err != nil && !elastic.IsNotFound(err) {
			return rep, fmt.Errorf("retention: delete %s: %w", strings.Join(group, ","), err)
		}
	}
	return rep, nil
}
