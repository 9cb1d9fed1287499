#!/usr/bin/env bash
# `make bench`: brings up kubeforge nodes from scratch on this machine (the
# test bed of test/testbed: network namespaces on a test bridge, nothing
# leaves the machine) and measures them against kubeadm and the project's
# targets. The kubeadm part runs the real kubeadm on this machine in the same
# run (images made from bin/kubeforge, pre-imported into Debian's containerd
# 1.6), so that the day-1 figures are ratios to kubeadm's (issue 13). The
# measurements are test/bench (TestBench); this script runs them and leaves:
#
#   bench/results.json   figures (median, range, kubeadm, target) and per-run detail
#   bench/samples.json   the raw samples: init/join events, poll transitions, per-process memory, latencies
#   bench/table.txt      the table printed at the end
#   bench/bench.log      the whole output
#
# Settings (environment): BENCH_RUNS (3), BENCH_IDLE (60s), BENCH_SETTLE
# (20s), BENCH_REQUESTS (500), BENCH_WAIT_QUIET (0: wait up to this long
# for the load average to fall below BENCH_BUSY_LOAD (1.5) before each
# run), BENCH_SKIP (single,restart,join,network,logging,external,snapshot,cluster,upgrade,kubeadm,addons-off,pull), BENCH_OUT (bench),
# KUBEFORGE_BINARY (bin/kubeforge, which `make bench` builds first).
# Take final figures on a quiet machine: the table flags busy runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
if [ "$(id -u)" != 0 ]; then
  echo "make bench needs root (network and mount namespaces, cgroups, iptables)" >&2
  exit 1
fi
./hack/deps.sh
export CGO_ENABLED=0
[ -x bin/kubeforge ] || make build
# The bench copies this binary once at its start, so rebuilding bin/kubeforge
# while it runs does not change what it measures.
export KUBEFORGE_BINARY="${KUBEFORGE_BINARY:-$PWD/bin/kubeforge}"
export KUBEFORGE_BENCH=1
out="${BENCH_OUT:-$PWD/bench}"
export BENCH_OUT="$out"
mkdir -p "$out"
start=$(date +%s)
status=0
go test -count=1 -v -timeout "${BENCH_TIMEOUT:-90m}" -run '^TestBench$' ./test/bench 2>&1 | tee "$out/bench.log" || status=$?
echo "make bench: $(( $(date +%s) - start )) s; results in $out/results.json, raw samples in $out/samples.json"
exit "$status"
