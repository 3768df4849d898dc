#!/usr/bin/env bash
# Builds an unmodified Jaeger v2 (cmd/jaeger: the OpenTelemetry Collector with Jaeger's extensions) from the Go
# module proxy, for the side-by-side benchmark (internal/sidebyside, BenchmarkVersusJaegerV2). Prints the binary's
# path (see jaeger-build.sh; TRACEPIPE_JAEGER_V2_VERSION picks another version).
set -euo pipefail
exec bash "$(dirname "$0")/jaeger-build.sh" jaeger-v2 "${TRACEPIPE_JAEGER_V2_VERSION:-v1.75.0}" cmd/jaeger
