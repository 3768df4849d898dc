#!/usr/bin/env bash
# Regenerates Go code from proto/ (make proto). Idempotent: installs protoc
# (Debian protobuf-compiler + libprotobuf-dev for the well-known types) when
# missing and protoc-gen-go at the version go.mod pins, then rewrites the
# generated files. Running it twice leaves the tree unchanged.
#
#   scripts/proto.sh           regenerate in place
#   scripts/proto.sh --check   regenerate into a temporary directory and fail
#                              if the committed code differs (for CI/lint)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v protoc >/dev/null 2>&1 || [ ! -f /usr/include/google/protobuf/timestamp.proto ]; then
	echo "== installing protoc (apt-get)"
	SUDO=""
	if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq protobuf-compiler libprotobuf-dev >/dev/null
fi

# protoc-gen-go must match the google.golang.org/protobuf runtime in go.mod.
PGG_VERSION=$(go list -m -f '{{.Version}}' google.golang.org/protobuf)
GOBIN_DIR=$(go env GOPATH)/bin
PGG="$GOBIN_DIR/protoc-gen-go"
if [ ! -x "$PGG" ] || ! "$PGG" --version 2>/dev/null | grep -qF "$PGG_VERSION"; then
	echo "== installing protoc-gen-go $PGG_VERSION"
	GOBIN="$GOBIN_DIR" go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PGG_VERSION"
fi

OUT=.
if [ "${1:-}" = "--check" ]; then
	OUT=$(mktemp -d)
	trap 'rm -rf "$OUT"' EXIT
fi

echo "== protoc $(protoc --version)"
# Every schema and the package its Go code lands in.
SCHEMAS=(
	"proto/jaeger/api_v2/model.proto wire/internal/jaegerpb"
	"proto/tracepipe/v1/assembled.proto wire/assembledpb"
)
stale=0
for entry in "${SCHEMAS[@]}"; do
	read -r src pkg <<<"$entry"
	protoc -I proto -I /usr/include \
		--plugin=protoc-gen-go="$PGG" \
		--go_out="$OUT" --go_opt=module=github.com/tracepipe/tracepipe \
		"$src"
	if [ "$OUT" = . ]; then
		echo "== generated $pkg from $src"
		continue
	fi
	# Compare only the generated files: a package may hold hand-written code too.
	for f in "$OUT/$pkg"/*.pb.go; do
		if ! diff -u "$f" "$pkg/$(basename "$f")"; then
			echo "generated code in $pkg is stale: run make proto" >&2
			stale=1
		fi
	done
	[ "$stale" = 1 ] || echo "== $pkg is up to date"
done
exit "$stale"
