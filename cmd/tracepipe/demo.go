package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/uber/jaeger-client-go/config"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tracepipe/tracepipe/examples/feed"
	"github.com/tracepipe/tracepipe/instrument/tracing"
	"github.com/tracepipe/tracepipe/internal/httpserver"
	"github.com/tracepipe/tracepipe/pipeline/collector"
	"github.com/tracepipe/tracepipe/pipeline/local"
)

const demoUsage = `usage: tracepipe demo [flags]

Runs 'tracepipe run' (embedded broker and store, the collector, query API)
and, as its clients, the activity-feed demo of examples/feed: api-gateway
(HTTP) → feed (gRPC) → storage shards (one slow under contention) and a cache,
a fan-out worker fed through Kafka, and two OpenTelemetry services. The
jaeger-client-go services report over UDP (api-gateway, storage) and HTTP
(feed, fanout), the OpenTelemetry ones over OTLP gRPC (profile) and HTTP
(avatar). It sends a bounded load, waits until every trace is stored, prints
the bottlenecks and the commands to explore them, and keeps the pipeline
running until Ctrl-C (or exits with --exit).
`

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	lc := local.DefaultConfig()
	cc := collector.DefaultConfig()
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, demoUsage, "\nflags:\n"); fs.PrintDefaults() }
	var (
		dataDir     = fs.String("data-dir", lc.DataDir, "data directory of the pipeline (embedded broker and store)")
		brokerAddr  = fs.String("broker-listen", lc.BrokerListen, "address of the embedded broker")
		realKafka   = fs.String("kafka-brokers", "", "use these real Kafka brokers (comma-separated) instead of the embedded broker, for the pipeline and the fan-out topic")
		queryAddr   = fs.String("listen", lc.QueryListen, "query API address")
		metricsAddr = fs.String("metrics-addr", lc.MetricsAddr, "pipeline /metrics address (empty: none)")
		svcMetrics  = fs.String("services-metrics", "127.0.0.1:9466", "/metrics of the demo services' operation histograms (empty: none)")
		compactUDP  = fs.String("jaeger-compact-udp", cc.JaegerCompactUDP, "collector: Jaeger agent compact thrift UDP address")
		binaryUDP   = fs.String("jaeger-binary-udp", cc.JaegerBinaryUDP, "collector: Jaeger agent binary thrift UDP address (the demo does not use it; empty: off)")
		jaegerHTTP  = fs.String("jaeger-http", cc.JaegerHTTP, "collector: Jaeger HTTP /api/traces address")
		otlpGRPC    = fs.String("otlp-grpc", cc.OTLPGRPC, "collector: OTLP gRPC address")
		otlpHTTP    = fs.String("otlp-http", cc.OTLPHTTP, "collector: OTLP HTTP address")
		sampling    = fs.String("sampling-http", cc.SamplingHTTP, "collector: sampling endpoint address")
		requests    = fs.Int("requests", 2000, "requests of the load")
		concurrency = fs.Int("concurrency", 8, "requests in flight")
		users       = fs.Int("users", 50, "distinct users")
		slowShard   = fs.Int("slow-shard", 3, "the slow shard (of 8)")
		shardTime   = fs.Duration("shard-latency", 3*time.Millisecond, "a healthy shard's service time")
		slowFactor  = fs.Int("slow-factor", 5, "the slow shard's service time as a multiple of --shard-latency (it also serves one request at a time)")
		exit        = fs.Bool("exit", false, "stop once the results are printed")
		logLevel    = fs.String("log-level", "warn", "log level of the pipeline")
	)
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	for name, v := range map[string]string{"listen": *queryAddr, "broker-listen": *brokerAddr, "jaeger-compact-udp": *compactUDP,
		"jaeger-http": *jaegerHTTP, "otlp-grpc": *otlpGRPC, "otlp-http": *otlpHTTP, "sampling-http": *sampling} {
		if _, _, err := net.SplitHostPort(v); err != nil {
			return fmt.Errorf("%w: --%s %q: the demo needs it: %v", errUsage, name, v, err)
		}
	}
	if *requests < 1 || *concurrency < 1 || *users < 1 || *slowShard < 0 || *slowShard > 7 || *shardTime <= 0 || *slowFactor < 1 {
		return fmt.Errorf("%w: --requests, --concurrency, --users, --shard-latency and --slow-factor must be positive, --slow-shard in 0..7", errUsage)
	}

	// The pipeline, exactly as 'tracepipe run' with these addresses.
	runArgs := []string{"--data-dir", *dataDir, "--broker-listen", *brokerAddr, "--listen", *queryAddr,
		"--metrics-addr", *metricsAddr, "--jaeger-compact-udp", *compactUDP, "--jaeger-binary-udp", *binaryUDP, "--jaeger-http", *jaegerHTTP,
		"--otlp-grpc", *otlpGRPC, "--otlp-http", *otlpHTTP, "--sampling-http", *sampling, "--log-level", *logLevel}
	brokers := []string{*brokerAddr}
	if *realKafka != "" {
		runArgs = append(runArgs, "--kafka-brokers", *realKafka)
		brokers = strings.Split(*realKafka, ",")
	}
	pctx, stopPipeline := context.WithCancel(ctx)
	pipeDone := make(chan error, 1)
	go func() { pipeDone <- runRun(pctx, runArgs, stderr) }()
	var pipeErr error
	pipeStopped := false
	defer func() {
		stopPipeline()
		if !pipeStopped {
			<-pipeDone
		}
	}()
	if err := waitReady(ctx, pipeDone, "http://"+*sampling+"/sampling?service=demo", brokers[0]); err != nil {
		pipeStopped = errors.Is(err, errPipelineExited)
		return err
	}
	fmt.Fprintf(stdout, "pipeline running: query API http://%s, collector: jaeger udp %s, jaeger http %s, otlp grpc %s, otlp http %s\n",
		*queryAddr, *compactUDP, *jaegerHTTP, *otlpGRPC, *otlpHTTP)

	// The demo services, each with its own tracer.
	reg := prometheus.NewRegistry()
	base, err := tracing.Config("demo")
	if err != nil {
		return err
	}
	base.Sampler.SamplingServerURL = "http://" + *sampling + "/sampling"
	base.Reporter.LocalAgentHostPort = *compactUDP
	viaHTTP := *base
	rep := *base.Reporter
	rep.CollectorEndpoint = "http://" + *jaegerHTTP + "/api/traces"
	viaHTTP.Reporter = &rep
	ins := feed.Instruments{}
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	for svc, cfg := range map[string]*tracingConfig{feed.Gateway: base, feed.Storage: base, feed.Feed: &viaHTTP, feed.Fanout: &viaHTTP} {
		in, c, err := feed.NewInstrumentation(svc, cfg, reg)
		if err != nil {
			return err
		}
		ins[svc] = in
		closers = append(closers, c)
	}
	gexp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(*otlpGRPC), otlptracegrpc.WithInsecure())
	if err != nil {
		return fmt.Errorf("otlp grpc exporter: %w", err)
	}
	hexp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(*otlpHTTP), otlptracehttp.WithInsecure())
	if err != nil {
		return fmt.Errorf("otlp http exporter: %w", err)
	}
	profileTP, err := feed.NewOTelProvider(ctx, feed.Profile, gexp)
	if err != nil {
		return err
	}
	avatarTP, err := feed.NewOTelProvider(ctx, feed.Avatar, hexp)
	if err != nil {
		return err
	}
	providers := []*sdktrace.TracerProvider{profileTP, avatarTP}
	defer func() {
		for _, p := range providers {
			p.Shutdown(context.Background())
		}
	}()

	if *svcMetrics != "" {
		srv, err := httpserver.Listen(*svcMetrics, "--services-metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}), httpserver.Options{})
		if err != nil {
			return err
		}
		srv.Serve()
		defer srv.Shutdown(time.Second)
	}

	sys, err := feed.Start(ctx, feed.Config{Brokers: brokers, SlowShard: *slowShard, ShardLatency: *shardTime, SlowFactor: *slowFactor,
		Profile: &feed.OTelProviders{Profile: profileTP, Avatar: avatarTP}}, ins)
	if err != nil {
		return err
	}
	sctx, stopSys := context.WithCancel(ctx)
	sysDone := make(chan error, 1)
	go func() { sysDone <- sys.Run(sctx) }()
	stopServices := func() error {
		stopSys()
		return <-sysDone
	}

	start := time.Now().UTC().Truncate(time.Second)
	fmt.Fprintf(stdout, "demo services running (gateway %s); sending %d requests, %d at a time...\n", sys.GatewayURL(), *requests, *concurrency)
	res, loadErr := feed.Load(ctx, sys.GatewayURL(), feed.LoadConfig{Requests: *requests, Concurrency: *concurrency, Users: *users})
	fmt.Fprintf(stdout, "load done in %s: %d feed reads, %d posts, %d failed\n", time.Since(start).Round(time.Millisecond), res.Feeds, res.Posts, res.Failed)
	for deadline := time.Now().Add(30 * time.Second); sys.FannedOut() < res.Posts && time.Now().Before(deadline) && ctx.Err() == nil; {
		time.Sleep(50 * time.Millisecond)
	}
	// Stop the services, then flush every tracer before counting.
	if err := stopServices(); err != nil {
		return fmt.Errorf("demo services: %w", err)
	}
	for _, c := range closers {
		c.Close()
	}
	closers = nil
	for _, p := range providers {
		if err := p.Shutdown(ctx); err != nil {
			return fmt.Errorf("flush OpenTelemetry spans: %w", err)
		}
	}
	providers = nil
	if loadErr != nil {
		return fmt.Errorf("load: %w", loadErr)
	}

	want := int(res.Feeds + res.Posts)
	fmt.Fprintf(stdout, "waiting for the %d traces to be assembled and stored...\n", want)
	n, err := waitStored(ctx, "http://"+*queryAddr, start, want, 2*time.Minute)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d traces stored\n\n", n)

	store := filepath.Join(*dataDir, "tracepipe.db")
	slow := "shard-" + strconv.Itoa(*slowShard)
	since := "1h"
	q := func(args ...string) error {
		fmt.Fprintf(stdout, "$ tracepipe query %s\n", strings.Join(args, " "))
		return runQuery(ctx, append(append([]string{args[0]}, "--store", store), args[1:]...), stdout, stderr)
	}
	if err := q("bottlenecks", "--since", since, "--limit", "5"); err != nil {
		return err
	}
	if err := q("slowest", "--since", since, "--tag", "shard="+slow, "--limit", "3"); err != nil {
		return err
	}
	fmt.Fprintf(stdout, `
explore further (store %s):
  tracepipe query slowest --store %s --since 1h --tag shard=shard-0 --limit 3    # a healthy shard, for comparison
  tracepipe query trace --store %s <trace id from the list>                      # one request's critical path
  tracepipe query slowest --store %s --since 1h --service profile --limit 3      # traces through the OpenTelemetry services
  curl -s 'http://%s/api/v1/bottlenecks?since=1h&limit=5'
  web UI: http://%s/ (while the pipeline runs)
`, store, store, store, store, *queryAddr, *queryAddr)
	if *svcMetrics != "" {
		fmt.Fprintf(stdout, "  curl -s http://%s/metrics | grep operation_duration_seconds_count    # the services' histograms\n", *svcMetrics)
	}
	if *exit {
		return nil
	}
	fmt.Fprintln(stdout, "\nthe pipeline keeps running; Ctrl-C stops it")
	select {
	case <-ctx.Done():
	case pipeErr = <-pipeDone:
		pipeStopped = true
	}
	return pipeErr
}

type tracingConfig = config.Configuration

var errPipelineExited = errors.New("the pipeline exited")

// waitReady polls the collector's sampling endpoint and the broker until both
// answer (60s at most), or the pipeline exits.
func waitReady(ctx context.Context, pipeDone <-chan error, samplingURL, broker string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-pipeDone:
			return fmt.Errorf("%w: %v", errPipelineExited, err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		ok := false
		if resp, err := http.Get(samplingURL); err == nil {
			resp.Body.Close()
			if c, err := net.DialTimeout("tcp", broker, time.Second); err == nil {
				c.Close()
				ok = resp.StatusCode == http.StatusOK
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the pipeline did not become ready within 60s (sampling endpoint %s, broker %s)", samplingURL, broker)
		}
	}
}

// waitStored polls the query API until want traces of the api-gateway that
// started at or after start are stored.
func waitStored(ctx context.Context, api string, start time.Time, want int, timeout time.Duration) (int, error) {
	u := fmt.Sprintf("%s/api/v1/traces?service=%s&start=%s&limit=10000", api, feed.Gateway, start.Format(time.RFC3339))
	deadline := time.Now().Add(timeout)
	n := 0
	for {
		resp, err := http.Get(u)
		if err == nil {
			var body struct {
				Traces []json.RawMessage `json:"traces"`
			}
			if resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&body) == nil {
				n = len(body.Traces)
			}
			resp.Body.Close()
		}
		if n >= want {
			return n, nil
		}
		if time.Now().After(deadline) {
			return n, fmt.Errorf("%d of %d traces stored after %s", n, want, timeout)
		}
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}
