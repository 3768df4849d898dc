# tracepipe — build, test and measure. See README.md.
GO        ?= go
PKGS      ?= ./...
BENCHTIME ?= 1s
BIN       := bin

.PHONY: all build test check bench proto lint services-up services-down clean demo

all: build

## build: compile every command into ./bin
build:
	$(GO) build -o $(BIN)/ ./cmd/...

## test: fast unit tests (no external services; integration tests skip with a message)
test:
	$(GO) test -race -count=1 $(PKGS)

## check: the whole suite, as CI runs it: install what is needed, start real Kafka,
## the Elasticsearch-API engine and Prometheus, lint, run every test, stop the services.
check:
	bash scripts/check.sh

## demo: the pipeline plus the instrumented activity-feed demo (examples/feed) and a bounded load;
## DEMO_FLAGS passes flags to 'tracepipe demo' (e.g. DEMO_FLAGS=--exit)
demo:
	$(GO) run ./cmd/tracepipe demo $(DEMO_FLAGS)

## bench: benchmarks whose figures the README reports
bench:
	bash scripts/bench.sh

## proto: regenerate protobuf code from proto/ (protoc from Debian, protoc-gen-go from the Go proxy)
proto:
	bash scripts/proto.sh

## lint: go vet and staticcheck
lint:
	bash scripts/lint.sh

## services-up / services-down: real Kafka, Elasticsearch-API engine and Prometheus on 127.0.0.1
services-up:
	bash deploy/local/services.sh up

services-down:
	bash deploy/local/services.sh down

clean:
	rm -rf $(BIN)
