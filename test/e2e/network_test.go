package e2e

import (
	"context"
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

// netLatencyRequests bounds the latency measurement.
const netLatencyRequests = 200

// netNodePortYAML exposes the web pods on a NodePort.
const netNodePortYAML = `apiVersion: v1
kind: Service
metadata: {name: web-np, namespace: default}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
`

// TestNetworkSingleNode checks the pod network, Services and DNS on one
// node, with kube-proxy in the mode kubeforge picks (nftables here).
func TestNetworkSingleNode(t *testing.T) { netSingleNode(t, "") }

// TestNetworkIptablesMode is the same with kube-proxy forced into iptables
// mode by a KubeProxyConfiguration in --config.
func TestNetworkIptablesMode(t *testing.T) { netSingleNode(t, "iptables") }

func netSingleNode(t *testing.T, proxyMode string) {
	testbed.RequireHost(t)
	if err := testbed.RequireStaticBusybox(); err != nil {
		t.Fatal(err)
	}
	tb := testbed.New(t)
	n := tb.AddNode("net1")
	resolvConf := netResolvConf(t, tb)
	cfg := netInitConfig(t, n, resolvConf, proxyMode)
	wantMode := proxyMode
	if wantMode == "" {
		wantMode = "nftables"
	}
	begin := time.Now()
	defer func() { t.Logf("%s took %v", t.Name(), time.Since(begin).Round(time.Second)) }()
	step := stepperNet(t)

	var initOut string
	step("init-coredns-ready", func(t *testing.T) {
		start := time.Now()
		initOut = kf(t, n, 3*time.Minute, "init", "--config", cfg, "--advertise-address", n.IP.String(), "--node-name", n.Name, "--single-node")
		initTook := time.Since(start)
		if !strings.Contains(initOut, "kube-proxy ("+wantMode+" mode)") {
			t.Errorf("init did not install kube-proxy in %s mode:\n%s", wantMode, initOut)
		}
		dns := netWaitPods(t, n, 90*time.Second, "kube-system", "k8s-app=kube-dns", 2)
		took := time.Since(start)
		podReady := max(dns[0].readyAfter(), dns[1].readyAfter())
		netLogBench(t, fmt.Sprintf("BENCH coredns.ready_s=%.3f", took.Seconds()), fmt.Sprintf("BENCH init.wall_s=%.3f", initTook.Seconds()),
			fmt.Sprintf("BENCH coredns.pod_ready_s=%.0f", podReady.Seconds()))
		// CoreDNS needs the API only (not kube-proxy's rules, which come at
		// the same time): its pods are Ready seconds after they are made.
		if podReady > 30*time.Second {
			t.Errorf("CoreDNS pods became Ready %v after they were created", podReady)
		}
		netWaitPods(t, n, 60*time.Second, "kube-system", "k8s-app=kube-proxy", 1)
		t.Logf("init started %s; CoreDNS:\n%s", start.UTC().Format("15:04:05.000"), netKubectl(t, n, "get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-dns", "-o",
			`jsonpath={range .items[*]}{.metadata.name} created={.metadata.creationTimestamp} started={.status.containerStatuses[0].state.running.startedAt} {range .status.conditions[*]}{.type}={.lastTransitionTime} {end}{"\n"}{end}`))
	})

	step("dns-upstream-stays-in-test-network", func(t *testing.T) {
		corefile := netKubectl(t, n, "get", "configmap", "-n", "kube-system", "coredns", "-o", "jsonpath={.data.Corefile}")
		for _, want := range []string{"forward . /etc/resolv.conf", "loop", "kubernetes cluster.local in-addr.arpa ip6.arpa"} {
			if !strings.Contains(corefile, want) {
				t.Errorf("the Corefile lacks %q:\n%s", want, corefile)
			}
		}
		// Every resolv.conf the node made for a pod names only the test
		// network's address or the cluster's DNS Service; CoreDNS's ones
		// (dnsPolicy Default) name the test address alone.
		confs := netResolvConfs(n)
		upstream := 0
		for file, ns := range confs {
			if len(ns) == 0 {
				t.Errorf("%s has no nameserver", file)
			}
			for _, s := range ns {
				switch s {
				case tb.Gateway.String():
					upstream++
				case netDNSSvcIP:
				default:
					t.Errorf("%s names nameserver %s, outside the test network", file, s)
				}
			}
		}
		if upstream < 2 {
			t.Errorf("want the 2 CoreDNS pods' resolv.conf to name %s, found it in %d of %v", tb.Gateway, upstream, confs)
		}
	})

	var webIP, npPort string
	step("workload", func(t *testing.T) {
		netImportImage(t, tb, n)
		netKubectl(t, n, "apply", "-f", n.WriteConfigFile("web.yaml", netbench.ServerYAML("web", 2)))
		netKubectl(t, n, "apply", "-f", n.WriteConfigFile("web-np.yaml", netNodePortYAML))
		netKubectl(t, n, "apply", "-f", n.WriteConfigFile("probe.yaml", netbench.ClientPodYAML("probe", "")))
		web := netWaitPods(t, n, 90*time.Second, "default", "app=web", 2)
		netWaitPods(t, n, 60*time.Second, "default", "app=netbench-client", 1)
		for _, p := range web {
			if a, err := netip.ParseAddr(p.Status.PodIP); err != nil || !netip.MustParsePrefix("10.244.0.0/24").Contains(a) {
				t.Errorf("pod %v is not in the node's pod CIDR 10.244.0.0/24", p)
			}
		}
		webIP = netServiceIP(t, n, "default", "web")
		npPort = strings.TrimSpace(netKubectl(t, n, "get", "service", "web-np", "-o", "jsonpath={.spec.ports[0].nodePort}"))
		if _, err := strconv.Atoi(npPort); err != nil {
			t.Fatalf("web-np has no node port: %q", npPort)
		}
	})

	step("dns", func(t *testing.T) {
		var worst time.Duration
		for _, c := range []struct{ name, want string }{
			{"kubernetes.default.svc.cluster.local", netAPISvcIP},
			{"kubernetes.default", netAPISvcIP},
			{"web", webIP},
			{"web.default.svc.cluster.local", webIP},
			{"kube-dns.kube-system", netDNSSvcIP},
		} {
			worst = max(worst, netLookup(t, n, "probe", c.name, c.want))
		}
		t.Logf("slowest cluster lookup: %v", worst)
		// busybox's own resolver (nslookup) agrees.
		out, err := netExec(n, 30*time.Second, "probe", "busybox", "nslookup", "kubernetes.default.svc.cluster.local")
		if err != nil || !regexp.MustCompile(`Address:\s+`+regexp.QuoteMeta(netAPISvcIP)+`\b`).MatchString(out) {
			t.Errorf("busybox nslookup kubernetes.default.svc.cluster.local: %v\n%s", err, out)
		}
		out, err = netExec(n, 30*time.Second, "probe", "busybox", "nslookup", "web.default.svc.cluster.local")
		if err != nil || !strings.Contains(out, webIP) {
			t.Errorf("busybox nslookup web.default.svc.cluster.local: %v\n%s", err, out)
		}
		// A name that does not exist in the cluster domain: NXDOMAIN.
		out, err = netExec(n, 30*time.Second, "probe", netbench.QueryCommand("nosuchservice.default.svc.cluster.local")...)
		if err != nil || netbench.Fields(strings.TrimSpace(out))["rcode"] != "NameError" {
			t.Errorf("query for a missing Service: want NameError (NXDOMAIN): %v\n%s", err, out)
		}
	})

	step("dns-outside-fails-cleanly", func(t *testing.T) {
		restartsBefore := netRestarts(t, n, "kube-system", "k8s-app=kube-dns")
		// Names outside the cluster go to the (dead) upstream: the answer
		// must be SERVFAIL (or nothing), quickly, and CoreDNS stays healthy.
		for _, name := range []string{"example.com", "kubeforge-e2e.invalid", "www.example.org"} {
			start := time.Now()
			out, err := netExec(n, 40*time.Second, "probe", netbench.QueryCommand(name)...)
			took := time.Since(start)
			rcode := netbench.Fields(strings.TrimSpace(out))["rcode"]
			if err != nil || (rcode != "ServerFailure" && rcode != "timeout") {
				t.Errorf("query %s: want SERVFAIL or no answer, got %q (%v):\n%s", name, rcode, err, out)
			}
			if took > 15*time.Second {
				t.Errorf("query %s took %v", name, took)
			}
			t.Logf("query %s: %s", name, strings.TrimSpace(out))
		}
		// The pod's own resolver gives up with an error, in bounded time.
		start := time.Now()
		out, err := netExec(n, 60*time.Second, "probe", netbench.LookupCommand("example.com")...)
		if err == nil {
			t.Errorf("example.com resolved in the test network:\n%s", out)
		}
		t.Logf("lookup example.com failed after %v: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(out))
		// Cluster names still resolve at once.
		if d := netLookup(t, n, "probe", "kubernetes.default.svc.cluster.local", netAPISvcIP); d > 2*time.Second {
			t.Errorf("a cluster lookup after the failed ones took %v", d)
		}
		netWaitPods(t, n, 10*time.Second, "kube-system", "k8s-app=kube-dns", 2)
		if after := netRestarts(t, n, "kube-system", "k8s-app=kube-dns"); after != restartsBefore {
			t.Errorf("CoreDNS restarted: %d restarts before, %d after", restartsBefore, after)
		}
		logs := netKubectl(t, n, "logs", "-n", "kube-system", "-l", "k8s-app=kube-dns", "--tail=-1")
		if strings.Contains(logs, "Loop (") || strings.Contains(logs, "plugin/loop") {
			t.Errorf("CoreDNS detected a forwarding loop:\n%s", netTail(logs, 30))
		}
	})

	step("clusterip-from-pod", func(t *testing.T) {
		for _, url := range []string{"http://web/", "http://" + webIP + "/", "http://web.default.svc.cluster.local/"} {
			r := netHTTP(t, n, "probe", url, 30)
			if len(r.Bodies) != 2 {
				t.Errorf("%s: want answers from both web pods, got %v", url, r.Bodies)
			}
		}
	})

	step("nodeport-from-node", func(t *testing.T) {
		url := "http://" + n.IP.String() + ":" + npPort + "/"
		r, err := netHTTPFromNode(tb, n, url, 20)
		if err != nil {
			t.Fatalf("NodePort %s from the node: %v (failures %v)", url, err, r.Failures)
		}
		if len(r.Bodies) != 2 {
			t.Errorf("NodePort %s from the node: want answers from both web pods, got %v", url, r.Bodies)
		}
		// And from a pod, to the node's address.
		r = netHTTP(t, n, "probe", url, 10)
		t.Logf("NodePort from a pod: %v", r.Bodies)
	})

	step("clusterip-from-node", func(t *testing.T) {
		// A real node reaches ClusterIPs through its default route (kube-proxy
		// rewrites the destination after the route lookup); the test node has
		// none, so it gets a route for the Service range alone, on its link
		// into the test network.
		netRun(t, n, 30*time.Second, "ip", "route", "add", netSvcCIDR, "dev", "eth0")
		r, err := netHTTPFromNode(tb, n, "http://"+webIP+"/", 20)
		if err != nil {
			t.Fatalf("ClusterIP %s from the node: %v (failures %v)", webIP, err, r.Failures)
		}
		if len(r.Bodies) != 2 {
			t.Errorf("ClusterIP %s from the node: want answers from both web pods, got %v", webIP, r.Bodies)
		}
	})

	step("proxy-rules", func(t *testing.T) {
		nft, nftErr := n.Run(context.Background(), "nft", "list", "ruleset")
		ipt := netRun(t, n, 30*time.Second, "iptables-save", "-t", "nat")
		switch wantMode {
		case "nftables":
			if nftErr != nil || !strings.Contains(nft, "table ip kube-proxy") || !strings.Contains(nft, webIP) {
				t.Errorf("nft list ruleset lacks kube-proxy's table with %s (%v):\n%s", webIP, nftErr, netTail(nft, 40))
			}
			if strings.Contains(ipt, "KUBE-SVC-") {
				t.Errorf("kube-proxy in nftables mode left iptables Service chains:\n%s", ipt)
			}
		case "iptables":
			if !strings.Contains(ipt, "KUBE-SERVICES") || !strings.Contains(ipt, webIP) {
				t.Errorf("iptables-save -t nat lacks kube-proxy's rules for %s:\n%s", webIP, netTail(ipt, 40))
			}
			if strings.Contains(nft, "table ip kube-proxy") {
				t.Errorf("kube-proxy in iptables mode made an nftables table:\n%s", netTail(nft, 40))
			}
		}
		logs := netKubectl(t, n, "logs", "-n", "kube-system", "-l", "k8s-app=kube-proxy", "--tail=-1")
		if !strings.Contains(strings.ToLower(logs), wantMode) {
			t.Errorf("kube-proxy's log does not mention %s mode:\n%s", wantMode, netTail(logs, 30))
		}
	})

	step("service-latency", func(t *testing.T) {
		r := netHTTP(t, n, "probe", "http://"+webIP+"/", netLatencyRequests)
		prefix := "service"
		if proxyMode != "" {
			prefix = "service_" + proxyMode
		}
		netLogBench(t, r.BenchLines(prefix)...)
		if p99 := r.Percentile(0.99); p99 > time.Second {
			t.Errorf("Service p99 latency %v", p99)
		}
	})

	step("addons-idempotent", func(t *testing.T) {
		objects := []string{"deployment/coredns", "daemonset/kube-proxy", "configmap/coredns", "configmap/kube-proxy", "service/kube-dns", "serviceaccount/coredns"}
		versions := func() map[string]string {
			m := map[string]string{}
			for _, o := range objects {
				m[o] = strings.TrimSpace(netKubectl(t, n, "get", "-n", "kube-system", o, "-o", "jsonpath={.metadata.resourceVersion}"))
			}
			return m
		}
		dnsBefore, _ := netPods(n, "kube-system", "k8s-app=kube-dns")
		before := versions()
		out := kf(t, n, 2*time.Minute, "init", "phase", "addon", "all", "--config", cfg)
		if regexp.MustCompile(`(?m)\b(Created|Updated) `).MatchString(out) {
			t.Errorf("a second `init phase addon all` changed objects:\n%s", out)
		}
		for _, want := range []string{"Using existing Deployment kube-system/coredns", "Using existing DaemonSet kube-system/kube-proxy",
			"Essential addon CoreDNS is up to date: nothing changed", "Essential addon kube-proxy (" + wantMode + " mode) is up to date: nothing changed"} {
			if !strings.Contains(out, want) {
				t.Errorf("a second `init phase addon all` does not say %q:\n%s", want, out)
			}
		}
		t.Logf("second addon all:\n%s", out)
		if after := versions(); !maps2Equal(before, after) {
			t.Errorf("objects changed: before %v, after %v", before, after)
		}
		dnsAfter := netWaitPods(t, n, 30*time.Second, "kube-system", "k8s-app=kube-dns", 2)
		for i := range dnsAfter {
			if i >= len(dnsBefore) || dnsAfter[i].Metadata.UID != dnsBefore[i].Metadata.UID {
				t.Errorf("CoreDNS pods replaced: %v → %v", dnsBefore, dnsAfter)
				break
			}
		}
	})

	step("reset-cleans-network", func(t *testing.T) {
		kf(t, n, 2*time.Minute, "reset", "--force")
		netCheckNetworkClean(t, n)
	})
}

// netCheckNetworkClean checks that nothing of the pod network, kube-proxy
// or the CNI plugins is left in n.
func netCheckNetworkClean(t *testing.T, n *testbed.Node) {
	t.Helper()
	if out := netRun(t, n, 30*time.Second, "ip", "-o", "link", "show"); strings.Contains(out, "kubeforge0") || strings.Contains(out, "kubeforge.1") || strings.Contains(out, "veth") {
		t.Errorf("links left after reset:\n%s", out)
	}
	if routes := netPodRoutes(t, n); len(routes) > 0 {
		t.Errorf("pod network routes left after reset: %v", routes)
	}
	if out := netRun(t, n, 30*time.Second, "ip", "-4", "route", "show"); strings.Contains(out, "10.244.") {
		t.Errorf("routes to the pod network left after reset:\n%s", out)
	}
	if out, err := n.Run(context.Background(), "nft", "list", "ruleset"); err == nil && (strings.Contains(out, "kube-proxy") || strings.Contains(out, "kubeforge-podnet") || strings.Contains(out, "CNI-") || strings.Contains(out, "KUBE-")) {
		t.Errorf("nftables rules left after reset:\n%s", out)
	}
	for _, tool := range []string{"iptables-save", "ip6tables-save"} {
		out := netRun(t, n, 30*time.Second, tool)
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "KUBE-") || strings.Contains(line, "CNI-") || strings.Contains(line, "10.244.") {
				t.Errorf("%s after reset: %s", tool, line)
			}
		}
	}
	for _, p := range []string{"/var/lib/cni/networks/kubeforge", "/etc/cni/net.d/10-kubeforge.conflist", "/var/lib/kube-proxy"} {
		if exists(n.Path(p)) {
			t.Errorf("%s is left after reset", p)
		}
	}
}

// netRestarts sums the restart counts of the matching pods' containers.
func netRestarts(t *testing.T, n *testbed.Node, ns, selector string) int {
	t.Helper()
	pods, err := netPods(n, ns, selector)
	if err != nil {
		t.Fatal(err)
	}
	sum := 0
	for _, p := range pods {
		for _, cs := range p.Status.ContainerStatuses {
			sum += cs.RestartCount
		}
	}
	return sum
}

func maps2Equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// stepperNet runs steps as subtests, stops at the first failure and logs
// each step's time.
func stepperNet(t *testing.T) func(name string, f func(t *testing.T)) {
	return func(name string, f func(t *testing.T)) {
		t.Helper()
		start := time.Now()
		ok := t.Run(name, f)
		t.Logf("step %s: %v", name, time.Since(start).Round(100*time.Millisecond))
		if !ok {
			t.FailNow()
		}
	}
}

// TestNetworkMultiNode checks the pod network across nodes: a control
// plane and two workers, pod-to-pod traffic between nodes, a Service whose
// endpoints are on other nodes, DNS from a worker; then a worker is reset
// and deleted, and the Services keep working with the endpoints left.
func TestNetworkMultiNode(t *testing.T) {
	testbed.RequireHost(t)
	if err := testbed.RequireStaticBusybox(); err != nil {
		t.Fatal(err)
	}
	tb := testbed.New(t)
	cp := tb.AddNode("cp1")
	w1 := tb.AddNode("w1")
	w2 := tb.AddNode("w2")
	nodes := []*testbed.Node{cp, w1, w2}
	resolvConf := netResolvConf(t, tb)
	cfg := netInitConfig(t, cp, resolvConf, "")
	begin := time.Now()
	defer func() { t.Logf("%s took %v", t.Name(), time.Since(begin).Round(time.Second)) }()
	step := stepperNet(t)

	cidrs := map[string]string{}
	step("cluster", func(t *testing.T) {
		out := netInit(t, cp, cfg)
		netJoinWorkers(t, cp, out, []*testbed.Node{w1, w2})
		for _, n := range nodes {
			cidrs[n.Name] = netNodeCIDR(t, cp, n.Name)
		}
		if len(map[string]bool{cidrs["cp1"]: true, cidrs["w1"]: true, cidrs["w2"]: true}) != 3 {
			t.Fatalf("pod CIDRs not distinct: %v", cidrs)
		}
		netWaitPods(t, cp, 2*time.Minute, "kube-system", "k8s-app=kube-proxy", 3)
		netWaitPods(t, cp, 2*time.Minute, "kube-system", "k8s-app=kube-dns", 2)
	})

	step("routes", func(t *testing.T) {
		for _, n := range nodes {
			var want []string
			for _, o := range nodes {
				if o != n {
					want = append(want, cidrs[o.Name]+" via "+o.IP.String())
				}
			}
			slices.Sort(want)
			pollEvery(t, 30*time.Second, 250*time.Millisecond, "routes of "+n.Name, func() string {
				if got := netPodRoutes(t, n); !slices.Equal(got, want) {
					return fmt.Sprintf("have %v, want %v", got, want)
				}
				return ""
			})
		}
		// A route removed behind the agent's back comes back.
		netRun(t, w1, 30*time.Second, "ip", "route", "del", cidrs["w2"])
		took := pollEvery(t, 60*time.Second, 250*time.Millisecond, "route of w1 to w2's pods restored", func() string {
			for _, r := range netPodRoutes(t, w1) {
				if r == cidrs["w2"]+" via "+w2.IP.String() {
					return ""
				}
			}
			return "not yet"
		})
		t.Logf("the deleted route came back after %v", took.Round(100*time.Millisecond))
	})

	// The routes above came from the node directory: nodes may not list
	// Nodes (only their own), nor read other ConfigMaps of kube-system.
	step("node-credentials", func(t *testing.T) {
		checkNodeCredentials(t, w1, cp.Name, w1.Name, w2.Name)
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
		probes := netWaitPods(t, cp, 2*time.Minute, "default", "app=netbench-client", 3)
		on := map[string]bool{}
		for _, p := range web {
			on[p.Spec.NodeName] = true
		}
		if !on["w1"] || !on["w2"] {
			t.Fatalf("want the web pods on w1 and w2, have %v", web)
		}
		for _, p := range append(web, probes...) {
			cidr := netip.MustParsePrefix(cidrs[p.Spec.NodeName])
			if a, err := netip.ParseAddr(p.Status.PodIP); err != nil || !cidr.Contains(a) {
				t.Errorf("pod %v is not in its node's pod CIDR %s", p, cidr)
			}
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

	step("pod-to-pod-across-nodes", func(t *testing.T) {
		for _, c := range []struct{ from, to string }{{"cp1", "w1"}, {"cp1", "w2"}, {"w1", "w2"}, {"w2", "w1"}} {
			target := webOn(t, c.to)
			r := netHTTP(t, cp, "probe-"+c.from, "http://"+target.Status.PodIP+":8080/", 5)
			if b := netBodies(r); len(b) != 1 || b[0] != target.Metadata.Name {
				t.Errorf("from %s to %v: answers %v", c.from, target, b)
			}
			out, err := netExec(cp, 30*time.Second, "probe-"+c.from, "busybox", "ping", "-c", "2", "-W", "2", target.Status.PodIP)
			if err != nil || !strings.Contains(out, "2 packets received") {
				t.Errorf("ping from probe-%s to %v: %v\n%s", c.from, target, err, out)
			}
		}
		// A node reaches another node's pods, and a pod another node.
		r, err := netHTTPFromNode(tb, cp, "http://"+webOn(t, "w2").Status.PodIP+":8080/", 3)
		if b := netBodies(r); err != nil || len(b) != 1 || b[0] != webOn(t, "w2").Metadata.Name {
			t.Errorf("node cp1 → web pod on w2: %v %v", b, err)
		}
		if out, err := netExec(cp, 30*time.Second, "probe-w1", "busybox", "ping", "-c", "2", "-W", "2", cp.IP.String()); err != nil || !strings.Contains(out, "2 packets received") {
			t.Errorf("ping from probe-w1 to node cp1: %v\n%s", err, out)
		}
	})

	step("service-endpoints-on-other-nodes", func(t *testing.T) {
		// From cp1, both endpoints are on other nodes.
		r := netHTTP(t, cp, "probe-cp1", "http://web/", 30)
		if len(r.Bodies) != 2 {
			t.Errorf("from cp1: want answers from both web pods, got %v", r.Bodies)
		}
		r = netHTTP(t, cp, "probe-w1", "http://"+webIP+"/", 30)
		if len(r.Bodies) != 2 {
			t.Errorf("from w1: want answers from both web pods, got %v", r.Bodies)
		}
		netLogBench(t, r.BenchLines("service_multinode")...)
		// NodePort on a node without an endpoint, from another node.
		netKubectl(t, cp, "apply", "-f", cp.WriteConfigFile("web-np.yaml", netNodePortYAML))
		port := strings.TrimSpace(netKubectl(t, cp, "get", "service", "web-np", "-o", "jsonpath={.spec.ports[0].nodePort}"))
		url := "http://" + cp.IP.String() + ":" + port + "/"
		pollEvery(t, 30*time.Second, 250*time.Millisecond, "NodePort of cp1 from node w1", func() string {
			r, err := netHTTPFromNode(tb, w1, url, 20)
			if err != nil {
				return err.Error()
			}
			if len(r.Bodies) < 2 {
				return fmt.Sprintf("answers %v", r.Bodies)
			}
			return ""
		})
	})

	step("dns-from-workers", func(t *testing.T) {
		dns, _ := netPods(cp, "kube-system", "k8s-app=kube-dns")
		t.Logf("CoreDNS pods: %v", dns)
		for _, w := range []string{"w1", "w2"} {
			netLookup(t, cp, "probe-"+w, "kubernetes.default.svc.cluster.local", netAPISvcIP)
			netLookup(t, cp, "probe-"+w, "web", webIP)
			netLookup(t, cp, "probe-"+w, "web.default.svc.cluster.local", webIP)
		}
	})

	step("worker-leaves", func(t *testing.T) {
		gone := webOn(t, "w2")
		kf(t, w2, 2*time.Minute, "reset", "--force")
		netCheckNetworkClean(t, w2)
		netKubectl(t, cp, "delete", "node", "w2", "--timeout=60s")
		start := time.Now()
		// The routes to w2's pods go from the nodes that remain.
		for _, n := range []*testbed.Node{cp, w1} {
			pollEvery(t, 30*time.Second, 250*time.Millisecond, "route to w2's pods gone from "+n.Name, func() string {
				for _, r := range netPodRoutes(t, n) {
					if strings.HasPrefix(r, cidrs["w2"]+" ") || strings.HasSuffix(r, " "+w2.IP.String()) {
						return "still there: " + r
					}
				}
				return ""
			})
		}
		t.Logf("routes to w2's pods gone %v after the node was deleted", time.Since(start).Round(100*time.Millisecond))
		// Until the pod GC deletes w2's pod, the Service still lists it:
		// requests sent there fail, and must fail fast (no route any more).
		out, _ := netExec(cp, 2*time.Minute, "probe-cp1", netbench.ClientPath, "http", "-n", "20", "-timeout", "3s", "http://web/")
		if r, err := netbench.ParseHTTP(out); err == nil {
			t.Logf("meanwhile, %d of 20 requests to the Service failed (answers %v); p99 of the rest %v", len(r.Failures), r.Bodies, r.Percentile(0.99))
		}
		// The web pod of w2 goes (pod GC), its replacement comes up on w1;
		// meanwhile and after, the Service answers from the pods left.
		took := pollEvery(t, 3*time.Minute, time.Second, "the Service's endpoints without the pod of w2", func() string {
			out, err := cp.Kubectl("get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o", "jsonpath={.items[*].endpoints[*].addresses[0]}")
			if err != nil {
				return err.Error()
			}
			if strings.Contains(" "+out+" ", " "+gone.Status.PodIP+" ") {
				return "endpoints still list " + gone.Status.PodIP
			}
			return ""
		})
		t.Logf("the Service dropped the endpoint on w2 %v after the node was deleted", took.Round(time.Second))
		pods := netWaitPods(t, cp, 2*time.Minute, "default", "app=web", 2)
		for _, p := range pods {
			if p.Spec.NodeName == "w2" {
				t.Errorf("a web pod is still on the removed node: %v", p)
			}
		}
		var want []string
		for _, p := range pods {
			want = append(want, p.Metadata.Name)
		}
		slices.Sort(want)
		for _, probe := range []string{"probe-cp1", "probe-w1"} {
			// Every request succeeds; the new pod joins the answers once
			// kube-proxy has its endpoint.
			pollEvery(t, 30*time.Second, 500*time.Millisecond, "answers from "+probe+" after w2 left", func() string {
				if got := netBodies(netHTTP(t, cp, probe, "http://web/", 20)); !slices.Equal(got, want) {
					return fmt.Sprintf("answers %v, want %v", got, want)
				}
				return ""
			})
		}
		netLookup(t, cp, "probe-w1", "web.default.svc.cluster.local", webIP)
		if out, err := cp.Kubectl("get", "node", "w2"); err == nil {
			t.Errorf("node w2 still exists:\n%s", out)
		}
	})
}
