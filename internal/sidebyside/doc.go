// Package sidebyside measures tracepipe side by side with an unmodified
// Jaeger v2 (its cmd/jaeger, the OpenTelemetry Collector with Jaeger's
// components, built from the Go module proxy by deploy/local/jaeger-v2.sh)
// on the same machine, the same broker and the same topic: issue 16's
// baselines. The package holds only its benchmark, BenchmarkVersusJaegerV2;
// see its comment for what it runs and reports.
package sidebyside
