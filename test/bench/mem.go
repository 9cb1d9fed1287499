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
	// containers run (AssignPods): a container's processes, its sandbox's
	// pause, and its shim when the shim serves that pod alone. Empty for
	// the node's own processes and a shared shim.
	Pod string `json:"pod,omitempty"`
	// PodUID is the pod whose cgroup the process is in (a container's
	// processes and its sandbox's pause), from /proc/PID/cgroup.
	PodUID  string `json:"pod_uid,omitempty"`
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

// AssignPods sets each process's Pod: the processes in a pod's cgroup (its
// containers and its sandbox's pause) are named by the components of its
// containers other than pause ("a+b" when there are several; "pause" for a
// sandbox with no container yet). A runc shim serving one pod's
// containers (containerd starts one per pod unless pods ask for a shim
// group) is that pod's too; a shim serving several pods, as the shim of
// kubeforge's own pods does, belongs to none and is counted apart.
// Processes outside every pod keep Pod empty.
func AssignPods(procs []ProcMem) {
	byPID := map[int]int{}
	for i, p := range procs {
		byPID[p.PID] = i
	}
	// A pod is named by its containers' first processes: those whose
	// parent is not in the pod too (a container's own children are not).
	names := map[string][]string{}
	for _, p := range procs {
		if p.PodUID == "" {
			continue
		}
		if j, ok := byPID[p.PPID]; ok && procs[j].PodUID == p.PodUID {
			continue
		}
		if c := p.Component; c != "pause" && c != "shims" && !slices.Contains(names[p.PodUID], c) {
			names[p.PodUID] = append(names[p.PodUID], c)
		}
	}
	podName := func(uid string) string {
		n := slices.Clone(names[uid])
		slices.Sort(n)
		if len(n) == 0 {
			return "pause"
		}
		return strings.Join(n, "+")
	}
	// The pods each shim's children are in.
	served := map[int]map[string]bool{}
	for _, p := range procs {
		if j, ok := byPID[p.PPID]; ok && procs[j].Component == "shims" && p.PodUID != "" {
			if served[p.PPID] == nil {
				served[p.PPID] = map[string]bool{}
			}
			served[p.PPID][p.PodUID] = true
		}
	}
	for i := range procs {
		procs[i].Pod = ""
		switch {
		case procs[i].PodUID != "":
			procs[i].Pod = podName(procs[i].PodUID)
		case procs[i].Component == "shims" && len(served[procs[i].PID]) == 1:
			for uid := range served[procs[i].PID] {
				procs[i].Pod = podName(uid)
			}
		}
	}
}

// ReadPodUID reads the pod whose cgroup a process is in from
// /proc/PID/cgroup ("" outside every pod).
func ReadPodUID(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return ""
	}
	return parsePodUID(string(b))
}

// parsePodUID finds a pod UID in /proc/PID/cgroup's paths: a segment
// "pod<uid>" (cgroupfs driver: …/kubepods/burstable/pod<uid>/<container>)
// or "kubepods-burstable-pod<uid>.slice" (systemd driver, with the UID's
// dashes as underscores). A static pod's UID is 32 hex digits, an API
// pod's a dashed UUID.
func parsePodUID(cgroup string) string {
	for _, line := range strings.Split(cgroup, "\n") {
		_, path, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		_, path, _ = strings.Cut(path, ":")
		for _, seg := range strings.Split(path, "/") {
			seg = strings.TrimSuffix(seg, ".slice")
			k := strings.LastIndex(seg, "pod")
			if k < 0 {
				continue
			}
			uid := seg[k+3:]
			if len(uid) < 32 || len(uid) > 36 || strings.Trim(uid, "0123456789abcdef-_") != "" {
				continue
			}
			return strings.ReplaceAll(uid, "_", "-")
		}
	}
	return ""
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
