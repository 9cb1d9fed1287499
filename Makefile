# kubeforge: one binary that turns a Linux host into a Kubernetes node.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.1.0-dev)
LDFLAGS := -s -w -X github.com/kubeforge/kubeforge/internal/version.Version=$(VERSION)
GO ?= go
export CGO_ENABLED := 0

.PHONY: build test unit bench up clean fmt vet

SHIM := components/containerd/shim.bin
TRAMPOLINE := components/hosttools/trampoline.bin
# kubeforge's few upstream source patches (hack/patches lists them and why)
# are applied through build/go.mod; -trimpath keeps the build cache
# independent of the checkout's path. The tests and go vet build the same way
# (PATCHED), so they run on the patched code and share compiled packages with
# `make build`: neither the checkout's path nor the build tags enter a
# package's cache key (only the files the tags select do), so only the few
# packages that import the embedded shim or trampoline are compiled twice.
PATCHED := -modfile build/go.mod -trimpath
# The IDs of the patches compiled in, stamped into the binary and the test
# binaries (the tests of patched code check that what is stamped is there).
STAMP_PATCHES = -X github.com/kubeforge/kubeforge/internal/version.Patches=$$($(GO) run ./hack/patches -list)

.PHONY: patches
patches: ## write build/go.mod and the patched module trees (hack/patches; hard links, a no-op when current)
	$(GO) run ./hack/patches -o build

build: patches ## build bin/kubeforge (static), with the small runc shim and host-tool trampoline embedded
	$(GO) build -ldflags '-s -w' -o $(SHIM) ./components/containerd/shimcmd
	$(GO) build -ldflags '-s -w' -o $(TRAMPOLINE) ./components/hosttools/trampoline
	$(GO) build $(PATCHED) -tags embedshim,embedhosttools -ldflags "$(LDFLAGS) $(STAMP_PATCHES)" -o bin/kubeforge ./cmd/kubeforge

.PHONY: build-1.36 upgrade-from-1.36
build-1.36: ## build bin/kubeforge-1.36: this source against Kubernetes v1.36.3 (hack/build-k136.sh; go.mod and bin/kubeforge untouched)
	./hack/build-k136.sh

upgrade-from-1.36: build build-1.36 ## (root, not in CI) a 1+1-node v1.36 cluster made by bin/kubeforge-1.36 upgraded to bin/kubeforge (TestUpgradeFromPreviousMinor)
	KUBEFORGE_OLD_BINARY=$(CURDIR)/bin/kubeforge-1.36 KUBEFORGE_BINARY=$(CURDIR)/bin/kubeforge $(GO) test -count=1 -p 1 -v -timeout 40m -run 'TestUpgradeFromPreviousMinor$$' ./test/e2e/

unit: patches ## unit tests only (no root, no cluster), on the patched code
	$(GO) test $(PATCHED) -ldflags "$(STAMP_PATCHES)" -short ./...

test: ## every test, including end-to-end clusters (root)
	./hack/test.sh

.PHONY: e2e
e2e: build ## end-to-end tests (root): real nodes in test network namespaces (test/testbed, test/e2e)
	KUBEFORGE_BINARY=$(CURDIR)/bin/kubeforge $(GO) test -count=1 -p 1 -v -timeout 30m ./test/...

.PHONY: e2e-multinode
e2e-multinode: build ## multi-node end-to-end tests (root): 1 control plane + 2 workers, 3 control planes (HA), join refusals, kubeadm interop
	KUBEFORGE_BINARY=$(CURDIR)/bin/kubeforge $(GO) test -count=1 -p 1 -v -timeout 30m -run 'TestMultiNode' ./test/e2e/

.PHONY: upgrade-ha
upgrade-ha: build ## HA upgrade end-to-end (root, not in CI): TestMultiNodeHA's three control-plane nodes start on an older build and are upgraded (apply, upgrade node), then the HA test goes on
	KUBEFORGE_E2E_UPGRADE_HA=1 KUBEFORGE_BINARY=$(CURDIR)/bin/kubeforge $(GO) test -count=1 -p 1 -v -timeout 90m -run '^TestMultiNodeHA$$' ./test/e2e/

.PHONY: cis
cis: build ## CIS Kubernetes Benchmark (root): kube-bench (hack/kube-bench.sh) on a kubeforge cluster and on kubeadm's files (test/e2e/cis_test.go)
	KUBEFORGE_BINARY=$(CURDIR)/bin/kubeforge $(GO) test -count=1 -p 1 -v -timeout 30m -run 'TestCISBenchmark' ./test/e2e/

# How long `make fuzz` runs each fuzz target.
FUZZTIME ?= 30s

.PHONY: fuzz
fuzz: ## run every Go fuzz target (func FuzzXxx in a fuzz_test.go) for FUZZTIME each, one after another (hack/fuzz.sh)
	FUZZTIME=$(FUZZTIME) ./hack/fuzz.sh

bench: build ## bring up a node from scratch and measure it; writes bench/results.json
	./hack/bench.sh

.PHONY: scale
scale: build ## one control-plane node with 100/300/1,000 kwok-simulated nodes (10 pods each) and a bounded API load; writes scale/results.json (hack/scale.sh, root, not in CI)
	./hack/scale.sh

up: ## build and bring up a single-node cluster
	./hack/up.sh

fmt:
	gofmt -l -w $$(git ls-files "*.go")

vet: patches
	$(GO) vet $(PATCHED) ./...

clean:
	rm -rf bin build $(SHIM) $(TRAMPOLINE)
