// Package local runs every tracepipe stage in one process on one machine:
// the quick start, and the deployment for teams that do not need a fleet.
//
// Components, started in this order and stopped in the reverse:
//
//  1. Kafka: an embedded broker (franz-go's kfake, persisted under
//     DataDir/kafka, listening on BrokerListen so Jaeger collectors, OTel
//     collectors and `tracepipe gen` can produce to it), or the real brokers
//     named in Brokers, on which the missing topics are created first
//     (Partitions partitions; see ensureTopics for why this cannot wait).
//  2. the embedded store (SQLite under DataDir), or Elasticsearch when the
//     caller supplies a store.
//  3. the stages, each a consumer group as in a fleet: the ingester and
//     every extra Stage (the indexer and the aggregator, built by the caller).
//  4. HTTP: the query API on QueryListen and /metrics + /healthz on MetricsAddr.
//
// Shutdown (context cancelled): the HTTP servers stop accepting, the stages
// stop fetching, finish in-flight work and commit what is durable (see
// pipeline/ingest), then the store closes, then the broker. Every goroutine
// started here is waited for before Run returns.
//
// The embedded broker keeps its log on disk (kfake's DataDir) but is a
// single in-process node with no replication: it is for one machine. A crash
// between a produce and the page cache reaching disk can lose the newest
// spans unless SyncWrites is set; use real Kafka where that matters.
package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/tracepipe/tracepipe/internal/httpserver"
	"github.com/tracepipe/tracepipe/pipeline/collector"
	"github.com/tracepipe/tracepipe/pipeline/ingest"
	"github.com/tracepipe/tracepipe/pipeline/kafka"
	"github.com/tracepipe/tracepipe/wire"
)

// Config configures a single-process deployment.
type Config struct {
	// DataDir holds the embedded broker's log and the embedded store.
	DataDir string
	// ClientConfig.Brokers, when set, are real Kafka brokers; no embedded
	// broker starts. Its TLS and SASL settings (real brokers only) reach
	// every stage.
	kafka.ClientConfig
	// BrokerListen is the embedded broker's address.
	BrokerListen string
	// Partitions of the topics Run creates: every topic of the embedded
	// broker, and on real Brokers those of the spans, traces, dead-letter
	// and RekeyTo topics that do not exist yet (created before any stage
	// starts, with the brokers' default replication factor; existing topics
	// are used as they are).
	Partitions int
	// SyncWrites makes the embedded broker fsync every produced batch.
	SyncWrites bool
	// QueryListen serves the query API ("" disables it).
	QueryListen string
	// MetricsAddr serves /metrics and /healthz ("" disables it).
	MetricsAddr string
	// Ingest configures the ingester; its Brokers are replaced by the
	// embedded broker's address or by Brokers.
	Ingest ingest.Config
	// Collector configures the receivers of spans from instrumented
	// services (none when every address is empty); its Brokers and
	// SpansTopic are replaced by the broker addresses and Ingest.SpansTopic.
	Collector collector.Config
	// RekeyTo, when set, re-keys the spans first, for producers that do not
	// key spans by trace ID (the OTel Collector's Kafka exporter batches
	// spans of many traces, unkeyed): a re-key ingester (group
	// Ingest.Group+"-rekey", metrics prefixed rekey_) re-publishes every span
	// of Ingest.SpansTopic to RekeyTo keyed by its trace ID, and the
	// assembling ingester reads RekeyTo instead.
	RekeyTo string
}

// DefaultConfig returns the defaults of `tracepipe run`.
func DefaultConfig() Config {
	ic := ingest.DefaultConfig()
	return Config{
		DataDir:      "tracepipe-data",
		BrokerListen: "127.0.0.1:9092",
		Partitions:   4,
		QueryListen:  "127.0.0.1:16689",
		MetricsAddr:  "127.0.0.1:9464",
		Ingest:       ic,
		Collector:    collector.DefaultConfig(),
	}
}

// Validate reports every configuration problem in terms of `tracepipe
// run`'s flags, joined; it does not change c.
func (c *Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("--data-dir must not be empty"))
	}
	if len(c.Brokers) == 0 {
		if _, _, err := net.SplitHostPort(c.BrokerListen); err != nil {
			errs = append(errs, fmt.Errorf("--broker-listen %q: %v", c.BrokerListen, err))
		}
		if c.TLS != (kafka.TLSConfig{}) || c.SASL != (kafka.SASLConfig{}) {
			errs = append(errs, errors.New("--kafka-tls* and --kafka-sasl-* need --kafka-brokers (the embedded broker uses neither TLS nor SASL)"))
		}
	} else if err := c.ClientConfig.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Partitions < 1 || c.Partitions > 1024 {
		errs = append(errs, fmt.Errorf("--partitions must be between 1 and 1024, not %d", c.Partitions))
	}
	if c.RekeyTo != "" && (c.RekeyTo == c.Ingest.SpansTopic || c.RekeyTo == c.Ingest.TracesTopic || c.RekeyTo == c.Ingest.DLQTopic) {
		errs = append(errs, fmt.Errorf("--rekey-to %q must differ from the spans, traces and dead-letter topics", c.RekeyTo))
	}
	if c.Collector.Enabled() {
		cc := c.Collector
		cc.ClientConfig, cc.SpansTopic = kafka.ClientConfig{Brokers: []string{"placeholder:9092"}}, "placeholder"
		if err := cc.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Stage is a long-running component: Run blocks until ctx is cancelled and
// it has shut down, returning nil after a clean stop.
type Stage interface {
	Run(ctx context.Context) error
}

// Deps are the components built by the caller around the broker (they need
// its address, which Start decides).
type Deps struct {
	// Stages to run beside the ingester (the aggregator), built once the
	// broker addresses are known.
	Stages func(brokers []string) ([]Stage, error)
	// Query serves the query API (nil: none).
	Query http.Handler
	// Registry and Gatherer for the metrics endpoint; nil means a fresh registry.
	Registry *prometheus.Registry
	Logger   *slog.Logger
	// Collector, if not nil, is told the collector's bound addresses once
	// its sockets are bound (before ready).
	Collector func(collector.Addrs)
}

// Run starts everything, blocks until ctx is cancelled or a component fails,
// then stops everything in order. ready, if not nil, is called with the
// broker addresses once every component has started.
func Run(ctx context.Context, cfg Config, deps Deps, ready func(brokers []string)) (err error) {
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := deps.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}

	brokers := cfg.Brokers
	if len(brokers) == 0 {
		cluster, err := startBroker(cfg)
		if err != nil {
			return err
		}
		defer func() {
			cluster.Close()
			log.Info("embedded broker stopped")
		}()
		brokers = cluster.ListenAddrs()
		log.Info("embedded broker", "addr", brokers, "data", filepath.Join(cfg.DataDir, "kafka"), "partitions", cfg.Partitions)
	} else if err := ensureTopics(ctx, brokers, cfg, log); err != nil {
		// Before any consumer joins: see ensureTopics.
		return err
	}

	// Every stage reaches Kafka the same way: the brokers found above with
	// cfg's TLS and SASL.
	client := cfg.ClientConfig
	client.Brokers = brokers
	icfg := cfg.Ingest
	icfg.ClientConfig = client
	icfg.MetricsAddr = "" // served below, with every stage's metrics
	var rekeyer *ingest.Ingester
	if cfg.RekeyTo != "" {
		rcfg := icfg
		rcfg.RekeyTo, rcfg.Group = cfg.RekeyTo, icfg.Group+"-rekey"
		icfg.SpansTopic, icfg.Encoding = cfg.RekeyTo, wire.JaegerProto // what the re-key stage writes
		if rekeyer, err = ingest.New(rcfg, ingest.Options{Logger: log.With("component", "rekeyer"), Registry: prometheus.WrapRegistererWithPrefix("rekey_", reg), GroupRegistry: reg, Stage: "rekeyer"}); err != nil {
			return fmt.Errorf("rekeyer: %w", err)
		}
	}
	in, err := ingest.New(icfg, ingest.Options{Logger: log.With("component", "ingester"), Registry: reg})
	if err != nil {
		return fmt.Errorf("ingester: %w", err)
	}
	stages := []namedStage{{"ingester", in}}
	if rekeyer != nil {
		stages = append(stages, namedStage{"rekeyer", rekeyer})
	}
	if deps.Stages != nil {
		extra, err := deps.Stages(brokers)
		if err != nil {
			return err
		}
		for i, s := range extra {
			stages = append(stages, namedStage{fmt.Sprintf("stage-%d", i+1), s})
		}
	}

	// HTTP listeners first, so a taken port fails before any stage starts.
	var servers []*httpserver.Server
	listen := func(addr string, h http.Handler, what string) error {
		if addr == "" || h == nil {
			return nil
		}
		// The write timeout exceeds the query API's longest queue wait plus
		// budget (query.DefaultLimits), with room to send the answer.
		srv, err := httpserver.Listen(addr, what, h, httpserver.Options{WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute})
		if err != nil {
			return err
		}
		servers = append(servers, srv)
		log.Info(what, "addr", srv.Addr())
		return nil
	}
	closeListeners := func() {
		for _, srv := range servers {
			srv.Shutdown(0)
		}
	}
	// The collector is built (no sockets yet) before /healthz, which
	// answers for it too.
	var col *collector.Collector
	health := stages
	if cfg.Collector.Enabled() {
		ccfg := cfg.Collector
		ccfg.ClientConfig = client
		ccfg.SpansTopic = cfg.Ingest.SpansTopic
		if col, err = collector.New(ccfg, collector.Options{Logger: log.With("component", "collector"), Registry: reg}); err != nil {
			return fmt.Errorf("collector: %w", err)
		}
		health = append(slices.Clip(stages), namedStage{"collector", col})
	}
	if err := listen(cfg.MetricsAddr, metricsHandler(reg, health), "metrics"); err != nil {
		return err
	}
	if err := listen(cfg.QueryListen, deps.Query, "query API"); err != nil {
		closeListeners()
		return err
	}
	// The collector binds its sockets last: nothing can fail between its
	// Listen and its Run, which owns them.
	if col != nil {
		if err := col.Listen(); err != nil {
			closeListeners()
			return fmt.Errorf("collector: %w", err)
		}
		// Nothing fails from here on: the collector's Run owns its sockets.
		stages = append(stages, namedStage{"collector", col})
		if deps.Collector != nil {
			deps.Collector(col.Addrs())
		}
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(stages))
	for _, s := range stages {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Run(runCtx); err != nil {
				errs <- fmt.Errorf("%s: %w", s.name, err)
				cancel()
			}
		}()
	}
	for _, srv := range servers {
		srv.Serve()
	}
	if ready != nil {
		ready(brokers)
	}
	<-runCtx.Done()
	log.Info("stopping")

	var all []error
	for _, srv := range servers {
		if err := srv.Shutdown(5 * time.Second); err != nil {
			all = append(all, fmt.Errorf("http %s: %w", srv.Addr(), err))
		}
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		all = append(all, e)
	}
	return errors.Join(all...)
}

type namedStage struct {
	name string
	Stage
}

// StartBroker starts the embedded broker of cfg (DataDir/kafka, listening
// on BrokerListen, the topics of cfg seeded with Partitions partitions
// when they do not exist yet), as Run does; the caller closes it.
// `tracepipe replay` reads a stopped `tracepipe run`'s log so.
func StartBroker(cfg Config) (*kfake.Cluster, error) { return startBroker(cfg) }

func startBroker(cfg Config) (*kfake.Cluster, error) {
	host, port, _ := net.SplitHostPort(cfg.BrokerListen)
	dir := filepath.Join(cfg.DataDir, "kafka")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.DataDir(dir),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(cfg.Partitions),
		kfake.SeedTopics(int32(cfg.Partitions), cfg.topics()...),
		kfake.GroupMinSessionTimeout(time.Second),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, net.JoinHostPort(host, port))
		}),
	}
	if cfg.SyncWrites {
		opts = append(opts, kfake.SyncWrites())
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("embedded broker on %s: %w", cfg.BrokerListen, err)
	}
	return c, nil
}

// metricsHandler serves /metrics (in the OpenMetrics format when asked, so
// Prometheus receives the aggregator's trace-ID exemplars) and /healthz over
// the health checks of every stage that has them (pipeline/kafka.Handler):
// 200 while each consumer is a live member of its consumer group and the
// collector (a stage with only Healthy) is serving.
func metricsHandler(g prometheus.Gatherer, stages []namedStage) http.Handler {
	var checks []kafka.Check
	for _, s := range stages {
		switch c := s.Stage.(type) {
		case interface{ Checks() []kafka.Check }:
			checks = append(checks, c.Checks()...)
		case interface{ Check() kafka.Check }:
			checks = append(checks, c.Check())
		case interface{ Healthy() bool }:
			checks = append(checks, kafka.Check{Name: s.name, Healthy: c.Healthy, Down: "not serving"})
		}
	}
	return kafka.Handler(g, checks...)
}
