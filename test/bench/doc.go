// Package bench measures kubeforge on this machine: `make bench` brings up
// nodes from scratch on the test bed (test/testbed) and compares what it
// measures with kubeadm's figures and the project's targets.
//
// The measurements are the test TestBench (bench_test.go), which runs only
// with KUBEFORGE_BENCH=1 (so `go test ./...` stays fast); this file and its
// neighbours hold the parts that are not tied to a running node: statistics,
// the reference figures, memory accounting and the report.
//
//	KUBEFORGE_BENCH=1 go test -count=1 -v -timeout 60m -run TestBench ./test/bench
//
// Settings (environment): BENCH_RUNS (single-node runs, default 3),
// BENCH_IDLE (idle time before the memory sample, default 60s),
// BENCH_SETTLE (wait after a node service restart before its memory
// sample, default 20s), BENCH_REQUESTS (Service requests per client,
// default 500), BENCH_WAIT_QUIET (wait up to this long for the load
// average to drop below BENCH_BUSY_LOAD, default 1.5, before each run;
// default 0: do not wait), BENCH_SKIP (comma-separated: single, processes,
// restart, join, network, logging, external, snapshot, cluster, upgrade,
// kubeadm, addons-off, pull), BENCH_OUT
// (output directory, default <repo>/bench). The kubeadm part (kubeadm.go)
// runs BENCH_RUNS single-node `kubeadm init`s measured as kubeforge's are,
// each right after kubeforge's single-node run of the same number; the
// day-1 figures are judged as ratios to its medians. The processes part
// (processes-N, right after kubeadm's run N) is a single node with
// `init --control-plane-runtime=Processes`: its figures (keys processes.*)
// have the same targets and kubeadm medians. The single-node runs
// also time init start → `kubectl top nodes` answering (the metrics API
// serving the node's usage). The addons-off part is one more single node
// with every optional addon off (KubeforgeConfiguration.addons), idle as
// long, held against the single-node runs per addon pod (containers and
// pause; kubeforge's pods share one shim, counted apart). The pull part pulls a ~50 MB image of random layers from a
// registry on the test bridge (TLS, basic auth) through a node's CRI, and
// as a new pod's image. The cluster part times `kubeforge
// cluster create --workers 2` BENCH_RUNS times and the idle memory of the
// first cluster. The upgrade part (once) upgrades a control-plane node and
// a worker made by an older build (the source relinked with another version
// stamp, or $KUBEFORGE_UPGRADE_FROM) to the binary under test.
package bench
