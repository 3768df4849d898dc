#!/usr/bin/env bash
# Builds an unmodified Jaeger program from the Go module proxy and prints the binary's path:
#   bash deploy/local/jaeger-build.sh NAME VERSION PACKAGE
# e.g. `jaeger-query v1.62.0 cmd/query` (deploy/local/jaeger-query.sh) or `jaeger-v2 v1.75.0 cmd/jaeger`
# (deploy/local/jaeger-v2.sh).
#
# `go install …@version` is refused for Jaeger (its go.mod has replace directives), so the module is required from a
# throw-away module of its own per NAME and built from there, at low priority (`nice`: the machine's cores are
# shared). The binary is cached as $TRACEPIPE_SERVICES_DIR/jaeger/NAME-VERSION; a cold build takes minutes on 2
# cores, a warm one (Go build cache) seconds.
set -euo pipefail
NAME=$1 VERSION=$2 PKG=$3
DIR=${TRACEPIPE_SERVICES_DIR:-/tmp/tracepipe-services}/jaeger
BIN=$DIR/$NAME-$VERSION
if [ -x "$BIN" ]; then
	echo "$BIN"
	exit 0
fi
mkdir -p "$DIR/src-$NAME"
cd "$DIR/src-$NAME"
[ -f go.mod ] || go mod init "tracepipe.local/$NAME" >/dev/null 2>&1
GOFLAGS=-mod=mod go get "github.com/jaegertracing/jaeger@$VERSION" >&2
GOFLAGS=-mod=mod nice -n 10 go build -o "$BIN.tmp" "github.com/jaegertracing/jaeger/$PKG" >&2
mv "$BIN.tmp" "$BIN"
echo "$BIN"
