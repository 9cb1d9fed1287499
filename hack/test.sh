#!/usr/bin/env bash
# Runs every kubeforge test: unit tests (the CLI's commands in-process, and a smoke test of the built binary),
# and the end-to-end tests that bring up real nodes (as root, in network
# namespaces the tests create).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
# Each step's wall time, printed last (CI shows the end of the output): a
# slower run says which step grew.
began=$SECONDS
last=$SECONDS
times=()
lap() { times+=("$(printf '%-34s %5ds' "$1" $((SECONDS - last)))"); last=$SECONDS; }
summary() {
  echo "== step times"
  printf '%s\n' "${times[@]}"
  printf '%-34s %5ds\n' total $((SECONDS - began))
}
trap summary EXIT
./hack/deps.sh
export CGO_ENABLED=0
go mod download
lap "deps, go mod download"
# Vet and every test build like `make build` (Makefile: PATCHED): on the
# patched upstream code (build/go.mod, written first: hard links, seconds),
# with -trimpath and CGO_ENABLED=0, so vet compiles the packages once for
# vet, make build and the tests. The test binaries are stamped with the
# patches compiled in, as the binary is (the tests of patched code check it).
go run ./hack/patches -o build
patched=(-modfile build/go.mod -trimpath)
stamp="-X github.com/kubeforge/kubeforge/internal/version.Patches=$(go run ./hack/patches -list)"
# go vet runs every analyzer on every package and its tests, so the go test
# runs below turn their own vet pass off (it would analyze every dependency
# again: its smaller set of analyzers has its own cache keys, and under
# -race the dependencies are other builds, ~1,400 vet runs for the bootstrap
# hooks' test alone).
go vet "${patched[@]}" ./...
lap "go vet"
# The race detector on the packages whose code runs concurrently (it needs
# cgo; the binary itself stays static), and on the patched API server hooks
# (apiserver-bootstrap-roles-parallel runs the bootstrap roles' reconciliation
# on goroutines).
CGO_ENABLED=1 go test -race -vet=off -short -count=1 "${patched[@]}" -ldflags "$stamp" ./phases/... ./components/node/... ./components/podnet/... ./internal/csrapprover/... ./join/... ./components/kubeapiserver/bootstraphooks/
lap "go test -race"
# Every fuzz target briefly (`make fuzz` runs them longer); go test below
# replays their seed corpora and the failing inputs kept under testdata/fuzz.
FUZZTIME="${FUZZTIME:-5s}" ./hack/fuzz.sh
lap "fuzz"
# One binary for every test that runs it (built once, shared).
make build
lap "make build"
export KUBEFORGE_BINARY="$PWD/bin/kubeforge"
# kube-bench for the CIS benchmark test (built once, cached under build/).
KUBE_BENCH_DIR="$(./hack/kube-bench.sh)"
export KUBE_BENCH_DIR
lap "kube-bench"
if [ $# -gt 0 ]; then
  exec go test -timeout 75m -p 1 -vet=off "${patched[@]}" -ldflags "$stamp" "$@" ./...
fi
rc=0
go test -timeout 30m -p 1 -vet=off "${patched[@]}" -ldflags "$stamp" $(go list ./... | grep -v /test/e2e) || rc=$?
lap "go test (unit)"
# The end-to-end tests in two groups at once: each test bed lives in its own
# namespaces, and the nodes mostly wait (certificate lifetimes, the API
# server's config reloads, rollouts), so two beds share the 2 cores well (a
# third made the load average pass 60 and inits time out). The groups are
# balanced by their measured lengths.
#
# Each group's verbose output goes to a file under $logs; what is printed
# is what go test prints without -v (the whole output of a failed test, or
# of one cut short by a panic or the timeout), then every test's result
# and time.
day2='^(TestUpgrade|TestUpgradeRollback|TestSecretsRotateKey|TestCertificateRenewal|TestEtcdSnapshot|TestMetrics|TestDashboard|TestLogging|TestClusterCommand|TestExternalCA|TestCRISocketContainerd2)$'
logs="${KUBEFORGE_TEST_LOGS:-$(mktemp -d /tmp/kubeforge-e2e.XXXXXX)}"
mkdir -p "$logs"
# While they run, each test's start and result are printed as they happen
# (the day-2 group's prefixed), so a run cut short still shows how far it got.
progress() { grep --line-buffered -E '^(=== RUN   [^/]+$|--- (PASS|FAIL|SKIP): )' | sed -u "s/^/$1/"; }
(
  set +o pipefail +e
  go test -v -timeout 75m -p 1 -vet=off "${patched[@]}" -run "$day2" ./test/e2e/ 2>&1 | tee "$logs/day2.log" | progress "[day-2] "
  echo "${PIPESTATUS[0]}" >"$logs/day2.rc"
) &
day2pid=$!
set +o pipefail +e
go test -v -timeout 75m -p 1 -vet=off "${patched[@]}" -skip "$day2" ./test/e2e/ 2>&1 | tee "$logs/other.log" | progress ""
other_rc=${PIPESTATUS[0]}
set -o pipefail -e
[ "$other_rc" = 0 ] || rc=$other_rc
wait "$day2pid"
day2_rc=$(cat "$logs/day2.rc" 2>/dev/null || echo 1)
[ "$day2_rc" = 0 ] || rc=$day2_rc
lap "go test (e2e, two groups)"
for g in other day2; do
  echo "== e2e group $g ($logs/$g.log)"
  # A top-level test's lines from its === RUN to its --- line; printed if
  # it failed or never ended.
  awk '/^=== RUN   [^\/]+$/ { buf = ""; in_test = 1 }
       in_test { buf = buf $0 "\n" }
       /^--- FAIL: / { printf "%s", buf; buf = ""; in_test = 0; next }
       /^--- (PASS|SKIP): / { buf = ""; in_test = 0; next }
       !in_test && /^(FAIL|ok|panic)/ { print }
       END { if (in_test) printf "%s", buf }' "$logs/$g.log"
done
echo "== e2e tests"
grep -hE '^--- (PASS|FAIL|SKIP): |^    --- FAIL: ' "$logs/other.log" "$logs/day2.log" || true
exit "$rc"
