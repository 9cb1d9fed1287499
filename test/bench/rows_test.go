package bench

import (
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	kfconfig "github.com/kubeforge/kubeforge/config"
)

// The addons-off document turns off every switch config.Addons has, and
// the bench knows the component of each (a new addon fails here until it
// is added to OptionalAddons).
func TestAddonsOffConfig(t *testing.T) {
	doc, err := AddonsOffConfig()
	if err != nil {
		t.Fatal(err)
	}
	c := kfconfig.New()
	if err := c.Decode([]byte(doc)); err != nil {
		t.Fatalf("the config package refuses the addons-off document: %v\n%s", err, doc)
	}
	v := reflect.ValueOf(c.Kubeforge.Addons)
	var switches []string
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		name := strings.Split(f.Tag.Get("json"), ",")[0]
		switches = append(switches, name)
		en := v.Field(i).FieldByName("Enabled")
		if en.IsNil() || en.Elem().Bool() {
			t.Errorf("addons.%s is not turned off by:\n%s", name, doc)
		}
	}
	var known []string
	for _, a := range OptionalAddons {
		known = append(known, a.Switch)
		if !slices.Contains(Components, a.Component) {
			t.Errorf("addon component %s is not in Components (report order)", a.Component)
		}
	}
	slices.Sort(switches)
	slices.Sort(known)
	if !slices.Equal(switches, known) {
		t.Errorf("config.Addons has the switches %v, the bench knows %v: add the new addon's component to OptionalAddons", switches, known)
	}
}

func TestParseStatPPID(t *testing.T) {
	for stat, want := range map[string]int{
		"4242 (kubeforge) S 17 4242 4242 0 -1":        17,
		"99 (a) b (c)) R 1 99 99 0 -1":                1,
		"7 (containerd-shim-runc-v2) S 3001 7 7 0 -1": 3001,
	} {
		if got, err := parseStatPPID(stat); err != nil || got != want {
			t.Errorf("parseStatPPID(%q) = %d, %v; want %d", stat, got, err, want)
		}
	}
	if _, err := parseStatPPID("garbage"); err == nil {
		t.Error("parseStatPPID accepted a line without a command name")
	}
}

func TestAssignPods(t *testing.T) {
	procs := []ProcMem{
		{PID: 10, PPID: 1, Component: "node service"},
		{PID: 11, PPID: 10, Component: "containerd"},
		{PID: 12, PPID: 10, Component: "kubelet"},
		// The metrics-server pod with a shim of its own: shim, pause, container.
		{PID: 20, PPID: 1, Component: "shims"},
		{PID: 21, PPID: 20, Component: "pause", PodUID: "m"},
		{PID: 22, PPID: 20, Component: "metrics-server", PodUID: "m"},
		// One shim for two pods (a shim group): a pod of two containers,
		// one with a child of its own, and a sandbox whose container has
		// not started.
		{PID: 30, PPID: 1, Component: "shims"},
		{PID: 31, PPID: 30, Component: "pause", PodUID: "l"},
		{PID: 32, PPID: 30, Component: "log-store", PodUID: "l"},
		{PID: 33, PPID: 30, Component: "dashboard", PodUID: "l"},
		{PID: 34, PPID: 33, Component: "other: sh", PodUID: "l"},
		{PID: 41, PPID: 30, Component: "pause", PodUID: "p"},
		// Parent outside the node.
		{PID: 50, PPID: 9999, Component: "other: sleep"},
	}
	AssignPods(procs)
	want := map[int]string{10: "", 11: "", 12: "", 20: "metrics-server", 21: "metrics-server", 22: "metrics-server",
		30: "", 31: "dashboard+log-store", 32: "dashboard+log-store",
		33: "dashboard+log-store", 34: "dashboard+log-store", 41: "pause", 50: ""}
	for _, p := range procs {
		if p.Pod != want[p.PID] {
			t.Errorf("pid %d (%s): pod %q, want %q", p.PID, p.Component, p.Pod, want[p.PID])
		}
	}
	m := MemSnapshot{Processes: procs}
	for i := range m.Processes {
		m.Processes[i].PSSKiB, m.Processes[i].RSSKiB = 1024, 2048
	}
	m.Sum()
	if g := m.Groups["metrics-server"]; g.Processes != 3 || g.PSSMiB != 3 || g.RSSMiB != 6 {
		t.Errorf("metrics-server pod group: %+v", g)
	}
	if g := m.Groups["kubelet"]; g.Processes != 1 {
		t.Errorf("kubelet group: %+v", g)
	}
	if g := m.Groups["shims"]; g.Processes != 1 {
		t.Errorf("the shared shim is not a group of its own: %+v", g)
	}
	if c := m.Components["shims"]; c.Processes != 2 {
		t.Errorf("components still count the shims apart: %+v", c)
	}
}

func TestParsePodUID(t *testing.T) {
	for in, want := range map[string]string{
		"12:memory:/kfc-1-cp/kubepods/burstable/pod8f0e6a2c-1b2d-4e5f-9a0b-0c1d2e3f4a5b/0123abcd\n":                                             "8f0e6a2c-1b2d-4e5f-9a0b-0c1d2e3f4a5b",
		"4:cpu,cpuacct:/kubepods/besteffort/poda97a300566816fc23894a188dc1d322d/ffee\n":                                                         "a97a300566816fc23894a188dc1d322d",
		"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod8f0e6a2c_1b2d_4e5f_9a0b_0c1d2e3f4a5b.slice/cri-containerd-1.scope\n": "8f0e6a2c-1b2d-4e5f-9a0b-0c1d2e3f4a5b",
		"12:memory:/kfc-1-cp\n0::/\n":       "",
		"3:pids:/kubepods/burstable/podx\n": "",
	} {
		if got := parsePodUID(in); got != want {
			t.Errorf("parsePodUID(%q) = %q, want %q", in, got, want)
		}
	}
}

func snapWith(total float64, groups map[string]float64) *MemSnapshot {
	m := &MemSnapshot{Groups: map[string]CompMem{}, Total: CompMem{PSSMiB: total, RSSMiB: 2 * total, Processes: len(groups)}}
	for g, v := range groups {
		m.Groups[g] = CompMem{Processes: 3, PSSMiB: v, RSSMiB: 2 * v}
	}
	return m
}

func figure(t *testing.T, figs []Figure, key string) Figure {
	t.Helper()
	for _, f := range figs {
		if f.Key == key {
			return f
		}
	}
	t.Fatalf("no figure %s", key)
	return Figure{}
}

func TestAddonFigures(t *testing.T) {
	on1 := snapWith(900, map[string]float64{"kube-apiserver": 300, "node service": 60, "metrics-server": 30, "local-path-provisioner": 20,
		"dashboard": 20, "log-store": 35, "network-policies": 25, "cloud-controller-manager": 30})
	on2 := snapWith(940, map[string]float64{"kube-apiserver": 310, "node service": 62, "metrics-server": 32, "local-path-provisioner": 22,
		"dashboard": 22, "log-store": 37, "network-policies": 27, "cloud-controller-manager": 30})
	off := snapWith(700, map[string]float64{"kube-apiserver": 280, "node service": 55, "etcd": 50})
	figs := AddonFigures([]*MemSnapshot{on1, nil, on2}, off, 60, "")
	for key, want := range map[string]float64{
		"addons.off.pss":                      700,
		"addons.on.pss":                       920,
		"addons.added.pss":                    220,
		"addons.metrics-server.pss":           31,
		"addons.metrics-server.processes":     3,
		"addons.log-store.rss":                72,
		"addons.pods.pss":                     (160 + 170) / 2.0,
		"addons.elsewhere.pss":                (40 + 70) / 2.0,
		"addons.delta.kube-apiserver.pss":     25,
		"addons.delta.node service.pss":       6,
		"addons.delta.etcd.pss":               -50,
		"addons.cloud-controller-manager.pss": 30,
	} {
		if f := figure(t, figs, key); f.N != 2 && key != "addons.off.pss" || f.Median != want {
			t.Errorf("%s: median %v of %d, want %v", key, f.Median, f.N, want)
		}
	}
	for _, f := range figs {
		if !strings.HasPrefix(f.Section, "optional addons: idle memory 60 s") || strings.HasPrefix(f.Section, MemorySection) {
			t.Errorf("%s: section %q", f.Key, f.Section)
		}
		if strings.HasPrefix(f.Key, "addons.delta.") && slices.ContainsFunc(OptionalAddons, func(a Addon) bool { return strings.Contains(f.Key, "."+a.Component+".") }) {
			t.Errorf("an addon is listed among the other deltas: %s", f.Key)
		}
	}
	// An addon that no on run shows is not measured, not 0.
	on1b := snapWith(900, map[string]float64{"metrics-server": 30})
	if f := figure(t, AddonFigures([]*MemSnapshot{on1b}, off, 60, ""), "addons.dashboard.pss"); f.N != 0 {
		t.Errorf("absent addon measured: %+v", f)
	}
	// Without the off run: the on rows only, the differences not measured.
	figs = AddonFigures([]*MemSnapshot{on1}, nil, 60, "part addons-off skipped")
	if f := figure(t, figs, "addons.off.pss"); f.N != 0 || f.Note != "part addons-off skipped" {
		t.Errorf("off without a run: %+v", f)
	}
	if f := figure(t, figs, "addons.added.pss"); f.N != 0 {
		t.Errorf("difference without an off run: %+v", f)
	}
	if f := figure(t, figs, "addons.on.pss"); f.Median != 900 {
		t.Errorf("on: %+v", f)
	}
	for _, f := range figs {
		if strings.HasPrefix(f.Key, "addons.delta.") {
			t.Errorf("delta row without an off run: %s", f.Key)
		}
	}
	// The table prints them as ordinary rows.
	r := &Results{Figures: figs}
	var b strings.Builder
	r.PrintTable(&b)
	if !strings.Contains(b.String(), "whole node PSS, every optional addon on") {
		t.Errorf("table:\n%s", b.String())
	}
}

func TestPullFigures(t *testing.T) {
	if PullFigures(nil) != nil {
		t.Error("rows without a pull part")
	}
	p := &PullResult{ImageBytes: 50_000_000, Layers: 6, PullSeconds: []float64{2, 1, 4}, PodRunningSeconds: []float64{3, 5},
		KubeletPullSeconds: nil}
	figs := PullFigures(p)
	if f := figure(t, figs, "pull.50mb.seconds"); f.Median != 2 || f.N != 3 {
		t.Errorf("pull: %+v", f)
	}
	if f := figure(t, figs, "pull.50mb.mb_per_second"); f.Median != 25 {
		t.Errorf("throughput: %+v", f)
	}
	if f := figure(t, figs, "pull.50mb.pod_running"); f.Median != 4 {
		t.Errorf("pod running: %+v", f)
	}
	if f := figure(t, figs, "pull.50mb.kubelet_pull"); f.N != 0 || f.Note == "" {
		t.Errorf("kubelet pull without events: %+v", f)
	}
	if !strings.Contains(figs[0].Section, "50.0 MB") || !strings.Contains(figs[0].Section, "6 layers") {
		t.Errorf("section: %s", figs[0].Section)
	}
}

func TestKubeletPulled(t *testing.T) {
	for msg, want := range map[string]time.Duration{
		`Successfully pulled image "10.1.2.1:5000/e2e/pull50:pod-1" in 2.345s (2.345s including waiting). Image size: 50123456 bytes.`: 2345 * time.Millisecond,
		`Successfully pulled image "x" in 950ms (1.2s including waiting). Image size: 1 bytes.`:                                        950 * time.Millisecond,
		`Successfully pulled image "x" in 1m2.5s (1m2.5s including waiting)`:                                                           62500 * time.Millisecond,
	} {
		m := kubeletPulled.FindStringSubmatch(msg)
		if m == nil {
			t.Errorf("no match: %s", msg)
			continue
		}
		if d, err := time.ParseDuration(m[1]); err != nil || d != want {
			t.Errorf("%s: %v %v, want %v", msg, d, err, want)
		}
	}
}

func TestNodeMetricsState(t *testing.T) {
	for body, ok := range map[string]bool{
		`{"kind":"NodeMetricsList","items":[{"metadata":{"name":"bench"},"usage":{"cpu":"123m","memory":"900Mi"}}]}`: true,
		`{"kind":"NodeMetricsList","items":[]}`: false,
		`{"kind":"NodeMetricsList","items":[{"metadata":{"name":"other"},"usage":{"cpu":"1","memory":"1"}}]}`: false,
		`{"kind":"NodeMetricsList","items":[{"metadata":{"name":"bench"},"usage":{"cpu":"1"}}]}`:              false,
		`service unavailable`: false,
	} {
		if got := nodeMetricsState([]byte(body), "bench"); (got == "") != ok {
			t.Errorf("%s: %q", body, got)
		}
	}
	if math.IsNaN(get(map[string]float64{MilestoneKubectlTop: 1}, MilestoneKubectlTop)) {
		t.Error("milestone")
	}
}
