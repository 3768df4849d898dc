#!/usr/bin/env bash
# Builds an unmodified Jaeger Query (v1) from the Go module proxy, for the test that proves Jaeger reads
# tracepipe's Elasticsearch indices (storage/elasticsearch/jaeger_test.go). Prints the binary's path.
#
# `go install …@version` is refused for Jaeger (its go.mod has replace directives), so the module is required
# from a throw-away module and built from there. The binary is cached under $TRACEPIPE_SERVICES_DIR/jaeger;
# a cold build takes several minutes on 2 cores, a warm one (Go build cache) seconds.
set -euo pipefail
VERSION=${TRACEPIPE_JAEGER_VERSION:-v1.62.0}
DIR=${TRACEPIPE_SERVICES_DIR:-/tmp/tracepipe-services}/jaeger
BIN=$DIR/jaeger-query-$VERSION
if [ -x "$BIN" ]; then
	echo "$BIN"
	exit 0
fi
mkdir -p "$DIR/src"
cd "$DIR/src"
[ -f go.mod ] || go mod init tracepipe.local/jaeger-query >/dev/null 2>&1
GOFLAGS=-mod=mod go get "github.com/jaegertracing/jaeger@$VERSION" >&2
GOFLAGS=-mod=mod go build -o "$BIN.tmp" github.com/jaegertracing/jaeger/cmd/query >&2
mv "$BIN.tmp" "$BIN"
echo "$BIN"
