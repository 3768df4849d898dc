// Command indexer is tracepipe's trace-storing stage on its own: it
// consumes the assembled-traces topic (the ingester's output) in the
// consumer group tracepipe-indexer and writes every trace version to
// Elasticsearch or the embedded store (see pipeline/index). /metrics serves
// its metrics (tracepipe_indexer_*, and tracepipe_kafka_*{stage="indexer"}
// for lag and commits); /healthz is 200 while it is a live group member.
// Every flag has a TRACEPIPE_* environment equivalent.
//
// The aggregator binary runs the same stage in-process unless
// --index-traces=false; run this binary instead to scale or deploy the
// indexer apart from the aggregator (both in the same group would share
// the partitions, which is also correct).
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
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tracepipe/tracepipe/internal/config"
	"github.com/tracepipe/tracepipe/internal/httpserver"
	"github.com/tracepipe/tracepipe/internal/logerr"
	"github.com/tracepipe/tracepipe/pipeline/deadletter"
	"github.com/tracepipe/tracepipe/pipeline/index"
	"github.com/tracepipe/tracepipe/pipeline/kafka"
	"github.com/tracepipe/tracepipe/storage/storeflags"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr, nil)
	stop()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "indexer:", err)
		os.Exit(2)
	}
}

const usage = `usage: indexer [flags]

Stores every assembled trace (the ingester's output) in Elasticsearch or
the embedded store. Stop it with SIGTERM or Ctrl-C: every partition
commits what is durable and leaves the group; the batch being collected is
re-read by the next owner.

Configuration: docs/configuration.md.

flags (each also from the environment variable shown):
`

// options are the binary's settings: the indexer's, the store's and its own.
type options struct {
	indexer                         index.Config
	store                           storeflags.Config
	metricsAddr, logLevel, dlqTopic string
}

func defaultOptions() options {
	return options{indexer: index.DefaultConfig(), store: storeflags.Default(), metricsAddr: "127.0.0.1:9466", logLevel: "info", dlqTopic: deadletter.DefaultTopic}
}

// newFlags registers every flag of the binary on a new FlagSet bound to o
// (docs/configuration.md's table is made from it).
func newFlags(o *options, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("indexer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	o.indexer.RegisterFlags(fs, "")
	// The ingester's and aggregator's name for the same topic.
	config.Alias(fs, "traces-topic", "topic")
	o.store.RegisterFlags(fs, "")
	fs.StringVar(&o.metricsAddr, "metrics-addr", o.metricsAddr, "/metrics and /healthz address (empty: none)")
	fs.StringVar(&o.logLevel, "log-level", o.logLevel, "debug, info, warn or error")
	fs.StringVar(&o.dlqTopic, "store-dlq-topic", o.dlqTopic, "dead-letter topic for traces and documents the store rejects for good")
	config.Document(fs)
	return fs
}

// run parses flags and environment, opens the store, runs the stage and
// the metrics server until ctx is cancelled, then stops them in order: the
// stage (commit, leave), the HTTP server, the store. listening, if set, is
// told the metrics server's address.
func run(ctx context.Context, args []string, stderr io.Writer, listening func(addr string)) error {
	o := defaultOptions()
	cfg, storeCfg := &o.indexer, &o.store
	metricsAddr, logLevel, dlqTopic := &o.metricsAddr, &o.logLevel, &o.dlqTopic
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
	if err := errors.Join(cfg.Validate(), storeCfg.Validate()); err != nil {
		return err
	}
	log := logerr.NewLogger(stderr, level)
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

	x, err := index.New(*cfg, store, index.Options{Logger: log.With("component", "indexer"), Registry: reg, DeadLetter: dl})
	if err != nil {
		return err
	}
	var srv *httpserver.Server
	if *metricsAddr != "" {
		if srv, err = httpserver.Listen(*metricsAddr, "--metrics-addr", kafka.Handler(reg, x.Check()), httpserver.Options{}); err != nil {
			return err
		}
		srv.Serve()
		log.Info("metrics", "addr", srv.Addr())
		if listening != nil {
			listening(srv.Addr())
		}
	}
	log.Info("indexer starting", "brokers", cfg.Brokers, "topic", cfg.Topic, "group", cfg.Group)
	runErr := x.Run(ctx)
	if srv != nil {
		runErr = errors.Join(runErr, srv.Shutdown(5*time.Second))
	}
	log.Info("indexer stopped")
	return runErr
}
