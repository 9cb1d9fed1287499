package teardown

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"strings"
)

// Step is one thing to tear down that is there: what it does (for the
// report: "delete the pod network bridge kubeforge0") and how.
type Step struct {
	What string
	Run  func() error
}

// Network lists what the pod network, kube-proxy, the kubelet and the
// network policy controller left in this network namespace: the pod
// bridge, the routes the pod network agent made to other nodes' pods
// (protocol 75), the nftables tables kube-proxy and the policy controller
// (policyTables, family inet) made, and the iptables and ip6tables chains
// named KUBE-* and CNI-* with the rules in them or jumping to them.
func Network(bridge, vxlan, podNetTable string, policyTables []string) []Step {
	var steps []Step
	// Ask the kernel (netlink), not /sys/class/net: a node started with
	// `nsenter --net` keeps the host's /sys, which lists the host's links.
	// The VXLAN device's routes, neighbour and FDB entries go with it.
	for _, l := range [][2]string{{bridge, "the pod network bridge " + bridge}, {vxlan, "the pod network's VXLAN device " + vxlan}} {
		if _, err := net.InterfaceByName(l[0]); err == nil {
			steps = append(steps, Step{"delete " + l[1], func() error {
				return run("ip", "link", "delete", l[0])
			}})
		}
	}
	for _, fam := range []string{"-4", "-6"} {
		if out, err := exec.Command("ip", fam, "route", "show", "proto", "75").Output(); err == nil && len(bytes.TrimSpace(out)) > 0 {
			steps = append(steps, Step{"remove the routes to other nodes' pods (" + fam + ")", func() error {
				return run("ip", fam, "route", "flush", "proto", "75")
			}})
		}
	}
	if _, err := exec.LookPath("nft"); err == nil {
		// The pod network agent's masquerading, then kube-proxy's.
		tables := [][2]string{{"ip", podNetTable}, {"ip6", podNetTable}, {"ip", "kube-proxy"}, {"ip6", "kube-proxy"}}
		// The network policy controller's tables (it removes them when it
		// stops; a killed one leaves them, holding new connections of the
		// pods a policy selects in a queue nobody reads).
		for _, t := range policyTables {
			tables = append(tables, [2]string{"inet", t})
		}
		for _, t := range tables {
			if exec.Command("nft", "list", "table", t[0], t[1]).Run() == nil {
				steps = append(steps, Step{"delete the nftables table " + t[0] + " " + t[1], func() error {
					return run("nft", "delete", "table", t[0], t[1])
				}})
			}
		}
	}
	for _, tool := range []string{"iptables", "ip6tables"} {
		if s, ok := iptablesStep(tool); ok {
			steps = append(steps, s)
		}
	}
	return steps
}

func iptablesStep(tool string) (Step, bool) {
	save, err := exec.LookPath(tool + "-save")
	if err != nil {
		return Step{}, false
	}
	out, err := exec.Command(save).Output()
	if err != nil {
		return Step{}, false // no such table family (e.g. IPv6 disabled)
	}
	filtered, removed := FilterIptablesRules(string(out))
	if removed == 0 {
		return Step{}, false
	}
	return Step{fmt.Sprintf("remove %d %s rules and chains of kube-proxy, the kubelet and CNI", removed, tool), func() error {
		cmd := exec.Command(tool+"-restore", "-w", "5")
		cmd.Stdin = strings.NewReader(filtered)
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s-restore: %v: %s", tool, err, bytes.TrimSpace(b))
		}
		return nil
	}}, true
}

// FilterIptablesRules drops, from iptables-save output, the chains named
// KUBE-* or CNI-* and every rule in them or jumping to them, and reports
// how many lines it dropped. The result ends in one newline.
func FilterIptablesRules(save string) (string, int) {
	ours := func(s string) bool { return strings.HasPrefix(s, "KUBE-") || strings.HasPrefix(s, "CNI-") }
	var b strings.Builder
	removed := 0
	for _, line := range strings.Split(save, "\n") {
		f := strings.Fields(line)
		drop := false
		switch {
		case strings.HasPrefix(line, ":") && len(f) > 0:
			drop = ours(strings.TrimPrefix(f[0], ":"))
		case strings.HasPrefix(line, "-A ") && len(f) > 1:
			drop = ours(f[1])
			for i := 2; i+1 < len(f) && !drop; i++ {
				if (f[i] == "-j" || f[i] == "-g") && ours(f[i+1]) {
					drop = true
				}
			}
		}
		if drop {
			removed++
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return strings.TrimRight(b.String(), "\n") + "\n", removed
}

func run(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}
