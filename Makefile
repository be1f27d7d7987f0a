# Everything a developer or CI needs. Tools are pinned and installed into
# ./bin on first use, so a fresh clone needs only Go.
SHELL := /bin/bash
GO    ?= go
BIN   := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)

BUF_VERSION           := v1.75.0
PROTOC_GEN_GO_VERSION := v1.36.12
NATS_SERVER_VERSION   := v2.15.3

DAY      ?= 24h
DATA_DIR ?= ./data
HTTP     ?= 127.0.0.1:8080
ARGS     ?=

.PHONY: nats-server sim chaos bench-open fuzz fuzz-corpus run test test-unit test-integration bench proto proto-check lint build tools up clean

## run: the whole pipeline in one process on an embedded NATS server (DAY=1s to watch it climb)
# Built, then exec'ed, rather than `go run`: the go command exits 1 whenever
# it saw SIGINT, however cleanly its child stopped, so Ctrl-C ended in
# "make: *** [run] Error 1".
run:
	$(GO) build -o $(BIN)/dunningd ./services/dunningd
	exec $(BIN)/dunningd --day=$(DAY) --data-dir=$(DATA_DIR) --http=$(HTTP) $(ARGS)

## test: lint, generated-code check, every test with the race detector, a short fuzz run
test: lint proto-check
	$(GO) test -race -count=1 ./...
	$(MAKE) fuzz FUZZTIME=5s

## fuzz: every fuzz target for FUZZTIME each (default 10m); new corpus entries land in the build cache
FUZZTIME ?= 10m
FUZZ_TARGETS := ./pkg/ingest:FuzzDecodeValidate ./pkg/loanlog:FuzzDecode ./pkg/api:FuzzIngest
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
	  echo "fuzz $$fn ($$pkg) for $(FUZZTIME)"; \
	  $(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $$pkg; done

## fuzz-corpus: copy what fuzzing found (the build cache's corpus) into testdata/fuzz, to commit
fuzz-corpus:
	@set -e; cache=$$($(GO) env GOCACHE)/fuzz/$$($(GO) list -m); \
	for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
	  src=$$cache/$${pkg#./}/$$fn; dst=$$pkg/testdata/fuzz/$$fn; mkdir -p $$dst; \
	  [ -d $$src ] && cp -n $$src/* $$dst/ || true; echo "$$dst: $$(ls $$dst | wc -l) inputs"; done

## test-unit: the fast tests only (no embedded server)
test-unit:
	$(GO) test -race -count=1 -short $$($(GO) list ./... | grep -v /test/integration)

## test-integration: the acceptance tests over a real embedded JetStream server
test-integration:
	$(GO) test -race -count=1 -v ./test/integration/...

## bench: raw JetStream loop vs one stage vs the pipeline, both durability modes; 100,000 open cases
bench:
	$(GO) test -run='^$$' -bench=. -benchtime=3x -count=1 ./test/bench/...

## bench-open: OPEN=1000000 open cases held by NATS: resident memory, and how fast their steps fire
OPEN ?= 1000000
bench-open:
	DUNNING_OPEN_CASES=$(OPEN) $(GO) test -run='^$$' -bench=BenchmarkOpenCases -benchtime=1x -count=1 -timeout 60m ./test/bench/...

## sim: a simulated portfolio through the pipeline, checked against the oracle
## (LOANS=2000 falling due at RATE=2500 a second, SIM_DAY=500ms)
LOANS ?= 2000
RATE  ?= 2500
SIM_DAY ?= 500ms
sim:
	DUNNING_SIM_LOANS=$(LOANS) DUNNING_SIM_RATE=$(RATE) DUNNING_SIM_DAY=$(SIM_DAY) $(GO) test -count=1 -run '^TestSimulation$$' -v -timeout 30m ./test/integration/

## chaos: CHAOS_LOANS=20000 loans through the services as processes on a real nats-server, with processes
## SIGKILLed every ~2 s, one SIGSTOPped past its ack wait and the server restarted; 0 lost, 0 duplicated
CHAOS_LOANS ?= 20000
chaos: $(BIN)/nats-server
	DUNNING_CHAOS_LOANS=$(CHAOS_LOANS) NATS_SERVER_BIN=$(BIN)/nats-server \
	  $(GO) test -count=1 -run '^TestChaos$$' -v -timeout 30m ./test/chaos/

## proto: regenerate Go from proto/ with buf
proto: tools
	buf lint
	buf generate

## proto-check: buf lint, and the committed generated code equals a fresh generation
proto-check: tools
	buf lint
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	buf generate -o $$tmp && \
	diff -r -x '*.proto' proto $$tmp/proto && echo "proto: generated code is up to date"

## lint: gofmt and go vet
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## build: every service binary into ./bin
build:
	$(GO) build -o $(BIN)/ ./services/...

tools: $(BIN)/buf $(BIN)/protoc-gen-go

$(BIN)/buf:
	GOBIN=$(BIN) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)

$(BIN)/protoc-gen-go:
	GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

## nats-server: a real server binary for multi-process runs
nats-server: $(BIN)/nats-server

$(BIN)/nats-server:
	GOBIN=$(BIN) $(GO) install github.com/nats-io/nats-server/v2@$(NATS_SERVER_VERSION)

## up: the multi-node deployment (needs a Docker engine)
up:
	docker compose up --build

clean:
	rm -rf $(BIN) $(DATA_DIR)
