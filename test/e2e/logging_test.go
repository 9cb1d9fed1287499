package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/test/netbench"
	"github.com/kubeforge/kubeforge/test/testbed"
)

// logPrinters are one pod per node (nodeName, so the control-plane taint
// does not matter), each printing logLines numbered lines, 5 a second,
// then a last line, then sleeping.
func logPrinters(run string, nodes []*testbed.Node) string {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: Namespace\nmetadata: {name: logtest}\n")
	for _, n := range nodes {
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: Pod
metadata: {name: printer-%[1]s, namespace: logtest, labels: {app: printer}}
spec:
  nodeName: %[1]s
  terminationGracePeriodSeconds: 0
  restartPolicy: Never
  containers:
  - name: printer
    image: %[2]s
    imagePullPolicy: Never
    command: ["busybox", "sh", "-c", "i=0; while [ $i -lt %[4]d ]; do i=$((i+1)); echo \"%[3]s-%[1]s-$i\"; busybox sleep 0.2; done; echo \"%[3]s-%[1]s-done\"; busybox sleep 3600"]
`, n.Name, busyboxRef, run, logLines)
	}
	return b.String()
}

const logLines = 500

var logLineRE = regexp.MustCompile(`^(\S+) (\S+)/logtest/printer-(\S+)/printer: (\S+)-(\S+)-(\d+|done)$`)

// TestLogging checks the log-store addon and the nodes' log shipping on a
// three-node bed (control plane and two workers): pods on every node print
// numbered lines; `kubeforge logs` finds them (from the control plane and
// from a worker with the admin kubeconfig) while they print (the 10 s
// target is make bench's logging.lag);
// the store is scaled to 0 for 30 s while they keep printing, and after
// it is back every line is there once; the lines of the deleted pods can
// still be found. The nodes' credentials may POST to the store through
// the Service proxy and nothing more; pods, and a machine outside the
// cluster that routes to the pod network, may not connect to it at all.
func TestLogging(t *testing.T) {
	testbed.RequireHost(t)
	if err := testbed.RequireStaticBusybox(); err != nil {
		t.Fatal(err)
	}
	tb := testbed.New(t)
	holdOnFailure(t, tb)
	cp := tb.AddNode("cp1")
	w1 := tb.AddNode("w1")
	w2 := tb.AddNode("w2")
	nodes := []*testbed.Node{cp, w1, w2}
	step := stepper(t)
	run := fmt.Sprintf("LOGT%d", time.Now().Unix()%100000)

	step("cluster", func(t *testing.T) {
		cfg := netInitConfig(t, cp, netResolvConf(t, tb), "")
		out := netInit(t, cp, cfg)
		// The local-path StorageClass is installed before the log store
		// (addon order), so a default cluster keeps the store's data on a
		// local-path volume.
		if !strings.Contains(out, "log store (retention 7d)") || !strings.Contains(out, "volume claim (StorageClass local-path)") {
			t.Errorf("init did not report the log store on a local-path volume claim:\n%s", out)
		}
		netJoinWorkers(t, cp, out, []*testbed.Node{w1, w2})
		start := time.Now()
		netWaitPods(t, cp, 6*time.Minute, "kube-system", "k8s-app=log-store", 1) // its volume first: at load 50 the provisioner took 2 min to start, and the scheduler restarted
		t.Logf("BENCH logging.store_ready_after_join_s=%.3f", time.Since(start).Seconds())
		// A rerun of the phase changes nothing.
		again := kf(t, cp, time.Minute, "init", "phase", "addon", "log-store", "--config", cfg)
		if !strings.Contains(again, "up to date") {
			t.Errorf("a second addon/log-store run changed something:\n%s", again)
		}
	})

	step("node-credentials", func(t *testing.T) {
		// Refusals first: a node may not read the store, nor reach any
		// other Service through the proxy.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // for the step's ~8 kubectl runs
		defer cancel()
		kubeletKC := "--kubeconfig=/etc/kubernetes/kubelet.conf"
		out, err := w1.Run(ctx, "/usr/bin/kubectl", kubeletKC, "get", "--raw", "/api/v1/namespaces/kube-system/services/log-store/proxy/select/logsql/query?query=*")
		if err == nil || !strings.Contains(out, "Forbidden") && !strings.Contains(out, "forbidden") {
			t.Errorf("a node's credentials read the store (GET through the proxy): err=%v\n%s", err, out)
		}
		// The Service a node may POST to leads to the store's insert-only
		// port: a POSTed query is refused there.
		body := filepath.Join(w1.Dir, "query.form")
		if err := os.WriteFile(body, []byte("query=*"), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err = w1.Run(ctx, "/usr/bin/kubectl", kubeletKC, "create", "--raw", "/api/v1/namespaces/kube-system/services/log-store/proxy/select/logsql/query?query=*", "-f", body)
		if err == nil || !strings.Contains(out, "only takes logs") {
			t.Errorf("a node's credentials POSTed a query to the store: err=%v\n%s", err, out)
		}
		for _, c := range []struct{ verb, what, want string }{
			{"create", "services/log-store", "yes"},
			{"get", "services/log-store", "no"},
			{"create", "services/log-store-query", "no"},
			{"get", "services/log-store-query", "no"},
			{"create", "services/kube-dns", "no"},
			{"create", "services/metrics-server", "no"},
		} {
			out, _ := w1.Run(ctx, "/usr/bin/kubectl", kubeletKC, "auth", "can-i", c.verb, c.what, "--subresource=proxy", "-n", "kube-system")
			if got := strings.TrimSpace(out); got != c.want {
				t.Errorf("node w1: can-i %s %s/proxy = %q, want %s", c.verb, c.what, got, c.want)
			}
		}
		// Nor read the store's query key (searches need it): a node that
		// does not run the store's pod (that one's kubelet must hand the
		// Secret to the pod). The Node authorizer's "no" comes with its
		// reason.
		other := w1
		if strings.TrimSpace(netKubectl(t, cp, "get", "pods", "-n", "kube-system", "log-store-0", "-o", "jsonpath={.spec.nodeName}")) == w1.Name {
			other = w2
		}
		if out, _ := other.Run(ctx, "/usr/bin/kubectl", kubeletKC, "auth", "can-i", "get", "secrets/log-store-query-key", "-n", "kube-system"); !strings.HasPrefix(strings.TrimSpace(out), "no") {
			t.Errorf("node %s may read the log store's query key: %q", other.Name, out)
		}
		// A pod's service account may not write to the store either.
		out, _ = cp.Kubectl("auth", "can-i", "create", "services/log-store", "--subresource=proxy", "-n", "kube-system", "--as=system:serviceaccount:default:default")
		if strings.TrimSpace(out) != "no" {
			t.Errorf("a service account may write to the store: %q", out)
		}
	})

	adminOnW1 := w1.WriteConfigFile("admin.conf", readNodeFile(t, cp, "/etc/kubernetes/admin.conf"))
	newestAt := map[string]time.Time{} // per node, the newest line's time seen by the last logsOn
	logsOn := func(n *testbed.Node, kubeconfig string) (map[string]map[string]int, []string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		args := []string{"logs", run, "--namespace", "logtest"}
		if kubeconfig != "" {
			args = append(args, "--kubeconfig", kubeconfig)
		}
		out, err := n.Kubeforge(ctx, args...)
		if err != nil {
			return nil, nil, err
		}
		seen := map[string]map[string]int{}
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			m := logLineRE.FindStringSubmatch(l)
			if m == nil || m[4] != run {
				continue
			}
			if m[2] != m[3] || m[3] != m[5] {
				return nil, nil, fmt.Errorf("line %q: its source node is %s, printed by the pod on %s", l, m[2], m[5])
			}
			if seen[m[3]] == nil {
				seen[m[3]] = map[string]int{}
			}
			seen[m[3]][m[6]]++
			lines = append(lines, l)
			if at, err := time.Parse(time.RFC3339Nano, m[1]); err == nil && at.After(newestAt[m[3]]) {
				newestAt[m[3]] = at
			}
		}
		return seen, lines, nil
	}
	newest := func(seen map[string]int) int {
		top := 0
		for k := range seen {
			if i, err := strconv.Atoi(k); err == nil && i > top {
				top = i
			}
		}
		return top
	}

	var printStart time.Time
	step("lines-found-while-printing", func(t *testing.T) {
		tarball := filepath.Join(tb.Dir, "busybox.tar")
		if _, err := testbed.WriteBusyboxImage(tarball, busyboxRef); err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			kf(t, n, 2*time.Minute, "images", "import", tarball)
		}
		netKubectl(t, cp, "apply", "-f", cp.WriteConfigFile("printers.yaml", logPrinters(run, nodes)))
		netWaitPods(t, cp, 2*time.Minute, "logtest", "app=printer", 3)
		printStart = time.Now()
		// How far behind the pods is the store? When asked, the newest
		// line it has of a pod was printed at T (its CRI timestamp): the
		// lines printed since (every 0.2 s) were not found yet.
		lag := time.Duration(0)
		for range 8 {
			time.Sleep(time.Second)
			asked := time.Now()
			if _, _, err := logsOn(cp, ""); err != nil {
				t.Fatal(err)
			}
			for _, n := range nodes {
				at, ok := newestAt[n.Name]
				if !ok {
					at = printStart.Add(-5 * time.Second) // none yet: count from before the pods were Ready
				}
				lag = max(lag, asked.Sub(at))
			}
		}
		// The 10 s target is a bench figure (make bench: logging.lag, on
		// a quiet machine). Here, beside another test bed, the check is
		// that lines arrive while the pods still print (for 100 s or
		// more): every node's newest line found within 30 s of its
		// printing, once. A shipper that sent only when a file ends, or
		// at long intervals, fails it.
		t.Logf("BENCH logging.lag_s=%.3f", lag.Seconds())
		if lag > 10*time.Second {
			pollEvery(t, 90*time.Second, time.Second, "every node's newest line found within 30 s of its printing", func() string {
				asked := time.Now()
				if _, _, err := logsOn(cp, ""); err != nil {
					return err.Error()
				}
				for _, n := range nodes {
					if at, ok := newestAt[n.Name]; !ok || asked.Sub(at) > 30*time.Second {
						return fmt.Sprintf("%s: newest line found printed at %v, asked at %v", n.Name, at.Format(time.StampMilli), asked.Format(time.StampMilli))
					}
				}
				return ""
			})
			t.Logf("the store was %v behind the pods at first (a loaded machine), and caught up", lag.Round(time.Millisecond))
		}
		// From a worker, with the admin kubeconfig only.
		seen, _, err := logsOn(w1, adminOnW1)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			if len(seen[n.Name]) == 0 {
				t.Errorf("kubeforge logs on w1 found no line of the pod on %s", n.Name)
			}
		}
		st := kf(t, w2, 30*time.Second, "node", "status")
		if !regexp.MustCompile(`log-shipping: ok`).MatchString(st) {
			t.Errorf("node status on w2 does not say log-shipping is ok:\n%s", st)
		}
		t.Logf("node status on w2:\n%s", st)
	})

	step("store-down-30s", func(t *testing.T) {
		// The store is scaled to 0 (its pod stops gracefully); the pods
		// keep printing for 30 s; then it is scaled back to 1.
		netKubectl(t, cp, "scale", "-n", "kube-system", "statefulset/log-store", "--replicas=0")
		// The waits on the store's pod are long: beside another test bed
		// in CI the controller manager and the kubelet can take minutes
		// (a StatefulSet pod created 2 min 23 s after the scale-up, load
		// average 64); what is tested is that no line is lost, not how
		// fast the store comes back.
		// Down is when no store pod runs on: its pod gone or being
		// deleted. The object itself can stay for minutes after its
		// containers stopped (CI once: 3 min, the kubelet's final delete
		// waiting on a loaded API server).
		pollEvery(t, 3*time.Minute, 250*time.Millisecond, "log-store pod gone or being deleted", func() string {
			out, err := cp.Kubectl("get", "pods", "-n", "kube-system", "-l", "k8s-app=log-store", "-o",
				`jsonpath={range .items[*]}{.metadata.name} {.metadata.deletionTimestamp}{"\n"}{end}`)
			if err != nil {
				return err.Error()
			}
			var running []string
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				if f := strings.Fields(l); len(f) == 1 {
					running = append(running, f[0])
				}
			}
			return strings.Join(running, " ")
		})
		down := time.Now()
		var st string
		pollEvery(t, time.Minute, time.Second, "w1's node status reports lines buffered on disk", func() string {
			st = kf(t, w1, 30*time.Second, "node", "status")
			if !strings.Contains(st, "on disk") || !strings.Contains(st, "log-shipping") {
				return st
			}
			return ""
		})
		t.Logf("node status on w1 %v after the store went down:\n%s", time.Since(down).Round(time.Second), st)
		time.Sleep(30*time.Second - time.Since(down))
		netKubectl(t, cp, "scale", "-n", "kube-system", "statefulset/log-store", "--replicas=1")
		back := time.Now()
		netWaitPods(t, cp, 6*time.Minute, "kube-system", "k8s-app=log-store", 1)
		t.Logf("the store was down %v; Ready again after %v", time.Since(down).Round(time.Second), time.Since(back).Round(100*time.Millisecond))
	})

	check := func(t *testing.T, when string) {
		seen, _, err := logsOn(cp, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			var missing, dup []int
			for i := 1; i <= logLines; i++ {
				switch seen[n.Name][strconv.Itoa(i)] {
				case 0:
					missing = append(missing, i)
				case 1:
				default:
					dup = append(dup, i)
				}
			}
			if len(missing) > 0 {
				t.Errorf("%s: %d of the %d lines of the pod on %s are missing (first: %v)", when, len(missing), logLines, n.Name, missing[:min(10, len(missing))])
			}
			if len(dup) > 0 {
				t.Errorf("%s: %d lines of the pod on %s are there more than once (first: %v)", when, len(dup), n.Name, dup[:min(10, len(dup))])
			}
		}
	}

	step("no-line-lost", func(t *testing.T) {
		begin := time.Now()
		pollEvery(t, 5*time.Minute, time.Second, "every pod's last line", func() string {
			seen, _, err := logsOn(cp, "")
			if err != nil {
				return err.Error()
			}
			for _, n := range nodes {
				if seen[n.Name]["done"] == 0 {
					return fmt.Sprintf("no last line of %s yet (newest %d)", n.Name, newest(seen[n.Name]))
				}
			}
			return ""
		})
		t.Logf("printing took %v; every last line found %v after the store was back", time.Since(printStart).Round(time.Second), time.Since(begin).Round(100*time.Millisecond))
		check(t, "after the store was down")
	})

	step("pods-refused", func(t *testing.T) {
		// A pod reaches the store's Services and its pod directly, on
		// every node (one of them is the store's), and is refused on
		// every port and path, the probes' /health included: the store
		// serves the nodes and the API server's proxy only.
		ip := func(kind, name, path string) string {
			out := netKubectl(t, cp, "get", kind, "-n", "kube-system", name, "-o", "jsonpath="+path)
			if strings.TrimSpace(out) == "" {
				t.Fatalf("no address for %s %s", kind, name)
			}
			return strings.TrimSpace(out)
		}
		storePod := ip("pods", "log-store-0", "{.status.podIP}")
		targets := []string{
			"http://" + ip("service", "log-store-query", "{.spec.clusterIP}") + ":9428/select/logsql/query?query=*",
			"http://" + ip("service", "log-store", "{.spec.clusterIP}") + ":9428/health",
			"http://" + storePod + ":9428/select/logsql/query?query=*",
			"http://" + storePod + ":9428/metrics",
			"http://" + storePod + ":9429/health",
		}
		// The netbench client (a static Go HTTP client) in a pod on each
		// node: it reports a non-200 answer as "status N".
		netImportImage(t, tb, nodes...)
		var clients strings.Builder
		for _, n := range nodes {
			clients.WriteString("---\n" + netbench.ClientPodYAML("logclient-"+n.Name, n.Name))
		}
		netKubectl(t, cp, "apply", "-f", cp.WriteConfigFile("logclients.yaml", clients.String()))
		netWaitPods(t, cp, 2*time.Minute, "default", "app=netbench-client", len(nodes))
		for _, n := range nodes {
			for _, u := range targets {
				out, err := netExec(cp, 30*time.Second, "logclient-"+n.Name, netbench.HTTPCommand(u, 1)...)
				if err == nil || !strings.Contains(out, "status 403") {
					t.Errorf("a pod on %s was not refused by %s: err=%v\n%s", n.Name, u, err, out)
				}
			}
		}
		// A machine outside the cluster: a namespace on the nodes' bridge
		// with an address of their subnet that no node has, and a route to
		// the pod CIDR of the store's node through that node. It reaches
		// the store pod's address, and the store (kubeforge's check in
		// front of VictoriaLogs) answers 403 on both ports: an HTTP answer,
		// so the connection did arrive and was refused by the store, not
		// by the network. The testbed removes the namespace with the bed.
		storeNode := ip("pods", "log-store-0", "{.spec.nodeName}")
		podCIDR := ip("node", storeNode, "{.spec.podCIDR}")
		var via *testbed.Node
		for _, n := range nodes {
			if n.Name == storeNode {
				via = n
			}
		}
		if via == nil {
			t.Fatalf("the store runs on %q, not a node of the bed", storeNode)
		}
		outside := tb.AddNode("outside")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if out, err := outside.Run(ctx, "ip", "route", "add", podCIDR, "via", via.IP.String()); err != nil {
			t.Fatalf("route %s via %s on the outside machine: %v\n%s", podCIDR, via.Name, err, out)
		}
		for _, u := range []string{"http://" + storePod + ":9428/select/logsql/query?query=*", "http://" + storePod + ":9429/insert/jsonline"} {
			r, err := netHTTPFromNode(tb, outside, u, 1)
			if len(r.Failures) != 1 || r.Failures[0] != "status 403" {
				t.Errorf("the outside machine %s (route via %s) was not refused with 403 by %s: %+v, err=%v", outside.IP, via.Name, u, r, err)
			}
		}
		// A process on a node passes the source check (it connects from
		// the node's own address), but a search without the store's
		// query key (Secret kube-system/log-store-query-key, which a
		// node's credentials cannot read) is refused; /health answers.
		for _, n := range nodes {
			r, err := netHTTPFromNode(tb, n, "http://"+storePod+":9428/select/logsql/query?query=*", 1)
			if len(r.Failures) != 1 || r.Failures[0] != "status 403" {
				t.Errorf("a search from %s without the query key was not refused with 403: %+v, err=%v", n.Name, r, err)
			}
			if r, err := netHTTPFromNode(tb, n, "http://"+storePod+":9428/health", 1); err != nil || len(r.Failures) != 0 {
				t.Errorf("/health from %s: %+v, err=%v", n.Name, r, err)
			}
		}
		// The store's log says whom it refused and why.
		logs := netKubectl(t, cp, "logs", "-n", "kube-system", "log-store-0")
		for _, want := range []string{"from " + outside.IP.String() + ": not an address of any of the cluster's 3 nodes", ": a pod's address"} {
			if !strings.Contains(logs, want) {
				t.Errorf("the store's log lacks %q:\n%s", want, logs)
			}
		}
		// The store is still Ready (the kubelet's probes come from the node).
		netWaitPods(t, cp, 30*time.Second, "kube-system", "k8s-app=log-store", 1)
	})

	step("deleted-pods", func(t *testing.T) {
		netKubectl(t, cp, "delete", "pods", "-n", "logtest", "--all", "--wait=true")
		// The pods are gone from the API; the kubelet removes their log
		// directories later (with its container garbage collection, a
		// minute or more under load). The store has the lines either way.
		gone := time.Now()
		for time.Since(gone) < 2*time.Minute {
			left := ""
			for _, n := range nodes {
				if files := filesUnder(n, "/var/log/pods"); strings.Contains(strings.Join(files, " "), "logtest_") {
					left = n.Name
				}
			}
			if left == "" {
				t.Logf("the printers' log directories were removed %v after the pods were deleted", time.Since(gone).Round(time.Second))
				break
			}
			time.Sleep(time.Second)
		}
		check(t, "after the pods were deleted")
	})
}

// readNodeFile reads a file in n's filesystem.
func readNodeFile(t *testing.T, n *testbed.Node, path string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := n.Run(ctx, "cat", path)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
