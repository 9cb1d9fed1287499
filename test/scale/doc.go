// Package scale measures one kubeforge control-plane node at scale: `make
// scale` (hack/scale.sh) brings up a single-node cluster with default
// settings on the test bed (test/testbed, the machinery of `kubeforge
// cluster`), runs kwok (sigs.k8s.io/kwok, the SIG Scalability simulator,
// built from its own module in test/scale/kwok) on the host with the admin
// kubeconfig, and grows the cluster in steps (100, 300, 1,000 simulated
// nodes, 10 pods per node from Deployments). At each step it measures the
// time to register the nodes and to schedule and run the pods, pod startup
// latency, then runs a bounded read and write load (load.go) and measures
// API latency by verb on the client and from the API server's
// apiserver_request_duration_seconds, the memory of the API server, etcd
// and the controllers, and etcd's database size. The figures are held
// against the upstream scalability SLOs (slo.go).
//
// The measurement is the test TestScale (scale_test.go), which runs only
// with KUBEFORGE_SCALE=1; the other files hold what is not tied to a
// running node (histograms, percentiles, the SLOs, the report), unit-tested.
//
// Settings (environment): SCALE_STEPS (node counts, default 100,300,1000),
// SCALE_PODS_PER_NODE (10), SCALE_LOAD (load time per step, 30s),
// SCALE_WORKERS (20), SCALE_QPS (the load's total rate, 100),
// SCALE_SETTLE (wait before the idle memory sample, 10s), SCALE_OUT
// (output directory, default <repo>/scale), KWOK_BINARY and KWOK_CONFIG
// (kwok and its stages, which hack/scale.sh builds and writes),
// SCALE_SCHEDULER_CONFIG (a KubeSchedulerConfiguration for the scheduler).
package scale
