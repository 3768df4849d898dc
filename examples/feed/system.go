package feed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	kafka "github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/tracepipe/tracepipe/instrument/metrics"
)

// Service names of the demo.
const (
	Gateway = "api-gateway"
	Feed    = "feed"
	Storage = "storage"
	Fanout  = "fanout"
	Profile = "profile"
	Avatar  = "avatar"
)

// Config configures the system.
type Config struct {
	// Brokers and Topic of the fan-out messages; Group is the fan-out
	// worker's consumer group.
	Brokers []string
	Topic   string
	Group   string
	// Shards is the number of storage shards (default 8); SlowShard is the
	// one that admits a single request at a time and is slower (default 3;
	// -1: none).
	Shards    int
	SlowShard int
	// ShardLatency is a normal shard's service time (default 3ms); the slow
	// shard's is SlowFactor times it (default 5).
	ShardLatency time.Duration
	SlowFactor   int
	// CacheHitEvery: every n-th GetFeed of a user is served from the cache
	// (default 3).
	CacheHitEvery int
	// Profile, when set, starts the OpenTelemetry profile and avatar
	// services with these tracer providers; the gateway calls profile.
	Profile *OTelProviders
	Logger  *slog.Logger
}

// OTelProviders are the OpenTelemetry tracer providers of the profile and
// avatar services.
type OTelProviders struct {
	Profile, Avatar trace.TracerProvider
}

func (c *Config) defaults() error {
	if c.Shards == 0 {
		c.Shards = 8
	}
	if c.SlowShard == 0 {
		c.SlowShard = 3
	}
	if c.ShardLatency == 0 {
		c.ShardLatency = 3 * time.Millisecond
	}
	if c.SlowFactor == 0 {
		c.SlowFactor = 5
	}
	if c.CacheHitEvery == 0 {
		c.CacheHitEvery = 3
	}
	if c.Topic == "" {
		c.Topic = "feed-fanout"
	}
	if c.Group == "" {
		c.Group = "feed-fanout-worker"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case len(c.Brokers) == 0:
		return errors.New("feed: no Kafka brokers")
	case c.Shards < 3:
		return fmt.Errorf("feed: %d shards; need at least 3", c.Shards)
	case c.SlowShard >= c.Shards:
		return fmt.Errorf("feed: slow shard %d of %d shards", c.SlowShard, c.Shards)
	}
	return nil
}

// Instruments gives each service its Instrumentation (its own tracer).
type Instruments map[string]*metrics.Instrumentation

// System is the running demo. Start it with Start, stop it by cancelling
// Run's context; Run waits for every goroutine it started.
type System struct {
	cfg Config
	log *slog.Logger

	gatewayLn, storageLn, feedLn, profileLn, avatarLn net.Listener
	httpServers                                       []*http.Server
	httpLns                                           []net.Listener
	grpcServer                                        *grpc.Server
	feedConn                                          *grpc.ClientConn
	writer                                            *kafka.Writer
	transport                                         *kafka.Transport // of writer and createTopic; idle conns closed at the end
	worker                                            *fanoutWorker
}

// Start creates the fan-out topic, binds every service to a loopback port
// and builds them; Run serves. ins must hold the Gateway, Feed, Storage and
// Fanout instrumentations.
func Start(ctx context.Context, cfg Config, ins Instruments) (_ *System, err error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	for _, name := range []string{Gateway, Feed, Storage, Fanout} {
		if ins[name] == nil {
			return nil, fmt.Errorf("feed: no instrumentation for %s", name)
		}
	}
	s := &System{cfg: cfg, log: cfg.Logger, transport: &kafka.Transport{}}
	defer func() {
		if err != nil {
			s.closeAll()
		}
	}()
	if err := createTopic(ctx, s.transport, cfg.Brokers, cfg.Topic); err != nil {
		return nil, err
	}
	listen := func() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }
	if s.storageLn, err = listen(); err != nil {
		return nil, err
	}
	if s.feedLn, err = listen(); err != nil {
		return nil, err
	}
	if s.gatewayLn, err = listen(); err != nil {
		return nil, err
	}
	storageURL := "http://" + s.storageLn.Addr().String()

	st := newStorage(cfg)
	s.serveHTTP(s.storageLn, st.handler(ins[Storage]))

	s.writer = &kafka.Writer{
		Addr: kafka.TCP(cfg.Brokers...), Topic: cfg.Topic, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, Transport: s.transport,
	}
	fs := newFeedService(cfg, ins[Feed], storageURL, s.writer)
	s.grpcServer = fs.grpcServer()

	var profileURL string
	if cfg.Profile != nil {
		if s.avatarLn, err = listen(); err != nil {
			return nil, err
		}
		if s.profileLn, err = listen(); err != nil {
			return nil, err
		}
		s.serveHTTP(s.avatarLn, avatarHandler(cfg.Profile.Avatar))
		s.serveHTTP(s.profileLn, profileHandler(cfg.Profile.Profile, "http://"+s.avatarLn.Addr().String()))
		profileURL = "http://" + s.profileLn.Addr().String()
	}
	if s.feedConn, err = dialFeed(s.feedLn.Addr().String(), ins[Gateway]); err != nil {
		return nil, err
	}
	s.serveHTTP(s.gatewayLn, gatewayHandler(ins[Gateway], s.feedConn, profileURL))
	s.worker = newFanoutWorker(cfg, ins[Fanout], storageURL)
	return s, nil
}

func (s *System) serveHTTP(ln net.Listener, h http.Handler) {
	s.httpServers = append(s.httpServers, &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second})
	s.httpLns = append(s.httpLns, ln)
}

// FannedOut counts the fan-out messages the worker has processed.
func (s *System) FannedOut() int64 { return s.worker.processed.Load() }

// GatewayURL is the base URL of the API gateway.
func (s *System) GatewayURL() string { return "http://" + s.gatewayLn.Addr().String() }

// Run serves until ctx is cancelled, then stops the gateway first and the
// storage last (callers before callees), the fan-out worker after the
// services, and closes the Kafka writer. It returns the first serving error.
func (s *System) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(s.httpServers)+2)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i, srv := range s.httpServers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(s.httpLns[i]); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errs <- err
				cancel()
			}
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := s.grpcServer.Serve(s.feedLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			errs <- err
			cancel()
		}
	}()
	go func() {
		defer wg.Done()
		if err := s.worker.run(runCtx); err != nil {
			errs <- fmt.Errorf("fanout: %w", err)
			cancel()
		}
	}()
	<-runCtx.Done()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	// Callers first: the gateway is the last of httpServers.
	for i := len(s.httpServers) - 1; i >= 0; i-- {
		if s.httpLns[i] == s.gatewayLn {
			s.httpServers[i].Shutdown(sctx)
		}
	}
	s.grpcServer.GracefulStop()
	for i, srv := range s.httpServers {
		if s.httpLns[i] != s.gatewayLn {
			srv.Shutdown(sctx)
		}
	}
	wg.Wait()
	s.closeAll()
	close(errs)
	var all []error
	for e := range errs {
		all = append(all, e)
	}
	return errors.Join(all...)
}

// closeAll releases what Start built (listeners Serve never took, the gRPC
// client, the Kafka writer).
func (s *System) closeAll() {
	for _, ln := range []net.Listener{s.gatewayLn, s.storageLn, s.feedLn, s.profileLn, s.avatarLn} {
		if ln != nil {
			ln.Close()
		}
	}
	if s.feedConn != nil {
		s.feedConn.Close()
	}
	if s.writer != nil {
		s.writer.Close()
	}
	s.transport.CloseIdleConnections()
}

func createTopic(ctx context.Context, tr *kafka.Transport, brokers []string, topic string) error {
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: tr}
	resp, err := c.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 2, ReplicationFactor: 1}}})
	if err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	if e := resp.Errors[topic]; e != nil && !errors.Is(e, kafka.TopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", topic, e)
	}
	return nil
}
