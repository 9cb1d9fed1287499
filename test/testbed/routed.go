package testbed

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"time"
)

// MoveBehindRouter puts node n on a subnet of its own, routed (no shared
// layer-2 segment) to the bed's bridge through router, another node of the
// bed that only forwards (it joins no cluster): n's veth leaves the bridge
// for router's network namespace, n gets subnet's second address (router
// the first) and a route to the bed's subnet through router, and every
// other node a route to subnet through router's address on the bed.
// subnet (a /24) exists only inside the bed's namespaces, so it needs no
// room on the host; it must not overlap the bed's, pod or Service networks.
// n.IP becomes its new address. Call it before n joins a cluster, after
// every other node was added (nodes added later get no route to subnet).
// The test host itself has no route to subnet. Nothing needs undoing: the
// veth goes with n's namespace.
func (tb *Testbed) MoveBehindRouter(n, router *Node, subnet netip.Prefix) {
	t := tb.t
	t.Helper()
	subnet = subnet.Masked()
	if subnet.Bits() != 24 || !subnet.Addr().Is4() || subnet.Overlaps(tb.Subnet) {
		t.Fatalf("testbed: MoveBehindRouter: subnet %s: want an IPv4 /24 apart from the bed's %s", subnet, tb.Subnet)
	}
	gw := subnet.Addr().Next()
	addr := gw.Next()
	host := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("testbed: MoveBehindRouter: %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	// n's veth: its host end becomes the router's leg on the new subnet.
	host("ip", "link", "set", n.HostVeth, "nomaster")
	host("ip", "link", "set", n.HostVeth, "netns", router.NetNS)
	host("ip", "-n", router.NetNS, "addr", "add", fmt.Sprintf("%s/%d", gw, subnet.Bits()), "dev", n.HostVeth)
	host("ip", "-n", router.NetNS, "link", "set", n.HostVeth, "up")
	host("ip", "-n", n.NetNS, "addr", "flush", "dev", "eth0")
	host("ip", "-n", n.NetNS, "addr", "add", fmt.Sprintf("%s/%d", addr, subnet.Bits()), "dev", "eth0")
	host("ip", "-n", n.NetNS, "route", "add", tb.Subnet.String(), "via", gw.String())
	for _, o := range tb.Nodes() {
		if o != n && o != router {
			host("ip", "-n", o.NetNS, "route", "add", subnet.String(), "via", router.IP.String())
		}
	}
	t.Logf("testbed %s: node %s moved to %s behind router %s (%s on the bed, %s on %s)",
		tb.ID, n.Name, addr, router.Name, router.IP, gw, subnet)
	n.IP = addr
}
