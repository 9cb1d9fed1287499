package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/internal/testutil"
	"github.com/kubeforge/kubeforge/test/testbed"
)

// The CIS Kubernetes Benchmark, as kube-bench checks it.
//
// kube-bench (github.com/aquasecurity/kube-bench at a pinned version) is
// built by hack/kube-bench.sh into a cache directory, once ($KUBE_BENCH_DIR
// names it), and runs with its own benchmark definitions (its cfg/) in a
// node's network and mount namespaces, so that it sees the node's
// /etc/kubernetes and /var/lib/kubelet. Its ps there is
// testdata/kube-bench/ps: the node's processes only (test nodes share
// the machine's PID namespace), and `ps -C` that can select `kubeforge
// component NAME` (see that file).
//
// TestCISBenchmark runs it on a kubeforge cluster (a control-plane node and
// a worker) with kubeforge's settings, testdata/kube-bench/config.yaml.
// Every FAIL must be listed in testdata/kube-bench/exceptions.yaml
// with its reason, and every check listed there must still FAIL: the list
// stays what kubeforge accepts today, no more.
//
// TestCISBenchmarkKubeadm runs the same benchmark, with kube-bench's own
// settings (which know kubeadm's processes and paths), on what the real
// kubeadm v1.37.2 writes, for README.md's comparison: testdata/
// kube-bench/kubeadm.yaml lists kubeadm's FAILs.

const (
	cisBenchmark     = "cis-1.12"
	kubeBenchVersion = "v0.16.0"
	cisDataDir       = "testdata/kube-bench"
)

// TestCISBenchmark runs kube-bench on a control-plane node (the master,
// controlplane, etcd and node sections), on a worker (node) and on the
// cluster through the control-plane node's admin.conf (policies) of a
// kubeforge cluster, logs the counts per section, and fails on a FAIL
// that testdata/kube-bench/exceptions.yaml does not accept and on an
// exception that no longer FAILs.
func TestCISBenchmark(t *testing.T) {
	testbed.RequireHost(t)
	begin := time.Now()
	defer func() { t.Logf("TestCISBenchmark took %v", time.Since(begin).Round(time.Second)) }()

	exceptions := loadCISList(t, "exceptions.yaml", `^(gap|design|benchmark): \S`)
	kubeBench := buildKubeBenchAsync()

	tb := testbed.New(t)
	holdOnFailure(t, tb)
	cp := tb.AddNode("cis-cp")
	w := tb.AddNode("cis-w")
	step := stepper(t)

	var join []string
	step("init", func(t *testing.T) {
		out := kf(t, cp, 3*time.Minute, "init", "--config", cp.InitConfigFile(), "--advertise-address", cp.IP.String(), "--node-name", cp.Name)
		join, _ = joinCommands(t, out)
	})
	step("join", func(t *testing.T) {
		kf(t, w, 3*time.Minute, append(join, "--config", w.JoinConfigFile())...)
	})
	api := apiClient(t, cp, "")
	step("ready", func(t *testing.T) {
		poll(t, 2*time.Minute, "both nodes Ready", func() string { return nodesReady(api, cp.Name, w.Name) })
		// Every kube-system pod runs, kube-proxy on both nodes.
		poll(t, 2*time.Minute, "kube-proxy on both nodes", func() string {
			_, s := podsReady(api, "kube-system", "k8s-app=kube-proxy", 2)
			return s
		})
		poll(t, 2*time.Minute, "every kube-system pod Ready", func() string {
			_, s := podsReady(api, "kube-system", "", 1)
			return s
		})
	})

	var dir string
	step("build-kube-bench", func(t *testing.T) { dir = kubeBench(t) })

	results := map[string]kubeBenchResult{}
	step("kube-bench", func(t *testing.T) {
		shim := prepareKubeBenchPS(t, tb.Dir)
		config := filepath.Join(testutil.RepoRoot(), cisDataDir, "config.yaml")
		runs := []kubeBenchRun{{
			kind: "control-plane", node: cp, config: config,
			targets:    []string{"master", "controlplane", "etcd", "node"},
			components: []string{"apiserver", "scheduler", "controllermanager", "etcd", "kubelet", "proxy"},
		}, {
			kind: "worker", node: w, config: config,
			targets:    []string{"node"},
			components: []string{"kubelet", "proxy"},
		}}
		// The policies section asks the API server through kubectl, some
		// 150 times one after another, half of them for 5.1.3 (once per
		// Role and ClusterRole): 5.1.3 and the other checks run in two
		// kube-bench processes, alongside the others, and make one result.
		policies, err := cisCheckIDs(dir, "policies")
		if err != nil {
			t.Fatal(err)
		}
		alone := []string{"5.1.3"}
		for _, checks := range [][]string{alone, slices.DeleteFunc(slices.Clone(policies), func(id string) bool { return slices.Contains(alone, id) })} {
			runs = append(runs, kubeBenchRun{kind: "cluster", node: cp, config: config, kubeconfig: "/etc/kubernetes/admin.conf",
				targets: []string{"policies"}, checks: checks})
		}
		results = runKubeBenches(t, dir, shim, runs)
		if got := cisResultIDs(results["cluster"]); !slices.Equal(got, policies) {
			t.Fatalf("the policies section ran the checks %v, want %v", got, policies)
		}
	})

	step("results", func(t *testing.T) {
		t.Logf("CIS Kubernetes Benchmark %s (kube-bench %s) on kubeforge:\n%s", cisBenchmark, kubeBenchVersion, cisTable(results))
		failed := cisFails(results)
		var accepted []string
		for _, id := range sortedCheckIDs(maps.Keys(failed)) {
			fs := failed[id]
			if reason, ok := exceptions[id]; ok {
				accepted = append(accepted, fmt.Sprintf("  %-7s %-22s %s\n          %s", id, cisWhere(fs), fs[0].Text, reason))
				continue
			}
			f := fs[0]
			t.Errorf("CIS %s FAILs on %s and is not in %s/exceptions.yaml: %s\n  expected: %s\n  actual: %s%s",
				id, cisWhere(fs), cisDataDir, f.Text, f.Expected, clip(f.Actual, 600), reasonSuffix(f.Reason))
		}
		if len(accepted) > 0 {
			t.Logf("FAILs accepted by %s/exceptions.yaml:\n%s", cisDataDir, strings.Join(accepted, "\n"))
		}
		for _, id := range sortedCheckIDs(maps.Keys(exceptions)) {
			if _, ok := failed[id]; !ok {
				t.Errorf("CIS %s is in %s/exceptions.yaml but no longer FAILs (%s): remove it there and from README.md's table",
					id, cisDataDir, cisStatuses(results, id))
			}
		}
	})
}

// TestCISBenchmarkKubeadm runs the same benchmark on the files the real
// kubeadm v1.37.2 writes on a control-plane node (`kubeadm init phase`
// certs, kubeconfig, etcd local, control-plane, kubelet-start) and on
// stand-in processes with exactly the command lines a kubeadm node runs
// (its static pods', the kubelet's as kubeadm's systemd drop-in starts it,
// kube-proxy's from its DaemonSet). kubeadm's images do not exist on this
// machine (no registry), so no kubeadm cluster runs: the policies section,
// which asks a live API server, is not run. kube-bench uses its own
// settings, which know kubeadm. The FAILs must be those
// testdata/kube-bench/kubeadm.yaml lists (README.md compares them
// with kubeforge's).
func TestCISBenchmarkKubeadm(t *testing.T) {
	testbed.RequireHost(t)
	begin := time.Now()
	defer func() { t.Logf("TestCISBenchmarkKubeadm took %v", time.Since(begin).Round(time.Second)) }()

	expected := loadCISList(t, "kubeadm.yaml", `\S`)
	kubeBench := buildKubeBenchAsync()
	type built struct {
		path string
		took time.Duration
		err  error
	}
	kubeadmCh := make(chan built, 1)
	kubeadmDir := t.TempDir()
	go func() {
		p, took, err := testbed.BuildKubeadm(kubeadmDir)
		kubeadmCh <- built{p, took, err}
	}()

	tb := testbed.New(t)
	holdOnFailure(t, tb)
	n := tb.AddNode("cis-kubeadm")
	step := stepper(t)

	step("kubeadm-phases", func(t *testing.T) {
		b := <-kubeadmCh
		if b.err != nil {
			t.Fatal(b.err)
		}
		t.Logf("kubeadm %s (built in %v)", b.path, b.took.Round(time.Second))
		// kubernetesVersion is given: kubeadm asks dl.k8s.io otherwise.
		cfg := n.WriteConfigFile("kubeadm.yaml", fmt.Sprintf(`apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: %s
nodeRegistration:
  name: %s
  criSocket: unix:///run/containerd/containerd.sock
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v1.37.2
networking:
  podSubnet: 10.244.0.0/16
`, n.IP, n.Name))
		for _, phase := range [][]string{{"certs", "all"}, {"kubeconfig", "all"}, {"etcd", "local"}, {"control-plane", "all"}, {"kubelet-start"}} {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			out, err := n.Run(ctx, b.path, append(append([]string{"init", "phase"}, phase...), "--config", cfg)...)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("kubeadm init phase %s:\n%s", strings.Join(phase, " "), strings.TrimSpace(out))
		}
	})

	// The stand-ins run until the test ends (not just this step).
	startKubeadmProcesses(t, n, tb.Dir)

	var dir string
	step("build-kube-bench", func(t *testing.T) { dir = kubeBench(t) })

	results := map[string]kubeBenchResult{}
	step("kube-bench", func(t *testing.T) {
		shim := prepareKubeBenchPS(t, tb.Dir)
		results = runKubeBenches(t, dir, shim, []kubeBenchRun{{
			kind: "kubeadm", node: n,
			targets:    []string{"master", "controlplane", "etcd", "node"},
			components: []string{"apiserver", "scheduler", "controllermanager", "etcd", "kubelet", "proxy"},
		}})
	})

	step("results", func(t *testing.T) {
		t.Logf("CIS Kubernetes Benchmark %s (kube-bench %s) on kubeadm v1.37.2's files and command lines:\n%s", cisBenchmark, kubeBenchVersion, cisTable(results))
		failed := cisFails(results)
		var lines []string
		for _, id := range sortedCheckIDs(maps.Keys(failed)) {
			f := failed[id][0]
			lines = append(lines, fmt.Sprintf("  %-7s %s\n          actual: %s", id, f.Text, strings.ReplaceAll(clip(f.Actual, 200), "\n", " ")))
			if _, ok := expected[id]; !ok {
				t.Errorf("CIS %s FAILs on kubeadm and is not in %s/kubeadm.yaml: %s\n  expected: %s\n  actual: %s%s",
					id, cisDataDir, f.Text, f.Expected, clip(f.Actual, 600), reasonSuffix(f.Reason))
			}
		}
		t.Logf("kubeadm's FAILs:\n%s", strings.Join(lines, "\n"))
		for _, id := range sortedCheckIDs(maps.Keys(expected)) {
			if _, ok := failed[id]; !ok {
				t.Errorf("CIS %s is in %s/kubeadm.yaml but does not FAIL on kubeadm (%s): update the list and README.md's table",
					id, cisDataDir, cisStatuses(results, id))
			}
		}
	})
}

// kubeBenchResult is kube-bench's JSON output (--json).
type kubeBenchResult struct {
	Controls []cisControls
}

// cisControls is one section (target) of the benchmark.
type cisControls struct {
	ID     string     `json:"id"`
	Text   string     `json:"text"`
	Type   string     `json:"node_type"`
	Groups []cisGroup `json:"tests"`
	Pass   int        `json:"total_pass"`
	Fail   int        `json:"total_fail"`
	Warn   int        `json:"total_warn"`
	Info   int        `json:"total_info"`
}

type cisGroup struct {
	ID      string     `json:"section"`
	Text    string     `json:"desc"`
	Results []cisCheck `json:"results"`
}

type cisCheck struct {
	ID       string `json:"test_number"`
	Text     string `json:"test_desc"`
	Status   string `json:"status"`
	Scored   bool   `json:"scored"`
	Actual   string `json:"actual_value"`
	Expected string `json:"expected_result"`
	Reason   string `json:"reason"`
}

// cisFail is a FAIL on one kind of node.
type cisFail struct {
	kind string
	cisCheck
}

// loadCISList reads testdata/kube-bench/NAME: check ID -> text, each
// text matching textRE.
func loadCISList(t *testing.T, name, textRE string) map[string]string {
	t.Helper()
	p := filepath.Join(testutil.RepoRoot(), cisDataDir, name)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var list map[string]string
	if err := yaml.UnmarshalStrict(b, &list); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	idRE, re := regexp.MustCompile(`^[0-9]+(\.[0-9]+)+$`), regexp.MustCompile(textRE)
	for id, text := range list {
		if !idRE.MatchString(id) {
			t.Errorf("%s: %q is not a CIS check ID", p, id)
		}
		if !re.MatchString(text) {
			t.Errorf("%s: the text for %s must match %s: %q", p, id, textRE, text)
		}
	}
	return list
}

// buildKubeBenchAsync starts building kube-bench (hack/kube-bench.sh, from
// its cache at once) and returns a function that waits for it and returns
// its directory (the binary and its cfg/).
func buildKubeBenchAsync() func(t *testing.T) string {
	type built struct {
		dir  string
		took time.Duration
		err  error
	}
	ch := make(chan built, 1)
	go func() {
		start := time.Now()
		dir, err := buildKubeBench()
		ch <- built{dir, time.Since(start), err}
	}()
	var once sync.Once
	var b built
	return func(t *testing.T) string {
		t.Helper()
		once.Do(func() { b = <-ch })
		if b.err != nil {
			t.Fatal(b.err)
		}
		t.Logf("kube-bench %s in %s (ready in %v)", kubeBenchVersion, b.dir, b.took.Round(time.Second))
		return b.dir
	}
}

// buildKubeBench runs hack/kube-bench.sh, which builds kube-bench once into
// its cache directory ($KUBE_BENCH_DIR, else build/kube-bench-VERSION),
// and returns that directory.
func buildKubeBench() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(testutil.RepoRoot(), "hack", "kube-bench.sh"))
	cmd.Env = append(os.Environ(), "KUBE_BENCH_VERSION="+kubeBenchVersion)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("hack/kube-bench.sh: %v\n%s", err, clip(stderr.String(), 4000))
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	dir := lines[len(lines)-1]
	if _, err := os.Stat(filepath.Join(dir, "kube-bench")); err != nil {
		return "", fmt.Errorf("hack/kube-bench.sh printed %q: %v", dir, err)
	}
	// The test nodes have /etc, /var/lib, /var/log and /run of their own.
	for _, hidden := range []string{"/etc/", "/var/lib/", "/var/log/", "/run/"} {
		if strings.HasPrefix(dir, hidden) {
			return "", fmt.Errorf("kube-bench is in %s, which test nodes do not see (they have a %s of their own): set KUBE_BENCH_DIR elsewhere", dir, hidden)
		}
	}
	return dir, nil
}

// prepareKubeBenchPS copies kube-bench's ps (testdata/kube-bench/ps)
// and the real ps (which it runs) into dir/kube-bench and returns the
// former's path.
func prepareKubeBenchPS(t *testing.T, dir string) string {
	t.Helper()
	d := filepath.Join(dir, "kube-bench")
	shim := filepath.Join(d, "ps")
	if err := testbed.CopyFile(filepath.Join(testutil.RepoRoot(), cisDataDir, "ps"), shim, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := testbed.CopyFile("/usr/bin/ps", filepath.Join(d, "ps.real"), 0o755); err != nil {
		t.Fatal(err)
	}
	return shim
}

// kubeBenchRun is one kube-bench run on a node.
type kubeBenchRun struct {
	kind string // what is checked: "control-plane", "worker", "cluster", "kubeadm"
	node *testbed.Node
	// config is a kube-bench config.yaml (--config); "" for kube-bench's own.
	config  string
	targets []string
	// checks, when given, are the only checks to run (--check).
	checks []string
	// components must be found running (config.yaml's names): without
	// them the checks would read an empty command line and prove nothing.
	components []string
	// kubeconfig is kubectl's (the policies section) in the node.
	kubeconfig string
}

// runKubeBenches runs kube-bench on every node at once and returns the
// results by kind (runs of the same kind make one result). With
// $KUBEFORGE_CIS_RESULTS set, kube-bench's JSON is written there too
// (kube-bench-KIND[-N].json).
func runKubeBenches(t *testing.T, dir, shim string, runs []kubeBenchRun) map[string]kubeBenchResult {
	t.Helper()
	type result struct {
		kind string
		kb   kubeBenchResult
		err  error
	}
	ch := make(chan result, len(runs))
	var wg sync.WaitGroup
	for i, r := range runs {
		wg.Go(func() {
			start := time.Now()
			kb, raw, err := r.run(dir, shim)
			what := strings.Join(r.targets, ",")
			if len(r.checks) > 0 {
				what += " " + strings.Join(r.checks, ",")
			}
			t.Logf("kube-bench on %s (%s: %s) took %v", r.node.Name, r.kind, what, time.Since(start).Round(100*time.Millisecond))
			if out := os.Getenv("KUBEFORGE_CIS_RESULTS"); out != "" && raw != nil {
				name := "kube-bench-" + r.kind
				if slices.IndexFunc(runs, func(o kubeBenchRun) bool { return o.kind == r.kind }) != i {
					name += fmt.Sprintf("-%d", i)
				}
				if err := os.WriteFile(filepath.Join(out, name+".json"), raw, 0o644); err != nil {
					t.Error(err)
				}
			}
			ch <- result{r.kind, kb, err}
		})
	}
	wg.Wait()
	close(ch)
	results := map[string]kubeBenchResult{}
	for r := range ch {
		if r.err != nil {
			t.Errorf("%s: %v", r.kind, r.err)
			continue
		}
		results[r.kind] = mergeKubeBench(results[r.kind], r.kb)
	}
	if t.Failed() {
		t.FailNow()
	}
	return results
}

// mergeKubeBench joins the results of runs that ran different checks of
// the same sections.
func mergeKubeBench(a, b kubeBenchResult) kubeBenchResult {
	out := kubeBenchResult{Controls: slices.Clone(a.Controls)}
	for _, c := range b.Controls {
		i := slices.IndexFunc(out.Controls, func(o cisControls) bool { return o.ID == c.ID })
		if i < 0 {
			out.Controls = append(out.Controls, c)
			continue
		}
		m := out.Controls[i]
		m.Pass, m.Fail, m.Warn, m.Info = m.Pass+c.Pass, m.Fail+c.Fail, m.Warn+c.Warn, m.Info+c.Info
		m.Groups = slices.Clone(m.Groups)
		for _, g := range c.Groups {
			j := slices.IndexFunc(m.Groups, func(o cisGroup) bool { return o.ID == g.ID })
			if j < 0 {
				m.Groups = append(m.Groups, g)
				continue
			}
			m.Groups[j].Results = append(slices.Clone(m.Groups[j].Results), g.Results...)
		}
		for j := range m.Groups {
			slices.SortFunc(m.Groups[j].Results, func(x, y cisCheck) int { return compareCheckIDs(x.ID, y.ID) })
		}
		slices.SortFunc(m.Groups, func(x, y cisGroup) int { return compareCheckIDs(x.ID, y.ID) })
		out.Controls[i] = m
	}
	return out
}

// cisResultIDs lists the checks of a result, in order.
func cisResultIDs(kb kubeBenchResult) []string {
	var ids []string
	for _, c := range kb.Controls {
		for _, g := range c.Groups {
			for _, r := range g.Results {
				ids = append(ids, r.ID)
			}
		}
	}
	return sortedCheckIDs(slices.Values(ids))
}

// cisCheckIDs lists the check IDs of a section (target) of the benchmark,
// from kube-bench's cfg/<benchmark>/<target>.yaml, in order.
func cisCheckIDs(dir, target string) ([]string, error) {
	p := filepath.Join(dir, "cfg", cisBenchmark, target+".yaml")
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, m := range regexp.MustCompile(`(?m)^\s+- id: "?([0-9]+\.[0-9]+\.[0-9]+)"?\s*$`).FindAllSubmatch(b, -1) {
		ids = append(ids, string(m[1]))
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%s: no checks found", p)
	}
	return sortedCheckIDs(slices.Values(ids)), nil
}

var componentFound = regexp.MustCompile(`Component (\S+) uses running binary`)

// run runs kube-bench in the node, in a mount namespace of its own where
// /usr/bin/ps is shim, and returns its results and JSON.
func (r kubeBenchRun) run(dir, shim string) (kubeBenchResult, []byte, error) {
	var kb kubeBenchResult
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	args := []string{"--mount", "--propagation", "private", "--", "/bin/sh", "-ec", `mount --bind "$1" /usr/bin/ps; shift; exec "$@"`, "sh", shim,
		filepath.Join(dir, "kube-bench"), "run", "--config-dir", filepath.Join(dir, "cfg"),
		"--benchmark", cisBenchmark, "--targets", strings.Join(r.targets, ","), "--json", "--v=2"}
	if r.config != "" {
		args = append(args, "--config", r.config)
	}
	if len(r.checks) > 0 {
		args = append(args, "--check", strings.Join(r.checks, ","))
	}
	cmd := r.node.Command(ctx, "unshare", args...)
	cmd.Env = append(cmd.Env, "KFTB_PS_REAL="+filepath.Join(filepath.Dir(shim), "ps.real"))
	// Without a kubeconfig, kube-bench's version probe (kubectl version)
	// asks localhost:8080, where nothing listens.
	kubeconfig := r.kubeconfig
	if kubeconfig == "" {
		kubeconfig = "/dev/null"
	}
	cmd.Env = append(cmd.Env, "KUBECONFIG="+kubeconfig)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return kb, nil, fmt.Errorf("kube-bench on %s: %v\n%s", r.node.Name, err, clip(stderr.String(), 4000))
	}
	raw := bytes.TrimSpace(stdout.Bytes())
	if err := json.Unmarshal(raw, &kb); err != nil {
		return kb, nil, fmt.Errorf("kube-bench on %s: its JSON: %v\n%s", r.node.Name, err, clip(stdout.String(), 2000))
	}
	found := map[string]bool{}
	for _, m := range componentFound.FindAllStringSubmatch(stderr.String(), -1) {
		found[m[1]] = true
	}
	for _, c := range r.components {
		if !found[c] {
			return kb, raw, fmt.Errorf("kube-bench on %s did not find %s running (it found %v)\n%s",
				r.node.Name, c, slices.Sorted(maps.Keys(found)), clip(stderr.String(), 4000))
		}
	}
	var have []string
	for _, c := range kb.Controls {
		have = append(have, c.Type)
	}
	for _, target := range r.targets {
		if !slices.Contains(have, target) {
			return kb, raw, fmt.Errorf("kube-bench on %s ran the sections %v, want %v", r.node.Name, have, r.targets)
		}
	}
	return kb, raw, nil
}

// kubeadmSleeper is the program of the stand-ins for kubeadm's processes:
// it waits for a signal, whatever its arguments.
const kubeadmSleeper = `package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
`

// startKubeadmProcesses starts, in node n, a process for each of a kubeadm
// control-plane node's components, named like the component and with its
// arguments: the static pods' commands (from the manifests kubeadm wrote),
// the kubelet's as kubeadm's systemd drop-in (10-kubeadm.conf, from
// kubeadm's packages) starts it with kubeadm-flags.env, and kube-proxy's
// from kubeadm's DaemonSet (cmd/kubeadm/app/phases/addons/proxy). They are
// stopped when the test ends.
func startKubeadmProcesses(t *testing.T, n *testbed.Node, dir string) {
	t.Helper()
	bin := filepath.Join(dir, "kubeadm-processes")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "main.go"), []byte(kubeadmSleeper), 0o644); err != nil {
		t.Fatal(err)
	}
	sleeper := filepath.Join(bin, "sleeper")
	build := exec.Command("go", "build", "-o", sleeper, "main.go")
	build.Dir = bin
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GO111MODULE=on", "GOFLAGS=-buildvcs=false")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the stand-in process: %v\n%s", err, out)
	}

	commands := map[string][]string{}
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		b, err := n.ReadFile("/etc/kubernetes/manifests/" + name + ".yaml")
		if err != nil {
			t.Fatal(err)
		}
		var pod corev1.Pod
		if err := yaml.Unmarshal(b, &pod); err != nil || len(pod.Spec.Containers) != 1 {
			t.Fatalf("kubeadm's %s manifest: %v (%d containers)", name, err, len(pod.Spec.Containers))
		}
		commands[name] = append(slices.Clone(pod.Spec.Containers[0].Command), pod.Spec.Containers[0].Args...)
	}
	env, err := n.ReadFile(testbed.KubeadmFlagsEnv)
	if err != nil {
		t.Fatal(err)
	}
	args, err := testbed.KubeletArgs(env, "")
	if err != nil {
		t.Fatal(err)
	}
	commands["kubelet"] = append([]string{"/usr/bin/kubelet"}, args...)
	commands["kube-proxy"] = []string{"/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf", "--hostname-override=" + n.Name}

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for _, name := range slices.Sorted(maps.Keys(commands)) {
		argv := commands[name]
		// The process is named like the component (ps -C NAME).
		exe := filepath.Join(bin, filepath.Base(argv[0]))
		if err := os.Link(sleeper, exe); err != nil {
			t.Fatal(err)
		}
		cmd := n.Command(ctx, exe, argv[1:]...)
		cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cancel(); cmd.Wait() })
		t.Logf("stand-in for %s: %s", name, strings.Join(argv, " "))
	}
}

// cisFails maps each FAILed check to where it FAILed.
func cisFails(results map[string]kubeBenchResult) map[string][]cisFail {
	failed := map[string][]cisFail{}
	for _, kind := range cisKinds(results) {
		for _, c := range results[kind].Controls {
			for _, g := range c.Groups {
				for _, r := range g.Results {
					if r.Status == "FAIL" {
						failed[r.ID] = append(failed[r.ID], cisFail{kind, r})
					}
				}
			}
		}
	}
	return failed
}

// cisKinds are the kinds of results in the order of the tables.
func cisKinds(results map[string]kubeBenchResult) []string {
	order := []string{"control-plane", "worker", "cluster", "kubeadm"}
	return slices.SortedFunc(maps.Keys(results), func(a, b string) int {
		return slices.Index(order, a) - slices.Index(order, b)
	})
}

func cisWhere(fs []cisFail) string {
	var where []string
	for _, f := range fs {
		where = append(where, f.kind)
	}
	return strings.Join(where, ", ")
}

// cisTable is the PASS/FAIL/WARN/INFO counts per node and section.
func cisTable(results map[string]kubeBenchResult) string {
	var b strings.Builder
	row := func(kind, section string, p, f, w, i int) {
		fmt.Fprintf(&b, "  %-14s %-44s %5d %5d %5d %5d\n", kind, section, p, f, w, i)
	}
	fmt.Fprintf(&b, "  %-14s %-44s %5s %5s %5s %5s\n", "node", "section", "PASS", "FAIL", "WARN", "INFO")
	for _, kind := range cisKinds(results) {
		var p, f, w, i int
		controls := slices.Clone(results[kind].Controls)
		slices.SortFunc(controls, func(a, b cisControls) int { return compareCheckIDs(a.ID, b.ID) })
		for _, c := range controls {
			row(kind, c.ID+" "+c.Text, c.Pass, c.Fail, c.Warn, c.Info)
			p, f, w, i = p+c.Pass, f+c.Fail, w+c.Warn, i+c.Info
		}
		row(kind, "total", p, f, w, i)
	}
	return b.String()
}

// cisStatuses is check id's status on each node.
func cisStatuses(results map[string]kubeBenchResult, id string) string {
	var out []string
	for _, kind := range cisKinds(results) {
		for _, c := range results[kind].Controls {
			for _, g := range c.Groups {
				for _, r := range g.Results {
					if r.ID == id {
						out = append(out, kind+": "+r.Status)
					}
				}
			}
		}
	}
	if len(out) == 0 {
		return "not run"
	}
	return strings.Join(out, ", ")
}

func sortedCheckIDs(ids iter.Seq[string]) []string { return slices.SortedFunc(ids, compareCheckIDs) }

// compareCheckIDs orders CIS check IDs ("1.2.10" after "1.2.9").
func compareCheckIDs(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		var x, y int
		fmt.Sscan(as[i], &x)
		fmt.Sscan(bs[i], &y)
		if x != y {
			return x - y
		}
	}
	return len(as) - len(bs)
}

func clip(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func reasonSuffix(r string) string {
	if r == "" {
		return ""
	}
	return "\n  kube-bench: " + clip(r, 600)
}
