package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tracepipe/tracepipe/internal/dirlock"
	"github.com/tracepipe/tracepipe/internal/logerr"
	"github.com/tracepipe/tracepipe/pipeline/aggregator"
	"github.com/tracepipe/tracepipe/pipeline/deadletter"
	"github.com/tracepipe/tracepipe/pipeline/index"
	"github.com/tracepipe/tracepipe/pipeline/local"
	"github.com/tracepipe/tracepipe/query"
	"github.com/tracepipe/tracepipe/query/ui"
	"github.com/tracepipe/tracepipe/storage"
	"github.com/tracepipe/tracepipe/storage/elasticsearch"
	"github.com/tracepipe/tracepipe/storage/embedded"
	"github.com/tracepipe/tracepipe/wire"
)

const runUsage = `usage: tracepipe run [flags]

Runs the whole pipeline in one process on embedded defaults: a Kafka broker
(persisted under --data-dir; collectors and 'tracepipe gen' produce spans to
it), the ingester, the indexer writing explained traces to the embedded store
(or Elasticsearch with --es-url), the aggregator writing per-operation rollups
beside them, the collector (receiving spans from instrumented services over
Jaeger UDP/HTTP and OTLP gRPC/HTTP on loopback; see docs/collector.md), the
web UI and query API (--listen, http://127.0.0.1:16689/; docs/ui.md) and
/metrics. With
--kafka-brokers it consumes from real Kafka instead of starting a broker,
first creating the topics that do not exist yet (--partitions partitions).
Stop it with Ctrl-C (SIGINT) or SIGTERM: it stops fetching, finishes and
commits what is durable, and closes everything in order.
`

func runRun(ctx context.Context, args []string, stderr io.Writer) error {
	cfg := local.DefaultConfig()
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, runUsage, "\nflags (each also as TRACEPIPE_<NAME>, e.g. TRACEPIPE_DATA_DIR):\n")
		fs.PrintDefaults()
	}
	var (
		brokers     = fs.String("kafka-brokers", "", "real Kafka brokers, comma-separated (default: start the embedded broker)")
		esURL       = fs.String("es-url", "", "store in Elasticsearch/OpenSearch at this URL instead of the embedded store")
		indexPrefix = fs.String("index-prefix", "", "Elasticsearch index prefix")
		encoding    = fs.String("encoding", string(wire.Auto), "span encoding: auto, jaeger-proto, jaeger-json, otlp-proto, otlp-json")
		logLevel    = fs.String("log-level", "info", "debug, info, warn or error")
		jaegerUI    = fs.String("jaeger-ui-url", "", "base URL of a Jaeger UI over the same store, e.g. http://127.0.0.1:16686: the web UI's trace pages link to it")
	)
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory of the embedded broker's log and the embedded store")
	fs.StringVar(&cfg.BrokerListen, "broker-listen", cfg.BrokerListen, "address of the embedded broker")
	fs.IntVar(&cfg.Partitions, "partitions", cfg.Partitions, "partitions of the topics run creates: the embedded broker's, or on --kafka-brokers the spans, traces and dead-letter topics that do not exist yet (existing topics are used as they are)")
	fs.BoolVar(&cfg.SyncWrites, "sync-writes", false, "embedded broker: fsync every produced batch (slower, survives power loss)")
	fs.StringVar(&cfg.QueryListen, "listen", cfg.QueryListen, "query API address (empty: none)")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", cfg.MetricsAddr, "/metrics and /healthz address (empty: none)")
	fs.StringVar(&cfg.Ingest.SpansTopic, "spans-topic", cfg.Ingest.SpansTopic, "topic of incoming spans")
	fs.StringVar(&cfg.Ingest.TracesTopic, "traces-topic", cfg.Ingest.TracesTopic, "topic of assembled traces")
	fs.DurationVar(&cfg.Ingest.IdleTimeout, "idle-timeout", cfg.Ingest.IdleTimeout, "emit a trace when no span arrived for this long")
	fs.DurationVar(&cfg.Ingest.MaxWait, "max-wait", cfg.Ingest.MaxWait, "emit a trace at the latest this long after its first span")
	fs.IntVar(&cfg.Ingest.MaxSpansPerTrace, "max-spans-per-trace", cfg.Ingest.MaxSpansPerTrace, "spans kept per trace; more are counted and the trace is marked truncated")
	fs.StringVar(&cfg.RekeyTo, "rekey-to", "", "for producers that do not key spans by trace ID (the OTel Collector's Kafka exporter): re-publish every span to this topic keyed by trace ID, then assemble from it (e.g. tracepipe-spans-by-trace)")
	cfg.Collector.RegisterFlags(fs) // --jaeger-compact-udp, --otlp-grpc, ... (empty: that receiver off)
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if err := applyEnv(fs); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	enc, err := wire.ParseEncoding(*encoding)
	if err != nil {
		return fmt.Errorf("%w: --encoding: %v", errUsage, err)
	}
	cfg.Ingest.Encoding = enc
	if *brokers != "" {
		cfg.Brokers = strings.Split(*brokers, ",")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("%w: --log-level: %v", errUsage, err)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	log := logerr.NewLogger(stderr, level)

	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return err
	}
	// One process per data directory: two would corrupt the embedded
	// broker's log.
	lock, err := dirlock.Acquire(cfg.DataDir)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	// Documents and traces the store rejects for good go to the store
	// dead-letter topic; its writer needs the brokers, known once they run.
	var (
		dlHook deadletter.Hook
		dl     *deadletter.Writer
	)
	defer func() {
		if dl != nil {
			dl.Close()
		}
	}()
	var store storage.Store
	if *esURL != "" {
		store, err = elasticsearch.New(ctx, elasticsearch.Config{URLs: strings.Split(*esURL, ","), IndexPrefix: *indexPrefix, DeadLetter: &dlHook})
	} else {
		path := filepath.Join(cfg.DataDir, "tracepipe.db")
		store, err = embedded.Open(ctx, embedded.Options{Path: path})
		log.Info("embedded store", "path", path)
	}
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	// The store closes after every stage has stopped (Run returns first).
	defer store.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	qlog := log.With("component", "query")
	// The web UI at /, the JSON API under /api/; the limits wrap both.
	web, err := ui.New(store, ui.Options{API: query.NewHandler(store, time.Now, qlog), Logger: qlog, JaegerUIURL: *jaegerUI})
	if err != nil {
		return fmt.Errorf("%w: --jaeger-ui-url: %v", errUsage, err)
	}
	limits := query.DefaultLimits()
	limits.IsCheap = ui.IsCheap
	queryAPI, err := query.Limit(web, limits, query.LimitOptions{Logger: qlog, Registry: reg, Refused: web.Refused})
	if err != nil {
		return err
	}
	deps := local.Deps{
		Registry: reg,
		Logger:   log,
		Query:    queryAPI,
		Stages: func(brokers []string) ([]local.Stage, error) {
			var err error
			dl, err = deadletter.New(deadletter.Config{Brokers: brokers}, deadletter.Options{Logger: log.With("component", "dead-letter"), Registry: reg})
			if err != nil {
				return nil, err
			}
			dlHook.Set(dl)
			icfg := index.DefaultConfig()
			icfg.Brokers = brokers
			icfg.Topic = cfg.Ingest.TracesTopic
			x, err := index.New(icfg, store, index.Options{Logger: log.With("stage", "indexer"), Registry: reg, DeadLetter: dl})
			if err != nil {
				return nil, err
			}
			acfg := aggregator.DefaultConfig()
			acfg.Brokers = brokers
			acfg.TracesTopic = cfg.Ingest.TracesTopic
			acfg.PartialsPartitions = cfg.Partitions
			agg, err := aggregator.New(acfg, store, aggregator.Options{Logger: log.With("stage", "aggregator"), Registry: reg})
			if err != nil {
				return nil, err
			}
			return []local.Stage{x, agg}, nil
		},
	}
	return local.Run(ctx, cfg, deps, func(brokers []string) {
		log.Info("tracepipe is running", "spans", fmt.Sprintf("%s on %s", cfg.Ingest.SpansTopic, strings.Join(brokers, ",")),
			"query", cfg.QueryListen, "metrics", cfg.MetricsAddr)
	})
}

// applyEnv sets every flag not given on the command line from its
// TRACEPIPE_<NAME> environment variable (dashes become underscores).
func applyEnv(fs *flag.FlagSet) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		name := "TRACEPIPE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("%s=%q: %v", name, v, e)
			}
		}
	})
	return err
}
