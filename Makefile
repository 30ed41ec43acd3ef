# Pico — build, test and run targets. `make help` lists them.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

GO       ?= go
BIN      := bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X github.com/pico-proxy/pico/internal/version.Version=$(VERSION)

.PHONY: help build demo test lint fmt vet chart-lint chart-readme e2e e2e-k8s bench fuzz clean

help: ## list targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build the static pico binary into bin/
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/pico ./cmd/pico

demo: build ## run a local 3-node cluster with a demo upstream and an agent (Ctrl-C stops it)
	$(GO) build -o $(BIN)/demo-upstream ./cmd/demo-upstream
	./scripts/demo.sh

test: lint ## everything that needs no root: vet, gofmt, unit + integration tests with -race, chart tests
	$(GO) test -race -count=1 ./...

lint: fmt vet ## gofmt and go vet

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' ; git ls-files --others --exclude-standard '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e/...

chart-readme: ## regenerate charts/pico/README.md from values.yaml (a test fails while it is stale)
	$(GO) run ./internal/chartdoc/cmd/chartdoc

chart-lint: ## ct lint of charts/pico (installs ct and yamllint if missing)
	./e2e/k8s/ct-lint.sh

e2e: build ## multi-node end-to-end tests with real processes (needs root for network/mount namespaces)
	PICO_BIN=$(CURDIR)/$(BIN)/pico $(GO) test -tags e2e -count=1 -timeout 15m -v ./e2e/... 2>&1 | tee /tmp/pico-e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|_test.go' ; exit $${PIPESTATUS[0]}

e2e-k8s: build ## the chart on a real single-node Kubernetes (../shared/k8s-local)
	./e2e/k8s/run.sh

bench: build ## throughput and latency: direct vs through Pico (prints a table)
	$(GO) run ./cmd/pico-bench

fuzz: ## run every fuzz target for 20s each
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 20s $$pkg; \
	  done; done

clean:
	rm -rf $(BIN)
