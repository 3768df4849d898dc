//lint:file-ignore SA1019 Jaeger installs legacy (_template) index templates; the re-enactment does the same

package elasticsearch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/olivere/elastic/v7"

	"github.com/tracepipe/tracepipe/dag"
	"github.com/tracepipe/tracepipe/internal/testenv"
	"github.com/tracepipe/tracepipe/model"
	"github.com/tracepipe/tracepipe/storage/dbmodel"
	"github.com/tracepipe/tracepipe/tracegen"
)

// The engine benchmark measures what writing spans costs the search engine
// itself: the CPU time of its JVM (utime+stime of /proc/<pid>/stat, the pid
// asked from the node; the node's process.cpu.total_in_millis when /proc
// does not show it), from before the first write until the written data is
// refreshed and no merge runs any more, minus the engine's idle CPU over the
// same time. The engine must run alone for clean figures: point
// TRACEPIPE_ES_BENCH at a private node, e.g.
//
//	TRACEPIPE_SERVICES_DIR=/tmp/bench-es TRACEPIPE_ES_PORT=9250 TRACEPIPE_ES_TRANSPORT_PORT=9350 \
//	  bash deploy/local/services.sh up search
//	TRACEPIPE_ES_BENCH=http://127.0.0.1:9250 go test ./storage/elasticsearch -run '^$' -bench EngineCPU -benchtime 1x
//
// Without it the benchmark uses TRACEPIPE_ES and says that other users' load
// is included.
//
// Workload: tracegen traces (TRACEPIPE_BENCH_ENGINE_TRACES, default 5,000
// traces ≈ 103,000 spans, a fifth of issue 16's 26,000 traces / 515,946
// spans, which the variable can ask for), analysed as the ingester does and
// written in batches of 500 traces as the indexer does.
//
// Sub-benchmarks:
//   - jaeger: Jaeger's Elasticsearch span writer re-enacted on the same node
//     (Jaeger v1/v2 defaults: its v1 mapping jaegerSpanMapping, 5 shards and
//     1 replica, refresh_interval unset, documents without ID or version,
//     bulk requests of 1,000 actions / 5 MB / 200 ms from one worker,
//     service documents once per service and operation). The client CPU it
//     reports is this re-enactment's, not Jaeger's. TRACEPIPE_BENCH_JAEGER_SHARDS
//     changes its shards.
//   - jaeger-ids: the same with tracepipe's document IDs and versions, i.e.
//     Jaeger's writes made idempotent as tracepipe's are: what the ID
//     lookup per document costs the engine.
//   - tracepipe: Store.WriteTraces with the default Config: spans, service
//     documents and one summary per trace. TRACEPIPE_BENCH_REFRESH,
//     TRACEPIPE_BENCH_CODEC, TRACEPIPE_BENCH_BATCH_DOCS and
//     TRACEPIPE_BENCH_TAGS_AS_FIELDS measure other settings (see
//     engineBenchConfig).
//
// `bash scripts/bench.sh` starts a private node for this benchmark unless
// TRACEPIPE_ES_BENCH names one.
//
// Reported per stored span: engine-CPU-µs/span, client-CPU-µs/span (the
// benchmark process: conversion, JSON, HTTP; the workload is built before),
// lucene-docs/span (nested documents included) and bytes/span on disk after
// a flush; spans/s is wall time to the last acknowledgement.

// jaegerSpanMapping is Jaeger v1's span mapping for ES 7
// (plugin/storage/es/mappings/jaeger-span-7.json) as Jaeger installs it.
const jaegerSpanMapping = `{
  "dynamic_templates":[
    {"span_tags_map":{"mapping":` + keyword + `,"path_match":"tag.*"}},
    {"process_tags_map":{"mapping":` + keyword + `,"path_match":"process.tag.*"}}
  ],
  "properties":{
    "traceID":` + keyword + `,
    "parentSpanID":` + keyword + `,
    "spanID":` + keyword + `,
    "operationName":` + keyword + `,
    "startTime":{"type":"long"},
    "startTimeMillis":{"type":"date","format":"epoch_millis"},
    "duration":{"type":"long"},
    "flags":{"type":"integer"},
    "logs":{"type":"nested","dynamic":false,"properties":{
      "timestamp":{"type":"long"},
      "fields":{"type":"nested","dynamic":false,"properties":{"key":` + keyword + `,"value":` + keyword + `,"tagType":` + keyword + `}}
    }},
    "process":{"properties":{
      "serviceName":` + keyword + `,
      "tag":{"type":"object"},
      "tags":{"type":"nested","dynamic":false,"properties":{"key":` + keyword + `,"value":` + keyword + `,"tagType":` + keyword + `}}
    }},
    "references":{"type":"nested","dynamic":false,"properties":{"refType":` + keyword + `,"traceID":` + keyword + `,"spanID":` + keyword + `}},
    "tag":{"type":"object"},
    "tags":{"type":"nested","dynamic":false,"properties":{"key":` + keyword + `,"value":` + keyword + `,"tagType":` + keyword + `}}
  }
}`

var engineWorkload struct {
	once   sync.Once
	traces []model.AssembledTrace
	spans  int
}

func engineBenchTraces(b *testing.B) ([]model.AssembledTrace, int) {
	engineWorkload.once.Do(func() {
		n := 5000
		if v, err := strconv.Atoi(os.Getenv("TRACEPIPE_BENCH_ENGINE_TRACES")); err == nil && v > 0 {
			n = v
		}
		w := tracegen.Generate(tracegen.Config{Seed: 16, Traces: n})
		var an dag.Analyzer
		out := make([]model.AssembledTrace, len(w.Traces))
		for i, t := range w.Traces {
			out[i] = model.AssembledTrace{Trace: *t, Version: 1, Completion: model.CompletionIdle}
			out[i].Analysis = an.Analyze(&out[i].Trace, dag.Options{})
			engineWorkload.spans += len(t.Spans)
		}
		engineWorkload.traces = out
	})
	return engineWorkload.traces, engineWorkload.spans
}

// engineURL is the node to measure: TRACEPIPE_ES_BENCH, else TRACEPIPE_ES.
func engineURL(b *testing.B) string {
	if u := os.Getenv("TRACEPIPE_ES_BENCH"); u != "" {
		return u
	}
	u := esURL(b)
	b.Logf("TRACEPIPE_ES_BENCH is not set: measuring the shared engine %s, whose CPU includes other users' load", u)
	return u
}

// engineProbe reads the engine's CPU time.
type engineProbe struct {
	c   *elastic.Client
	pid int
}

func newEngineProbe(ctx context.Context, c *elastic.Client) (*engineProbe, error) {
	info, err := c.NodesInfo().Metric("process").Do(ctx)
	if err != nil {
		return nil, fmt.Errorf("nodes info: %w", err)
	}
	if len(info.Nodes) != 1 {
		return nil, fmt.Errorf("the engine benchmark wants a single-node cluster, this one has %d nodes", len(info.Nodes))
	}
	p := &engineProbe{c: c}
	for _, n := range info.Nodes {
		if n.Process != nil {
			p.pid = n.Process.ID
		}
	}
	if _, err := testenv.ProcCPU(p.pid); err != nil {
		p.pid = 0 // not on this host, or not readable: ask the node
	}
	return p, nil
}

func (p *engineProbe) cpu(ctx context.Context) (time.Duration, error) {
	if p.pid > 0 {
		return testenv.ProcCPU(p.pid)
	}
	st, err := p.c.NodesStats().Metric("process").Do(ctx)
	if err != nil {
		return 0, fmt.Errorf("nodes stats: %w", err)
	}
	for _, n := range st.Nodes {
		if n.Process != nil {
			return time.Duration(n.Process.CPU.TotalInMillis) * time.Millisecond, nil
		}
	}
	return 0, errors.New("nodes stats without process")
}

// idleRate measures the engine's CPU per second of wall time while nothing
// is written.
func (p *engineProbe) idleRate(ctx context.Context, d time.Duration) (float64, error) {
	c0, err := p.cpu(ctx)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	time.Sleep(d)
	c1, err := p.cpu(ctx)
	if err != nil {
		return 0, err
	}
	return float64(c1-c0) / float64(time.Since(t0)), nil
}

// settle refreshes the indices of pattern and waits until no merge runs.
func settle(ctx context.Context, c *elastic.Client, pattern string) error {
	if _, err := c.Refresh(pattern).Do(ctx); err != nil {
		return fmt.Errorf("refresh: %w", err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, err := c.IndexStats(pattern).Metric("merge").Do(ctx)
		if err != nil {
			return fmt.Errorf("merge stats: %w", err)
		}
		if st.All == nil || st.All.Total == nil || st.All.Total.Merges == nil || st.All.Total.Merges.Current == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("merges still running after 2 minutes")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// jaegerWrite re-enacts Jaeger's span writer (see the file comment); withIDs
// adds tracepipe's document IDs and versions to the span documents.
func jaegerWrite(ctx context.Context, c *elastic.Client, x indices, traces []model.AssembledTrace, withIDs bool) error {
	for _, t := range []template{
		{x.prefix + familySpan, x.spanPattern(), jaegerSpanMapping},
		{x.prefix + familyService, x.prefix + familyService + "-*", serviceMapping},
	} {
		shards := 5
		if v, err := strconv.Atoi(os.Getenv("TRACEPIPE_BENCH_JAEGER_SHARDS")); err == nil && v > 0 {
			shards = v
		}
		body := fmt.Sprintf(`{"index_patterns":[%q],"settings":{"index.number_of_shards":%d,"index.number_of_replicas":1,"index.mapping.nested_fields.limit":50,"index.requests.cache.enable":true},"mappings":%s}`,
			t.pattern, shards, t.mapping)
		if _, err := c.IndexPutTemplate(t.name).BodyString(body).Do(ctx); err != nil {
			return fmt.Errorf("put template %s: %w", t.name, err)
		}
	}
	var (
		mu     sync.Mutex
		failed error
	)
	bp, err := c.BulkProcessor().Workers(1).BulkActions(1000).BulkSize(5_000_000).FlushInterval(200 * time.Millisecond).
		After(func(_ int64, _ []elastic.BulkableRequest, r *elastic.BulkResponse, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err == nil && r != nil && r.Errors {
				err = fmt.Errorf("bulk: %d items failed, first: %s", len(r.Failed()), details(r.Failed()[0].Error))
			}
			if err != nil && failed == nil {
				failed = err
			}
		}).Do(ctx)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for i := range traces {
		for _, sp := range traces[i].Trace.Spans {
			d := dbmodel.FromDomainSpan(sp, dbmodel.SpanOptions{})
			body, err := json.Marshal(&d)
			if err != nil {
				return err
			}
			r := elastic.NewBulkIndexRequest().Index(x.span(sp.Start)).Doc(json.RawMessage(body))
			if withIDs {
				r = r.Id(dbmodel.SpanDocID(sp.TraceID, sp.SpanID)).VersionType("external_gte").Version(1)
			}
			bp.Add(r)
			svc := dbmodel.Service{ServiceName: sp.Process.ServiceName, OperationName: sp.Operation}
			if id := svc.ID(); !seen[id] {
				seen[id] = true
				sb, _ := json.Marshal(svc)
				bp.Add(elastic.NewBulkIndexRequest().Index(x.service(sp.Start)).Id(id).Doc(json.RawMessage(sb)))
			}
		}
	}
	if err := bp.Flush(); err != nil {
		return err
	}
	if err := bp.Close(); err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	return failed
}

// engineBenchConfig is the default Config, with TRACEPIPE_BENCH_REFRESH
// (a duration), TRACEPIPE_BENCH_CODEC, TRACEPIPE_BENCH_BATCH_DOCS and
// TRACEPIPE_BENCH_TAGS_AS_FIELDS ("none": Jaeger's nested layout, "all" or a
// comma-separated key list: Jaeger's tags-as-fields options) to measure other
// choices.
func engineBenchConfig(b *testing.B, url, prefix string) Config {
	// As storeflags.Default: the well-known tags as fields.
	cfg := Config{URLs: []string{url}, IndexPrefix: prefix, SpanOptions: dbmodel.SpanOptions{WellKnownTagsAsFields: true}}
	if v := os.Getenv("TRACEPIPE_BENCH_REFRESH"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("TRACEPIPE_BENCH_REFRESH: %v", err)
		}
		cfg.RefreshInterval = d
	}
	cfg.Codec = os.Getenv("TRACEPIPE_BENCH_CODEC")
	switch v := os.Getenv("TRACEPIPE_BENCH_TAGS_AS_FIELDS"); v {
	case "":
	case "none": // Jaeger's default layout
		cfg.SpanOptions.WellKnownTagsAsFields = false
	case "all":
		cfg.SpanOptions.AllTagsAsFields = true
	default:
		cfg.SpanOptions.TagKeysAsFields = strings.Split(v, ",")
	}
	if v, err := strconv.Atoi(os.Getenv("TRACEPIPE_BENCH_BATCH_DOCS")); err == nil {
		cfg.BatchDocs = v
	}
	return cfg
}

func BenchmarkEngineCPU(b *testing.B) {
	url := engineURL(b)
	traces, spans := engineBenchTraces(b)
	b.Logf("workload: %d traces, %d spans", len(traces), spans)
	run := func(b *testing.B, write func(ctx context.Context, c *elastic.Client, prefix string) error) {
		ctx := context.Background()
		c, err := elastic.NewClient(elastic.SetURL(url), elastic.SetSniff(false), elastic.SetHealthcheck(false))
		if err != nil {
			b.Fatal(err)
		}
		defer c.Stop()
		p, err := newEngineProbe(ctx, c)
		if err != nil {
			b.Fatal(err)
		}
		var engine, client, wall time.Duration
		var luceneDocs, bytes, indexMs, mergeMs, refreshMs int64
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			prefix := testPrefix(b, url)
			x := newIndices(prefix)
			idle, err := p.idleRate(ctx, 3*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			e0, err := p.cpu(ctx)
			if err != nil {
				b.Fatal(err)
			}
			c0, t0 := testenv.SelfUsage().CPU(), time.Now()
			if err := write(ctx, c, prefix); err != nil {
				b.Fatal(err)
			}
			wall += time.Since(t0)
			client += testenv.SelfUsage().CPU() - c0
			if err := settle(ctx, c, x.prefix+"*"); err != nil {
				b.Fatal(err)
			}
			e1, err := p.cpu(ctx)
			if err != nil {
				b.Fatal(err)
			}
			took := time.Since(t0)
			// The idle CPU (a fraction of a percent) is measured before and
			// after; the smaller figure is subtracted, so that a burst of
			// background work in one window does not count as idle.
			idle2, err := p.idleRate(ctx, 3*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			engine += e1 - e0 - time.Duration(min(idle, idle2)*float64(took))
			if _, err := c.Flush(x.prefix + "*").Do(ctx); err != nil {
				b.Fatal(err)
			}
			st, err := c.IndexStats(x.prefix+"*").Metric("docs", "store", "indexing", "merge", "refresh").Do(ctx)
			if err != nil {
				b.Fatal(err)
			}
			indexMs += st.All.Primaries.Indexing.IndexTimeInMillis
			mergeMs += st.All.Primaries.Merges.TotalTimeInMillis
			refreshMs += st.All.Primaries.Refresh.TotalTimeInMillis
			luceneDocs += st.All.Primaries.Docs.Count
			bytes += st.All.Primaries.Store.SizeInBytes
		}
		n := float64(b.N * spans)
		b.ReportMetric(float64(engine.Microseconds())/n, "engine-CPU-µs/span")
		b.ReportMetric(float64(client.Microseconds())/n, "client-CPU-µs/span")
		b.ReportMetric(float64(luceneDocs)/n, "lucene-docs/span")
		// Where the engine's time went, by its own accounting (wall time
		// of indexing threads, merges and refreshes; not CPU).
		b.ReportMetric(float64(indexMs)*1000/n, "index-µs/span")
		b.ReportMetric(float64(mergeMs)*1000/n, "merge-µs/span")
		b.ReportMetric(float64(refreshMs)*1000/n, "refresh-µs/span")
		b.ReportMetric(float64(bytes)/n, "disk-B/span")
		b.ReportMetric(n/wall.Seconds(), "spans/s")
		b.ReportMetric(0, "ns/op")
	}
	for _, withIDs := range []bool{false, true} {
		name := "jaeger"
		if withIDs {
			name = "jaeger-ids"
		}
		b.Run(name, func(b *testing.B) {
			run(b, func(ctx context.Context, c *elastic.Client, prefix string) error {
				return jaegerWrite(ctx, c, newIndices(prefix), traces, withIDs)
			})
		})
	}
	b.Run("tracepipe", func(b *testing.B) {
		run(b, func(ctx context.Context, _ *elastic.Client, prefix string) error {
			s, err := New(ctx, engineBenchConfig(b, url, prefix))
			if err != nil {
				return err
			}
			defer s.Close()
			for i := 0; i < len(traces); i += 500 {
				if err := s.WriteTraces(ctx, traces[i:min(i+500, len(traces))]); err != nil {
					return err
				}
			}
			return nil
		})
	})
}
