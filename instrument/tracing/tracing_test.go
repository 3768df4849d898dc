package tracing_test

import (
	"testing"

	jaeger "github.com/uber/jaeger-client-go"
	"github.com/uber/jaeger-client-go/config"
	"go.uber.org/goleak"

	"github.com/tracepipe/tracepipe/instrument/tracing"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConfigDefaults(t *testing.T) {
	cfg, err := tracing.Config("feed")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ServiceName != "feed" || !cfg.Gen128Bit || cfg.Reporter.LocalAgentHostPort != tracing.DefaultAgent || cfg.Reporter.QueueSize != tracing.DefaultQueueSize ||
		cfg.Sampler.Type != jaeger.SamplerTypeRemote || cfg.Sampler.Param != 1 || cfg.Sampler.SamplingServerURL != tracing.DefaultSamplingURL {
		t.Errorf("defaults: %+v sampler %+v reporter %+v", cfg, cfg.Sampler, cfg.Reporter)
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Setenv("JAEGER_SERVICE_NAME", "gateway")
	t.Setenv("JAEGER_ENDPOINT", "http://127.0.0.1:14268/api/traces")
	t.Setenv("JAEGER_SAMPLER_TYPE", "const")
	t.Setenv("JAEGER_SAMPLER_PARAM", "1")
	t.Setenv("JAEGER_TAGS", "zone=eu-1")
	cfg, err := tracing.Config("feed")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ServiceName != "gateway" || cfg.Reporter.CollectorEndpoint != "http://127.0.0.1:14268/api/traces" ||
		cfg.Sampler.Type != "const" || len(cfg.Tags) != 1 || cfg.Tags[0].Key != "zone" {
		t.Errorf("from env: %+v sampler %+v reporter %+v", cfg, cfg.Sampler, cfg.Reporter)
	}
	t.Setenv("JAEGER_SAMPLER_PARAM", "not-a-number")
	if _, err := tracing.Config("feed"); err == nil {
		t.Error("bad JAEGER_SAMPLER_PARAM: no error")
	}
}

// The tracer's goroutines (remote sampler, UDP reporter) stop on Close.
func TestFromEnvClose(t *testing.T) {
	rep := jaeger.NewInMemoryReporter()
	tr, err := tracing.FromEnv("feed", config.Reporter(rep))
	if err != nil {
		t.Fatal(err)
	}
	sp := tr.StartSpan("op")
	sp.Finish()
	if rep.SpansSubmitted() != 1 {
		t.Errorf("%d spans reported", rep.SpansSubmitted())
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := sp.Tracer().(*jaeger.Tracer); !ok {
		t.Error("not a jaeger tracer")
	}
	if v := sp.(*jaeger.Span).SpanContext().TraceID().High; v == 0 {
		t.Error("trace ID is 64-bit; want 128-bit by default")
	}
}
