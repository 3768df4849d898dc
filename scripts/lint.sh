#!/usr/bin/env bash
# go vet + staticcheck (pinned, fetched from the Go module proxy).
set -euo pipefail
cd "$(dirname "$0")/.."
STATICCHECK_VERSION=${STATICCHECK_VERSION:-v0.8.2}
echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt needed:"; echo "$unformatted"; exit 1; fi
echo "== go mod tidy (go.mod and go.sum say exactly what the code imports)"
if ! go mod tidy -diff; then echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; fi
echo "== go vet"
go vet ./...
echo "== deploy/validate (a module of its own): go mod tidy, go vet"
(cd deploy/validate && go mod tidy -diff && go vet ./...)
echo "== staticcheck $STATICCHECK_VERSION"
go run "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION" ./...
(cd deploy/validate && go run "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION" ./...)
echo "== generated protobuf code is current"
bash scripts/proto.sh --check
