package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/test/netbench"
	"github.com/kubeforge/kubeforge/test/testbed"
)

// Helpers of the network tests (network_test.go). Names start with "net"
// so they do not collide with the other e2e helpers.

const (
	netPodCIDR  = "10.244.0.0/16"
	netSvcCIDR  = "10.96.0.0/12"
	netAPISvcIP = "10.96.0.1"
	netDNSSvcIP = "10.96.0.10"
)

// netResolvConf is the resolv.conf the nodes' kubelets hand to CoreDNS
// (resolvConf in the testbed's KubeletConfiguration): its only nameserver
// is the testbed bridge's host address, inside the test network, where
// nothing answers DNS. CoreDNS's `forward . /etc/resolv.conf` and its loop
// probe can then send nothing beyond the test network.
func netResolvConf(t *testing.T, tb *testbed.Testbed) string {
	t.Helper()
	b, err := os.ReadFile(tb.ResolvConf)
	if err != nil || strings.TrimSpace(string(b)) != "nameserver "+tb.Gateway.String() {
		t.Fatalf("the testbed's resolv.conf %s: %q (%v), want only nameserver %s", tb.ResolvConf, b, err, tb.Gateway)
	}
	return tb.ResolvConf
}

// netInitConfig writes the init config of n: the testbed's (address, name,
// cgroup root, resolvConf), and a KubeProxyConfiguration with proxyMode
// when that is set.
func netInitConfig(t *testing.T, n *testbed.Node, resolvConf, proxyMode string) string {
	t.Helper()
	if !strings.Contains(n.KubeletConfigYAML(), "resolvConf: "+resolvConf+"\n") {
		t.Fatalf("the testbed's KubeletConfiguration does not set resolvConf %s:\n%s", resolvConf, n.KubeletConfigYAML())
	}
	doc := n.InitConfigYAML()
	if proxyMode != "" {
		doc += "---\napiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: " + proxyMode + "\n"
	}
	return n.WriteConfigFile("net-init.yaml", doc)
}

// netJoinConfig writes a worker's JoinConfiguration: discovery from the
// join command init printed, the node's name, and its own kubelet cgroup
// root as kubeletExtraArgs (the cluster's KubeletConfiguration has the
// first node's).
func netJoinConfig(t *testing.T, n *testbed.Node, initOut string) string {
	t.Helper()
	m := regexp.MustCompile(`kubeforge join (\S+) --token (\S+)\s*\\?\s*--discovery-token-ca-cert-hash (\S+)`).FindStringSubmatch(initOut)
	if m == nil {
		t.Fatalf("init printed no worker join command:\n%s", initOut)
	}
	return n.WriteConfigFile("net-join.yaml", fmt.Sprintf(`apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: %s
    token: %s
    caCertHashes: [%s]
nodeRegistration:
  name: %s
  kubeletExtraArgs:
  - name: cgroup-root
    value: %s
`, m[1], m[2], m[3], n.Name, n.CgroupRoot))
}

// netInit runs `kubeforge init` on cp with the init config cfg (see
// netInitConfig) and returns its output, which carries the join command.
func netInit(t *testing.T, cp *testbed.Node, cfg string) string {
	t.Helper()
	return kf(t, cp, 3*time.Minute, "init", "--config", cfg, "--advertise-address", cp.IP.String(), "--node-name", cp.Name)
}

// netJoinWorkers joins each worker, in turn, with the join command of
// initOut (netJoinConfig) and extra join flags, then waits until cp and
// every worker are Ready.
func netJoinWorkers(t *testing.T, cp *testbed.Node, initOut string, workers []*testbed.Node, extra ...string) {
	t.Helper()
	for _, w := range workers {
		start := time.Now()
		kf(t, w, 3*time.Minute, append([]string{"join", "--config", netJoinConfig(t, w, initOut)}, extra...)...)
		t.Logf("%s joined in %v", w.Name, time.Since(start).Round(10*time.Millisecond))
	}
	netWaitNodesReady(t, cp, 1+len(workers))
}

// netWaitNodesReady waits until the cluster has exactly n nodes, all Ready.
func netWaitNodesReady(t *testing.T, cp *testbed.Node, n int) {
	t.Helper()
	pollEvery(t, 2*time.Minute, 500*time.Millisecond, fmt.Sprintf("%d nodes Ready", n), func() string {
		out, err := cp.Kubectl("get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}`)
		if err != nil {
			return err.Error()
		}
		if len(strings.Fields(out)) != n || strings.Count(out, "=True") != n {
			return out
		}
		return ""
	})
}

// netKubectl runs kubectl in n and fails the test when it fails.
func netKubectl(t *testing.T, n *testbed.Node, args ...string) string {
	t.Helper()
	out, err := n.Kubectl(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// netRun runs a command in n's namespaces; it fails the test when it fails.
func netRun(t *testing.T, n *testbed.Node, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := n.Run(ctx, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// netExec runs a command in a pod (kubectl exec) and returns its output
// and error.
func netExec(n *testbed.Node, timeout time.Duration, pod string, cmd ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return n.KubectlContext(ctx, append([]string{"exec", pod, "--"}, cmd...)...)
}

// pollEvery calls check every step until it reports "" (done), and fails
// the test with check's last answer after timeout. It returns how long it
// took.
func pollEvery(t *testing.T, timeout, step time.Duration, what string, check func() string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		status := check()
		if status == "" {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s: not done after %v: %s", what, timeout, status)
		}
		time.Sleep(step)
	}
}

// netPod is what the tests need of a pod.
type netPod struct {
	Metadata struct {
		Name, Namespace, UID string
		Labels               map[string]string
		CreationTimestamp    time.Time  `json:"creationTimestamp"`
		DeletionTimestamp    *time.Time `json:"deletionTimestamp"`
	}
	Spec struct {
		NodeName string `json:"nodeName"`
	}
	Status struct {
		Phase             string
		PodIP             string `json:"podIP"`
		ContainerStatuses []containerStatus
		Conditions        []struct {
			Type, Status       string
			LastTransitionTime time.Time `json:"lastTransitionTime"`
		}
	}
}

// readyAfter is how long after its creation the pod became Ready (0 when
// it is not Ready).
func (p netPod) readyAfter() time.Duration {
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" && c.Status == "True" {
			return c.LastTransitionTime.Sub(p.Metadata.CreationTimestamp)
		}
	}
	return 0
}

func (p netPod) ready() string {
	if p.Metadata.DeletionTimestamp != nil {
		return p.Metadata.Name + " is being deleted"
	}
	if p.Status.Phase != "Running" {
		return fmt.Sprintf("%s is %s", p.Metadata.Name, p.Status.Phase)
	}
	if len(p.Status.ContainerStatuses) == 0 {
		return p.Metadata.Name + " has no container status"
	}
	for _, cs := range p.Status.ContainerStatuses {
		if !cs.Ready {
			return fmt.Sprintf("%s: container %s not ready (state %s)", p.Metadata.Name, cs.Name, keys(cs.State))
		}
	}
	if p.Status.PodIP == "" {
		return p.Metadata.Name + " has no IP"
	}
	return ""
}

func (p netPod) String() string {
	return fmt.Sprintf("%s@%s(%s)", p.Metadata.Name, p.Spec.NodeName, p.Status.PodIP)
}

// netPods lists the pods of ns matching selector.
func netPods(n *testbed.Node, ns, selector string) ([]netPod, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := n.KubectlContext(ctx, "get", "pods", "-n", ns, "-l", selector, "-o", "json")
	if err != nil {
		return nil, err
	}
	var l struct{ Items []netPod }
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		return nil, err
	}
	slices.SortFunc(l.Items, func(a, b netPod) int { return strings.Compare(a.Metadata.Name, b.Metadata.Name) })
	return l.Items, nil
}

// netWaitPods waits until exactly want pods of ns match selector and all
// are ready, and returns them.
func netWaitPods(t *testing.T, n *testbed.Node, timeout time.Duration, ns, selector string, want int) []netPod {
	t.Helper()
	var pods []netPod
	pollEvery(t, timeout, 250*time.Millisecond, fmt.Sprintf("%d ready pods %s in %s", want, selector, ns), func() string {
		var err error
		if pods, err = netPods(n, ns, selector); err != nil {
			return err.Error()
		}
		if len(pods) != want {
			var s []string
			for _, p := range pods {
				s = append(s, p.String()+" "+p.Status.Phase)
			}
			return fmt.Sprintf("have %d pods: %v", len(pods), s)
		}
		for _, p := range pods {
			if s := p.ready(); s != "" {
				return s
			}
		}
		return ""
	})
	return pods
}

// netImportImage writes the netbench image (busybox and nbclient) once
// per test and imports it into each node.
func netImportImage(t *testing.T, tb *testbed.Testbed, nodes ...*testbed.Node) {
	t.Helper()
	tarball := filepath.Join(tb.Dir, "netbench.tar")
	if _, err := os.Stat(tarball); err != nil {
		client, err := netbench.BuildClient(tb.Dir)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := netbench.WriteImage(tarball, netbench.ImageRef, client); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		out := kf(t, n, 2*time.Minute, "images", "import", tarball)
		if !strings.Contains(out, netbench.ImageRef) {
			t.Fatalf("node %s: import output lacks %s:\n%s", n.Name, netbench.ImageRef, out)
		}
	}
}

// netHTTPFromNode sends requests to url from the node itself (host
// network), with the nbclient netImportImage built; it returns the parsed
// result and nbclient's error.
func netHTTPFromNode(tb *testbed.Testbed, n *testbed.Node, url string, requests int) (netbench.HTTPResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(requests)*3*time.Second+30*time.Second)
	defer cancel()
	out, err := n.Run(ctx, filepath.Join(tb.Dir, "nbclient"), "http", "-n", fmt.Sprint(requests), url)
	r, perr := netbench.ParseHTTP(out)
	if err == nil && perr != nil {
		err = perr
	}
	return r, err
}

// netServiceIP returns a Service's cluster IP.
func netServiceIP(t *testing.T, n *testbed.Node, ns, name string) string {
	t.Helper()
	ip := strings.TrimSpace(netKubectl(t, n, "get", "service", "-n", ns, name, "-o", "jsonpath={.spec.clusterIP}"))
	if a, err := netip.ParseAddr(ip); err != nil || !netip.MustParsePrefix(netSvcCIDR).Contains(a) {
		t.Fatalf("Service %s/%s has cluster IP %q, not in %s", ns, name, ip, netSvcCIDR)
	}
	return ip
}

// netLookup resolves name in pod (nbclient lookup: Go's resolver with the
// pod's resolv.conf) and checks it gives want.
func netLookup(t *testing.T, n *testbed.Node, pod, name, want string) time.Duration {
	t.Helper()
	out, err := netExec(n, 30*time.Second, pod, netbench.LookupCommand(name)...)
	if err != nil {
		t.Errorf("resolve %s in %s: %v\n%s", name, pod, err, out)
		return 0
	}
	f := netbench.Fields(strings.TrimSpace(out))
	if f["addrs"] != want {
		t.Errorf("%s resolves to %q in %s, want %s (%s)", name, f["addrs"], pod, want, out)
	}
	d, _ := time.ParseDuration(f["ms"] + "ms")
	return d
}

// netHTTP sends n requests to url from pod and returns the parsed result;
// every request must succeed.
func netHTTP(t *testing.T, n *testbed.Node, pod, url string, requests int) netbench.HTTPResult {
	t.Helper()
	out, err := netExec(n, time.Duration(requests)*3*time.Second+30*time.Second, pod, netbench.HTTPCommand(url, requests)...)
	r, perr := netbench.ParseHTTP(out)
	if err != nil || perr != nil || len(r.Failures) > 0 {
		t.Fatalf("%d requests to %s from %s: %v %v; failures %v\n%s", requests, url, pod, err, perr, r.Failures, netTail(out, 20))
	}
	return r
}

// netTail is the last lines of s.
func netTail(s string, lines int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > lines {
		ls = append([]string{"…"}, ls[len(ls)-lines:]...)
	}
	return strings.Join(ls, "\n")
}

// netBodies lists the server names that answered, sorted.
func netBodies(r netbench.HTTPResult) []string {
	var s []string
	for b := range r.Bodies {
		s = append(s, b)
	}
	slices.Sort(s)
	return s
}

// netPodRoutes lists n's routes of the pod network agent (protocol 75) as
// "CIDR via IP".
func netPodRoutes(t *testing.T, n *testbed.Node) []string {
	t.Helper()
	out := netRun(t, n, 30*time.Second, "ip", "-4", "route", "show", "proto", "75")
	var routes []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[1] == "via" {
			routes = append(routes, f[0]+" via "+f[2])
		}
	}
	slices.Sort(routes)
	return routes
}

// netNodeCIDR is the node's pod CIDR (spec.podCIDR).
func netNodeCIDR(t *testing.T, n *testbed.Node, node string) string {
	t.Helper()
	var cidr string
	pollEvery(t, 60*time.Second, 250*time.Millisecond, "pod CIDR of "+node, func() string {
		out, err := n.Kubectl("get", "node", node, "-o", "jsonpath={.spec.podCIDR}")
		if err != nil {
			return err.Error()
		}
		cidr = strings.TrimSpace(out)
		if cidr == "" {
			return "no pod CIDR yet"
		}
		return ""
	})
	return cidr
}

// netResolvConfs reads every resolv.conf the node's containerd made for
// its pods and returns their nameservers by file.
func netResolvConfs(n *testbed.Node) map[string][]string {
	out := map[string][]string{}
	for _, dir := range []string{"/var/lib", "/run"} {
		root := n.Path(dir)
		filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if e.IsDir() && (e.Name() == "rootfs" || e.Name() == "snapshots" || e.Name() == "blobs") {
				return filepath.SkipDir
			}
			if e.Type().IsRegular() && e.Name() == "resolv.conf" {
				b, err := os.ReadFile(p)
				if err != nil {
					return nil
				}
				var ns []string
				for _, line := range strings.Split(string(b), "\n") {
					if f := strings.Fields(line); len(f) >= 2 && f[0] == "nameserver" {
						ns = append(ns, f[1])
					}
				}
				out[dir+strings.TrimPrefix(p, root)] = ns
			}
			return nil
		})
	}
	return out
}

// netLogBench logs bench figures ("BENCH name=value", milliseconds or
// seconds as the name says), the form the bench parses.
func netLogBench(t *testing.T, lines ...string) {
	t.Helper()
	for _, l := range lines {
		t.Log(l)
	}
}
