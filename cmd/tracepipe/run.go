package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tracepipe/tracepipe/internal/config"
	"github.com/tracepipe/tracepipe/internal/dirlock"
	"github.com/tracepipe/tracepipe/internal/logerr"
	"github.com/tracepipe/tracepipe/pipeline/aggregator"
	"github.com/tracepipe/tracepipe/pipeline/deadletter"
	"github.com/tracepipe/tracepipe/pipeline/index"
	"github.com/tracepipe/tracepipe/pipeline/kafka"
	"github.com/tracepipe/tracepipe/pipeline/local"
	"github.com/tracepipe/tracepipe/query"
	"github.com/tracepipe/tracepipe/query/ui"
	"github.com/tracepipe/tracepipe/storage/storeflags"
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

Every stage's settings are flags here, named after the stage
(--ingester-*, --indexer-*, --aggregator-*; the collector's receivers keep
their own names), beside the store's (--es-*, --promoted-tags) and the
Kafka connection's (--kafka-*), which all stages share. Each flag also
reads the environment variable shown; a flag given wins. See
docs/configuration.md.
`

func runRun(ctx context.Context, args []string, stderr io.Writer) error {
	cfg := defaultRunConfig()
	fs, level, help, err := parseCommand("run", runUsage, args, stderr, func(fs *flag.FlagSet) { registerRunFlags(fs, &cfg) }, &cfg.logLevel)
	if help || err != nil {
		return err
	}
	jaegerUI := &cfg.jaegerUI
	if err := cfg.validate(fs); err != nil {
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
	cfg.Store.Path = filepath.Join(cfg.DataDir, "tracepipe.db")
	store, err := cfg.Store.Open(ctx, storeflags.Options{DeadLetter: &dlHook})
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	log.Info("store", "store", cfg.Store.Describe())
	// The store closes after every stage has stopped (Run returns first).
	defer store.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	qlog := log.With("component", "query")
	// The web UI at /, the JSON API under /api/; the limits wrap both.
	api := query.NewHandler(store, time.Now, qlog)
	api.SetResolutions(cfg.Aggregator.Stats.Normalized().Resolutions())
	web, err := ui.New(store, ui.Options{API: api, Logger: qlog, JaegerUIURL: *jaegerUI})
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
			client := cfg.ClientConfig
			client.Brokers = brokers
			dl, err = deadletter.New(deadletter.Config{Brokers: brokers, Client: &client}, deadletter.Options{Logger: log.With("component", "dead-letter"), Registry: reg})
			if err != nil {
				return nil, err
			}
			dlHook.Set(dl)
			icfg := cfg.Indexer
			icfg.ClientConfig = cfg.ClientConfig
			icfg.Brokers = brokers
			icfg.Topic = cfg.Ingest.TracesTopic
			x, err := index.New(icfg, store, index.Options{Logger: log.With("component", "indexer"), Registry: reg, DeadLetter: dl})
			if err != nil {
				return nil, err
			}
			acfg := cfg.Aggregator
			acfg.ClientConfig = cfg.ClientConfig
			acfg.Brokers = brokers
			acfg.TracesTopic = cfg.Ingest.TracesTopic
			acfg.PartialsPartitions = cfg.Partitions
			agg, err := aggregator.New(acfg, store, aggregator.Options{Logger: log.With("component", "aggregator"), Registry: reg})
			if err != nil {
				return nil, err
			}
			return []local.Stage{x, agg}, nil
		},
	}
	return local.Run(ctx, cfg.Config, deps, func(brokers []string) {
		log.Info("tracepipe is running", "spans", fmt.Sprintf("%s on %s", cfg.Ingest.SpansTopic, strings.Join(brokers, ",")),
			"query", cfg.QueryListen, "metrics", cfg.MetricsAddr)
	})
}

// runConfig is everything `tracepipe run` configures: the single-process
// deployment (with the ingester and collector), the stages it builds
// itself, and the store.
type runConfig struct {
	local.Config
	Indexer    index.Config
	Aggregator aggregator.Config
	Store      storeflags.Config
	logLevel   string
	jaegerUI   string // base URL of a Jaeger UI the web UI links to
}

func defaultRunConfig() runConfig {
	return runConfig{Config: local.DefaultConfig(), Indexer: index.DefaultConfig(), Aggregator: aggregator.DefaultConfig(), Store: storeflags.Default(), logLevel: "info"}
}

// registerRunFlags composes every stage's flags on fs with the stage's
// prefix (internal/config), leaving out what run wires itself: the Kafka
// connection (one --kafka-* set for all), the topics one stage writes and
// the next reads, the embedded store's path (under --data-dir) and the
// partials topic's partitions (--partitions). The ingester's flags that
// run had before the prefixes keep their names as aliases.
func registerRunFlags(fs *flag.FlagSet, cfg *runConfig) {
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory of the embedded broker's log and the embedded store")
	fs.StringVar(&cfg.BrokerListen, "broker-listen", cfg.BrokerListen, "address of the embedded broker")
	fs.IntVar(&cfg.Partitions, "partitions", cfg.Partitions, "partitions of the topics run creates: the embedded broker's, or on --kafka-brokers the spans, traces and dead-letter topics that do not exist yet (existing topics are used as they are), and the aggregator's partials topic")
	fs.BoolVar(&cfg.SyncWrites, "sync-writes", false, "embedded broker: fsync every produced batch (slower, survives power loss)")
	fs.StringVar(&cfg.QueryListen, "listen", cfg.QueryListen, "query API and web UI address (empty: none)")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", cfg.MetricsAddr, "/metrics and /healthz address (empty: none)")
	cfg.ClientConfig.RegisterFlags(fs, "")
	fs.Lookup("kafka-brokers").Usage = "real Kafka brokers, comma-separated host:port (default: start the embedded broker); the other --kafka-* flags need them"
	config.Stage(fs, "ingester-", cfg.Ingest.RegisterFlags, "metrics-addr", "create-topics", "rekey-to")
	for _, name := range []string{"spans-topic", "traces-topic", "encoding", "idle-timeout", "max-wait", "max-spans-per-trace"} {
		config.Alias(fs, name, "ingester-"+name)
	}
	// --jaeger-compact-udp, --otlp-grpc, ... (empty: that receiver off); the
	// collector's Kafka connection and topic are the pipeline's.
	config.Stage(fs, "", cfg.Collector.RegisterFlags, "spans-topic", "shutdown-grace")
	config.Stage(fs, "indexer-", cfg.Indexer.RegisterFlags, "topic")
	config.Stage(fs, "aggregator-", cfg.Aggregator.RegisterFlags, "traces-topic", "partials-partitions")
	config.Stage(fs, "", cfg.Store.RegisterFlags, "store")
	fs.StringVar(&cfg.RekeyTo, "rekey-to", cfg.RekeyTo, "for producers that do not key spans by trace ID (the OTel Collector's Kafka exporter): re-publish every span to this topic keyed by trace ID, then assemble from it (e.g. tracepipe-spans-by-trace)")
	fs.StringVar(&cfg.logLevel, "log-level", cfg.logLevel, "debug, info, warn or error")
	fs.StringVar(&cfg.jaegerUI, "jaeger-ui-url", cfg.jaegerUI, "base URL of a Jaeger UI over the same store, e.g. http://127.0.0.1:16686: the web UI's trace pages link to it")
	config.Document(fs)
}

// validate reports every problem of every stage's configuration, joined,
// naming the flags as fs (registerRunFlags) has them; stages whose brokers
// run decides later are checked with placeholders.
func (c *runConfig) validate(fs *flag.FlagSet) error {
	client := c.ClientConfig
	if len(client.Brokers) == 0 {
		client = kafka.ClientConfig{Brokers: []string{"127.0.0.1:9092"}}
	}
	ing, idx, agg := c.Ingest, c.Indexer, c.Aggregator
	ing.ClientConfig, idx.ClientConfig, agg.ClientConfig = client, client, client
	idx.Topic, agg.TracesTopic, agg.PartialsPartitions = c.Ingest.TracesTopic, c.Ingest.TracesTopic, c.Partitions
	store := c.Store
	store.Path = filepath.Join(c.DataDir, "tracepipe.db")
	errs := []error{c.Config.Validate(), config.Rename(ing.Validate(), fs, "ingester-"), config.Rename(idx.Validate(), fs, "indexer-"),
		config.Rename(agg.Validate(), fs, "aggregator-"), store.Validate()}
	return errors.Join(errs...)
}
