package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/internal/testutil"
	"github.com/kubeforge/kubeforge/test/testbed"
)

// kubeadmSetup is kubeadm and its images, made once per bench.
type kubeadmSetup struct {
	path    string
	refs    []string
	archive string
	ignore  []string
}

// kubeadmIgnoredPreflight are the preflight checks `kubeadm init` is told
// to ignore on a test node, each with why it cannot hold there; the key is
// kubeadm's check name.
func kubeadmIgnoredPreflight() map[string]string {
	m := map[string]string{}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
		// This machine has cgroup v1: the kubelet runs with failCgroupV1:
		// false (as kubeforge's does here), and kubeadm's system validation
		// says to skip it explicitly on such a host.
		m["SystemVerification"] = "the host has cgroup v1, which kubeadm's system validation refuses unless skipped (the kubelet has failCgroupV1: false)"
	}
	return m
}

// kubeadmPrepare builds kubeadm, asks it for its images and writes them
// (made from the kubeforge binary under test) as one archive, once for
// every kubeadm run.
func (b *bench) kubeadmPrepare(t *testing.T) {
	dir := filepath.Join(b.tmp, "kubeadm")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	info := &KubeadmInfo{Runtime: "Debian's containerd 1.6 (/usr/bin/containerd), runc",
		CNI: "the host's bridge and portmap plugins (/usr/lib/cni), host-local addresses from " + testbed.KubeadmNodePodCIDR + ", config written before init"}
	defer func() {
		b.mu.Lock()
		b.res.KubeadmInfo = info
		b.mu.Unlock()
	}()
	// kubeadm itself is kept between benches in build/kubeadm (linking it
	// takes a minute).
	kdir := filepath.Join(testutil.RepoRoot(), "build", "kubeadm")
	if err := os.MkdirAll(kdir, 0o755); err != nil {
		t.Fatal(err)
	}
	path, took, err := testbed.BuildKubeadm(kdir)
	if err != nil {
		b.errorf(t, "kubeadm: %v", err)
		t.Fatal(err)
	}
	info.Path, info.BuildSeconds = path, round3(took.Seconds())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, path, "version", "-o", "short").Output(); err == nil {
		info.Version = strings.TrimSpace(string(out))
	}
	refs, err := testbed.KubeadmImageRefs(ctx, path)
	if err != nil {
		b.errorf(t, "kubeadm: %v", err)
		t.Fatal(err)
	}
	info.Images = refs
	archive := filepath.Join(dir, "kubeadm-images.tar")
	start := time.Now()
	if err := testbed.WriteKubeadmImages(archive, b.cfg.binary, refs); err != nil {
		b.errorf(t, "kubeadm's images: %v", err)
		t.Fatal(err)
	}
	info.ArchiveSeconds = round3(time.Since(start).Seconds())
	if fi, err := os.Stat(archive); err == nil {
		info.ArchiveBytes = fi.Size()
	}
	ignore := kubeadmIgnoredPreflight()
	info.IgnoredPreflight = ignore
	var names []string
	for k := range ignore {
		names = append(names, k)
	}
	t.Logf("kubeadm %s (%s, built in %.1f s); images %s written in %.1f s (%d MB)", info.Version, path, info.BuildSeconds,
		strings.Join(refs, " "), info.ArchiveSeconds, info.ArchiveBytes>>20)
	b.kubeadm = &kubeadmSetup{path: path, refs: refs, archive: archive, ignore: names}
}

// kubeadmRun brings up a single node with `kubeadm init` and measures it
// the way singleRun measures kubeforge's: init wall, the watcher's
// milestones, idle memory; then `kubeadm reset -f`.
func (b *bench) kubeadmRun(t *testing.T, i int) {
	ks := b.kubeadm
	kr := KubeadmRun{Run: i, Milestones: map[string]float64{}}
	raw := &KubeadmSamples{Run: i}
	defer func() {
		b.mu.Lock()
		b.res.Kubeadm = append(b.res.Kubeadm, kr)
		b.samples.Kubeadm = append(b.samples.Kubeadm, raw)
		b.mu.Unlock()
	}()
	problem := func(format string, args ...any) {
		msg := fmt.Sprintf("kubeadm run %d: ", i) + fmt.Sprintf(format, args...)
		kr.Errors = append(kr.Errors, msg)
		b.errorf(t, "%s", msg)
	}

	kr.Load = b.loadSample(t, fmt.Sprintf("kubeadm run %d", i))
	tb := testbed.New(t, testbed.WithBinary(b.cfg.binary))
	n := tb.AddNode("kubeadm")
	kr.Node = n.Name
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	k, err := n.PrepareKubeadm(ctx, ks.archive, ks.refs)
	if err != nil {
		problem("prepare the node: %v", err)
		t.Fatal(err)
	}
	// Before the testbed's own cleanup (which kills what is left): the
	// kubelet, by its PID.
	t.Cleanup(func() {
		if err := k.StopKubelet(); err != nil {
			t.Log(err)
		}
	})
	kr.ImportSeconds = round3(k.ImportTook.Seconds())
	t.Logf("kubeadm's images imported into containerd 1.6 in %.2f s (before init)", kr.ImportSeconds)

	w := &Watcher{Interval: b.cfg.interval, Kubeconfig: watchKubeconfig(n), Node: n.Name, Pods: true,
		ControlPlanes: []string{n.Name}, Nodes: 1, Start: time.Now()}
	wait, stop := startWatch(w, 3*time.Minute)
	args := []string{"init", "--config", k.Config}
	if len(ks.ignore) > 0 {
		args = append(args, "--ignore-preflight-errors="+strings.Join(ks.ignore, ","))
	}
	res := runCmd(k.Command(ctx, ks.path, args...))
	raw.InitEvents = res.Events
	if res.Err != nil {
		raw.InitOutput = res.Output
		stop()
		raw.InitWatch = w.Result()
		raw.KubeletLog = kubeletLogTail(k.Shim.Log)
		problem("kubeadm init failed: %v\nkubelet log:\n%s", res.Err, raw.KubeletLog)
		t.Fatal(res.Err)
	}
	kr.InitWall = res.Wall
	kr.Phases = KubeadmPhases(res.Events, res.Wall)
	var ph []string
	for _, p := range kr.Phases {
		ph = append(ph, fmt.Sprintf("%s %.2f s", p.Phase, p.Seconds))
	}
	t.Logf("kubeadm init: %.2f s (%s)", res.Wall, strings.Join(ph, ", "))
	wr := wait()
	raw.InitWatch = wr
	offset := res.Start.Sub(w.Start).Seconds()
	for key, v := range wr.First {
		kr.Milestones[key] = round3(v - offset)
	}
	if missing := w.Missing(); len(missing) > 0 {
		raw.KubeletLog = kubeletLogTail(k.Shim.Log)
		problem("not reached within 3 minutes of kubeadm init: %s", strings.Join(missing, "; "))
	}
	t.Logf("from kubeadm init start: /readyz ok %.2f s, Node Ready %.2f s, CoreDNS Ready %.2f s, every kube-system pod Ready %.2f s",
		get(kr.Milestones, CheckReadyz), get(kr.Milestones, CheckNodeReady), get(kr.Milestones, CheckCoreDNSReady), get(kr.Milestones, CheckAllPodsReady))

	initEnd := res.Start.Add(time.Duration(res.Wall * float64(time.Second)))
	time.Sleep(time.Until(initEnd.Add(b.cfg.idle)))
	snap := memory(n, fmt.Sprintf("%.0f s after kubeadm init", b.cfg.idle.Seconds()))
	raw.Memory, kr.Memory = snap, snap.lite()
	t.Logf("idle memory: PSS %.0f MiB, RSS %.0f MiB in %d processes", snap.Total.PSSMiB, snap.Total.RSSMiB, snap.Total.Processes)
	for _, c := range ComponentNames(*snap) {
		cm := snap.Components[c]
		t.Logf("  %-24s %2d  PSS %6.1f  RSS %6.1f MiB", c, cm.Processes, cm.PSSMiB, cm.RSSMiB)
	}

	start := time.Now()
	rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	rres := runCmd(k.Command(rctx, ks.path, "reset", "-f", "--cri-socket", k.Containerd.Endpoint))
	rcancel()
	kr.ResetWall = round3(time.Since(start).Seconds())
	raw.Reset = rres.Output
	if rres.Err != nil {
		problem("kubeadm reset failed: %v", rres.Err)
	}
	if pid := k.KubeletPID(); pid > 0 && processAlive(pid) {
		problem("the kubelet (pid %d) still runs after kubeadm reset, which stops it through systemctl", pid)
	}
	t.Logf("kubeadm reset -f: %.2f s", kr.ResetWall)
}

func kubeletLogTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return tailLines(string(b), 30)
}

func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// KubeadmSamples are one kubeadm run's raw samples.
type KubeadmSamples struct {
	Run int `json:"run"`
	// InitEvents are init's output lines (Raw) and when the bench read them.
	InitEvents []TimedEvent `json:"init_events"`
	InitOutput string       `json:"init_output,omitempty"`
	InitWatch  WatchResult  `json:"init_watch"`
	Memory     *MemSnapshot `json:"memory,omitempty"`
	Reset      string       `json:"reset_output,omitempty"`
	KubeletLog string       `json:"kubelet_log_tail,omitempty"`
}

var kubeadmTag = regexp.MustCompile(`^\[([a-z0-9-]+)\]`)

// KubeadmPhases reads where `kubeadm init`'s time goes from its output:
// kubeadm starts each line with its phase's "[tag]", so a tag's time runs
// from its first line to the next line of another tag (the last one's to
// wall). A tag seen again later adds to its first stretch. Lines without a
// tag belong to the stretch they are in.
func KubeadmPhases(evs []TimedEvent, wall float64) []PhaseTime {
	var out []PhaseTime
	idx := map[string]int{}
	cur, since := "", 0.0
	closeCur := func(t float64) {
		if cur == "" {
			return
		}
		out[idx[cur]].Seconds = round3(out[idx[cur]].Seconds + t - since)
	}
	for _, e := range evs {
		m := kubeadmTag.FindStringSubmatch(e.Raw)
		if m == nil || m[1] == cur {
			continue
		}
		closeCur(e.T)
		cur, since = m[1], e.T
		if _, ok := idx[cur]; !ok {
			idx[cur] = len(out)
			out = append(out, PhaseTime{Phase: cur})
		}
	}
	closeCur(wall)
	return out
}
