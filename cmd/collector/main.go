// Command collector receives spans from instrumented services (Jaeger agent
// UDP, Jaeger collector HTTP, OTLP gRPC and HTTP) and publishes them to the
// spans topic, one Jaeger protobuf message per span keyed by trace ID (see
// pipeline/collector and docs/collector.md). It keeps no state: run as many
// side by side as needed. Every flag has a TRACEPIPE_* environment
// equivalent (TRACEPIPE_OTLP_GRPC for --otlp-grpc, ...).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tracepipe/tracepipe/internal/config"
	"github.com/tracepipe/tracepipe/internal/httpserver"
	"github.com/tracepipe/tracepipe/internal/logerr"
	"github.com/tracepipe/tracepipe/pipeline/collector"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "collector:", err)
		os.Exit(2)
	}
}

// options are the binary's settings: the collector's and its own.
type options struct {
	collector.Config
	metricsAddr, logLevel string
}

func defaultOptions() options {
	return options{Config: collector.DefaultConfig(), metricsAddr: "127.0.0.1:14269", logLevel: "info"}
}

// newFlags registers every flag of the binary on a new FlagSet bound to o
// (docs/configuration.md's table is made from it).
func newFlags(o *options, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("collector", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.RegisterFlags(fs, "")
	fs.StringVar(&o.metricsAddr, "metrics-addr", o.metricsAddr, "/metrics and /healthz address (empty: none)")
	fs.StringVar(&o.logLevel, "log-level", o.logLevel, "debug, info, warn or error")
	config.Document(fs)
	return fs
}

// run parses flags and environment, builds the collector and its metrics
// server, runs until ctx is cancelled, then stops them in order: the
// collector (stop receiving, drain the queue to Kafka, close the producer),
// then the metrics server.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	o := defaultOptions()
	cfg := &o.Config
	fs := newFlags(&o, stderr)
	if err := config.Parse(fs, args, nil); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %v", err)
	}
	log := logerr.NewLogger(stderr, level)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	col, err := collector.New(*cfg, collector.Options{Logger: log, Registry: reg})
	if err != nil {
		return err
	}
	if err := col.Listen(); err != nil {
		return err
	}
	var srv *httpserver.Server
	if o.metricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.Handle("/healthz", col.HealthHandler())
		var err error
		if srv, err = httpserver.Listen(o.metricsAddr, "--metrics-addr", mux, httpserver.Options{}); err != nil {
			col.Close()
			return err
		}
		srv.Serve()
		log.Info("metrics", "addr", srv.Addr())
	}
	log.Info("collector starting", "brokers", cfg.Brokers, "topic", cfg.SpansTopic)
	runErr := col.Run(ctx)
	if srv != nil {
		runErr = errors.Join(runErr, srv.Shutdown(5*time.Second))
	}
	return runErr
}
