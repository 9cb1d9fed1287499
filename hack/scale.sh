#!/usr/bin/env bash
# `make scale`: one kubeforge control-plane node (default settings, on the
# test bed of test/testbed like `make bench`) with kwok's simulated nodes and
# pods, in steps of 100, 300 and 1,000 nodes with 10 pods each, and a
# bounded read and write load at each step. The measurements are test/scale
# (TestScale); this script builds kwok (sigs.k8s.io/kwok, from its own module
# test/scale/kwok, so kubeforge's go.mod never sees its dependencies), writes
# kwok's node and pod stages (kwok's own "fast" and "heartbeat-with-lease"
# stages, as kwokctl uses them), runs the test and leaves:
#
#   scale/results.json   figures per step (times, latencies, memory, etcd) and the SLO checks
#   scale/table.txt      the table printed at the end
#   scale/scale.log      the whole output; scale/kwok.log kwok's
#
# Settings (environment): SCALE_STEPS (100,300,1000), SCALE_PODS_PER_NODE
# (10), SCALE_LOAD (30s), SCALE_WORKERS (20), SCALE_QPS (100), SCALE_SETTLE
# (10s), SCALE_POD_TIMEOUT (8m), SCALE_OUT (scale), SCALE_SCHEDULER_CONFIG (a
# KubeSchedulerConfiguration file the scheduler runs with), KUBEFORGE_BINARY
# (bin/kubeforge, which `make scale` builds first). Not part of CI; about
# 10-15 minutes on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
if [ "$(id -u)" != 0 ]; then
  echo "make scale needs root (network and mount namespaces, cgroups, iptables)" >&2
  exit 1
fi
./hack/deps.sh
export CGO_ENABLED=0
[ -x bin/kubeforge ] || make build
export KUBEFORGE_BINARY="${KUBEFORGE_BINARY:-$PWD/bin/kubeforge}"
out="${SCALE_OUT:-$PWD/scale}"
mkdir -p "$out" bin
export SCALE_OUT="$out"

start=$(date +%s)
echo "scale: building kwok (test/scale/kwok/go.mod)"
(cd test/scale/kwok && go build -trimpath -ldflags '-s -w' -o ../../../bin/kwok sigs.k8s.io/kwok/cmd/kwok)
kwokdir=$(cd test/scale/kwok && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
export KWOK_VERSION=$(cd test/scale/kwok && go list -m -f '{{.Version}}' sigs.k8s.io/kwok)
export KWOK_BINARY="$PWD/bin/kwok"
export KWOK_CONFIG="$out/kwok-stages.yaml"
{
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    echo "---"
    cat "$kwokdir/kustomize/stage/$f"
  done
} >"$KWOK_CONFIG"

export KUBEFORGE_SCALE=1
status=0
go test -count=1 -v -timeout "${SCALE_TIMEOUT:-30m}" -run '^TestScale$' ./test/scale 2>&1 | tee "$out/scale.log" || status=$?
echo "make scale: $(( $(date +%s) - start )) s; results in $out/results.json"
exit "$status"
