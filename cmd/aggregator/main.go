// Command aggregator computes tracepipe's per-operation statistics from the
// assembled-traces topic (see pipeline/aggregator and aggregate) and writes
// them as rollups to Elasticsearch or the embedded store; with
// --index-traces (the default) it also stores every trace (pipeline/index).
// /metrics serves per-operation histograms with trace-ID exemplars and the
// aggregator's health. Every flag has a TRACEPIPE_* environment equivalent.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tracepipe/tracepipe/internal/config"
	"github.com/tracepipe/tracepipe/internal/httpserver"
	"github.com/tracepipe/tracepipe/internal/logerr"
	"github.com/tracepipe/tracepipe/pipeline/aggregator"
	"github.com/tracepipe/tracepipe/pipeline/deadletter"
	"github.com/tracepipe/tracepipe/pipeline/index"
	"github.com/tracepipe/tracepipe/pipeline/kafka"
	"github.com/tracepipe/tracepipe/storage/storeflags"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "aggregator:", err)
		os.Exit(2)
	}
}

const usage = `usage: aggregator [flags]

Consumes assembled traces (the ingester's output), computes exact
per-operation statistics per event-time window (1m, merged into 1h and 1d)
and writes them as rollups; stores the traces themselves too unless
--index-traces=false. Stop it with SIGTERM or Ctrl-C: every partition
publishes and writes what it has, commits, and leaves its group.

Configuration: docs/configuration.md.

flags (each also from the environment variable shown):
`

// options are the binary's settings: the aggregator's, the indexer's run
// beside it, the store's and its own.
type options struct {
	aggregator                      aggregator.Config
	indexer                         index.Config
	store                           storeflags.Config
	metricsAddr, logLevel, dlqTopic string
	indexTraces                     bool
}

func defaultOptions() options {
	o := options{aggregator: aggregator.DefaultConfig(), indexer: index.DefaultConfig(), store: storeflags.Default(),
		metricsAddr: "127.0.0.1:9465", logLevel: "info", dlqTopic: deadletter.DefaultTopic, indexTraces: true}
	o.aggregator.Brokers = []string{"127.0.0.1:9092"}
	return o
}

// newFlags registers every flag of the binary on a new FlagSet bound to o
// (docs/configuration.md's table is made from it).
func newFlags(o *options, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("aggregator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	o.aggregator.RegisterFlags(fs, "")
	// The indexer stage shares the aggregator's Kafka connection and topic.
	config.Stage(fs, "indexer-", o.indexer.RegisterFlags, "topic")
	config.Alias(fs, "index-group", "indexer-group")
	o.store.RegisterFlags(fs, "")
	fs.StringVar(&o.metricsAddr, "metrics-addr", o.metricsAddr, "/metrics and /healthz address (empty: none)")
	fs.BoolVar(&o.indexTraces, "index-traces", o.indexTraces, "also store every assembled trace (the indexer stage)")
	fs.StringVar(&o.logLevel, "log-level", o.logLevel, "debug, info, warn or error")
	fs.StringVar(&o.dlqTopic, "store-dlq-topic", o.dlqTopic, "dead-letter topic for traces and documents the store rejects for good")
	config.Document(fs)
	return fs
}

// run parses flags and environment, opens the store, runs the stages and
// the metrics server until ctx is cancelled, then stops them in order:
// the stages (publish, write, commit, leave), the HTTP server, the store.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	o := defaultOptions()
	cfg, icfg, storeCfg := &o.aggregator, &o.indexer, &o.store
	metricsAddr, indexTraces, logLevel, dlqTopic := &o.metricsAddr, &o.indexTraces, &o.logLevel, &o.dlqTopic
	fs := newFlags(&o, stderr)
	if err := config.Parse(fs, args, nil); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %v", err)
	}
	icfg.ClientConfig, icfg.Topic = cfg.ClientConfig, cfg.TracesTopic
	if err := errors.Join(cfg.Validate(), config.Rename(icfg.Validate(), fs, "indexer-"), storeCfg.Validate()); err != nil {
		return err
	}
	// Errors on one line with their causes (no client stack traces).
	log := logerr.NewLogger(stderr, level)
	if gogc, limit, ok := aggregator.TuneGC(os.LookupEnv, nil); ok {
		log.Info("gc tuned", "gogc", gogc, "memory_limit_bytes", limit, "memory_limit_follows", "3/4 of the container's (cgroup v2 memory.max; 0: none)")
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Closed after the store (defers run in reverse).
	dl, err := deadletter.New(deadletter.Config{Brokers: cfg.Brokers, Topic: *dlqTopic, Client: &cfg.ClientConfig}, deadletter.Options{Logger: log.With("component", "dead-letter"), Registry: reg})
	if err != nil {
		return err
	}
	defer dl.Close()
	// One writer process per embedded store directory.
	store, closeStore, err := storeCfg.OpenWriter(ctx, storeflags.Options{DeadLetter: dl, Registerer: reg, Logger: log.With("component", "elasticsearch")})
	if err != nil {
		return err
	}
	defer closeStore()

	agg, err := aggregator.New(*cfg, store, aggregator.Options{Logger: log.With("component", "aggregator"), Registry: reg})
	if err != nil {
		return err
	}
	type stage interface{ Run(context.Context) error }
	stages := []stage{agg}
	checks := agg.Checks() // /healthz: the map and reduce groups, and the indexer's
	if *indexTraces {
		x, err := index.New(*icfg, store, index.Options{Logger: log.With("component", "indexer"), Registry: reg, DeadLetter: dl})
		if err != nil {
			return err
		}
		stages = append(stages, x)
		checks = append(checks, x.Check())
	}

	var srv *httpserver.Server
	if *metricsAddr != "" {
		if srv, err = httpserver.Listen(*metricsAddr, "--metrics-addr", kafka.Handler(reg, checks...), httpserver.Options{}); err != nil {
			return err
		}
		srv.Serve()
		log.Info("metrics", "addr", srv.Addr())
	}
	c := agg.Config()
	log.Info("aggregator starting", "brokers", c.Brokers, "traces", c.TracesTopic, "group", c.Group,
		"partials", c.PartialsTopic, "window", c.Stats.Window, "dimensions", c.Stats.Dimensions, "edges", !c.Stats.NoEdges)

	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	errs := make(chan error, len(stages))
	for _, s := range stages {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Run(runCtx); err != nil {
				errs <- err
				cancel() // one stage failing stops the process
			}
		}()
	}
	wg.Wait()
	cancel()
	close(errs)
	var all []error
	for e := range errs {
		all = append(all, e)
	}
	if srv != nil {
		all = append(all, srv.Shutdown(5*time.Second))
	}
	log.Info("aggregator stopped")
	return errors.Join(all...)
}
