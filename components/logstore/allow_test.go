package logstore

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubeforge/kubeforge/internal/nodedir"
)

const testDirectory = nodedir.Namespace + "/" + nodedir.Name

func testNode(name string, addrs map[corev1.NodeAddressType][]string, podCIDRs ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDRs: podCIDRs}}
	for typ, list := range addrs {
		for _, a := range list {
			n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: typ, Address: a})
		}
	}
	n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: "10.9.9.9"})
	return n
}

// directoryOf is the node directory ConfigMap of nodes, as the
// controller-manager publishes it.
func directoryOf(nodes ...*corev1.Node) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: nodedir.Namespace, Name: nodedir.Name}, Data: nodedir.Data(nodes)}
}

var (
	cp1 = testNode("cp1", map[corev1.NodeAddressType][]string{corev1.NodeInternalIP: {"192.168.1.2", "fd00:1::2"}},
		"10.244.0.0/24", "fd00:10:244::/64")
	w1 = testNode("w1", map[corev1.NodeAddressType][]string{corev1.NodeInternalIP: {"192.168.1.3"}, corev1.NodeExternalIP: {"203.0.113.7"}},
		"10.244.1.0/24", "fd00:10:244:1::/64")
	w2 = testNode("w2", map[corev1.NodeAddressType][]string{corev1.NodeInternalIP: {"192.168.1.4"}}, "10.244.2.0/24")
)

// The allowlist: the nodes' addresses (internal and external, IPv4 and
// IPv6), their bridge (.1) and VXLAN (.0) addresses, and loopback pass;
// pods, a bridge address of a block no node has, and every machine that
// is not a node are refused, each with its reason.
func TestGateAllowlist(t *testing.T) {
	g, err := newGate("10.244.0.0/16,fd00:10:244::/56", "24,64", testDirectory, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	summary, problems := g.setDirectory(directoryOf(cp1, w1, w2))
	if len(problems) > 0 || !strings.Contains(summary, "3 node(s)") {
		t.Errorf("setDirectory: %s; problems %q", summary, problems)
	}
	const pod, outside = "a pod's address", "a machine outside the cluster"
	for addr, want := range map[string]string{
		"192.168.1.2":        "", // cp1: the API server's Service proxy
		"192.168.1.3":        "",
		"192.168.1.4":        "",
		"203.0.113.7":        "", // w1's ExternalIP
		"fd00:1::2":          "", // cp1's IPv6 address
		"::ffff:192.168.1.3": "",
		"10.244.0.1":         "", // cp1's bridge: the kubelet's probe of a pod on cp1
		"10.244.0.0":         "", // cp1's VXLAN device
		"10.244.1.1":         "",
		"10.244.2.0":         "",
		"fd00:10:244::":      "",
		"fd00:10:244::1":     "",
		"fd00:10:244:1::1":   "",
		"127.0.0.1":          "",
		"::1":                "",
		"10.244.0.2":         pod,
		"10.244.1.77":        pod,
		"10.244.5.1":         pod, // the bridge address of a block no node has
		"fd00:10:244:1::5":   pod,
		"fd00:10:244:2::1":   pod,     // the IPv6 block of w2, which has none
		"192.168.1.50":       outside, // a host on the nodes' subnet
		"10.245.0.1":         outside,
		"2001:db8::1":        outside,
		"fd00:1::9":          outside,
		"10.9.9.9":           outside, // a node's Hostname "address" is not one
	} {
		ok, why := g.allow(netip.MustParseAddr(addr))
		switch {
		case want == "" && !ok:
			t.Errorf("%s refused (%s), want it served", addr, why)
		case want != "" && ok:
			t.Errorf("%s served, want it refused as %s", addr, want)
		case want != "" && !strings.Contains(why, want):
			t.Errorf("%s refused as %q, want %q", addr, why, want)
		}
	}
	if ok, why := g.allow(netip.Addr{}); ok || why != "no source address" {
		t.Errorf("no address: %v %q", ok, why)
	}
	// Without -podNetwork every refusal is an outside machine's.
	g, err = newGate("", "", testDirectory, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	g.setDirectory(directoryOf(cp1))
	if ok, why := g.allow(netip.MustParseAddr("10.244.0.9")); ok || !strings.Contains(why, "cluster's 1 nodes") {
		t.Errorf("10.244.0.9 without -podNetwork: %v %q", ok, why)
	}
	if ok, _ := g.allow(netip.MustParseAddr("10.244.0.1")); !ok {
		t.Error("cp1's bridge refused without -podNetwork")
	}
}

func TestNewGateErrors(t *testing.T) {
	for _, dir := range []string{"kubeforge-nodes", "/kubeforge-nodes", "kube-system/", "a/b/c"} {
		if _, err := newGate("", "", dir, t.Logf); err == nil || !strings.Contains(err.Error(), "-nodeDirectory") {
			t.Errorf("-nodeDirectory=%s: %v, want an error naming the flag", dir, err)
		}
	}
	if _, err := newGate("10.244.0.0", "", testDirectory, t.Logf); err == nil || !strings.Contains(err.Error(), "-podNetwork") {
		t.Errorf("bad -podNetwork with a directory: %v", err)
	}
	// Entries that do not parse are left out and named.
	bad := testNode("bad", map[corev1.NodeAddressType][]string{corev1.NodeInternalIP: {"not-an-ip"}}, "10.244.9.0")
	g, _ := newGate("", "", testDirectory, t.Logf)
	cm := directoryOf(cp1, bad)
	cm.Data["broken"] = "{"
	_, problems := g.setDirectory(cm)
	if joined := strings.Join(problems, "\n"); !strings.Contains(joined, "not-an-ip") || !strings.Contains(joined, "10.244.9.0") || !strings.Contains(joined, `"broken"`) {
		t.Errorf("problems %q: want the bad address, CIDR and entry named", problems)
	}
	if ok, _ := g.allow(netip.MustParseAddr("192.168.1.2")); !ok {
		t.Error("a bad entry took the good ones with it")
	}
}

type recorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *recorder) printf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, fmt.Sprintf(format, args...))
}

func (r *recorder) text() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.lines, "\n")
}

func serve(h func(w http.ResponseWriter, r *http.Request) bool, remote, path string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, path, nil)
	r.RemoteAddr = remote
	w := httptest.NewRecorder()
	h(w, r)
	return w
}

// Until the directory is read the store serves no one but loopback:
// every request gets 403, /health 503 (the kubelet keeps the pod
// unready), on both ports; then the nodes' requests pass, /health
// answers OK to the kubelet's probe from the node's bridge, and a refusal
// says who and why in the log.
func TestGateFailsClosedUntilRead(t *testing.T) {
	var log recorder
	g, err := newGate("10.244.0.0/16", "", testDirectory, log.printf)
	if err != nil {
		t.Fatal(err)
	}
	store := func(w http.ResponseWriter, r *http.Request) bool { w.WriteHeader(http.StatusNoContent); return true }
	main := g.wrap(":9428", withHealthAndMetrics(store))
	insert := g.wrap(":9429", insertOnly(store))
	for _, h := range []func(http.ResponseWriter, *http.Request) bool{main, insert} {
		if w := serve(h, "192.168.1.2:5000", "/insert/jsonline"); w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "not read yet") {
			t.Errorf("before the directory: a node's insert got %d %s, want 403 saying why", w.Code, w.Body)
		}
		if w := serve(h, "10.244.0.1:5000", "/health"); w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "not ready") {
			t.Errorf("before the directory: the probe got %d %s, want 503", w.Code, w.Body)
		}
		if w := serve(h, "127.0.0.1:5000", "/health"); w.Code != http.StatusOK {
			t.Errorf("before the directory: loopback /health got %d", w.Code)
		}
	}
	if ready, why := g.ready(); ready || !strings.Contains(why, testDirectory) {
		t.Errorf("ready before the directory: %v %q", ready, why)
	}
	g.setDirectory(directoryOf(cp1, w1))
	if ready, _ := g.ready(); !ready {
		t.Error("not ready after the directory was read")
	}
	for _, h := range []func(http.ResponseWriter, *http.Request) bool{main, insert} {
		if w := serve(h, "10.244.0.1:5000", "/health"); w.Code != http.StatusOK {
			t.Errorf("the probe from cp1's bridge got %d %s", w.Code, w.Body)
		}
		if w := serve(h, "[fd00:1::2]:5000", "/insert/jsonline"); w.Code != http.StatusNoContent {
			t.Errorf("cp1's insert over IPv6 got %d %s", w.Code, w.Body)
		}
		for _, src := range []string{"10.244.1.9:5000", "192.168.1.50:5000"} {
			if w := serve(h, src, "/health"); w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "not pods nor other machines") {
				t.Errorf("%s /health got %d %s, want 403", src, w.Code, w.Body)
			}
		}
	}
	if w := serve(main, "192.168.1.3:5000", "/select/logsql/query"); w.Code != http.StatusNoContent {
		t.Errorf("w1's query on the main port got %d", w.Code)
	}
	out := log.text()
	for _, want := range []string{
		"refused GET /insert/jsonline on :9428 from 192.168.1.2: the node directory (ConfigMap kube-system/kubeforge-nodes) is not read yet",
		"refused GET /health on :9428 from 10.244.1.9: a pod's address",
		"refused GET /health on :9428 from 192.168.1.50: not an address of any of the cluster's 2 nodes",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %q:\n%s", want, out)
		}
	}
}

// The store follows the directory: fail closed while it is not
// published, the nodes it lists once it is, a node added later once the
// directory has it, and the last list when it is deleted. A
// ServiceAccount that may not read it is named as the reason.
func TestGateWatchesDirectory(t *testing.T) {
	client := fake.NewClientset()
	var log recorder
	g, err := newGate("10.244.0.0/16", "", testDirectory, log.printf)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.watch(ctx, client, log.printf, log.printf) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	served := func(addr string) bool {
		ok, _ := g.allow(netip.MustParseAddr(addr))
		return ok
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				_, why := g.ready()
				t.Fatalf("timed out waiting for %s (waiting: %s)\nlog:\n%s", what, why, log.text())
			}
		}
	}
	waitFor("the not-published reason", func() bool { _, why := g.ready(); return strings.Contains(why, "no node directory") })
	if served("192.168.1.2") {
		t.Fatal("a node served before the directory exists")
	}
	cms := client.CoreV1().ConfigMaps(nodedir.Namespace)
	if _, err := cms.Create(ctx, directoryOf(cp1), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("cp1 served", func() bool { return served("192.168.1.2") })
	if served("192.168.1.3") || served("10.244.1.1") {
		t.Error("w1 served before the directory lists it")
	}
	if _, err := cms.Update(ctx, directoryOf(cp1, w1), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("w1 served once published", func() bool { return served("192.168.1.3") && served("10.244.1.1") })
	if err := cms.Delete(ctx, nodedir.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("the deletion logged", func() bool { return strings.Contains(log.text(), "was deleted") })
	if !served("192.168.1.3") {
		t.Error("the deleted directory's nodes are no longer served")
	}

	// A ServiceAccount without the Role: the reason says what to run.
	client = fake.NewClientset()
	client.PrependReactor("list", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "configmaps"}, nodedir.Name, fmt.Errorf("RBAC: no"))
	})
	g2, _ := newGate("", "", testDirectory, log.printf)
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go func() { _ = g2.watch(ctx2, client, log.printf, log.printf) }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, why := g2.ready(); strings.Contains(why, "may not read") && strings.Contains(why, "kubeforge init phase addon log-store") {
			break
		}
		if time.Now().After(deadline) {
			_, why := g2.ready()
			t.Fatalf("forbidden: the reason is %q", why)
		}
	}
}

// One line per source address and minute, however many refusals; the
// next line counts those in between; too many addresses at once are
// counted, not logged one by one.
func TestRefusalLogRateLimited(t *testing.T) {
	var log recorder
	l := newRefusalLog(time.Minute, log.printf)
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	pod, out := netip.MustParseAddr("10.244.1.7"), netip.MustParseAddr("192.168.1.50")
	for range 500 {
		l.note(pod, "GET / on :9428", "a pod's address")
	}
	l.note(out, "GET / on :9428", "outside")
	if len(log.lines) != 2 {
		t.Fatalf("500 refusals of one pod and one of a machine: %d lines, want 2:\n%s", len(log.lines), log.text())
	}
	now = now.Add(61 * time.Second)
	l.note(pod, "GET / on :9428", "a pod's address")
	if last := log.lines[len(log.lines)-1]; !strings.Contains(last, "and 499 more requests from it") {
		t.Errorf("the next line does not count the refusals in between: %s", last)
	}
	// A flood from many addresses: at most maxRefusalAddrs lines a minute.
	log.lines = nil
	now = now.Add(time.Hour)
	for i := range 1000 {
		l.note(netip.AddrFrom4([4]byte{10, 244, byte(i / 250), byte(i%250 + 2)}), "GET / on :9428", "a pod's address")
	}
	if len(log.lines) != maxRefusalAddrs {
		t.Errorf("1000 addresses at once: %d lines, want %d", len(log.lines), maxRefusalAddrs)
	}
	now = now.Add(2 * time.Minute)
	l.note(out, "GET / on :9428", "outside")
	if last := log.lines[len(log.lines)-1]; !strings.Contains(last, "744 refusals of other addresses not logged") {
		t.Errorf("the dropped refusals are not counted: %s", last)
	}
}
