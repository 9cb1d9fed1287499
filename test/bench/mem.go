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
	Component string `json:"component"`
	Cmdline   string `json:"cmdline"`
	RSSKiB    int64  `json:"rss_kib"`
	PSSKiB    int64  `json:"pss_kib"`
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
	Total      CompMem            `json:"total"`
}

// Components are the node's process groups in report order.
var Components = []string{
	"kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kubelet", "containerd",
	"node service", "kube-proxy", "coredns", "metrics-server", "local-path-provisioner", "dashboard", "log-store", "network-policies", "shims", "pause",
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

// Sum fills in the snapshot's per-component and total figures.
func (m *MemSnapshot) Sum() {
	m.Components = map[string]CompMem{}
	m.Total = CompMem{}
	for _, p := range m.Processes {
		c := m.Components[p.Component]
		for _, cm := range []*CompMem{&c, &m.Total} {
			cm.Processes++
			cm.RSSMiB += float64(p.RSSKiB) / 1024
			cm.PSSMiB += float64(p.PSSKiB) / 1024
			cm.USSMiB += float64(p.USSKiB) / 1024
			cm.AnonMiB += float64(p.AnonKiB) / 1024
		}
		m.Components[p.Component] = c
	}
	for k, c := range m.Components {
		c.RSSMiB, c.PSSMiB, c.USSMiB, c.AnonMiB = round3(c.RSSMiB), round3(c.PSSMiB), round3(c.USSMiB), round3(c.AnonMiB)
		m.Components[k] = c
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
