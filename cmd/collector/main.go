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
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tracepipe/tracepipe/internal/logerr"
	"github.com/tracepipe/tracepipe/pipeline/collector"
	"github.com/tracepipe/tracepipe/pipeline/ingest"
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

// run parses flags and environment, builds the collector and its metrics
// server, runs until ctx is cancelled, then stops them in order: the
// collector (stop receiving, drain the queue to Kafka, close the producer),
// then the metrics server.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	cfg := collector.DefaultConfig()
	fs := flag.NewFlagSet("collector", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.RegisterFlags(fs)
	brokers := fs.String("kafka-brokers", strings.Join(cfg.Brokers, ","), "Kafka brokers, comma-separated")
	fs.StringVar(&cfg.SpansTopic, "spans-topic", cfg.SpansTopic, "topic the spans are published to (the ingester's --spans-topic)")
	metricsAddr := fs.String("metrics-addr", "127.0.0.1:14269", "/metrics and /healthz address (empty: none)")
	fs.DurationVar(&cfg.ShutdownGrace, "shutdown-grace", cfg.ShutdownGrace, "on shutdown, how long accepted spans may take to reach Kafka")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := ingest.ApplyEnv(fs, nil); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg.Brokers = nil
	for _, b := range strings.Split(*brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			cfg.Brokers = append(cfg.Brokers, b)
		}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %v", err)
	}
	log := logerr.NewLogger(stderr, level)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	col, err := collector.New(cfg, collector.Options{Logger: log, Registry: reg})
	if err != nil {
		return err
	}
	if err := col.Listen(); err != nil {
		return err
	}
	var srv *http.Server
	srvDone := make(chan error, 1)
	if *metricsAddr != "" {
		ln, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			col.Close()
			return fmt.Errorf("--metrics-addr: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.Handle("/healthz", col.HealthHandler())
		srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute}
		go func() { srvDone <- srv.Serve(ln) }()
		log.Info("metrics", "addr", ln.Addr().String())
	}
	log.Info("collector starting", "brokers", cfg.Brokers, "topic", cfg.SpansTopic)
	runErr := col.Run(ctx)
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		srv.Shutdown(sctx)
		cancel()
		if err := <-srvDone; err != nil && !errors.Is(err, http.ErrServerClosed) {
			runErr = errors.Join(runErr, err)
		}
	}
	return runErr
}
