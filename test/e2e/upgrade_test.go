package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sversion "k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/internal/testutil"
	"github.com/kubeforge/kubeforge/test/netbench"
	"github.com/kubeforge/kubeforge/test/testbed"
)

// newKubeforge installs the build under test into a testbed that started
// from oldVersion (testutil.OldKubeforge) and returns its path and version.
func newKubeforge(t *testing.T, tb *testbed.Testbed, oldVersion string) (string, string) {
	t.Helper()
	path, version := tb.InstallBinary(testutil.Binary(t), "kubeforge-new")
	if version == oldVersion {
		t.Fatalf("the build under test has the old build's version %s", oldVersion)
	}
	return path, version
}

// versionsOf is what `bin version -o json` says (keys kubeforge,
// kubernetes, ...).
func versionsOf(t *testing.T, bin string) map[string]string {
	t.Helper()
	out, err := exec.Command(bin, "version", "-o", "json").Output()
	if err != nil {
		t.Fatalf("%s version: %v", bin, err)
	}
	var v map[string]string
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("%s version -o json: %v\n%s", bin, err, out)
	}
	return v
}

// kubeletVersions says which nodes' kubelets do not report version want
// ("" when all do).
func kubeletVersions(api kubernetes.Interface, want string, names ...string) string {
	var bad []string
	for _, n := range names {
		node, err := api.CoreV1().Nodes().Get(context.Background(), n, metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		if v := node.Status.NodeInfo.KubeletVersion; v != want {
			bad = append(bad, fmt.Sprintf("node %s: kubelet %s", n, v))
		}
	}
	if len(bad) > 0 {
		return strings.Join(bad, ", ") + ", want " + want
	}
	return ""
}

// kfWith runs another kubeforge binary in a node; it fails the test when
// that fails.
func kfWith(t *testing.T, n *testbed.Node, bin string, timeout time.Duration, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := n.Run(ctx, bin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type upgradePlan struct {
	ClusterKubernetesVersion string
	UpToDate                 bool
	Allowed                  bool
	Changes                  []string
	Nodes                    []struct {
		Name       string
		Components []struct {
			Name      string
			Kubeforge string
			UpToDate  bool
		}
	}
	Addons []struct {
		Name      string
		Kubeforge string
	}
}

func planOf(t *testing.T, n *testbed.Node, bin string) upgradePlan {
	t.Helper()
	out := kfWith(t, n, bin, 2*time.Minute, "upgrade", "plan", "--output", "json")
	var p upgradePlan
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("upgrade plan --output json: %v\n%s", err, out)
	}
	return p
}

// checkImageOnlyDiff checks that `upgrade diff` on a control-plane node
// changes the image (and the system shim group, which names the version)
// of the four static pods and nothing else (the old and new builds are one
// source with two version stamps).
func checkImageOnlyDiff(t *testing.T, n *testbed.Node, newBin, oldVersion, newVersion string) {
	t.Helper()
	diff := kfWith(t, n, newBin, time.Minute, "upgrade", "diff")
	var removed, added int
	for _, l := range strings.Split(diff, "\n") {
		if strings.HasPrefix(l, "---") || strings.HasPrefix(l, "+++") {
			continue
		}
		switch {
		case strings.HasPrefix(l, "-") && strings.Contains(l, "image: kubeforge.local/kubeforge:"+oldVersion):
			removed++
		case strings.HasPrefix(l, "+") && strings.Contains(l, "image: kubeforge.local/kubeforge:"+newVersion):
			added++
		// The system shim group names the version too (its pods start a
		// shim of the new executable).
		case strings.HasPrefix(l, "-") && strings.HasSuffix(l, "io.containerd.runc.v2.group: kubeforge-system-"+oldVersion),
			strings.HasPrefix(l, "+") && strings.HasSuffix(l, "io.containerd.runc.v2.group: kubeforge-system-"+newVersion):
		case strings.HasPrefix(l, "-") || strings.HasPrefix(l, "+"):
			t.Errorf("upgrade diff on %s changes more than the image: %q", n.Name, l)
		}
	}
	if removed != 4 || added != 4 || !strings.Contains(diff, "/etc/kubernetes/manifests/etcd.yaml") {
		t.Errorf("upgrade diff on %s: %d old and %d new image lines, want 4 each:\n%s", n.Name, removed, added, diff)
	}
}

// upgradeClient is a pod that asks the echo Service five times a second,
// each request on a new connection, and logs each answer (netbench's
// client: "req … body=…" or "req … err=…").
func upgradeClient(clusterIP string) string {
	return `apiVersion: v1
kind: Pod
metadata:
  name: loop
  namespace: default
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: loop
    image: ` + netbench.ImageRef + `
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", "while true; do ` + netbench.ClientPath + ` http -timeout 2s http://` + clusterIP + `/; busybox sleep 0.2; done"]
`
}

// workloadContainers maps each default-namespace container to its
// container ID and restart count.
func workloadContainers(t *testing.T, api kubernetes.Interface) map[string]string {
	t.Helper()
	pods, err := api.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range pods.Items {
		for _, s := range p.Status.ContainerStatuses {
			out[p.Name+"/"+s.Name] = fmt.Sprintf("%s restarts=%d", s.ContainerID, s.RestartCount)
		}
	}
	return out
}

// TestUpgrade makes a cluster of a control-plane node and a worker with an
// older kubeforge build, runs a Deployment behind a Service with a pod
// asking it in a loop, and upgrades the cluster to the build under test
// (`upgrade apply` on the control-plane node, `upgrade node` on the
// worker, `upgrade apply` again for the addons): no request fails, no
// workload container restarts, every component reports the new version,
// `upgrade plan` then says the cluster is up to date and another apply
// changes nothing.
func TestUpgrade(t *testing.T) {
	testbed.RequireHost(t)
	if err := testbed.RequireStaticBusybox(); err != nil {
		t.Fatal(err)
	}
	old, oldVersion := testutil.OldKubeforge(t)
	testUpgradeFrom(t, old, oldVersion)
}

// TestUpgradeFromPreviousMinor is TestUpgrade from a kubeforge built
// against the previous Kubernetes minor ($KUBEFORGE_OLD_BINARY; `make
// upgrade-from-1.36` builds bin/kubeforge-1.36 with hack/build-k136.sh and
// runs this): the cluster starts on v1.36 and every node, the API server
// and every kubelet, ends on the build under test's Kubernetes version.
// Skipped without $KUBEFORGE_OLD_BINARY (CI does not build the old minor).
func TestUpgradeFromPreviousMinor(t *testing.T) {
	old := os.Getenv("KUBEFORGE_OLD_BINARY")
	if old == "" {
		t.Skip("KUBEFORGE_OLD_BINARY is not set: `make upgrade-from-1.36` builds a kubeforge against Kubernetes v1.36 and runs this test")
	}
	testbed.RequireHost(t)
	if err := testbed.RequireStaticBusybox(); err != nil {
		t.Fatal(err)
	}
	oldV, newV := versionsOf(t, old), versionsOf(t, testutil.Binary(t))
	o, err1 := k8sversion.ParseSemantic(oldV["kubernetes"])
	n, err2 := k8sversion.ParseSemantic(newV["kubernetes"])
	if err1 != nil || err2 != nil || o.Major() != n.Major() || o.Minor()+1 != n.Minor() {
		t.Fatalf("%s runs Kubernetes %q and the build under test %q: want the previous minor", old, oldV["kubernetes"], newV["kubernetes"])
	}
	testUpgradeFrom(t, old, oldV["kubeforge"])
}

// testUpgradeFrom is TestUpgrade from the kubeforge binary old (version
// oldVersion).
func testUpgradeFrom(t *testing.T, old, oldVersion string) {
	tb := testbed.New(t, testbed.WithBinary(old))
	holdOnFailure(t, tb)
	newBin, newVersion := newKubeforge(t, tb, oldVersion)
	oldKube, newKube := versionsOf(t, old)["kubernetes"], versionsOf(t, newBin)["kubernetes"]
	t.Logf("upgrading kubeforge %s (Kubernetes %s) to %s (Kubernetes %s)", oldVersion, oldKube, newVersion, newKube)
	cp := tb.AddNode("cp1")
	w := tb.AddNode("w1")
	step := stepper(t)
	resolv := netResolvConf(t, tb)

	var initOut string
	step("cluster", func(t *testing.T) {
		initOut = kf(t, cp, 3*time.Minute, "init", "--config", netInitConfig(t, cp, resolv, ""), "--advertise-address", cp.IP.String())
		netJoinWorkers(t, cp, initOut, []*testbed.Node{w})
	})
	api := apiClient(t, cp, "")
	step("workload", func(t *testing.T) {
		poll(t, 2*time.Minute, "both nodes Ready", func() string { return nodesReady(api, cp.Name, w.Name) })
		poll(t, time.Minute, "every kubelet on Kubernetes "+oldKube, func() string { return kubeletVersions(api, oldKube, cp.Name, w.Name) })
		netImportImage(t, tb, w)
		kubectlOn(t, cp, "", "apply", "-f", cp.WriteConfigFile("echo.yaml", netbench.ServerYAML("echo", 2)))
		ip := strings.TrimSpace(kubectlOn(t, cp, "", "get", "service", "echo", "-o", "jsonpath={.spec.clusterIP}"))
		poll(t, 2*time.Minute, "2 echo pods Ready", func() string { _, s := podsReady(api, "default", "app=echo", 2); return s })
		kubectlOn(t, cp, "", "apply", "-f", cp.WriteConfigFile("loop.yaml", upgradeClient(ip)))
		poll(t, 2*time.Minute, "the loop pod answered", func() string {
			logs, _ := cp.Kubectl("logs", "loop")
			if !strings.Contains(logs, "body=") {
				return "no answer yet: " + logs
			}
			return ""
		})
	})
	// Whether the old build runs kubeforge's pods in one shim already. An
	// older one (TestUpgradeFromPreviousMinor's) does not, and its
	// control-plane pods then keep a shim each after the upgrade (they are
	// replaced before containerd restarts with the pass-through; README).
	etcdPod, err := api.CoreV1().Pods(metav1.NamespaceSystem).Get(context.Background(), "etcd-"+cp.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, oldSharesShim := etcdPod.Annotations["io.containerd.runc.v2.group"]
	// Every container's ID, once its pod's status has it: at load 60 the
	// loop pod answered before the kubelet's status update named its
	// container (CI once), and the comparison after the upgrade then saw
	// a "change" from no ID to the same container.
	var before map[string]string
	poll(t, 2*time.Minute, "every workload container's ID in its pod status", func() string {
		before = workloadContainers(t, api)
		for k, v := range before {
			if strings.HasPrefix(v, " ") {
				return k + " has no container ID yet"
			}
		}
		return ""
	})

	step("plan-and-diff", func(t *testing.T) {
		// A node's version comes from its kubelet's image list in the Node
		// status, which the kubelet reports some seconds after a join.
		var p upgradePlan
		poll(t, 90*time.Second, "every node's version known to upgrade plan", func() string {
			p = planOf(t, cp, newBin)
			for _, n := range p.Nodes {
				for _, c := range n.Components {
					if c.Kubeforge == "" || c.Kubeforge == "unknown" {
						return fmt.Sprintf("node %s %s: version %q", n.Name, c.Name, c.Kubeforge)
					}
				}
			}
			return ""
		})
		if p.UpToDate || !p.Allowed || len(p.Changes) == 0 || p.ClusterKubernetesVersion != oldKube {
			t.Errorf("plan before the upgrade: upToDate %v, allowed %v, changes %v, cluster on Kubernetes %s (want %s)",
				p.UpToDate, p.Allowed, p.Changes, p.ClusterKubernetesVersion, oldKube)
		}
		for _, n := range p.Nodes {
			for _, c := range n.Components {
				if c.Kubeforge != oldVersion {
					t.Errorf("plan: node %s %s runs %q, want %s", n.Name, c.Name, c.Kubeforge, oldVersion)
				}
			}
		}
		text := kfWith(t, cp, newBin, time.Minute, "upgrade", "plan")
		t.Logf("upgrade plan:\n%s", text)
		checkImageOnlyDiff(t, cp, newBin, oldVersion, newVersion)
		if wd := kfWith(t, w, newBin, time.Minute, "upgrade", "diff"); !strings.Contains(wd, "No changes") {
			t.Errorf("upgrade diff on the worker (its kubelet configuration should not change):\n%s", wd)
		}
		dry := kfWith(t, cp, newBin, 2*time.Minute, "upgrade", "apply", "--dry-run")
		if m, _ := cp.ReadFile("/etc/kubernetes/manifests/kube-apiserver.yaml"); !strings.Contains(string(m), oldVersion) {
			t.Errorf("apply --dry-run changed the API server manifest:\n%s", dry)
		}
	})

	step("apply", func(t *testing.T) {
		stop := testbed.WatchAPIGaps(api, 100*time.Millisecond)
		start := time.Now()
		out := kfWith(t, cp, newBin, 15*time.Minute, "upgrade", "apply")
		bench(t, "upgrade.apply_seconds", time.Since(start))
		bench(t, "upgrade.api_unavailable_max_seconds", stop())
		t.Logf("upgrade apply:\n%s", out)
		for _, want := range []string{"Backed up 4 manifests and an etcd snapshot", "Not upgrading CoreDNS yet: node(s) " + w.Name} {
			if !strings.Contains(out, want) {
				t.Errorf("upgrade apply output lacks %q", want)
			}
		}
		// The role that let every node list Nodes (an old version's) stays
		// while w1 runs the old agent; a same-source old build never had it.
		if !strings.Contains(out, "Keeping ClusterRole kubeforge:pod-network-reader") && !strings.Contains(out, "No ClusterRole kubeforge:pod-network-reader") {
			t.Errorf("upgrade apply says nothing of the old kubeforge:pod-network-reader RBAC")
		}
		backups, _ := filepath.Glob(cp.Path("/var/lib/kubeforge/upgrade-backups/*/etcd-snapshot.db"))
		if len(backups) != 1 {
			t.Errorf("backups: %v", backups)
		}
	})
	step("node", func(t *testing.T) {
		out := kfWith(t, w, newBin, 10*time.Minute, "upgrade", "node")
		t.Logf("upgrade node:\n%s", out)
	})
	step("addons", func(t *testing.T) {
		out := kfWith(t, cp, newBin, 10*time.Minute, "upgrade", "apply")
		t.Logf("upgrade apply (addons):\n%s", out)
		if !strings.Contains(out, "nothing changed on it") {
			t.Errorf("the second apply did not say this node was up to date")
		}
		if !strings.Contains(out, "Deleted ClusterRoleBinding and ClusterRole kubeforge:pod-network-reader") && !strings.Contains(out, "No ClusterRole kubeforge:pod-network-reader") {
			t.Errorf("the second apply did not delete the old kubeforge:pod-network-reader RBAC")
		}
	})

	step("upgraded", func(t *testing.T) {
		p := planOf(t, cp, newBin)
		if !p.UpToDate {
			t.Errorf("plan after the upgrade is not up to date: %+v", p)
		}
		text := kfWith(t, cp, newBin, time.Minute, "upgrade", "plan")
		if !strings.Contains(text, "The cluster is up to date") {
			t.Errorf("upgrade plan after the upgrade:\n%s", text)
		}
		for _, n := range []string{cp.Name, w.Name} {
			node, err := api.CoreV1().Nodes().Get(context.Background(), n, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if v := node.Annotations["kubeforge.io/version"]; v != newVersion {
				t.Errorf("node %s reports kubeforge %q, want %s", n, v, newVersion)
			}
		}
		poll(t, time.Minute, "every kubelet on Kubernetes "+newKube, func() string { return kubeletVersions(api, newKube, cp.Name, w.Name) })
		if sv, err := api.Discovery().ServerVersion(); err != nil || sv.GitVersion != newKube {
			t.Errorf("the API server's version: %v %v, want %s", sv, err, newKube)
		}
		poll(t, 2*time.Minute, "every kube-system pod on the new image", func() string {
			pods, err := api.CoreV1().Pods("kube-system").List(context.Background(), metav1.ListOptions{})
			if err != nil {
				return err.Error()
			}
			var oldPods []string
			for _, p := range pods.Items {
				if img := p.Spec.Containers[0].Image; !strings.HasSuffix(img, ":"+newVersion) {
					oldPods = append(oldPods, p.Name+" "+img)
				}
			}
			return strings.Join(oldPods, ", ")
		})
		// The old version's system shim ended with its last container: a
		// node runs one shim for its kube-system pods and one per other pod.
		for _, n := range []*testbed.Node{cp, w} {
			if oldSharesShim {
				poll(t, 2*time.Minute, "the old system shim gone on "+n.Name, func() string { return shimsPerPod(api, n) })
			}
		}
		// Nodes read the node directory; none may list Nodes any more.
		for _, kind := range []string{"clusterrole", "clusterrolebinding"} {
			if out, err := cp.Kubectl("get", kind, "kubeforge:pod-network-reader"); err == nil {
				t.Errorf("%s kubeforge:pod-network-reader is left after the upgrade:\n%s", kind, out)
			}
		}
		checkNodeCredentials(t, w, cp.Name, w.Name)
		again := kfWith(t, cp, newBin, 5*time.Minute, "upgrade", "apply")
		if !strings.Contains(again, "nothing changed on it") || strings.Contains(again, "Updated ") || strings.Contains(again, "Wrote ") {
			t.Errorf("a third apply changed something:\n%s", again)
		}
	})

	step("workload-undisturbed", func(t *testing.T) {
		after := workloadContainers(t, api)
		var changed []string
		for k, v := range before {
			if after[k] != v {
				changed = append(changed, fmt.Sprintf("%s: %s -> %s", k, v, after[k]))
			}
		}
		sort.Strings(changed)
		if len(changed) > 0 {
			t.Errorf("workload containers restarted or changed:\n%s", strings.Join(changed, "\n"))
		}
		logs := kubectlOn(t, cp, "", "logs", "loop")
		ok := strings.Count(logs, " body=")
		// Failures count from the loop's first answer on: the loop pod can
		// start before kube-proxy on its node has the new Service (CI once:
		// its first request got "network is unreachable"), which is the
		// set-up, not the upgrade.
		var fails []string
		answered := false
		for _, l := range strings.Split(logs, "\n") {
			answered = answered || strings.Contains(l, " body=")
			if answered && strings.Contains(l, " err=") {
				fails = append(fails, l)
			}
		}
		t.Logf("request loop: %d answers, %d failures", ok, len(fails))
		if len(fails) > 0 || ok < 100 {
			t.Errorf("request loop: %d answers, failures %v", ok, fails)
		}
	})
}

// TestUpgradeRollback makes the new kube-apiserver fail (an unknown flag in
// the cluster's ClusterConfiguration): `upgrade apply` exits non-zero
// naming it with the end of its log, the API server runs its previous
// manifest again and the cluster answers; with the flag removed, the same
// command finishes the upgrade.
func TestUpgradeRollback(t *testing.T) {
	testbed.RequireHost(t)
	old, oldVersion := testutil.OldKubeforge(t)
	tb := testbed.New(t, testbed.WithBinary(old))
	holdOnFailure(t, tb)
	newBin, newVersion := newKubeforge(t, tb, oldVersion)
	cp := tb.AddNode("cp1")
	step := stepper(t)
	resolv := netResolvConf(t, tb)
	step("cluster", func(t *testing.T) {
		kf(t, cp, 3*time.Minute, "init", "--config", netInitConfig(t, cp, resolv, ""), "--advertise-address", cp.IP.String())
	})
	api := apiClient(t, cp, "")
	oldManifest, err := cp.ReadFile("/etc/kubernetes/manifests/kube-apiserver.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// setAPIServerArgs rewrites the API server's extraArgs in the cluster's
	// ClusterConfiguration (what the upgrade renders the manifests from).
	setAPIServerArgs := func(t *testing.T, args []map[string]string) {
		cm, err := api.CoreV1().ConfigMaps("kube-system").Get(context.Background(), "kubeadm-config", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var cc map[string]any
		if err := yaml.Unmarshal([]byte(cm.Data["ClusterConfiguration"]), &cc); err != nil {
			t.Fatal(err)
		}
		as, _ := cc["apiServer"].(map[string]any)
		if as == nil {
			as = map[string]any{}
		}
		if args == nil {
			delete(as, "extraArgs")
		} else {
			as["extraArgs"] = args
		}
		cc["apiServer"] = as
		b, err := yaml.Marshal(cc)
		if err != nil {
			t.Fatal(err)
		}
		cm.Data["ClusterConfiguration"] = string(b)
		if _, err := api.CoreV1().ConfigMaps("kube-system").Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	step("broken-apiserver", func(t *testing.T) {
		poll(t, 2*time.Minute, "node Ready", func() string { return nodesReady(api, cp.Name) })
		setAPIServerArgs(t, []map[string]string{{"name": "no-such-flag", "value": "1"}})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		out, err := cp.Run(ctx, newBin, "upgrade", "apply", "--component-timeout", "3m")
		t.Logf("upgrade apply:\n%s", out)
		if err == nil {
			t.Fatal("upgrade apply succeeded with an API server that cannot start")
		}
		for _, want := range []string{"kube-apiserver did not come up", "no-such-flag", "Rolled back"} {
			if !strings.Contains(out, want) {
				t.Errorf("the failed apply's output lacks %q", want)
			}
		}
		m, _ := cp.ReadFile("/etc/kubernetes/manifests/kube-apiserver.yaml")
		if string(m) != string(oldManifest) {
			t.Errorf("the API server manifest is not the previous one:\n%s", m)
		}
		poll(t, time.Minute, "the API server answers", func() string { return nodesReady(api, cp.Name) })
	})
	step("rerun", func(t *testing.T) {
		setAPIServerArgs(t, nil)
		out := kfWith(t, cp, newBin, 15*time.Minute, "upgrade", "apply")
		t.Logf("upgrade apply, again:\n%s", out)
		if !strings.Contains(out, "Continuing the upgrade") || !strings.Contains(out, "Using this upgrade's backup") {
			t.Errorf("the rerun did not continue the interrupted upgrade")
		}
		p := planOf(t, cp, newBin)
		if !p.UpToDate {
			t.Errorf("not up to date after the rerun: %+v", p)
		}
		if m, _ := cp.ReadFile("/etc/kubernetes/manifests/kube-apiserver.yaml"); !strings.Contains(string(m), newVersion) {
			t.Errorf("the API server manifest after the rerun:\n%s", m)
		}
	})
}

// shimsPerPod checks that node n runs one runc shim for its kube-system
// pods (kubeforge's shim group) and one for each other running pod; "" if
// so.
func shimsPerPod(api kubernetes.Interface, n *testbed.Node) string {
	pods, err := api.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{FieldSelector: "spec.nodeName=" + n.Name})
	if err != nil {
		return err.Error()
	}
	want := 0
	system := false
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodRunning {
			continue
		}
		if p.Namespace == metav1.NamespaceSystem {
			system = true
		} else {
			want++
		}
	}
	if system {
		want++
	}
	var shims []string
	for _, p := range n.Processes() {
		if len(p.Cmdline) > 0 && filepath.Base(p.Cmdline[0]) == "containerd-shim-runc-v2" {
			shims = append(shims, p.String())
		}
	}
	if len(shims) != want {
		return fmt.Sprintf("%d shims, want %d:\n%s", len(shims), want, strings.Join(shims, "\n"))
	}
	return ""
}
