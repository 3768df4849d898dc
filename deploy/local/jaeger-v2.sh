#!/usr/bin/env bash
# Builds an unmodified Jaeger v2 (cmd/jaeger: the OpenTelemetry Collector with Jaeger's extensions) from the Go
# module proxy, for the side-by-side benchmark (internal/sidebyside, BenchmarkVersusJaegerV2). Prints the binary's
# path.
#
# As deploy/local/jaeger-query.sh: `go install …@version` is refused for Jaeger (its go.mod has replace directives),
# so the module is required from a throw-away module (its own, not jaeger-query.sh's: the two versions differ) and
# built from there, at low priority (`nice`). The binary is cached under $TRACEPIPE_SERVICES_DIR/jaeger; a cold build
# takes many minutes on 2 cores, a warm one (Go build cache) seconds.
set -euo pipefail
VERSION=${TRACEPIPE_JAEGER_V2_VERSION:-v1.75.0}
DIR=${TRACEPIPE_SERVICES_DIR:-/tmp/tracepipe-services}/jaeger
BIN=$DIR/jaeger-v2-$VERSION
if [ -x "$BIN" ]; then
	echo "$BIN"
	exit 0
fi
mkdir -p "$DIR/src-v2"
cd "$DIR/src-v2"
[ -f go.mod ] || go mod init tracepipe.local/jaeger-v2 >/dev/null 2>&1
GOFLAGS=-mod=mod go get "github.com/jaegertracing/jaeger@$VERSION" >&2
GOFLAGS=-mod=mod nice -n 10 go build -o "$BIN.tmp" github.com/jaegertracing/jaeger/cmd/jaeger >&2
mv "$BIN.tmp" "$BIN"
echo "$BIN"
