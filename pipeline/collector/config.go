package collector

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"time"

	"github.com/tracepipe/tracepipe/pipeline/kafka"
)

// Config configures a Collector. Every receiver address may be empty, which
// disables that receiver. DefaultConfig gives the defaults (loopback
// addresses, Jaeger's and OTLP's ports); RegisterFlags binds the receiver
// flags shared by `tracepipe run` and cmd/collector.
type Config struct {
	JaegerCompactUDP string // jaeger agent, compact thrift emitBatch (6831)
	JaegerBinaryUDP  string // jaeger agent, binary thrift emitBatch (6832)
	JaegerHTTP       string // jaeger collector, POST /api/traces (14268)
	OTLPGRPC         string // OTLP/gRPC (4317)
	OTLPHTTP         string // OTLP/HTTP, POST /v1/traces (4318)
	SamplingHTTP     string // jaeger agent's GET /sampling (5778)

	// SamplingStrategies is a Jaeger strategies file ("": every service
	// gets DefaultSamplingProbability).
	SamplingStrategies string
	// DefaultSamplingProbability is the probabilistic strategy of services
	// the file does not name, when there is no file.
	DefaultSamplingProbability float64

	// ClientConfig (Brokers, TLS, SASL) and SpansTopic: where spans go.
	kafka.ClientConfig
	SpansTopic string

	// QueueBytes bounds the bytes of spans accepted and not yet
	// acknowledged by Kafka; requests that do not fit are refused.
	QueueBytes int64
	// MaxRequestBytes bounds one request body (HTTP, after decompression;
	// gRPC message).
	MaxRequestBytes int
	// MaxConcurrentRequests bounds the HTTP and gRPC requests being read and
	// decoded at once (others wait for a turn, unread), so memory beyond the
	// queue stays bounded by about MaxConcurrentRequests × MaxRequestBytes × 3.
	MaxConcurrentRequests int
	// UDPWorkers read each UDP socket concurrently.
	UDPWorkers int
	// UDPReadBuffer is the socket receive buffer asked of the kernel (0:
	// the system default).
	UDPReadBuffer int
	// RetryAfter is what refused clients are told to wait.
	RetryAfter time.Duration
	// ShutdownGrace bounds the wait for accepted spans to reach Kafka on
	// shutdown.
	ShutdownGrace time.Duration

	// Producer: batching and retry settings (Brokers, Topic and
	// MaxBufferedBytes are set from the fields above).
	Producer kafka.ProducerConfig
}

// DefaultConfig returns the defaults: every receiver on loopback.
func DefaultConfig() Config {
	return Config{
		JaegerCompactUDP:           "127.0.0.1:6831",
		JaegerBinaryUDP:            "127.0.0.1:6832",
		JaegerHTTP:                 "127.0.0.1:14268",
		OTLPGRPC:                   "127.0.0.1:4317",
		OTLPHTTP:                   "127.0.0.1:4318",
		SamplingHTTP:               "127.0.0.1:5778",
		DefaultSamplingProbability: 1,
		ClientConfig:               kafka.ClientConfig{Brokers: []string{"127.0.0.1:9092"}},
		SpansTopic:                 "jaeger-spans",
		QueueBytes:                 64 << 20,
		MaxRequestBytes:            8 << 20,
		MaxConcurrentRequests:      16,
		UDPWorkers:                 2,
		UDPReadBuffer:              4 << 20,
		RetryAfter:                 time.Second,
		ShutdownGrace:              10 * time.Second,
		Producer:                   kafka.DefaultProducerConfig(),
	}
}

// RegisterFlags binds c's fields to flags named prefix+name on fs, with c's
// current values as defaults: the receivers and limits, the Kafka
// connection (kafka.ClientConfig.RegisterFlags), --spans-topic and
// --shutdown-grace. `tracepipe run` leaves out the last three kinds, which
// it sets itself.
func (c *Config) RegisterFlags(fs *flag.FlagSet, prefix string) {
	p := func(name string) string { return prefix + name }
	fs.StringVar(&c.JaegerCompactUDP, p("jaeger-compact-udp"), c.JaegerCompactUDP, "Jaeger agent UDP address for compact thrift (jaeger-client-go's default; empty: off)")
	fs.StringVar(&c.JaegerBinaryUDP, p("jaeger-binary-udp"), c.JaegerBinaryUDP, "Jaeger agent UDP address for binary thrift (empty: off)")
	fs.StringVar(&c.JaegerHTTP, p("jaeger-http"), c.JaegerHTTP, "Jaeger collector HTTP address, POST /api/traces with binary thrift (empty: off)")
	fs.StringVar(&c.OTLPGRPC, p("otlp-grpc"), c.OTLPGRPC, "OTLP/gRPC address (empty: off)")
	fs.StringVar(&c.OTLPHTTP, p("otlp-http"), c.OTLPHTTP, "OTLP/HTTP address, POST /v1/traces, protobuf or JSON (empty: off)")
	fs.StringVar(&c.SamplingHTTP, p("sampling-http"), c.SamplingHTTP, "Jaeger remote sampling address, GET /sampling?service= (empty: off)")
	fs.StringVar(&c.SamplingStrategies, p("sampling-strategies"), c.SamplingStrategies, "Jaeger sampling strategies file (JSON; empty: every service samples with --sampling-default-probability)")
	fs.Float64Var(&c.DefaultSamplingProbability, p("sampling-default-probability"), c.DefaultSamplingProbability, "probabilistic sampling rate served when no strategies file is given")
	fs.Int64Var(&c.QueueBytes, p("collector-queue-bytes"), c.QueueBytes, "bytes of spans accepted and not yet acknowledged by Kafka; beyond it requests are refused (HTTP 429, gRPC RESOURCE_EXHAUSTED, UDP dropped)")
	fs.IntVar(&c.MaxRequestBytes, p("collector-max-request-bytes"), c.MaxRequestBytes, "largest request body or gRPC message accepted")
	fs.IntVar(&c.MaxConcurrentRequests, p("collector-max-concurrent-requests"), c.MaxConcurrentRequests, "HTTP and gRPC requests read and decoded at once; others wait their turn unread")
	c.ClientConfig.RegisterFlags(fs, prefix)
	fs.StringVar(&c.SpansTopic, p("spans-topic"), c.SpansTopic, "topic the spans are published to (the ingester's --spans-topic)")
	fs.DurationVar(&c.ShutdownGrace, p("shutdown-grace"), c.ShutdownGrace, "on shutdown, how long accepted spans may take to reach Kafka")
}

// Enabled reports whether any receiver is configured.
func (c *Config) Enabled() bool {
	return c.JaegerCompactUDP != "" || c.JaegerBinaryUDP != "" || c.JaegerHTTP != "" || c.OTLPGRPC != "" ||
		c.OTLPHTTP != "" || c.SamplingHTTP != ""
}

// Validate reports every problem, in terms of the flags; it does not
// change c.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	for _, a := range []struct{ flag, addr string }{
		{"--jaeger-compact-udp", c.JaegerCompactUDP}, {"--jaeger-binary-udp", c.JaegerBinaryUDP},
		{"--jaeger-http", c.JaegerHTTP}, {"--otlp-grpc", c.OTLPGRPC}, {"--otlp-http", c.OTLPHTTP},
		{"--sampling-http", c.SamplingHTTP},
	} {
		if a.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			bad("%s %q: %v", a.flag, a.addr, err)
		}
	}
	if err := c.ClientConfig.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.SpansTopic == "" {
		bad("--spans-topic must not be empty")
	}
	if c.DefaultSamplingProbability < 0 || c.DefaultSamplingProbability > 1 {
		bad("--sampling-default-probability must be between 0 and 1, not %g", c.DefaultSamplingProbability)
	}
	if c.MaxRequestBytes < 1024 {
		bad("--collector-max-request-bytes must be at least 1024, not %d", c.MaxRequestBytes)
	}
	if c.QueueBytes < int64(c.MaxRequestBytes) {
		bad("--collector-queue-bytes (%d) must be at least --collector-max-request-bytes (%d)", c.QueueBytes, c.MaxRequestBytes)
	}
	if c.MaxConcurrentRequests < 1 {
		bad("--collector-max-concurrent-requests must be at least 1, not %d", c.MaxConcurrentRequests)
	}
	if c.UDPWorkers < 1 {
		bad("UDP workers must be at least 1, not %d", c.UDPWorkers)
	}
	if c.RetryAfter < time.Second || c.ShutdownGrace <= 0 {
		bad("retry-after must be at least 1s and the shutdown grace positive")
	}
	if err := c.producerConfig().Validate(); err != nil && len(c.Brokers) > 0 && c.SpansTopic != "" {
		bad("%v", err)
	}
	return errors.Join(errs...)
}

func (c *Config) producerConfig() kafka.ProducerConfig {
	p := c.Producer
	p.Brokers = c.Brokers
	p.Topic = c.SpansTopic
	p.MaxBufferedBytes = c.QueueBytes
	if int64(p.MaxMessageBytes) > c.QueueBytes { // a small queue: messages fit in it
		p.MaxMessageBytes = int(c.QueueBytes)
	}
	return p
}
