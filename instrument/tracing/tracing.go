// Package tracing sets up a jaeger-client-go tracer from the environment, as
// jaeger-client-go's config.FromEnv does, with defaults that send to the
// local tracepipe collector (`tracepipe run` or cmd/collector):
//
//   - JAEGER_SERVICE_NAME names the service (the argument of FromEnv when unset);
//   - JAEGER_ENDPOINT (e.g. http://127.0.0.1:14268/api/traces) sends
//     batches over HTTP; otherwise spans go over UDP (compact thrift) to
//     JAEGER_AGENT_HOST:JAEGER_AGENT_PORT, default 127.0.0.1:6831 — an IPv4
//     literal, because "localhost" may resolve to ::1 where the collector
//     does not listen;
//   - JAEGER_SAMPLER_TYPE / JAEGER_SAMPLER_PARAM / JAEGER_SAMPLING_ENDPOINT:
//     default "remote", polling http://127.0.0.1:5778/sampling (the
//     collector's sampling endpoint), sampling everything until its first answer;
//   - JAEGER_REPORTER_MAX_QUEUE_SIZE: default 10000 spans (jaeger-client-go's
//     own default, 100, drops spans in bursts);
//   - JAEGER_TAGS, JAEGER_TRACEID_128BIT (default true: W3C-compatible IDs),
//     JAEGER_DISABLED and the reporter variables as in jaeger-client-go.
//
// jaeger-client-go adds the process tags hostname, ip and jaeger.version;
// tracepipe searches hostname as host (`query slowest --tag host=…`).
package tracing

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/opentracing/opentracing-go"
	jaeger "github.com/uber/jaeger-client-go"
	"github.com/uber/jaeger-client-go/config"
)

// Defaults of the local collector.
const (
	// DefaultQueueSize bounds the spans a reporter holds before sending
	// (JAEGER_REPORTER_MAX_QUEUE_SIZE); when full, new spans are dropped and
	// counted by jaeger-client-go's reporter metrics.
	DefaultQueueSize = 10000

	DefaultAgent       = "127.0.0.1:6831"
	DefaultSamplingURL = "http://127.0.0.1:5778/sampling"
)

// Tracer is an opentracing tracer that must be closed: Close flushes buffered
// spans and stops the reporter's and the remote sampler's goroutines.
type Tracer struct {
	opentracing.Tracer
	closer io.Closer
}

// Close flushes and stops the tracer.
func (t *Tracer) Close() error {
	if t.closer == nil {
		return nil
	}
	return t.closer.Close()
}

// FromEnv builds a tracer for service (JAEGER_SERVICE_NAME overrides it) from
// the environment and the defaults above. opts are jaeger-client-go config
// options (a reporter, a sampler, a logger, extra tags).
func FromEnv(service string, opts ...config.Option) (*Tracer, error) {
	cfg, err := Config(service)
	if err != nil {
		return nil, err
	}
	return New(cfg, opts...)
}

// Config returns the configuration FromEnv uses, for callers that adjust it.
func Config(service string) (*config.Configuration, error) {
	// Gen128Bit stays true unless JAEGER_TRACEID_128BIT says otherwise.
	cfg := &config.Configuration{ServiceName: service, Gen128Bit: true}
	if _, err := cfg.FromEnv(); err != nil {
		return nil, fmt.Errorf("tracer configuration from environment: %w", err)
	}
	if cfg.Sampler == nil {
		cfg.Sampler = &config.SamplerConfig{}
	}
	if cfg.Sampler.Type == "" {
		cfg.Sampler.Type = jaeger.SamplerTypeRemote
		if os.Getenv("JAEGER_SAMPLER_PARAM") == "" {
			cfg.Sampler.Param = 1
		}
	}
	if cfg.Sampler.SamplingServerURL == "" {
		cfg.Sampler.SamplingServerURL = DefaultSamplingURL
	}
	if cfg.Reporter == nil {
		cfg.Reporter = &config.ReporterConfig{}
	}
	if cfg.Reporter.QueueSize == 0 {
		// jaeger-client-go's default (100 spans) drops spans in bursts.
		cfg.Reporter.QueueSize = DefaultQueueSize
	}
	if os.Getenv("JAEGER_AGENT_HOST") == "" {
		// jaeger-client-go defaults to localhost, which may be ::1.
		port := os.Getenv("JAEGER_AGENT_PORT")
		if port == "" {
			port = "6831"
		}
		cfg.Reporter.LocalAgentHostPort = net.JoinHostPort("127.0.0.1", port)
	}
	return cfg, nil
}

// New builds a tracer from cfg.
func New(cfg *config.Configuration, opts ...config.Option) (*Tracer, error) {
	if cfg.ServiceName == "" {
		return nil, errors.New("tracer: no service name (set JAEGER_SERVICE_NAME)")
	}
	t, closer, err := cfg.NewTracer(opts...)
	if err != nil {
		return nil, fmt.Errorf("tracer %s: %w", cfg.ServiceName, err)
	}
	return &Tracer{Tracer: t, closer: closer}, nil
}
