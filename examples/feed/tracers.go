package feed

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/uber/jaeger-client-go/config"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tracepipe/tracepipe/instrument/metrics"
	"github.com/tracepipe/tracepipe/instrument/tracing"
)

// NewInstrumentation builds a service's Instrumentation on a jaeger-client-go
// tracer configured like tracing.FromEnv (edit cfg to choose the sender), with
// its metrics on reg under the service's name as namespace. Close the
// returned closer after the service stopped: it flushes the tracer.
func NewInstrumentation(service string, cfg *config.Configuration, reg prometheus.Registerer) (*metrics.Instrumentation, io.Closer, error) {
	c := *cfg
	c.ServiceName = service
	tr, err := tracing.New(&c)
	if err != nil {
		return nil, nil, err
	}
	ns := strings.NewReplacer("-", "_", ".", "_").Replace(service)
	in, err := metrics.New(tr, reg, metrics.Options{Namespace: ns})
	if err != nil {
		tr.Close()
		return nil, nil, fmt.Errorf("%s metrics: %w", service, err)
	}
	return in, tr, nil
}

// NewOTelProvider is an OpenTelemetry SDK tracer provider for service,
// exporting through exp in batches, with the resource attributes
// service.name and host.name (the host detector).
func NewOTelProvider(ctx context.Context, service string, exp sdktrace.SpanExporter) (*sdktrace.TracerProvider, error) {
	res, err := resource.New(ctx, resource.WithHost(), resource.WithAttributes(attribute.String("service.name", service)))
	if err != nil {
		return nil, fmt.Errorf("%s resource: %w", service, err)
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}
