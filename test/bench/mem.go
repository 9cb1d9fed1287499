package bench

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ProcMem is the memory of one process of a node, from
// /proc/PID/smaps_rollup (KiB).
type ProcMem struct {
	PID       int    `json:"pid"`
	PPID      int    `json:"ppid,omitempty"`
	Component string `json:"component"`
	// Pod is the pod the process serves, named by the component its
	// containers run (AssignPods): a container's processes and its pod's
	// shim and pause. Empty for the node's own processes.
	Pod     string `json:"pod,omitempty"`
	Cmdline string `json:"cmdline"`
	RSSKiB  int64  `json:"rss_kib"`
	PSSKiB  int64  `json:"pss_kib"`
	// USSKiB is the private memory (Private_Clean + Private_Dirty).
	USSKiB int64 `json:"uss_kib"`
	// AnonKiB is the anonymous memory (heap, stacks): RSS without the
	// mapped files (the kubeforge executable every component shares).
	AnonKiB int64 `json:"anon_kib"`
}

// CompMem is the memory of a component's processes, summed (MiB).
type CompMem struct {
	Processes int     `json:"processes"`
	RSSMiB    float64 `json:"rss_mib"`
	PSSMiB    float64 `json:"pss_mib"`
	USSMiB    float64 `json:"uss_mib"`
	AnonMiB   float64 `json:"anon_mib"`
}

// MemSnapshot is the memory of every process of a node at one moment.
type MemSnapshot struct {
	// When says when it was taken (e.g. "60 s after init").
	When       string             `json:"when"`
	Processes  []ProcMem          `json:"processes"`
	Components map[string]CompMem `json:"components"`
	// Groups are the processes summed by pod (a pod's containers, shim and
	// pause under the pod's component name) and, outside pods, by
	// component: what each pod costs the node, its shim and pause
	// included.
	Groups map[string]CompMem `json:"groups,omitempty"`
	Total  CompMem            `json:"total"`
}

// Components are the node's process groups in report order.
var Components = []string{
	"kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kubelet", "containerd",
	"node service", "kube-proxy", "coredns", "metrics-server", "local-path-provisioner", "dashboard", "log-store", "network-policies", "cloud-controller-manager", "shims", "pause",
}

// Classify names the component a node process belongs to, from its
// command line (kubeforge runs every component as `kubeforge component
// NAME`, the node service as `kubeforge node run`).
func Classify(cmdline []string, exe string) string {
	for i := 0; i+1 < len(cmdline); i++ {
		if cmdline[i] == "component" && filepath.Base(cmdline[0]) != "nsenter" {
			switch name := cmdline[i+1]; name {
			case "containerd-shim", "shim", "containerd-shim-runc-v2":
				return "shims"
			default:
				return name
			}
		}
		if cmdline[i] == "node" && cmdline[i+1] == "run" {
			return "node service"
		}
	}
	if hasPair(cmdline, "-namespace", "k8s.io") || hasPair(cmdline, "--namespace", "k8s.io") {
		return "shims"
	}
	base := filepath.Base(cmdline[0])
	if base != "kubeforge" && slices.Contains(Components, base) {
		// A program named like a component: a link to the kubeforge
		// executable in an image of kubeadm's part (kubeadm_test.go), or a
		// host's own containerd.
		return base
	}
	if base == "pause" || filepath.Base(exe) == "pause" || slices.Contains(cmdline, "pause") {
		return "pause"
	}
	if strings.HasPrefix(base, "containerd-shim") {
		return "shims"
	}
	if base == "coredns" || filepath.Base(exe) == "coredns" {
		return "coredns"
	}
	return "other: " + base
}

func hasPair(args []string, a, b string) bool {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == a && args[i+1] == b {
			return true
		}
	}
	return false
}

// ReadSmapsRollup reads a process's memory (KiB) from
// /proc/PID/smaps_rollup.
func ReadSmapsRollup(pid int) (ProcMem, error) {
	p := ProcMem{PID: pid}
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return p, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	found := false
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 2 {
			continue
		}
		v, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			continue
		}
		switch fields[0] {
		case "Rss:":
			p.RSSKiB, found = v, true
		case "Pss:":
			p.PSSKiB = v
		case "Private_Clean:", "Private_Dirty:":
			p.USSKiB += v
		case "Anonymous:":
			p.AnonKiB = v
		}
	}
	if err := s.Err(); err != nil {
		return p, err
	}
	if !found {
		return p, fmt.Errorf("pid %d: no Rss in smaps_rollup (a kernel thread or a zombie)", pid)
	}
	return p, nil
}

// Sum fills in the snapshot's per-component, per-group and total figures.
func (m *MemSnapshot) Sum() {
	m.Components = map[string]CompMem{}
	m.Groups = map[string]CompMem{}
	m.Total = CompMem{}
	for _, p := range m.Processes {
		group := p.Pod
		if group == "" {
			group = p.Component
		}
		c, g := m.Components[p.Component], m.Groups[group]
		for _, cm := range []*CompMem{&c, &g, &m.Total} {
			cm.Processes++
			cm.RSSMiB += float64(p.RSSKiB) / 1024
			cm.PSSMiB += float64(p.PSSKiB) / 1024
			cm.USSMiB += float64(p.USSKiB) / 1024
			cm.AnonMiB += float64(p.AnonKiB) / 1024
		}
		m.Components[p.Component], m.Groups[group] = c, g
	}
	for _, mm := range []map[string]CompMem{m.Components, m.Groups} {
		for k, c := range mm {
			c.RSSMiB, c.PSSMiB, c.USSMiB, c.AnonMiB = round3(c.RSSMiB), round3(c.PSSMiB), round3(c.USSMiB), round3(c.AnonMiB)
			mm[k] = c
		}
	}
	t := &m.Total
	t.RSSMiB, t.PSSMiB, t.USSMiB, t.AnonMiB = round3(t.RSSMiB), round3(t.PSSMiB), round3(t.USSMiB), round3(t.AnonMiB)
}

// ComponentNames lists the snapshot's components: the known ones in
// report order, then the others sorted.
func ComponentNames(snaps ...MemSnapshot) []string {
	seen := map[string]bool{}
	for _, s := range snaps {
		for k := range s.Components {
			seen[k] = true
		}
	}
	var out []string
	for _, c := range Components {
		if seen[c] {
			out = append(out, c)
			delete(seen, c)
		}
	}
	var rest []string
	for k := range seen {
		rest = append(rest, k)
	}
	slices.Sort(rest)
	return append(out, rest...)
}

// AssignPods sets each process's Pod from the process tree: a pod's
// containers run under its shim (containerd's runc shim v2, one per pod,
// their subreaper), its sandbox's pause process too. A shim's pod is named
// by the components of its children (the containers' first processes)
// other than pause ("a+b" when there are several); the shim, the pause and every process below
// the shim get that name. Processes outside every shim keep Pod empty.
func AssignPods(procs []ProcMem) {
	byPID := map[int]int{}
	for i, p := range procs {
		byPID[p.PID] = i
	}
	// shimOf is the index of the shim p runs under (itself for a shim), -1
	// for none.
	shimOf := func(i int) int {
		for seen := 0; seen <= len(procs); seen++ {
			if procs[i].Component == "shims" {
				return i
			}
			j, ok := byPID[procs[i].PPID]
			if !ok || procs[i].PPID == procs[i].PID {
				return -1
			}
			i = j
		}
		return -1 // a cycle: not a process tree
	}
	shims := make([]int, len(procs))
	names := map[int][]string{}
	for i := range procs {
		shims[i] = shimOf(i)
		if s := shims[i]; s >= 0 && i != s && procs[i].PPID == procs[s].PID {
			if c := procs[i].Component; c != "pause" && c != "shims" && !slices.Contains(names[s], c) {
				names[s] = append(names[s], c)
			}
		}
	}
	for i := range procs {
		s := shims[i]
		if s < 0 {
			procs[i].Pod = ""
			continue
		}
		n := names[s]
		slices.Sort(n)
		procs[i].Pod = strings.Join(n, "+")
		if procs[i].Pod == "" {
			procs[i].Pod = "pause" // a sandbox with no container (yet)
		}
	}
}

// ReadPPID reads a process's parent pid from /proc/PID/stat.
func ReadPPID(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatPPID(string(b))
}

// parseStatPPID takes the parent pid from a /proc/PID/stat line: the
// fourth field, after the command name in parentheses (which may hold
// spaces and parentheses itself).
func parseStatPPID(stat string) (int, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat %q: no command name", stat)
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 2 {
		return 0, fmt.Errorf("stat %q: no parent pid", stat)
	}
	return strconv.Atoi(f[1])
}
