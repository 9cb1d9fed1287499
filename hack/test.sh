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
# The end-to-end tests, two at a time, from one test binary: each test bed
# lives in its own namespaces, and the nodes mostly wait (certificate
# lifetimes, the API server's config reloads, rollouts), so two beds share
# the 2 cores well. Two beds of three or more nodes at once did not: the
# load average passed 50, the control planes' leases lapsed (controller
# managers restarting), the kubelets' calls to the API server took minutes,
# and tests failed on waits that take seconds alone. So the heavy tests
# ($heavy: three or more nodes, and the two upgrade tests, which restart
# every component of their two nodes; the HA test beside TestUpgrade drove
# the load to 65) never run together; each worker takes the next test in
# the order of their measured lengths (longest first) that it may run.
#
# Each test's verbose output goes to $logs/TEST.log; what is printed is each
# test's start and result as they happen, then the whole output of every
# test that failed (or ended without a result: a panic, the timeout), then
# every test's result and time.
logs="${KUBEFORGE_TEST_LOGS:-$(mktemp -d /tmp/kubeforge-e2e.XXXXXX)}"
mkdir -p "$logs"
go test -c -vet=off "${patched[@]}" -ldflags "$stamp" -o "$logs/e2e.test" ./test/e2e/
order='TestMultiNodeHA TestLogging TestUpgrade TestUpgradeRollback TestSecretsRotateKey TestCertificateRenewal
  TestNetworkPolicy TestMetrics TestPodNetworkAcrossSubnets TestSingleNode TestCISBenchmark TestEtcdSnapshot
  TestNetworkMultiNode TestLoadBalancer TestClusterCommand TestMultiNodeWorkers TestExternalCA TestLocalPath
  TestNetworkSingleNode TestDashboard TestRegistry TestNetworkIptablesMode TestCRISocketContainerd2
  TestCRISocketExistingContainerd TestControlPlaneProcesses TestCRISocketPreflight TestCISBenchmarkKubeadm'
heavy=' TestMultiNodeHA TestLogging TestUpgrade TestUpgradeRollback TestMultiNodeWorkers TestNetworkMultiNode TestClusterCommand TestPodNetworkAcrossSubnets '
all=$(cd test/e2e && "$logs/e2e.test" -test.list '^Test' | grep '^Test')
# The queue: the known ones in their order, then any new test.
{
  for t in $order; do grep -qx "$t" <<<"$all" && echo "$t"; done
  grep -vxF -f <(tr -s ' \n' '\n' <<<"$order") <<<"$all" || true
} >"$logs/queue"
: >"$logs/results"
# take prints the next test this worker may run and takes it off the queue
# ("" when none may run now, "-" when the queue is empty).
take() {
  (
    flock 9
    local t
    for t in $(cat "$logs/queue"); do
      if [[ "$heavy" == *" $t "* ]]; then
        [ -e "$logs/heavy.busy" ] && continue
        echo "$t" >"$logs/heavy.busy"
      fi
      grep -vx "$t" "$logs/queue" >"$logs/queue.new" || true
      mv "$logs/queue.new" "$logs/queue"
      echo "$t"
      return
    done
    [ -s "$logs/queue" ] && echo "" || echo "-"
  ) 9>"$logs/queue.lock"
}
worker() {
  local t start rc
  while :; do
    t=$(take)
    if [ "$t" = "-" ]; then return; fi
    if [ -z "$t" ]; then sleep 5; continue; fi
    echo "[$1] === RUN   $t"
    start=$SECONDS
    rc=0
    (cd test/e2e && exec "$logs/e2e.test" -test.v -test.count=1 -test.timeout 40m -test.run "^$t\$") >"$logs/$t.log" 2>&1 || rc=$?
    if [ "$(cat "$logs/heavy.busy" 2>/dev/null)" = "$t" ]; then rm -f "$logs/heavy.busy"; fi
    echo "$t $rc $((SECONDS - start))" >>"$logs/results"
    grep -E "^--- (PASS|FAIL|SKIP): $t " "$logs/$t.log" | sed "s/^/[$1] /" || echo "[$1] $t ended without a result (exit $rc, $((SECONDS - start))s)"
  done
}
worker 1 &
w1=$!
sleep 20 # not both inits at the same moment
worker 2
wait "$w1"
lap "e2e tests, two at a time"
while read -r t trc _; do
  [ "$trc" = 0 ] && continue
  rc=1
  echo "== $t failed (exit $trc; $logs/$t.log)"
  # The test's lines from its === RUN to its --- line, or to the end.
  awk '/^=== RUN   [^\/]+$/ { buf = ""; in_test = 1 }
       in_test { buf = buf $0 "\n" }
       /^--- FAIL: / { printf "%s", buf; buf = ""; in_test = 0; next }
       /^--- (PASS|SKIP): / { buf = ""; in_test = 0; next }
       !in_test && /^(FAIL|panic)/ { print }
       END { if (in_test) printf "%s", buf }' "$logs/$t.log"
done <"$logs/results"
# Each failed step's own lines again, last, where a short view of the
# output still shows them (a failed test's whole output can be thousands
# of lines of diagnostics after its error).
while read -r t trc _; do
  [ "$trc" = 0 ] && continue
  echo "== $t in brief"
  # A step's lines run from its === RUN/NAME/CONT line to the next such
  # line; the test's own --- line ends them all, and the failed steps are
  # the indented --- FAIL lines after it (a logged line may start with
  # "--- " too: only those after the test's result count). A step's last
  # 40 lines are kept as they come. Output that ends without the test's
  # result (a timeout, a panic) shows the step that was running.
  awk -v t="$t" -v k=40 '
    done == 0 && /^=== (RUN|NAME|CONT|PAUSE) +/ { name = $3; next }
    done == 0 && /^--- (PASS|FAIL|SKIP): / { done = 1; next }
    done == 1 && /^ +--- FAIL: / { failed[++nf] = $3; next }
    done == 0 && name != "" && name != t { n[name]++; buf[name, n[name] % k] = $0 }
    function show(f,   i) {
      if (n[f] > k) print "    (the last " k " of its " n[f] " lines)"
      for (i = (n[f] > k ? n[f] - k + 1 : 1); i <= n[f]; i++) print buf[f, i % k]
    }
    END {
      if (done == 0 && name != "" && name != t) { print "--- running when the output ended: " name; show(name) }
      else if (nf == 0) print "(no step of it failed: its own lines are above)"
      for (i = 1; i <= nf; i++) { print "--- FAIL: " failed[i]; show(failed[i]) }
    }
  ' "$logs/$t.log" || true
done <"$logs/results"
[ "$(wc -l <"$logs/results")" = "$(wc -l <<<"$all")" ] || { echo "== not every test ran"; rc=1; }
echo "== e2e tests"
while read -r t _; do grep -hE '^--- (PASS|FAIL|SKIP): |^    --- FAIL: ' "$logs/$t.log" || echo "--- NO RESULT: $t"; done <"$logs/results"
exit "$rc"
