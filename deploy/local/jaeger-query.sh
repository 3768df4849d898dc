#!/usr/bin/env bash
# Builds an unmodified Jaeger Query (v1) from the Go module proxy, for the test that proves Jaeger reads
# tracepipe's Elasticsearch indices (storage/elasticsearch/jaeger_test.go). Prints the binary's path (see
# jaeger-build.sh; TRACEPIPE_JAEGER_VERSION picks another version).
set -euo pipefail
exec bash "$(dirname "$0")/jaeger-build.sh" jaeger-query "${TRACEPIPE_JAEGER_VERSION:-v1.62.0}" cmd/query
