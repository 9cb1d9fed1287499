package bench

import (
	"bytes"
	"math"
	"os"
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	s := Summarize([]float64{3, math.NaN(), 1, 2})
	if s.N != 3 || s.Median != 2 || s.Min != 1 || s.Max != 3 {
		t.Errorf("Summarize: %+v", s)
	}
	if s := Summarize([]float64{4, 1, 2, 3}); s.Median != 2.5 {
		t.Errorf("even median: %+v", s)
	}
	if s := Summarize(nil); s.N != 0 || s.Values == nil {
		t.Errorf("empty: %+v", s)
	}
	v := []float64{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	for p, want := range map[float64]float64{50: 5, 90: 9, 99: 10, 100: 10, 1: 1} {
		if got := Percentile(v, p); got != want {
			t.Errorf("p%v = %v, want %v", p, got, want)
		}
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		cmd  string
		exe  string
		want string
	}{
		{"kubeforge component kube-apiserver --advertise-address=10.0.0.2", "/kubeforge", "kube-apiserver"},
		{"/tmp/x/bin/kubeforge component kubelet --config=/var/lib/kubelet/config.yaml", "/tmp/x/bin/kubeforge", "kubelet"},
		{"/tmp/x/bin/kubeforge node run --kubernetes-dir=/etc/kubernetes", "", "node service"},
		{"/var/lib/kubeforge/bin/containerd-shim-runc-v2 -namespace k8s.io -id abc -address /run/x", "", "shims"},
		{"/pause", "/pause", "pause"},
		{"kubeforge component coredns -conf /etc/coredns/Corefile", "", "coredns"},
		{"kubeforge component metrics-server --cert-dir=/tmp --secure-port=10250", "", "metrics-server"},
		{"kubeforge component local-path-provisioner --root=/var/lib/kubeforge/storage", "", "local-path-provisioner"},
		{"kubeforge component dashboard --listen=127.0.0.1:8080", "", "dashboard"},
		{"sleep 3600", "/bin/busybox", "other: sleep"},
	} {
		if got := Classify(strings.Fields(c.cmd), c.exe); got != c.want {
			t.Errorf("Classify(%q) = %q, want %q", c.cmd, got, c.want)
		}
	}
}

func TestReadSmapsRollup(t *testing.T) {
	if _, err := os.Stat("/proc/self/smaps_rollup"); err != nil {
		t.Skip(err)
	}
	p, err := ReadSmapsRollup(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if p.RSSKiB <= 0 || p.PSSKiB <= 0 || p.PSSKiB > p.RSSKiB || p.AnonKiB <= 0 {
		t.Errorf("implausible: %+v", p)
	}
	m := MemSnapshot{Processes: []ProcMem{{Component: "a", RSSKiB: 2048, PSSKiB: 1024}, {Component: "a", RSSKiB: 1024, PSSKiB: 1024}, {Component: "b", RSSKiB: 1024}}}
	m.Sum()
	if m.Components["a"].Processes != 2 || m.Components["a"].RSSMiB != 3 || m.Total.PSSMiB != 2 || m.Total.Processes != 3 {
		t.Errorf("Sum: %+v", m)
	}
}

func TestLastOK(t *testing.T) {
	r := WatchResult{Transitions: []Transition{
		{T: 0.1, Check: "x", State: "ok"},
		{T: 0.5, Check: "x", State: errPrefix + "timeout"},
		{T: 1, Check: "y", State: "nope"},
		{T: 2, Check: "x", State: "not Ready: a"},
		{T: 3, Check: "x", State: "ok"},
	}}
	if at, flapped := r.LastOK("x"); at != 3 || !flapped {
		t.Errorf("LastOK(x) = %v, %v", at, flapped)
	}
	if at, flapped := r.LastOK("y"); !math.IsNaN(at) || flapped {
		t.Errorf("LastOK(y) = %v, %v", at, flapped)
	}
}

func TestPrintTable(t *testing.T) {
	r := &Results{Settings: Settings{Runs: 2, BusyLoad: 1.5}, Busy: true, Load: []LoadSample{{Before: "run 1", Load1: 2, Busy: true}},
		Figures: []Figure{
			NewFigure("init", "init.wall", "`init` wall time", "s", []float64{4, 6}, ""),
			NewFigure("init", "init.readyz", "→ readyz", "s", []float64{math.NaN()}, "why"),
			NewFigure(MemorySection+" 60 s", "memory.total.pss", "whole node PSS", "MiB", []float64{600, 700}, ""),
			NewFigure(MemorySection+" 60 s", "memory.total.rss", "whole node RSS", "MiB", []float64{1600, 1700}, ""),
			NewFigure(MemorySection+" 60 s", "memory.etcd.rss", "etcd RSS", "MiB", []float64{100, 110}, ""),
		}}
	var out bytes.Buffer
	r.PrintTable(&out)
	s := out.String()
	for _, want := range []string{"5.00 s", "(4.00–6.00 s, n=2)", "7.8 s (7.2–8.1)", "≤ 5 s ok", "≤ 4 s ", "not measured", "BUSY",
		"whole node", "650 (600–700)", "PSS ≤ 650 MB ok", "RSS ≤ 900 MB (issue 3) MISSED", "51 MB RSS"} {
		if !strings.Contains(s, want) {
			t.Errorf("table lacks %q:\n%s", want, s)
		}
	}
}
