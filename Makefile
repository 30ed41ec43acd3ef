# Pico — build, test and run targets. `make help` lists them.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

GO       ?= go
BIN      := bin
BENCH_FLAGS ?=

# Three Go modules: Pico (.), the benchmark (bench/, which brings gonum/plot) and the image
# builder (tools/mkimage); each target names the module it runs in (go -C). A go.work (`make
# workspace`, ignored by git) is for editors only: every target builds each module from its own
# go.mod, so a local workspace never changes the versions Pico is built with.
export GOWORK := off
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X github.com/pico-proxy/pico/internal/version.Version=$(VERSION)

# The image (make image, make image-push): tools/mkimage, its own Go module, builds it with
# go-containerregistry, so no Docker daemon is needed and Pico's go.mod stays free of it.
IMAGE_REPOSITORY ?= ghcr.io/pico-proxy/pico
IMAGE_TAG        ?= $(VERSION)
IMAGE_TAR        ?= $(BIN)/pico-image.tar
IMAGE_ARCH       ?= $(shell $(GO) env GOARCH)
IMAGE_PLATFORMS  ?= linux/amd64 linux/arm64
# CA certificates for the image (JWKS over https, agents dialing https): Debian's
# ca-certificates bundle of the build machine; CA_CERTS= builds an image without any.
CA_CERTS         ?= /etc/ssl/certs/ca-certificates.crt
# The image of a prebuilt static binary instead of one built here (e2e/k8s/run.sh).
IMAGE_BINARY     ?=
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
MKIMAGE  := $(BIN)/mkimage
MKIMAGE_FLAGS = -ca-certs '$(CA_CERTS)' -created $(SOURCE_DATE_EPOCH) \
	-label org.opencontainers.image.title=pico \
	-label 'org.opencontainers.image.description=Pico, a clustered reverse proxy for services behind outbound tunnels' \
	-label org.opencontainers.image.source=https://github.com/pico-proxy/pico \
	-label org.opencontainers.image.url=https://github.com/pico-proxy/pico \
	-label org.opencontainers.image.version=$(VERSION) \
	-label org.opencontainers.image.revision=$(shell git rev-parse HEAD 2>/dev/null || echo unknown)

.PHONY: help build demo test lint fmt vet chart-lint chart-readme e2e e2e-k8s bench bench-ab fuzz workspace clean image image-push $(MKIMAGE) FORCE

help: ## list targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build the static pico binary into bin/
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/pico ./cmd/pico

# bin/linux-<arch>/pico: the same static binary for an image platform.
$(BIN)/linux-%/pico: FORCE
	CGO_ENABLED=0 GOOS=linux GOARCH=$* $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/pico

$(MKIMAGE):
	$(GO) -C tools/mkimage build -trimpath -o $(CURDIR)/$(MKIMAGE) .

image: $(MKIMAGE) $(if $(IMAGE_BINARY),,$(BIN)/linux-$(IMAGE_ARCH)/pico) ## image tarball bin/pico-image.tar (no Docker daemon needed) for docker/podman load, ctr images import
	$(MKIMAGE) -binary $(or $(IMAGE_BINARY),$(BIN)/linux-$(IMAGE_ARCH)/pico) -tag $(IMAGE_REPOSITORY):$(IMAGE_TAG) -out $(IMAGE_TAR) $(MKIMAGE_FLAGS)
	@ls -l $(IMAGE_TAR)

image-push: $(MKIMAGE) $(foreach p,$(IMAGE_PLATFORMS),$(BIN)/$(subst /,-,$(p))/pico) ## push REGISTRY/pico:IMAGE_TAG (linux/amd64+arm64 index; auth: ~/.docker/config.json)
	@if [ -z "$(REGISTRY)" ]; then echo "make image-push: set REGISTRY, e.g. make image-push REGISTRY=registry.example.com/team (the image is REGISTRY/pico:IMAGE_TAG)" >&2; exit 2; fi
	$(MKIMAGE) $(foreach p,$(IMAGE_PLATFORMS),-binary $(BIN)/$(subst /,-,$(p))/pico) -tag $(REGISTRY)/pico:$(IMAGE_TAG) -push $(if $(REGISTRY_INSECURE),-insecure) $(MKIMAGE_FLAGS)
	@echo "install it: helm install pico ./charts/pico --set image.repository=$(REGISTRY)/pico --set image.tag=$(IMAGE_TAG)"

demo: build ## run a local 3-node cluster with a demo upstream and an agent (Ctrl-C stops it)
	$(GO) build -o $(BIN)/demo-upstream ./cmd/demo-upstream
	./scripts/demo.sh

test: lint ## everything that needs no root: vet, gofmt, unit + integration tests with -race, chart tests
	$(GO) test -race -count=1 ./...
	$(GO) -C bench test -race -count=1 ./...
	$(GO) -C tools/mkimage test -race -count=1 ./...

lint: fmt vet ## gofmt and go vet

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' ; git ls-files --others --exclude-standard '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e/...
	$(GO) -C bench vet ./...
	$(GO) -C tools/mkimage vet ./...

chart-readme: ## regenerate charts/pico/README.md from values.yaml (a test fails while it is stale)
	$(GO) run ./internal/chartdoc/cmd/chartdoc

chart-lint: ## ct lint of charts/pico (installs ct and yamllint if missing)
	./e2e/k8s/ct-lint.sh

e2e: build ## multi-node end-to-end tests with real processes (needs root for network/mount namespaces)
	PICO_BIN=$(CURDIR)/$(BIN)/pico $(GO) test -tags e2e -count=1 -timeout 15m -v ./e2e/... 2>&1 | tee /tmp/pico-e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|_test.go' ; exit $${PIPESTATUS[0]}

e2e-k8s: build ## the chart on a real single-node Kubernetes (../shared/k8s-local)
	./e2e/k8s/run.sh

bench: build ## the benchmark report bench/RESULTS.md + results.png (flags: BENCH_FLAGS='--sections headline --duration 2s')
	$(GO) -C bench build -o $(CURDIR)/$(BIN)/pico-bench .
	./$(BIN)/pico-bench $(BENCH_FLAGS)

bench-ab: build ## BASE (a git rev) against this tree in interleaved rounds on the single-node path: CPU and system calls per request, p50 at 1 connection (ROUNDS=3)
	@test -n "$(BASE)" || { echo "bench-ab: name the base, e.g. make bench-ab BASE=main" >&2; exit 2; }
	$(GO) -C bench build -o $(CURDIR)/$(BIN)/pico-bench .
	rm -rf $(BIN)/base-src && mkdir -p $(BIN)/base-src && git archive $(BASE) | tar -x -C $(BIN)/base-src
	cd $(BIN)/base-src && CGO_ENABLED=0 $(GO) build -o $(CURDIR)/$(BIN)/pico-base ./cmd/pico
	rm -rf $(BIN)/base-src
	./$(BIN)/pico-bench --ab $(BIN)/pico-base --rounds $(or $(ROUNDS),3)

fuzz: ## run every fuzz target for 20s each
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 20s $$pkg; \
	  done; done

workspace: ## a go.work over the three modules for editors and gopls (ignored by git; make ignores it)
	GOWORK= $(GO) work init . ./bench ./tools/mkimage

clean:
	rm -rf $(BIN)

FORCE:
