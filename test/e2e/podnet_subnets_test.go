package e2e

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/test/netbench"
	"github.com/kubeforge/kubeforge/test/testbed"
)

// podnetFarSubnet is the second subnet, behind the router: it exists only
// inside the bed's namespaces.
var podnetFarSubnet = netip.MustParsePrefix("172.31.77.0/24")

// TestPodNetworkAcrossSubnets checks the pod network between nodes on
// different subnets: a control plane and a worker on the bed's bridge, a
// second worker on a subnet of its own behind a router namespace (no
// shared layer-2 segment). With the default backend (auto) the nodes on
// the bridge route to each other directly and to the far worker through
// the VXLAN overlay (and it to them); pods reach pods and Services across
// the router in both directions, DNS works from the far worker; ping times
// over the overlay and directly are logged; reset removes the far worker's
// VXLAN device and masquerading, and its peers' entries for it go once its
// Node is deleted.
func TestPodNetworkAcrossSubnets(t *testing.T) {
	testbed.RequireHost(t)
	if err := testbed.RequireStaticBusybox(); err != nil {
		t.Fatal(err)
	}
	tb := testbed.New(t)
	holdOnFailure(t, tb)
	cp := tb.AddNode("cp1")
	w1 := tb.AddNode("w1")
	router := tb.AddNode("router")
	far := tb.AddNode("far")
	tb.MoveBehindRouter(far, router, podnetFarSubnet)
	nodes := []*testbed.Node{cp, w1, far}
	resolvConf := netResolvConf(t, tb)
	cfg := netInitConfig(t, cp, resolvConf, "")
	begin := time.Now()
	defer func() { t.Logf("%s took %v", t.Name(), time.Since(begin).Round(time.Second)) }()
	step := stepperNet(t)

	cidrs := map[string]string{}
	step("cluster", func(t *testing.T) {
		out := netInit(t, cp, cfg)
		netJoinWorkers(t, cp, out, []*testbed.Node{w1, far})
		if got := strings.TrimSpace(netKubectl(t, cp, "get", "node", "far", "-o", `jsonpath={.status.addresses[?(@.type=="InternalIP")].address}`)); got != far.IP.String() {
			t.Fatalf("node far has InternalIP %q, want its address behind the router %s", got, far.IP)
		}
		for _, n := range nodes {
			cidrs[n.Name] = netNodeCIDR(t, cp, n.Name)
		}
	})

	// first is the first address of a pod CIDR: the next hop of the
	// overlay's route to it.
	first := func(cidr string) string { return netip.MustParsePrefix(cidr).Masked().Addr().String() }
	step("overlay-to-the-far-subnet-only", func(t *testing.T) {
		want := map[*testbed.Node][]string{
			cp:  {cidrs["w1"] + " via " + w1.IP.String(), cidrs["far"] + " via " + first(cidrs["far"])},
			w1:  {cidrs["cp1"] + " via " + cp.IP.String(), cidrs["far"] + " via " + first(cidrs["far"])},
			far: {cidrs["cp1"] + " via " + first(cidrs["cp1"]), cidrs["w1"] + " via " + first(cidrs["w1"])},
		}
		for _, n := range nodes {
			w := want[n]
			slices.Sort(w)
			pollEvery(t, time.Minute, 250*time.Millisecond, "routes of "+n.Name, func() string {
				if got := netPodRoutes(t, n); !slices.Equal(got, w) {
					return fmt.Sprintf("have %v, want %v", got, w)
				}
				return ""
			})
			link := netRun(t, n, 30*time.Second, "ip", "-d", "link", "show", "kubeforge.1")
			for _, s := range []string{"mtu 1450", "vxlan id 1 local " + n.IP.String(), "dstport 8472", "nolearning"} {
				if !strings.Contains(link, s) {
					t.Errorf("the VXLAN device of %s lacks %q:\n%s", n.Name, s, link)
				}
			}
			if cni, err := n.ReadFile("/etc/cni/net.d/10-kubeforge.conflist"); err != nil || !strings.Contains(string(cni), `"mtu": 1450`) || !strings.Contains(string(cni), `"ipMasq": false`) {
				t.Errorf("CNI configuration of %s: want mtu 1450 and no ipMasq (%v):\n%s", n.Name, err, cni)
			}
		}
		// The far node's entries on cp1: its device's MAC at its address.
		mac := strings.TrimSpace(netKubectl(t, cp, "get", "node", "far", "-o", `jsonpath={.metadata.annotations.kubeforge\.io/vxlan-mac}`))
		if fdb := netRun(t, cp, 30*time.Second, "bridge", "fdb", "show", "dev", "kubeforge.1"); mac == "" || !strings.Contains(fdb, mac+" dst "+far.IP.String()) {
			t.Errorf("cp1 has no forwarding entry %s → %s:\n%s", mac, far.IP, fdb)
		}
		if st := kf(t, far, 30*time.Second, "node", "status"); !strings.Contains(st, "over VXLAN [cp1 w1]") {
			t.Errorf("node status of far does not report its peers over VXLAN:\n%s", st)
		}
	})

	var web []netPod
	var webIP string
	step("workload", func(t *testing.T) {
		netImportImage(t, tb, nodes...)
		netKubectl(t, cp, "apply", "-f", cp.WriteConfigFile("web.yaml", netbench.ServerYAML("web", 2)))
		for _, n := range nodes {
			netKubectl(t, cp, "apply", "-f", cp.WriteConfigFile("probe-"+n.Name+".yaml", netbench.ClientPodYAML("probe-"+n.Name, n.Name)))
		}
		web = netWaitPods(t, cp, 2*time.Minute, "default", "app=web", 2)
		netWaitPods(t, cp, 2*time.Minute, "default", "app=netbench-client", 3)
		on := map[string]bool{}
		for _, p := range web {
			on[p.Spec.NodeName] = true
		}
		if !on["w1"] || !on["far"] {
			t.Fatalf("want the web pods on w1 and far, have %v", web)
		}
		webIP = netServiceIP(t, cp, "default", "web")
	})
	webOn := func(t *testing.T, node string) netPod {
		t.Helper()
		for _, p := range web {
			if p.Spec.NodeName == node {
				return p
			}
		}
		t.Fatalf("no web pod on %s", node)
		return netPod{}
	}
	probeIP := func(t *testing.T, node string) string {
		t.Helper()
		return strings.TrimSpace(netKubectl(t, cp, "get", "pod", "probe-"+node, "-o", "jsonpath={.status.podIP}"))
	}

	step("pods-across-the-router", func(t *testing.T) {
		for _, c := range []struct{ from, to string }{{"cp1", "far"}, {"w1", "far"}, {"far", "w1"}} {
			target := webOn(t, c.to)
			r := netHTTP(t, cp, "probe-"+c.from, "http://"+target.Status.PodIP+":8080/", 5)
			if b := netBodies(r); len(b) != 1 || b[0] != target.Metadata.Name {
				t.Errorf("from %s to %v: answers %v", c.from, target, b)
			}
		}
		// Pods ping pods both ways, with packets that fill the overlay's
		// MTU (1450: 1422 bytes of ICMP payload).
		for _, c := range []struct{ from, to string }{{"far", "cp1"}, {"cp1", "far"}} {
			out, err := netExec(cp, 30*time.Second, "probe-"+c.from, "busybox", "ping", "-c", "2", "-W", "2", "-s", "1422", probeIP(t, c.to))
			if err != nil || !strings.Contains(out, "2 packets received") {
				t.Errorf("ping from probe-%s to probe-%s: %v\n%s", c.from, c.to, err, out)
			}
		}
		// A pod on the far node reaches a node on the bridge (masqueraded:
		// the node has no route back to the pod network through the router).
		if out, err := netExec(cp, 30*time.Second, "probe-far", "busybox", "ping", "-c", "2", "-W", "2", cp.IP.String()); err != nil || !strings.Contains(out, "2 packets received") {
			t.Errorf("ping from probe-far to node cp1: %v\n%s", err, out)
		}
	})

	step("services-and-dns-from-the-far-node", func(t *testing.T) {
		for _, probe := range []string{"probe-far", "probe-cp1"} {
			r := netHTTP(t, cp, probe, "http://"+webIP+"/", 30)
			if len(r.Bodies) != 2 {
				t.Errorf("from %s: want answers from both web pods (w1 and far), got %v", probe, r.Bodies)
			}
		}
		r := netHTTP(t, cp, "probe-far", "http://web/", 10)
		if len(r.Failures) > 0 {
			t.Errorf("from probe-far by name: %v", r.Failures)
		}
		netLookup(t, cp, "probe-far", "kubernetes.default.svc.cluster.local", netAPISvcIP)
		netLookup(t, cp, "probe-far", "web.default.svc.cluster.local", webIP)
	})

	step("ping-times", func(t *testing.T) {
		// Round trips from a pod on cp1: to a pod on w1 (host-gw, one
		// bridge), to a pod on far (VXLAN through the router), and to the
		// far node itself (the router without the overlay).
		rtt := func(target string) float64 {
			out, err := netExec(cp, time.Minute, "probe-cp1", "busybox", "ping", "-c", "20", "-i", "0.2", "-q", target)
			m := regexp.MustCompile(`min/avg/max = [0-9.]+/([0-9.]+)/`).FindStringSubmatch(out)
			if err != nil || m == nil {
				t.Errorf("ping %s: %v\n%s", target, err, out)
				return 0
			}
			v, _ := strconv.ParseFloat(m[1], 64)
			return v
		}
		direct, overlay, routed := rtt(probeIP(t, "w1")), rtt(probeIP(t, "far")), rtt(far.IP.String())
		netLogBench(t, fmt.Sprintf("BENCH podnet.ping_hostgw_ms=%.3f", direct), fmt.Sprintf("BENCH podnet.ping_vxlan_routed_ms=%.3f", overlay),
			fmt.Sprintf("BENCH podnet.ping_routed_node_ms=%.3f", routed))
	})

	step("reset-removes-the-overlay", func(t *testing.T) {
		kf(t, far, 2*time.Minute, "reset", "--force")
		netCheckNetworkClean(t, far)
		netKubectl(t, cp, "delete", "node", "far", "--timeout=60s")
		for _, n := range []*testbed.Node{cp, w1} {
			pollEvery(t, 30*time.Second, 250*time.Millisecond, "entries for far gone from "+n.Name, func() string {
				for _, r := range netPodRoutes(t, n) {
					if strings.HasPrefix(r, cidrs["far"]+" ") {
						return "route still there: " + r
					}
				}
				if fdb := netRun(t, n, 30*time.Second, "bridge", "fdb", "show", "dev", "kubeforge.1"); strings.Contains(fdb, far.IP.String()) {
					return "forwarding entry still there:\n" + fdb
				}
				if neigh := netRun(t, n, 30*time.Second, "ip", "neigh", "show", "dev", "kubeforge.1"); strings.Contains(neigh, first(cidrs["far"])+" ") {
					return "neighbour entry still there:\n" + neigh
				}
				return ""
			})
		}
	})
}
