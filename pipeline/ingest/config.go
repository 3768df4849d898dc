package ingest

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	"github.com/tracepipe/tracepipe/pipeline/ingest/assemble"
	"github.com/tracepipe/tracepipe/pipeline/kafka"
	"github.com/tracepipe/tracepipe/wire"
)

// Config configures an Ingester. DefaultConfig gives the defaults;
// RegisterFlags binds every field to a flag with a TRACEPIPE_* environment
// equivalent (internal/config); Validate says what is wrong in terms of
// those flags, without changing c.
type Config struct {
	// ClientConfig reaches the Kafka cluster: Brokers, TLS, SASL.
	kafka.ClientConfig
	SpansTopic  string
	TracesTopic string
	DLQTopic    string
	Group       string
	Encoding    wire.Encoding
	MetricsAddr string

	IdleTimeout       time.Duration
	MaxWait           time.Duration
	LateHorizon       time.Duration
	MaxSpansPerTrace  int
	MaxTracesInFlight int64
	MaxBytesInFlight  int64
	// MaxOutputBytesInFlight bounds the encoded trace output produced and
	// not yet acknowledged, per instance: due traces beyond it wait (see
	// the package doc, Limits).
	MaxOutputBytesInFlight int64
	MaxTombstones          int
	MaxMessageBytes        int

	FlushOnShutdown bool
	ShutdownGrace   time.Duration
	CommitInterval  time.Duration
	SessionTimeout  time.Duration

	// RekeyTo, when set, switches to re-key mode: spans are not assembled
	// but re-published to this topic, one Jaeger protobuf message per span
	// keyed by trace ID.
	RekeyTo string

	// CreateTopics, when positive, creates the topics the ingester reads
	// and writes, with this many partitions, if they do not exist.
	CreateTopics int
}

// DefaultMaxOutputBytesInFlight is --max-output-bytes-in-flight's default.
const DefaultMaxOutputBytesInFlight = 8 << 20

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		ClientConfig:           kafka.ClientConfig{Brokers: []string{"127.0.0.1:9092"}},
		SpansTopic:             "jaeger-spans",
		TracesTopic:            "tracepipe-traces",
		DLQTopic:               "tracepipe-ingester-dlq",
		Group:                  "tracepipe-ingester",
		Encoding:               wire.Auto,
		MetricsAddr:            "127.0.0.1:9464",
		IdleTimeout:            assemble.DefaultIdleTimeout,
		MaxWait:                assemble.DefaultMaxWait,
		LateHorizon:            assemble.DefaultLateHorizon,
		MaxSpansPerTrace:       2000,
		MaxTracesInFlight:      200_000,
		MaxBytesInFlight:       1 << 30,
		MaxOutputBytesInFlight: DefaultMaxOutputBytesInFlight,
		MaxTombstones:          assemble.DefaultMaxTombstones,
		MaxMessageBytes:        1 << 20,
		ShutdownGrace:          10 * time.Second,
		CommitInterval:         time.Second,
		SessionTimeout:         10 * time.Second,
	}
}

type encodingValue struct{ p *wire.Encoding }

func (e encodingValue) String() string {
	if e.p == nil {
		return ""
	}
	return string(*e.p)
}
func (e encodingValue) Set(v string) error {
	enc, err := wire.ParseEncoding(v)
	if err != nil {
		return err
	}
	*e.p = enc
	return nil
}

// RegisterFlags binds c's fields to flags named prefix+name on fs (the Kafka
// connection's as kafka.ClientConfig.RegisterFlags), with c's current values
// as defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet, prefix string) {
	c.ClientConfig.RegisterFlags(fs, prefix)
	p := func(name string) string { return prefix + name }
	fs.StringVar(&c.SpansTopic, p("spans-topic"), c.SpansTopic, "topic to read spans from")
	fs.StringVar(&c.TracesTopic, p("traces-topic"), c.TracesTopic, "topic to publish assembled traces to")
	fs.StringVar(&c.DLQTopic, p("dlq-topic"), c.DLQTopic, "dead-letter topic for undecodable messages")
	fs.StringVar(&c.Group, p("group"), c.Group, "Kafka consumer group")
	fs.Var(encodingValue{&c.Encoding}, p("encoding"), "span encoding: jaeger-proto, jaeger-json, otlp-proto, otlp-json or auto (detect per message)")
	fs.StringVar(&c.MetricsAddr, p("metrics-addr"), c.MetricsAddr, "HTTP address for /metrics and /healthz (empty: none)")
	fs.DurationVar(&c.IdleTimeout, p("idle-timeout"), c.IdleTimeout, "emit a trace when no span of it arrived for this long")
	fs.DurationVar(&c.MaxWait, p("max-wait"), c.MaxWait, "emit a trace at the latest this long after its first span")
	fs.DurationVar(&c.LateHorizon, p("late-horizon"), c.LateHorizon, "keep emitted traces this long for late spans (new versions); negative: no late versions")
	fs.IntVar(&c.MaxSpansPerTrace, p("max-spans-per-trace"), c.MaxSpansPerTrace, "drop further spans of a trace (trace marked truncated)")
	fs.Int64Var(&c.MaxTracesInFlight, p("max-traces-in-flight"), c.MaxTracesInFlight, "buffered+retained traces per instance before fetching pauses")
	fs.Int64Var(&c.MaxBytesInFlight, p("max-bytes-in-flight"), c.MaxBytesInFlight, "buffered+retained span bytes per instance before fetching pauses")
	fs.Int64Var(&c.MaxOutputBytesInFlight, p("max-output-bytes-in-flight"), c.MaxOutputBytesInFlight, "bytes of encoded trace output (of the buffers holding it) produced and not yet acknowledged per instance before due traces wait (each partition may exceed it by one trace)")
	fs.IntVar(&c.MaxTombstones, p("max-tombstones"), c.MaxTombstones, "evicted trace IDs remembered per partition to drop too-late spans")
	fs.IntVar(&c.MaxMessageBytes, p("max-message-bytes"), c.MaxMessageBytes, "largest output message; larger traces are dropped and counted")
	fs.BoolVar(&c.FlushOnShutdown, p("flush-on-shutdown"), c.FlushOnShutdown, "on shutdown or partition loss, emit half-built traces (completion shutdown)")
	fs.DurationVar(&c.ShutdownGrace, p("shutdown-grace"), c.ShutdownGrace, "how long to wait for in-flight outputs to be acknowledged when stopping a partition")
	fs.DurationVar(&c.CommitInterval, p("commit-interval"), c.CommitInterval, "how often to commit safe offsets")
	fs.DurationVar(&c.SessionTimeout, p("session-timeout"), c.SessionTimeout, "consumer group session timeout")
	fs.IntVar(&c.CreateTopics, p("create-topics"), c.CreateTopics, "create missing topics (spans, traces or re-key, dead-letter) with this many partitions and the brokers' default replication factor (0: don't)")
	fs.StringVar(&c.RekeyTo, p("rekey-to"), c.RekeyTo, "re-key mode: re-publish spans to this topic keyed by trace ID instead of assembling")
}

// Validate checks c and says which flag to fix; it reports every problem
// and does not change c.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if err := c.ClientConfig.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.SpansTopic == "" {
		bad("--spans-topic is empty")
	}
	if c.RekeyTo == "" && c.TracesTopic == "" {
		bad("--traces-topic is empty")
	}
	if c.RekeyTo != "" && c.RekeyTo == c.SpansTopic {
		bad("--rekey-to must differ from --spans-topic (%q), or the ingester would read its own output", c.SpansTopic)
	}
	if c.TracesTopic == c.SpansTopic {
		bad("--traces-topic must differ from --spans-topic (%q)", c.SpansTopic)
	}
	if c.DLQTopic == "" {
		bad("--dlq-topic is empty")
	}
	if c.Group == "" {
		bad("--group is empty")
	}
	switch c.Encoding {
	case wire.JaegerProto, wire.JaegerJSON, wire.OTLPProto, wire.OTLPJSON, wire.Auto:
	default:
		bad("--encoding %q is not one of jaeger-proto, jaeger-json, otlp-proto, otlp-json, auto", c.Encoding)
	}
	if c.IdleTimeout <= 0 {
		bad("--idle-timeout must be positive (got %v)", c.IdleTimeout)
	}
	if c.MaxWait < c.IdleTimeout {
		bad("--max-wait (%v) must be at least --idle-timeout (%v)", c.MaxWait, c.IdleTimeout)
	}
	if c.MaxSpansPerTrace <= 0 {
		bad("--max-spans-per-trace must be positive (got %d)", c.MaxSpansPerTrace)
	}
	if c.MaxTracesInFlight <= 0 {
		bad("--max-traces-in-flight must be positive (got %d)", c.MaxTracesInFlight)
	}
	if c.MaxBytesInFlight < 1<<20 {
		bad("--max-bytes-in-flight must be at least 1 MiB (got %d)", c.MaxBytesInFlight)
	}
	if c.MaxOutputBytesInFlight <= 0 {
		bad("--max-output-bytes-in-flight must be positive (got %d)", c.MaxOutputBytesInFlight)
	}
	if c.MaxMessageBytes < 1<<10 {
		bad("--max-message-bytes must be at least 1 KiB (got %d)", c.MaxMessageBytes)
	}
	if c.ShutdownGrace <= 0 || c.CommitInterval <= 0 {
		bad("--shutdown-grace and --commit-interval must be positive")
	}
	if c.SessionTimeout < 6*time.Second {
		bad("--session-timeout must be at least 6s, the broker's default group.min.session.timeout.ms (got %v)", c.SessionTimeout)
	}
	return errors.Join(errs...)
}

func (c *Config) assembleConfig() assemble.Config {
	return assemble.Config{
		IdleTimeout:      c.IdleTimeout,
		MaxWait:          c.MaxWait,
		LateHorizon:      c.LateHorizon,
		MaxSpansPerTrace: c.MaxSpansPerTrace,
		MaxTombstones:    c.MaxTombstones,
	}
}

// GCPercent is the GOGC that TuneGC sets.
const GCPercent = 400

// TuneGC trades memory for CPU, as cmd/ingester does at start, unless the
// operator set GOGC or GOMEMLIMIT (lookup reads the environment; nil means
// os.LookupEnv): the heap may grow to 5× the live data between collections
// (GOGC=400: the ingester's garbage is short-lived, and every collection
// costs CPU), while a soft memory limit of twice the in-flight budget plus
// 512 MiB makes the collector run earlier rather than exceed it. It returns
// what it set and whether it set anything. The settings are process-wide.
func TuneGC(cfg Config, lookup func(string) (string, bool)) (gogc int, limit int64, ok bool) {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	if _, set := lookup("GOGC"); set {
		return 0, 0, false
	}
	if _, set := lookup("GOMEMLIMIT"); set {
		return 0, 0, false
	}
	limit = 2*cfg.MaxBytesInFlight + 512<<20
	debug.SetGCPercent(GCPercent)
	debug.SetMemoryLimit(limit)
	return GCPercent, limit, true
}
