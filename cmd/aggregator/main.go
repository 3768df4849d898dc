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
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tracepipe/tracepipe/internal/dirlock"
	"github.com/tracepipe/tracepipe/internal/logerr"
	"github.com/tracepipe/tracepipe/pipeline/aggregator"
	"github.com/tracepipe/tracepipe/pipeline/deadletter"
	"github.com/tracepipe/tracepipe/pipeline/index"
	"github.com/tracepipe/tracepipe/pipeline/ingest"
	"github.com/tracepipe/tracepipe/storage"
	"github.com/tracepipe/tracepipe/storage/elasticsearch"
	"github.com/tracepipe/tracepipe/storage/embedded"
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

flags (each also as TRACEPIPE_<NAME>, e.g. TRACEPIPE_KAFKA_BROKERS):
`

// run parses flags and environment, opens the store, runs the stages and
// the metrics server until ctx is cancelled, then stops them in order:
// the stages (publish, write, commit, leave), the HTTP server, the store.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	cfg := aggregator.DefaultConfig()
	cfg.Brokers = []string{"127.0.0.1:9092"}
	fs := flag.NewFlagSet("aggregator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	flags := cfg.RegisterFlags(fs)
	var (
		esURL       = fs.String("es-url", "", "Elasticsearch/OpenSearch URL(s), comma-separated (default: the embedded store)")
		indexPrefix = fs.String("index-prefix", "", "Elasticsearch index prefix")
		storePath   = fs.String("store", "tracepipe-data/tracepipe.db", "embedded store file (when --es-url is empty)")
		metricsAddr = fs.String("metrics-addr", "127.0.0.1:9465", "/metrics and /healthz address (empty: none)")
		indexTraces = fs.Bool("index-traces", true, "also store every assembled trace (the indexer stage)")
		indexGroup  = fs.String("index-group", index.DefaultConfig().Group, "consumer group of the indexer stage")
		logLevel    = fs.String("log-level", "info", "debug, info, warn or error")
		dlqTopic    = fs.String("store-dlq-topic", deadletter.DefaultTopic, "dead-letter topic for traces and documents the store rejects for good")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := ingest.ApplyEnv(fs, nil); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := flags.Finish(); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	// Errors on one line with their causes (no client stack traces).
	log := logerr.NewLogger(stderr, level)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Closed after the store (defers run in reverse).
	dl, err := deadletter.New(deadletter.Config{Brokers: cfg.Brokers, Topic: *dlqTopic}, deadletter.Options{Logger: log.With("component", "dead-letter"), Registry: reg})
	if err != nil {
		return err
	}
	defer dl.Close()
	var store storage.Store
	if *esURL != "" {
		store, err = elasticsearch.New(ctx, elasticsearch.Config{URLs: strings.Split(*esURL, ","), IndexPrefix: *indexPrefix, Registerer: reg, Logger: log.With("component", "elasticsearch"), DeadLetter: dl})
	} else {
		// One writer process per embedded store directory (as tracepipe run).
		dir := filepath.Dir(*storePath)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		lock, lerr := dirlock.Acquire(dir)
		if lerr != nil {
			return lerr
		}
		defer lock.Unlock()
		store, err = embedded.Open(ctx, embedded.Options{Path: *storePath})
	}
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer store.Close()

	agg, err := aggregator.New(cfg, store, aggregator.Options{Logger: log.With("stage", "aggregator"), Registry: reg})
	if err != nil {
		return err
	}
	type stage interface{ Run(context.Context) error }
	stages := []stage{agg}
	if *indexTraces {
		icfg := index.DefaultConfig()
		icfg.Brokers, icfg.Topic, icfg.Group = cfg.Brokers, cfg.TracesTopic, *indexGroup
		x, err := index.New(icfg, store, index.Options{Logger: log.With("stage", "indexer"), Registry: reg, DeadLetter: dl})
		if err != nil {
			return err
		}
		stages = append(stages, x)
	}

	var srv *http.Server
	srvDone := make(chan error, 1)
	if *metricsAddr != "" {
		ln, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
		srv = &http.Server{Handler: agg.Handler(reg), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute}
		go func() { srvDone <- srv.Serve(ln) }()
		log.Info("metrics", "addr", ln.Addr().String())
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
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		srv.Shutdown(sctx)
		scancel()
		if err := <-srvDone; err != nil && !errors.Is(err, http.ErrServerClosed) {
			all = append(all, err)
		}
	}
	log.Info("aggregator stopped")
	return errors.Join(all...)
}
