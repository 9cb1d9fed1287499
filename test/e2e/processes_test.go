package e2e

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/test/testbed"
)

// TestControlPlaneProcesses: a control-plane node whose node service runs
// the control plane's manifests as its own processes
// (KubeforgeConfiguration.controlPlane.runtime Processes). It comes up,
// takes a worker and a second control-plane node that runs its control
// plane as processes too (its etcd member found without etcd pods); a
// changed manifest restarts its component and a killed component comes
// back, as with static pods; `node status` shows each component's health;
// upgrade refuses the node; reset leaves no process.
func TestControlPlaneProcesses(t *testing.T) {
	tb := testbed.New(t)
	holdOnFailure(t, tb)
	cp := tb.AddNode("proc1")
	w := tb.AddNode("procw1")
	cp2 := tb.AddNode("proc2")
	c := &cluster{t: t, n: cp}
	step := stepper(t)

	var join, cpJoin []string
	step("init", func(t *testing.T) {
		start := time.Now()
		out := kf(t, cp, 3*time.Minute, "init", "--config", cp.InitConfigFile(), "--advertise-address", cp.IP.String(),
			"--node-name", cp.Name, "--single-node", "--control-plane-runtime=Processes",
			"--control-plane-endpoint", cp.IP.String()+":6443", "--upload-certs")
		bench(t, "processes_init", time.Since(start))
		if !strings.Contains(out, "it runs the control plane from /etc/kubernetes/manifests as its own processes") {
			t.Errorf("init did not say the node service runs the control plane:\n%s", out)
		}
		join, cpJoin = joinCommands(t, out)
		if cpJoin == nil {
			t.Fatalf("no control-plane join command:\n%s", out)
		}
		cfg, err := cp.ReadFile("/var/lib/kubelet/config.yaml")
		if err != nil || strings.Contains(string(cfg), "staticPodPath") {
			t.Errorf("the kubelet watches the manifests too (%v):\n%s", err, cfg)
		}
	})

	nodeService := func() int {
		for _, p := range cp.Processes() {
			if hasWords(p.Cmdline, "node", "run") {
				return p.PID
			}
		}
		t.Fatal("no node service runs")
		return 0
	}
	// pidOf is the pid of the one process of a component, a child of the
	// node service.
	pidOf := func(t *testing.T, name string) int {
		ps := c.component(name)
		if len(ps) != 1 {
			t.Fatalf("%d processes of %s: %s", len(ps), name, processes(ps))
		}
		if pp := parent(ps[0].PID); pp != nodeService() {
			t.Errorf("%s (pid %d) is a child of pid %d, not of the node service", name, ps[0].PID, pp)
		}
		return ps[0].PID
	}
	statusOK := func() string {
		out, err := cp.Kubeforge(context.Background(), "node", "status")
		if err != nil {
			return fmt.Sprintf("node status: %v\n%s", err, out)
		}
		for _, comp := range controlPlane {
			if !strings.Contains(out, "control-plane/"+comp+": ok") {
				return "node status does not show " + comp + " ok:\n" + out
			}
		}
		return ""
	}

	step("running", func(t *testing.T) {
		poll(t, 3*time.Minute, "node Ready", func() string { return c.nodeReady(time.Time{}) })
		poll(t, 3*time.Minute, "every kube-system pod Ready", c.systemReady)
		poll(t, time.Minute, "node status shows the control plane ok", statusOK)
		mirrors, err := c.mirrorPods()
		if err != nil || len(mirrors) != 0 {
			t.Errorf("mirror pods %v (%v): the kubelet runs no control-plane pod here", slices.Sorted(maps.Keys(mirrors)), err)
		}
		for _, comp := range controlPlane {
			pidOf(t, comp)
			if !c.exists("/var/log/kubeforge/" + comp + ".log") {
				t.Errorf("no log /var/log/kubeforge/%s.log", comp)
			}
		}
		if s := c.readyz(); s != "" {
			t.Fatal(s)
		}
	})

	step("join-worker", func(t *testing.T) {
		kf(t, w, 3*time.Minute, append(join, "--config", w.JoinConfigFile())...)
		api := apiClient(t, cp, "")
		poll(t, 3*time.Minute, "worker Ready", func() string { return nodesReady(api, cp.Name, w.Name) })
		cfg, err := w.ReadFile("/var/lib/kubelet/config.yaml")
		if err != nil || !strings.Contains(string(cfg), "staticPodPath: /etc/kubernetes/manifests") {
			t.Errorf("the worker's kubelet has no static pod directory (%v):\n%s", err, cfg)
		}
	})

	// A restore moves the manifests aside and back: the node service stops
	// the components and starts them again, as the kubelet would.
	step("snapshot-restore", func(t *testing.T) {
		c.kubectl("create", "configmap", "before-snapshot", "--from-literal=k=v")
		c.kubeforge(2*time.Minute, "etcd", "snapshot", "save", "s1")
		c.kubectl("create", "configmap", "after-snapshot", "--from-literal=k=v")
		out := c.kubeforge(5*time.Minute, "etcd", "snapshot", "restore", "s1")
		if !strings.Contains(out, "Kept the old etcd data in") {
			t.Errorf("restore output:\n%s", out)
		}
		poll(t, 2*time.Minute, "the API server back with the snapshot's objects", func() string {
			if s := c.readyz(); s != "" {
				return s
			}
			if _, err := cp.Kubectl("get", "configmap", "before-snapshot"); err != nil {
				return err.Error()
			}
			if _, err := cp.Kubectl("get", "configmap", "after-snapshot"); err == nil {
				return "after-snapshot survived the restore"
			}
			return ""
		})
		poll(t, time.Minute, "node status shows the control plane ok", statusOK)
	})

	step("join-control-plane", func(t *testing.T) {
		out, err := w.Kubeforge(context.Background(), "join", cp.IP.String()+":6443", "--token", "abcdef.0123456789abcdef",
			"--discovery-token-unsafe-skip-ca-verification", "--node-ip", w.IP.String(), "--control-plane-runtime=Processes")
		if err == nil || !strings.Contains(out, "a worker runs no control plane") {
			t.Errorf("a worker join with --control-plane-runtime=Processes: %v\n%s", err, out)
		}
		start := time.Now()
		out = kf(t, cp2, 3*time.Minute, append(cpJoin, "--config", cp2.JoinConfigFile(), "--control-plane-runtime=Processes")...)
		bench(t, "processes_cp_join", time.Since(start))
		api := apiClient(t, cp, "")
		poll(t, 3*time.Minute, "three nodes Ready", func() string { return nodesReady(api, cp.Name, w.Name, cp2.Name) })
		poll(t, 2*time.Minute, "two voting etcd members", func() string { return votingMembers(cp, cp, cp2) })
		c2 := &cluster{t: t, n: cp2}
		for _, comp := range controlPlane {
			if ps := c2.component(comp); len(ps) != 1 {
				t.Errorf("%s on %s: %s", comp, cp2.Name, processes(ps))
			}
		}
		poll(t, time.Minute, "cp2's node status shows its control plane ok", func() string {
			out, err := cp2.Kubeforge(context.Background(), "node", "status")
			if err != nil || !strings.Contains(out, "control-plane/kube-apiserver: ok") || !strings.Contains(out, "control-plane/etcd: ok") {
				return fmt.Sprintf("%v\n%s", err, out)
			}
			return ""
		})
		if mirrors, err := c.mirrorPods(); err != nil || len(mirrors) != 0 {
			t.Errorf("mirror pods %v (%v)", slices.Sorted(maps.Keys(mirrors)), err)
		}
	})

	step("manifest-change", func(t *testing.T) {
		old := pidOf(t, "kube-scheduler")
		path := "/etc/kubernetes/manifests/kube-scheduler.yaml"
		m, err := cp.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		changed := strings.Replace(string(m), "    - --profiling=false\n", "    - --profiling=false\n    - --v=3\n", 1)
		if changed == string(m) {
			t.Fatalf("no --profiling=false line to add a flag after in %s:\n%s", path, m)
		}
		if err := cp.WriteFile(path, []byte(changed), 0o600); err != nil {
			t.Fatal(err)
		}
		poll(t, time.Minute, "the scheduler restarted with --v=3", func() string {
			ps := c.component("kube-scheduler")
			if len(ps) != 1 || ps[0].PID == old || !hasWords(ps[0].Cmdline, "--v=3") {
				return "running: " + processes(ps)
			}
			return ""
		})
		poll(t, time.Minute, "node status shows the control plane ok", statusOK)
	})

	step("killed-component", func(t *testing.T) {
		api := c.component("kube-apiserver")
		if len(api) != 1 {
			t.Fatalf("API server processes: %s", processes(api))
		}
		c.kill(api[0])
		poll(t, 2*time.Minute, "the API server back", func() string {
			ps := c.component("kube-apiserver")
			if len(ps) != 1 || ps[0].PID == api[0].PID {
				return "running: " + processes(ps)
			}
			return c.readyz()
		})
		out, _ := cp.Kubeforge(context.Background(), "node", "status")
		if !strings.Contains(out, "control-plane/kube-apiserver") || !strings.Contains(out, "1 restarts") {
			t.Errorf("node status does not count the API server's restart:\n%s", out)
		}
		c.kubectl("get", "nodes")
	})

	step("upgrade-refused", func(t *testing.T) {
		out, err := cp.Kubeforge(context.Background(), "upgrade", "plan")
		if err == nil || !strings.Contains(out, "runs its control plane as processes") {
			t.Errorf("upgrade plan on a node that runs its control plane as processes: %v\n%s", err, out)
		}
	})

	step("reset", func(t *testing.T) {
		var pids []int
		for _, comp := range controlPlane {
			pids = append(pids, pidOf(t, comp))
		}
		kf(t, cp, 2*time.Minute, "reset", "-f")
		for _, pid := range pids {
			if syscall.Kill(pid, 0) == nil {
				b, _ := cp.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
				t.Errorf("pid %d still runs after reset: %s", pid, b)
			}
		}
		for _, comp := range controlPlane {
			if c.exists("/run/kubeforge/" + comp + ".pid") {
				t.Errorf("/run/kubeforge/%s.pid left behind", comp)
			}
		}
	})
}
