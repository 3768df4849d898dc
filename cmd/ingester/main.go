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
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tracepipe/tracepipe/internal/config"
	"github.com/tracepipe/tracepipe/internal/httpserver"
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

const usage = `usage: ingester [flags]

Assembles spans from Kafka into complete, explained traces and publishes
them to the traces topic (see pipeline/ingest). Stop it with SIGTERM or
Ctrl-C: it stops fetching, finishes its partitions, commits and leaves its
group. Configuration: docs/configuration.md.

flags (each also from the environment variable shown):
`

// newFlags registers every flag of the binary on a new FlagSet bound to cfg
// (docs/configuration.md's table is made from it).
func newFlags(cfg *ingest.Config, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("ingester", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.RegisterFlags(fs, "")
	config.Document(fs)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	return fs
}

// run parses flags and environment, builds the ingester and its metrics
// server, runs until ctx is cancelled, then stops them in order: the
// ingester (stop fetching, finish partitions, commit, leave the group), then
// the HTTP server.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	cfg := ingest.DefaultConfig()
	fs := newFlags(&cfg, stderr)
	if err := config.Parse(fs, args, nil); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := logerr.NewLogger(stderr, nil)
	gogc, limit, tuned := ingest.TuneGC(cfg, os.LookupEnv)
	if tuned {
		log.Info("gc tuned", "gogc", gogc, "memory_limit_bytes", limit, "memory_limit_follows", "2 × buffered span bytes + overhead")
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	in, err := ingest.New(cfg, ingest.Options{Logger: log, Registry: reg})
	if err != nil {
		return err
	}
	if tuned {
		// The soft memory limit follows the buffered span bytes (issue 16:
		// peak RSS near the data), capped by TuneGC's static limit.
		stopGov := in.MemoryGovernor(limit).Start(ctx)
		defer stopGov()
	}
	var srv *httpserver.Server
	if cfg.MetricsAddr != "" {
		if srv, err = httpserver.Listen(cfg.MetricsAddr, "--metrics-addr", in.Handler(reg), httpserver.Options{}); err != nil {
			return err
		}
		srv.Serve()
		log.Info("metrics", "addr", srv.Addr())
	}
	log.Info("ingester starting", "brokers", cfg.Brokers, "spans", cfg.SpansTopic, "traces", cfg.TracesTopic, "group", cfg.Group)
	runErr := in.Run(ctx)
	if srv != nil {
		runErr = errors.Join(runErr, srv.Shutdown(5*time.Second))
	}
	log.Info("ingester stopped")
	return runErr
}
