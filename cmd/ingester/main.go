// Command ingester is tracepipe's first stream stage: it assembles spans from
// Kafka into complete, explained traces and publishes them (see
// pipeline/ingest). Every flag has a TRACEPIPE_* environment equivalent.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tracepipe/tracepipe/internal/logerr"
	"github.com/tracepipe/tracepipe/pipeline/ingest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ingester:", err)
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
}

// run parses flags and environment, builds the ingester and its metrics
// server, runs until ctx is cancelled, then stops them in order: the
// ingester (stop fetching, finish partitions, commit, leave the group), then
// the HTTP server.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	cfg := ingest.DefaultConfig()
	fs := flag.NewFlagSet("ingester", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := ingest.ApplyEnv(fs, nil); err != nil {
		return err
	}
	log := logerr.NewLogger(stderr, nil)
	if gogc, limit, ok := ingest.TuneGC(cfg, os.LookupEnv); ok {
		log.Info("gc tuned", "gogc", gogc, "memory_limit_bytes", limit)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	in, err := ingest.New(cfg, ingest.Options{Logger: log, Registry: reg})
	if err != nil {
		return err
	}
	var srv *http.Server
	srvDone := make(chan error, 1)
	if cfg.MetricsAddr != "" {
		ln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
		srv = &http.Server{Handler: in.Handler(reg), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute}
		go func() { srvDone <- srv.Serve(ln) }()
		log.Info("metrics", "addr", ln.Addr().String())
	}
	log.Info("ingester starting", "brokers", cfg.Brokers, "spans", cfg.SpansTopic, "traces", cfg.TracesTopic, "group", cfg.Group)
	runErr := in.Run(ctx)
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		srv.Shutdown(sctx)
		cancel()
		if err := <-srvDone; err != nil && !errors.Is(err, http.ErrServerClosed) {
			runErr = errors.Join(runErr, err)
		}
	}
	log.Info("ingester stopped")
	return runErr
}
