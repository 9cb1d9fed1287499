package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/internal/testutil"
	"github.com/kubeforge/kubeforge/localcluster"
	"github.com/kubeforge/kubeforge/test/testbed"
)

// TestClusterCommand runs `kubeforge cluster` as a user would: the real
// binary makes a three-node cluster (kubectl sees it through the context
// merged into a fake home's kubeconfig), a second one beside it, loads an
// image onto every node, lists both from a new process after the creating
// ones exited, deletes both and checks that the host is as before.
func TestClusterCommand(t *testing.T) {
	testbed.RequireHost(t)
	if err := testbed.RequireStaticBusybox(); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "kubeforge")
	if err := testbed.CopyFile(testutil.Binary(t), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(tmp, "clusters")
	home := filepath.Join(tmp, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(home, ".kube", "config")
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + home, "LANG=C.UTF-8"}
	cluster := func(ctx context.Context, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, bin, append(append([]string{"cluster"}, args...), "--state-dir", stateDir)...)
		cmd.Env = env
		cmd.WaitDelay = 5 * time.Second
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	must := func(t *testing.T, timeout time.Duration, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		out, err := cluster(ctx, args...)
		if err != nil {
			t.Fatalf("kubeforge cluster %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	refused := func(t *testing.T, args []string, want ...string) {
		t.Helper()
		out, err := cluster(context.Background(), args...)
		if err == nil {
			t.Errorf("kubeforge cluster %s succeeded:\n%s", strings.Join(args, " "), out)
			return
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("kubeforge cluster %s: the error lacks %q:\n%s", strings.Join(args, " "), w, out)
			}
		}
	}
	kubectl := func(t *testing.T, ctxName string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "/usr/bin/kubectl", append([]string{"--context", ctxName, "--cache-dir", filepath.Join(tmp, "kubecache")}, args...)...)
		cmd.Env = env
		out, err := cmd.Output()
		if err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				return string(out), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, ee.Stderr)
			}
			return string(out), err
		}
		return string(out), nil
	}
	clusters := &localcluster.Clusters{Root: stateDir}
	// If this test is killed (its timeout), the next Sweep removes its clusters.
	release, err := localcluster.GuardStateDir(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := release(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	// Whatever happens, nothing stays: delete, else remove from the record.
	records := map[string]localcluster.Record{}
	t.Cleanup(func() {
		for name := range records {
			if _, err := clusters.LoadState(name); err != nil {
				continue
			}
			if t.Failed() {
				if _, bed, err := clusters.Open(name); err == nil {
					for _, n := range bed.Nodes() {
						t.Logf("cluster %s, node %s diagnostics:\n%s", name, n.Name, n.Diagnostics(context.Background()))
					}
				}
			}
			if out, err := cluster(context.Background(), "delete", name); err != nil {
				t.Errorf("cleanup: kubeforge cluster delete %s: %v\n%s", name, err, out)
				if _, bed, err := clusters.Open(name); err == nil {
					for _, e := range bed.Destroy(false) {
						t.Errorf("cleanup: %v", e)
					}
				}
			}
		}
	})
	remember := func(t *testing.T, name string) localcluster.Record {
		t.Helper()
		st, err := clusters.LoadState(name)
		if err != nil {
			t.Fatal(err)
		}
		records[name] = st.Bed
		return st.Bed
	}
	step := stepper(t)

	step("refused", func(t *testing.T) {
		refused(t, []string{"create", "Bad_Name"}, "cluster name \"Bad_Name\"", "lower case")
		refused(t, []string{"create", "x", "--workers", "-1"}, "--workers -1", "0 or more")
		refused(t, []string{"create", "x", "--config", filepath.Join(tmp, "missing.yaml")}, "--config", "missing.yaml")
		refused(t, []string{"create", "x", "--subnet", "10.200.0.0/16"}, "--subnet", "/24")
		refused(t, []string{"delete", "nosuch"}, "no cluster \"nosuch\"", "kubeforge cluster list")
		refused(t, []string{"kubeconfig", "nosuch"}, "no cluster \"nosuch\"")
		// Not root: said so before anything is made.
		cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bin, "cluster", "create", "x", "--state-dir", stateDir)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "needs root") {
			t.Errorf("create as nobody: %v\n%s", err, out)
		}
		if entries, _ := os.ReadDir(stateDir); len(entries) > 0 {
			t.Errorf("refused creates left %d entries in %s", len(entries), stateDir)
		}
		// A create killed between making its directory and saving its
		// state: list says so, delete removes the directory.
		if err := os.MkdirAll(filepath.Join(stateDir, "kfz"), 0o755); err != nil {
			t.Fatal(err)
		}
		if out := must(t, time.Minute, "list"); !strings.Contains(out, "broken") || !strings.Contains(out, "delete it") {
			t.Errorf("list of an empty cluster directory:\n%s", out)
		}
		if out := must(t, time.Minute, "delete", "kfz"); !strings.Contains(out, "Removed the empty directory") {
			t.Errorf("delete of an empty cluster directory:\n%s", out)
		}
		if _, err := os.Stat(filepath.Join(stateDir, "kfz")); !os.IsNotExist(err) {
			t.Errorf("the empty cluster directory is still there: %v", err)
		}
	})

	var createdA time.Time
	step("create-3-nodes", func(t *testing.T) {
		start := time.Now()
		out := must(t, 6*time.Minute, "create", "kfa", "--workers", "2")
		took := time.Since(start)
		createdA = time.Now()
		remember(t, "kfa")
		t.Logf("kubeforge cluster create kfa --workers 2 (%v):\n%s", took.Round(10*time.Millisecond), out)
		t.Logf("BENCH cluster.create_3nodes_s=%.3f", took.Seconds())
		for _, want := range []string{"kubeforge-kfa", "NodePort", "LoadBalancer", "kfa-control-plane", "kfa-worker2"} {
			if !strings.Contains(out, want) {
				t.Errorf("create's output lacks %q", want)
			}
		}
	})

	step("kubectl-sees-3-ready-nodes", func(t *testing.T) {
		poll(t, time.Minute, "3 Ready nodes through the context kubeforge-kfa", func() string {
			out, err := kubectl(t, "kubeforge-kfa", "get", "nodes", "--no-headers")
			if err != nil {
				return err.Error()
			}
			ready := 0
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				if f := strings.Fields(l); len(f) > 1 && f[1] == "Ready" {
					ready++
				}
			}
			if ready != 3 || strings.Count(strings.TrimSpace(out), "\n") != 2 {
				return "nodes:\n" + out
			}
			return ""
		})
		if out, err := kubectl(t, "", "config", "current-context"); err != nil || strings.TrimSpace(out) != "kubeforge-kfa" {
			t.Errorf("current context %q (%v), want kubeforge-kfa", out, err)
		}
		// cluster kubeconfig prints a working admin kubeconfig.
		kc := must(t, time.Minute, "kubeconfig", "kfa")
		p := filepath.Join(tmp, "kfa.conf")
		if err := os.WriteFile(p, []byte(kc), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("/usr/bin/kubectl", "--kubeconfig", p, "--cache-dir", filepath.Join(tmp, "kubecache"), "get", "--raw", "/readyz")
		if out, err := cmd.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "ok" {
			t.Errorf("kubectl with `cluster kubeconfig kfa`: %v %s", err, out)
		}
		refused(t, []string{"create", "kfa"}, "cluster \"kfa\" exists", "kubeforge cluster delete kfa")
	})

	step("no-route-out", func(t *testing.T) {
		_, bed, err := clusters.Open("kfa")
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range bed.Nodes() {
			out, err := n.Run(context.Background(), "ip", "-4", "route", "show", "default")
			if err != nil || strings.TrimSpace(out) != "" {
				t.Errorf("node %s: default route %q (%v)", n.Name, out, err)
			}
		}
		out, err := kubectl(t, "kubeforge-kfa", "-n", "kube-system", "get", "configmap", "coredns", "-o", "jsonpath={.data.Corefile}")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "forward . /etc/resolv.conf") {
			t.Logf("Corefile:\n%s", out)
		}
		rc, err := os.ReadFile(bed.ResolvConf)
		if err != nil || strings.TrimSpace(string(rc)) != "nameserver "+bed.Gateway.String() {
			t.Errorf("the nodes' resolv.conf (CoreDNS's upstream) %q (%v), want only the bridge's address", rc, err)
		}
	})

	step("second-cluster-beside", func(t *testing.T) {
		a := remember(t, "kfa")
		refused(t, []string{"create", "kfb", "--subnet", a.Subnet}, "--subnet", "overlaps")
		start := time.Now()
		out := must(t, 6*time.Minute, "create", "kfb")
		t.Logf("kubeforge cluster create kfb (%v):\n%s", time.Since(start).Round(10*time.Millisecond), out)
		b := remember(t, "kfb")
		if b.Subnet == a.Subnet || b.Bridge == a.Bridge {
			t.Errorf("two clusters share a subnet or bridge: %s %s / %s %s", a.Subnet, a.Bridge, b.Subnet, b.Bridge)
		}
		out, err := kubectl(t, "kubeforge-kfb", "get", "nodes", "--no-headers")
		if err != nil || strings.Count(out, " Ready ") != 1 {
			t.Errorf("kfb nodes: %v\n%s", err, out)
		}
		if out, err := kubectl(t, "kubeforge-kfa", "get", "nodes", "--no-headers"); err != nil || strings.Count(out, " Ready ") != 3 {
			t.Errorf("kfa nodes after kfb came: %v\n%s", err, out)
		}
	})

	step("load-image-and-nodeport", func(t *testing.T) {
		image := filepath.Join(tmp, "busybox.tar")
		if _, err := testbed.WriteBusyboxImage(image, "kftb.local/busybox:cluster"); err != nil {
			t.Fatal(err)
		}
		out := must(t, 3*time.Minute, "load-image", "kfa", image)
		t.Logf("load-image:\n%s", out)
		refused(t, []string{"load-image", "kfa", filepath.Join(tmp, "none.tar")}, "none.tar")
		// A pod on every node from that image, never pulled: it is there.
		for _, n := range []string{"kfa-control-plane", "kfa-worker", "kfa-worker2"} {
			pod := fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-%[1]s","labels":{"app":"web"}},
"spec":{"nodeName":"%[1]s","tolerations":[{"operator":"Exists"}],"containers":[{"name":"web","image":"kftb.local/busybox:cluster","imagePullPolicy":"Never",
"command":["sh","-c","echo hello from $(hostname) > /tmp/index.html; exec httpd -f -p 8080 -h /tmp"]}]}}`, n)
			p := filepath.Join(tmp, "pod-"+n+".json")
			os.WriteFile(p, []byte(pod), 0o600)
			if out, err := kubectl(t, "kubeforge-kfa", "apply", "-f", p); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		}
		svc := `{"apiVersion":"v1","kind":"Service","metadata":{"name":"web"},"spec":{"type":"NodePort","selector":{"app":"web"},"ports":[{"port":80,"targetPort":8080}]}}`
		p := filepath.Join(tmp, "svc.json")
		os.WriteFile(p, []byte(svc), 0o600)
		if out, err := kubectl(t, "kubeforge-kfa", "apply", "-f", p); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		poll(t, 2*time.Minute, "the three pods Running from the loaded image", func() string {
			out, err := kubectl(t, "kubeforge-kfa", "get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.status.phase} {end}")
			if err != nil {
				return err.Error()
			}
			if strings.Count(out, "Running") != 3 {
				return "pods: " + out
			}
			return ""
		})
		port, err := kubectl(t, "kubeforge-kfa", "get", "svc", "web", "-o", "jsonpath={.spec.ports[0].nodePort}")
		if err != nil {
			t.Fatal(err)
		}
		// From the host, at every node's address (the printed way).
		st, _ := clusters.LoadState("kfa")
		client := &http.Client{Timeout: 3 * time.Second}
		for _, n := range st.Bed.Nodes {
			url := "http://" + n.IP + ":" + strings.TrimSpace(port) + "/index.html"
			poll(t, time.Minute, "NodePort "+url, func() string {
				resp, err := client.Get(url)
				if err != nil {
					return err.Error()
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 200 || !strings.Contains(string(b), "hello from") {
					return fmt.Sprintf("%d %s", resp.StatusCode, b)
				}
				return ""
			})
		}
	})

	step("list-after-creators-exited", func(t *testing.T) {
		out := must(t, time.Minute, "list")
		t.Logf("kubeforge cluster list:\n%s", out)
		for _, want := range []string{"kfa", "kfb"} {
			found := false
			for _, l := range strings.Split(out, "\n") {
				f := strings.Fields(l)
				if len(f) >= 3 && f[0] == want && f[1] == "running" {
					found = true
					if want == "kfa" && f[2] != "3/3" || want == "kfb" && f[2] != "1/1" {
						t.Errorf("list: %s", l)
					}
				}
			}
			if !found {
				t.Errorf("list shows no running %s", want)
			}
		}
	})

	step("idle-memory", func(t *testing.T) {
		if wait := time.Until(createdA.Add(60 * time.Second)); wait > 0 {
			time.Sleep(wait)
		}
		_, bed, err := clusters.Open("kfa")
		if err != nil {
			t.Fatal(err)
		}
		var pss, rss int64
		procs := 0
		for _, n := range bed.Nodes() {
			for _, p := range n.Processes() {
				kp, kr := clusterSmaps(p.PID)
				pss, rss = pss+kp, rss+kr
				procs++
			}
		}
		t.Logf("three-node cluster %v after create: %d processes, PSS %.0f MiB (RSS %.0f MiB)", time.Since(createdA).Round(time.Second), procs, float64(pss)/1024, float64(rss)/1024)
		t.Logf("BENCH cluster.idle_pss_3nodes_mib=%.1f", float64(pss)/1024)
	})

	step("delete-both-host-clean", func(t *testing.T) {
		kc0, _ := os.ReadFile(kubeconfig)
		for _, name := range []string{"kfa", "kfb"} {
			rec := records[name]
			if name == "kfb" {
				// A state file that lost its node's namespaces (a crash
				// between starting the holder and saving): delete must
				// find them from the node's netns all the same.
				forgetNamespaces(t, filepath.Join(stateDir, name, "cluster.json"))
			}
			// Opened while the nodes run, so that it keeps their
			// namespace numbers for the check after the delete.
			bed := localcluster.OpenBed(rec, nil, nil)
			start := time.Now()
			out := must(t, 3*time.Minute, "delete", name)
			t.Logf("kubeforge cluster delete %s (%v):\n%s", name, time.Since(start).Round(10*time.Millisecond), out)
			if name == "kfb" && !strings.Contains(out, "found it by its network namespace") {
				t.Errorf("delete did not say that it found the node's namespace holder again")
			}
			if left := bed.Leftovers(start); len(left) > 0 {
				t.Errorf("cluster %s left:\n%s", name, strings.Join(left, "\n"))
			}
			if out, _ := exec.Command("ip", "-o", "link", "show").CombinedOutput(); strings.Contains(string(out), rec.Bridge) {
				t.Errorf("the bridge %s is still there", rec.Bridge)
			}
			if out, _ := exec.Command("ip", "-4", "-o", "route", "show", "table", "all").CombinedOutput(); strings.Contains(string(out), rec.Subnet) {
				t.Errorf("a route to %s is still there", rec.Subnet)
			}
			for _, nr := range rec.Nodes {
				if _, err := os.Stat("/run/netns/" + nr.NetNS); err == nil {
					t.Errorf("netns %s is still there", nr.NetNS)
				}
				if nr.HolderAlive() {
					t.Errorf("the holder of %s (pid %d) still runs", nr.Name, nr.HolderPID())
				}
				for _, h := range []string{"memory", "pids", "cpu", "unified"} {
					if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", h, nr.CgroupRoot)); err == nil {
						t.Errorf("cgroup %s/%s is still there", h, nr.CgroupRoot)
					}
				}
			}
			delete(records, name)
		}
		mounts, _ := localcluster.ReadMountinfo("/proc/self/mountinfo")
		for _, m := range mounts {
			if strings.HasPrefix(m.Point, stateDir) {
				t.Errorf("a mount is left: %s", m.Point)
			}
		}
		if out := must(t, time.Minute, "list"); !strings.Contains(out, "No clusters.") {
			t.Errorf("list after delete:\n%s", out)
		}
		kc, _ := os.ReadFile(kubeconfig)
		if strings.Contains(string(kc), "kubeforge-kfa") || strings.Contains(string(kc), "kubeforge-kfb") {
			t.Errorf("the kubeconfig still has the clusters:\n%s", kc)
		}
		_ = kc0
		refused(t, []string{"delete", "kfa"}, "no cluster \"kfa\"")
	})
}

// forgetNamespaces drops the namespace holder and namespace IDs of every
// node from a cluster's state file.
func forgetNamespaces(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	bed, _ := st["bed"].(map[string]any)
	nodes, _ := bed["nodes"].([]any)
	if len(nodes) == 0 {
		t.Fatalf("%s: no nodes in the state file", path)
	}
	for _, n := range nodes {
		nr := n.(map[string]any)
		nr["holder"] = map[string]any{"pid": 0, "start": 0}
		nr["netnsID"], nr["mountNSID"] = "", ""
	}
	if b, err = json.Marshal(st); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// clusterSmaps is a process's PSS and RSS in KiB.
func clusterSmaps(pid int) (pss, rss int64) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return 0, 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "Pss:":
			pss = v
		case "Rss:":
			rss = v
		}
	}
	return pss, rss
}

var _ = json.Marshal
