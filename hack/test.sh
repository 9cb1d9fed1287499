#!/usr/bin/env bash
# Runs every kubeforge test: unit tests, CLI tests against the built binary,
# and the end-to-end tests that bring up real nodes (as root, in network
# namespaces the tests create).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
./hack/deps.sh
export CGO_ENABLED=0
go mod download
go vet ./...
# The race detector on the packages whose code runs concurrently (it needs
# cgo; the binary itself stays static).
CGO_ENABLED=1 go test -race -short -count=1 ./phases/... ./components/node/... ./components/podnet/... ./internal/csrapprover/... ./join/...
# Every fuzz target briefly (`make fuzz` runs them longer); go test below
# replays their seed corpora and the failing inputs kept under testdata/fuzz.
FUZZTIME="${FUZZTIME:-5s}" ./hack/fuzz.sh
# One binary for every test that runs it (built once, shared).
make build
export KUBEFORGE_BINARY="$PWD/bin/kubeforge"
# kube-bench for the CIS benchmark test (built once, cached under build/).
KUBE_BENCH_DIR="$(./hack/kube-bench.sh)"
export KUBE_BENCH_DIR
go test -timeout 75m -p 1 "$@" ./...
