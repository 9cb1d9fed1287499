package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubeforge/kubeforge/test/testbed"
)

// singleRun brings up a single-node cluster from scratch and measures init,
// idle memory, node service restarts and reset.
func (b *bench) singleRun(t *testing.T, i int) { b.singleRunMode(t, i, false) }

// processesRun is a single-node run whose node service runs the control
// plane as processes (--control-plane-runtime=Processes): init, its
// milestones, the idle memory and reset; the restarts, network and
// logging parts are the default runs'.
func (b *bench) processesRun(t *testing.T, i int) { b.singleRunMode(t, i, true) }

func (b *bench) singleRunMode(t *testing.T, i int, processes bool) {
	sr := SingleRun{Run: i, Milestones: map[string]float64{}}
	raw := &RunSamples{Run: i}
	what := "single-node run"
	if processes {
		what = "single-node run (control plane as processes)"
	}
	defer func() {
		b.mu.Lock()
		if processes {
			b.res.Processes = append(b.res.Processes, sr)
			b.samples.Processes = append(b.samples.Processes, raw)
		} else {
			b.res.Single = append(b.res.Single, sr)
			b.samples.Single = append(b.samples.Single, raw)
		}
		b.mu.Unlock()
	}()
	problem := func(format string, args ...any) {
		msg := fmt.Sprintf("%s %d: ", what, i) + fmt.Sprintf(format, args...)
		sr.Errors = append(sr.Errors, msg)
		b.errorf(t, "%s", msg)
	}

	sr.Load = b.loadSample(t, fmt.Sprintf("%s %d", what, i))
	tb := testbed.New(t, testbed.WithBinary(b.cfg.binary))
	n := tb.AddNode("bench")
	sr.Node = n.Name
	initConfig := n.InitConfigFile()
	admin := func() ([]byte, error) { return n.ReadFile("/etc/kubernetes/admin.conf") }

	// init, watched from here.
	args := []string{"init", "--config", initConfig, "--single-node", "-o", "json"}
	controlPlanes := []string{n.Name}
	if processes {
		args = append(args, "--control-plane-runtime=Processes")
		controlPlanes = nil // no mirror pods
	}
	w := &Watcher{Interval: b.cfg.interval, Kubeconfig: watchKubeconfig(n), Node: n.Name, Pods: true,
		ControlPlanes: controlPlanes, Nodes: 1, Start: time.Now()}
	wait, stop := startWatch(w, 3*time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res := run(ctx, n, n.Binary, args...)
	raw.InitEvents, raw.InitStderr = res.Events, res.Output
	if res.Err != nil {
		stop()
		raw.InitWatch = w.Result()
		problem("init failed: %v", res.Err)
		t.Fatal(res.Err)
	}
	sr.InitWall = res.Wall
	sr.InitReported = finite(eventSeconds(res.Events, "init", "done"))
	sr.Phases = phases(res.Events)
	t.Logf("init: %.2f s (init says %.2f s)", res.Wall, sr.InitReported)
	// `kubectl top nodes`: polled from init's end (the init figures are
	// taken; 4 requests/s next to the watcher's 60), measured from init
	// start; done before the restarts.
	waitTop := watchTop(n, admin, res.Start)
	wr := wait()
	raw.InitWatch = wr
	offset := res.Start.Sub(w.Start).Seconds()
	for k, v := range wr.First {
		sr.Milestones[k] = round3(v - offset)
	}
	if missing := w.Missing(); len(missing) > 0 {
		problem("not reached within 3 minutes of init: %s", strings.Join(missing, "; "))
	}
	t.Logf("from init start: /readyz ok %.2f s, Node Ready %.2f s, CoreDNS Ready %.2f s, every kube-system pod Ready %.2f s",
		get(sr.Milestones, CheckReadyz), get(sr.Milestones, CheckNodeReady), get(sr.Milestones, CheckCoreDNSReady), get(sr.Milestones, CheckAllPodsReady))

	// Idle memory.
	initEnd := res.Start.Add(time.Duration(res.Wall * float64(time.Second)))
	time.Sleep(time.Until(initEnd.Add(b.cfg.idle)))
	snap := memory(n, fmt.Sprintf("%.0f s after init", b.cfg.idle.Seconds()))
	raw.Memory, sr.Memory = snap, snap.lite()
	missing, unnamed := MissingAddons(snap)
	if len(missing) > 0 {
		problem("optional addons with no pod process found (not running, or not attributed to their pod): %s", strings.Join(missing, ", "))
	}
	if len(unnamed) > 0 {
		t.Logf("processes the bench cannot name: %s", strings.Join(unnamed, "; "))
	}
	top := waitTop()
	raw.KubectlTop = top.output
	if top.err != "" {
		problem("kubectl top: %s", top.err)
	} else {
		sr.Milestones[MilestoneKubectlTop] = top.seconds
		t.Logf("from init start: `kubectl top nodes` answers %.2f s (%d polls)", top.seconds, top.polls)
		if top.polls == 1 {
			problem("kubectl top answered at the first poll (%.2f s after init start): the figure is an upper bound", top.seconds)
		}
	}
	t.Logf("idle memory: PSS %.0f MiB, RSS %.0f MiB in %d processes", snap.Total.PSSMiB, snap.Total.RSSMiB, snap.Total.Processes)
	for _, c := range ComponentNames(*snap) {
		cm := snap.Components[c]
		t.Logf("  %-24s %2d  PSS %6.1f  RSS %6.1f MiB", c, cm.Processes, cm.PSSMiB, cm.RSSMiB)
	}

	if !b.cfg.skip["restart"] && !processes {
		cs, _, err := NewClient(mustRead(t, admin), "")
		if err != nil {
			t.Fatal(err)
		}
		for _, how := range []string{"stop-start", "kill9-start"} {
			rr, rs := b.restart(t, tb, n, cs, admin, how)
			for _, e := range rr.Errors {
				problem("%s: %s", how, e)
			}
			if how == "stop-start" {
				sr.Restart, raw.Restart = rr, rs
			} else {
				sr.Kill9, raw.Kill9 = rr, rs
			}
		}
	}

	if !b.cfg.skip["network"] && !processes {
		b.networkBench(t, fmt.Sprintf("single-node run %d", i), tb, n, []*testbed.Node{n}, true)
	}

	if !b.cfg.skip["logging"] && !processes {
		sr.LogLag = b.logLag(t, tb, n)
	}

	if processes {
		b.keepLogs(t, n, fmt.Sprintf("processes-%d", i))
	} else {
		b.keepLogs(t, n, fmt.Sprintf("single-%d", i))
	}

	// reset
	start := time.Now()
	rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	out, err := n.Kubeforge(rctx, "reset", "--force")
	rcancel()
	rr := &ResetResult{WallSeconds: round3(time.Since(start).Seconds())}
	raw.Reset = out
	if err != nil {
		problem("reset failed: %v", err)
	}
	rr.Leftovers = leftovers(n)
	rr.Clean = len(rr.Leftovers) == 0
	sr.Reset = rr
	if !rr.Clean {
		problem("reset left: %s", strings.Join(rr.Leftovers, "; "))
	}
	t.Logf("reset: %.2f s, clean: %v", rr.WallSeconds, rr.Clean)
}

func get(m map[string]float64, k string) float64 {
	if v, ok := m[k]; ok {
		return v
	}
	return math.NaN()
}

func mustRead(t testing.TB, f func() ([]byte, error)) []byte {
	t.Helper()
	b, err := f()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// containers maps kube-system pod/container to "containerID restarts".
func containers(cs *kubernetes.Clientset) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := cs.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, p := range list.Items {
		for _, c := range p.Status.ContainerStatuses {
			out[p.Name+"/"+c.Name] = c.ContainerID + " restarts=" + strconv.Itoa(int(c.RestartCount))
		}
	}
	return out, nil
}

// restart restarts the node service (`node stop` or kill -9 of its
// supervisor, then `node start`) and measures how fast the node is back.
func (b *bench) restart(t *testing.T, tb *testbed.Testbed, n *testbed.Node, cs *kubernetes.Clientset, admin func() ([]byte, error), how string) (*RestartResult, *RestartSample) {
	rr := &RestartResult{How: how, Milestones: map[string]float64{}, ContainersChanged: []string{}}
	rs := &RestartSample{}
	fail := func(format string, args ...any) { rr.Errors = append(rr.Errors, fmt.Sprintf(format, args...)) }
	before, err := containers(cs)
	if err != nil {
		fail("list containers: %v", err)
	}
	// /readyz from before the stop to the end of the settle time.
	mon := &Watcher{Interval: b.cfg.interval, Kubeconfig: admin, KeepWatching: true, Start: time.Now()}
	_, stopMon := startWatch(mon, 5*time.Minute)

	var output strings.Builder
	stopStart := time.Now()
	switch how {
	case "stop-start":
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := n.Kubeforge(ctx, "node", "stop")
		cancel()
		output.WriteString(out)
		if err != nil {
			fail("node stop: %v", err)
		}
	case "kill9-start":
		pidText, err := n.ReadFile("/run/kubeforge/node.pid")
		if err != nil {
			fail("read node.pid: %v", err)
			break
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(pidText)))
		var sup *testbed.Process
		for _, p := range n.Processes() {
			if p.PID == pid {
				sup = &p
			}
		}
		if sup == nil || Classify(sup.Cmdline, sup.Exe) != "node service" {
			fail("node.pid says %d, which is not this node's node service (%v)", pid, sup)
			break
		}
		if err := killAndWait(pid, 10*time.Second); err != nil {
			fail("%v", err)
		}
	}
	rr.StopSeconds = round3(time.Since(stopStart).Seconds())
	for _, p := range n.Processes() {
		switch c := Classify(p.Cmdline, p.Exe); c {
		case "kubelet", "containerd", "node service":
			rr.Survivors = append(rr.Survivors, fmt.Sprintf("%s (pid %d)", c, p.PID))
		}
	}

	w := &Watcher{Interval: b.cfg.interval, Kubeconfig: admin, Node: n.Name, Pods: true, ControlPlanes: []string{n.Name},
		Nodes: 1, KeepWatching: true}
	w.Start = time.Now()
	w.LeaseSince = w.Start
	_, stopW := startWatch(w, 5*time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	out, err := n.Kubeforge(ctx, "node", "start")
	cancel()
	rr.StartSeconds = round3(time.Since(w.Start).Seconds())
	output.WriteString(out)
	if err != nil {
		fail("node start: %v", err)
	}
	// Node Ready (reported by the new kubelet) and then the settle time.
	deadline := time.Now().Add(2 * time.Minute)
	for !w.has(CheckNodeReady) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(b.cfg.settle)
	stopW()
	stopMon()
	wr, mr := w.Result(), mon.Result()
	rs.Watch, rs.Output = wr, output.String()
	rr.Milestones[CheckReadyz] = get(wr.First, CheckReadyz)
	for _, c := range []string{CheckNodeReady, CheckAllPodsReady, CheckCoreDNSReady} {
		last, flapped := wr.LastOK(c)
		rr.Milestones[c] = last
		if flapped {
			rr.Milestones[c+"-dipped"] = 1
		}
	}
	for k, v := range rr.Milestones {
		if math.IsNaN(v) {
			delete(rr.Milestones, k)
			fail("%s not reached within %v of node start", k, b.cfg.settle)
		}
	}
	for _, tr := range mr.Transitions {
		if tr.Check == CheckReadyz && tr.State != "ok" && tr.T > 0 {
			rr.ReadyzLost = true
		}
	}
	after, err := containers(cs)
	if err != nil {
		fail("list containers: %v", err)
	}
	for k, v := range before {
		if after[k] != v {
			rr.ContainersChanged = append(rr.ContainersChanged, fmt.Sprintf("%s: %s → %s", k, v, after[k]))
		}
	}
	slices.Sort(rr.ContainersChanged)
	snap := memory(n, fmt.Sprintf("%.0f s after the node is Ready again (%s)", b.cfg.settle.Seconds(), how))
	rs.Memory, rr.Memory = snap, snap.lite()
	t.Logf("%s: stop %.2f s, node start %.2f s; from node start: /readyz %.2f s, Node Ready %.2f s, pods Ready %.2f s; readyz lost: %v; survivors: %v; containers changed: %d; RSS %.0f MiB, PSS %.0f MiB",
		how, rr.StopSeconds, rr.StartSeconds, get(rr.Milestones, CheckReadyz), get(rr.Milestones, CheckNodeReady),
		get(rr.Milestones, CheckAllPodsReady), rr.ReadyzLost, rr.Survivors, len(rr.ContainersChanged), snap.Total.RSSMiB, snap.Total.PSSMiB)
	return rr, rs
}

// leftovers lists what `kubeforge reset` left on the node (the checks of
// the single-node end-to-end test).
func leftovers(n *testbed.Node) []string {
	var out []string
	for _, p := range n.Processes() {
		out = append(out, "process "+p.String())
	}
	if mounts, err := n.MountsUnder("/var/lib/kubelet", "/run/kubeforge", "/var/lib/kubeforge", "/var/lib/etcd", "/run/containerd"); err != nil {
		out = append(out, "mounts: "+err.Error())
	} else {
		for _, m := range mounts {
			out = append(out, "mount "+m.Point)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if o, err := n.Run(ctx, "ip", "-o", "link", "show"); err == nil && strings.Contains(o, "kubeforge0") {
		out = append(out, "interface kubeforge0")
	}
	if o, err := n.Run(ctx, "nft", "list", "tables"); err == nil && strings.Contains(o, "kube-proxy") {
		out = append(out, "nftables: "+strings.TrimSpace(o))
	}
	for _, tool := range []string{"iptables-save", "ip6tables-save"} {
		o, err := n.Run(ctx, tool)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(o, "\n") {
			if strings.Contains(line, "KUBE-") || strings.Contains(line, "CNI-") {
				out = append(out, tool+": "+line)
			}
		}
	}
	for _, p := range []string{"/etc/kubernetes", "/var/lib/kubelet", "/var/lib/etcd", "/var/lib/kubeforge", "/run/kubeforge",
		"/etc/cni/net.d/10-kubeforge.conflist", "/var/lib/cni/networks/kubeforge", "/var/log/pods", "/var/log/containers"} {
		if exists(n.Path(p)) {
			out = append(out, "file "+p)
		}
	}
	for _, h := range []string{"cpu", "memory", "pids", "systemd", "unified"} {
		if d := filepath.Join("/sys/fs/cgroup", h, n.CgroupRoot, "kubepods"); exists(d) {
			out = append(out, "cgroup "+d)
		}
	}
	return out
}

// keepLogs copies a node's own logs (the node service's, the kubelet's,
// containerd's) and its control-plane pods' logs to BENCH_OUT/logs/NAME
// before reset removes them: where the time of one run went can then be
// read afterwards. A file that cannot be copied is only logged.
func (b *bench) keepLogs(t *testing.T, n *testbed.Node, name string) {
	dir := filepath.Join(b.cfg.out, "logs", name)
	files := []string{"/var/log/kubeforge/node.log", "/var/log/kubeforge/kubelet.log", "/var/log/kubeforge/containerd.log"}
	for _, c := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		if p := "/var/log/kubeforge/" + c + ".log"; exists(n.Path(p)) { // run as a process
			files = append(files, p)
		}
		matches, _ := filepath.Glob(n.Path("/var/log/pods/kube-system_" + c + "-*/" + c + "/*.log"))
		for _, m := range matches {
			files = append(files, strings.TrimPrefix(m, strings.TrimSuffix(n.Path("/"), "/")))
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("keep the node's logs: %v", err)
		return
	}
	for _, f := range files {
		data, err := n.ReadFile(f)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, strings.ReplaceAll(strings.TrimPrefix(f, "/var/log/"), "/", "_")), data, 0o644)
		}
		if err != nil {
			t.Logf("keep the node's log %s: %v", f, err)
		}
	}
}

// watchKubeconfig is what an init's watcher reads: super-admin.conf
// (system:masters), which both kubeforge and kubeadm write with the other
// kubeconfigs. admin.conf's user is authorized only through the
// kubeadm:cluster-admins binding, which init makes after /readyz: watched
// with it, the Node read as Ready when that binding came (0.3 s after the
// node was Ready, here), not when the node was.
func watchKubeconfig(n *testbed.Node) func() ([]byte, error) {
	return func() ([]byte, error) { return n.ReadFile("/etc/kubernetes/super-admin.conf") }
}
