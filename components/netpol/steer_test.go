package netpol

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/kubeforge/kubeforge/manifests"
)

func TestChooseSteer(t *testing.T) {
	yes := func() (bool, error) { return true, nil }
	no := func() (bool, error) { return false, nil }
	broken := func() (bool, error) { return false, errors.New("operation not permitted") }
	for _, c := range []struct {
		flag    string
		probe   func() (bool, error)
		want    SteerMode
		wantErr bool
	}{
		{"auto", yes, SteerNFT, false},
		{"auto", no, SteerXT, false},
		{"", no, SteerXT, false},
		{"auto", broken, "", true},
		{"nft-queue", no, SteerNFT, false},
		{"xt-nfqueue", yes, SteerXT, false},
		{"iptables", yes, "", true},
	} {
		got, err := chooseSteer(c.flag, c.probe)
		if got != c.want || (err != nil) != c.wantErr {
			t.Errorf("chooseSteer(%q): %q, %v; want %q, error %v", c.flag, got, err, c.want, c.wantErr)
		}
	}
}

// xt_NFQ_info_v3 in host byte order: queue number, one queue, and the
// bypass flag only when failing open.
func TestXTQueueInfo(t *testing.T) {
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Skip("the expected bytes are little-endian")
	}
	if got, want := xtQueueInfo(100, false), []byte{100, 0, 1, 0, 0, 0}; !slices.Equal(got, want) {
		t.Errorf("queue 100: %v, want %v", got, want)
	}
	if got, want := xtQueueInfo(0x0102, true), []byte{2, 1, 1, 0, 1, 0}; !slices.Equal(got, want) {
		t.Errorf("queue 258 fail-open: %v, want %v", got, want)
	}
}

// The rules are upstream's, in upstream's order, with the xtables NFQUEUE
// target in place of the queue expression this kernel lacks.
func TestSteerRules(t *testing.T) {
	tbl := &nftables.Table{Name: SteerTable, Family: nftables.TableFamilyINet}
	ch := &nftables.Chain{Name: "postrouting", Table: tbl}
	rules := steerRules(tbl, ch, SteerConfig{QueueID: 100})
	if len(rules) != 7 {
		t.Fatalf("%d rules, want 7 (icmpv6, skuid 0, ct established, 4 set lookups)", len(rules))
	}
	var sets []string
	for i, r := range rules {
		for _, e := range r.Exprs {
			if _, ok := e.(*expr.Queue); ok {
				t.Errorf("rule %d uses the nftables queue expression", i)
			}
			if l, ok := e.(*expr.Lookup); ok {
				sets = append(sets, l.SetName)
			}
		}
		last := r.Exprs[len(r.Exprs)-1]
		if i < 3 {
			if v, ok := last.(*expr.Verdict); !ok || v.Kind != expr.VerdictAccept {
				t.Errorf("rule %d ends in %T, want accept", i, last)
			}
			continue
		}
		tg, ok := last.(*expr.Target)
		if !ok || tg.Name != "NFQUEUE" || tg.Rev != 3 {
			t.Fatalf("rule %d ends in %#v, want the NFQUEUE target rev 3", i, last)
		}
		if info, ok := tg.Info.(*xt.Unknown); !ok || !slices.Equal([]byte(*info), xtQueueInfo(100, false)) {
			t.Errorf("rule %d: target info %#v", i, tg.Info)
		}
	}
	if !slices.Equal(sets, []string{podV4Set, podV4Set, podV6Set, podV6Set}) {
		t.Errorf("set lookups %v", sets)
	}
}

func listers(t *testing.T, objs ...any) (networkinglisters.NetworkPolicyLister, corelisters.PodLister) {
	t.Helper()
	np := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	pods := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, o := range objs {
		var err error
		switch o.(type) {
		case *networkingv1.NetworkPolicy:
			err = np.Add(o)
		case *corev1.Pod:
			err = pods.Add(o)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return networkinglisters.NewNetworkPolicyLister(np), corelisters.NewPodLister(pods)
}

func pod(ns, name, node string, labels map[string]string, hostNet bool, ips ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: corev1.PodSpec{NodeName: node, HostNetwork: hostNet}}
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	return p
}

func policy(ns, name string, sel map[string]string) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: sel}}}
}

// Only this node's pods that a policy in their namespace selects, without
// host-network pods, each address once, sorted.
func TestLocalSelectedPodIPs(t *testing.T) {
	web := map[string]string{"app": "web"}
	np, pods := listers(t,
		policy("a", "deny-all", nil), // empty selector: every pod of namespace a
		policy("b", "web-only", web),
		pod("a", "x", "n1", nil, false, "10.244.0.9", "fd00::9"),
		pod("a", "y", "n1", web, false, "10.244.0.3"),
		pod("a", "remote", "n2", nil, false, "10.244.1.5"),
		pod("a", "hostnet", "n1", nil, true, "10.201.0.2"),
		pod("b", "w", "n1", web, false, "10.244.0.4"),
		pod("b", "other", "n1", map[string]string{"app": "db"}, false, "10.244.0.5"),
		pod("c", "unselected", "n1", web, false, "10.244.0.6"),
	)
	v4, v6, err := localSelectedPodIPs(np, pods, "n1")
	if err != nil {
		t.Fatal(err)
	}
	addrs := func(ss ...string) []netip.Addr {
		var out []netip.Addr
		for _, s := range ss {
			out = append(out, netip.MustParseAddr(s))
		}
		return out
	}
	if want := addrs("10.244.0.3", "10.244.0.4", "10.244.0.9"); !slices.Equal(v4, want) {
		t.Errorf("v4 %v, want %v", v4, want)
	}
	if want := addrs("fd00::9"); !slices.Equal(v6, want) {
		t.Errorf("v6 %v, want %v", v6, want)
	}
}

type recordTables struct {
	applied [][]netip.Addr
	deleted []string
	fail    error
}

func (r *recordTables) Apply(_ SteerConfig, v4, v6 []netip.Addr) error {
	if r.fail != nil {
		return r.fail
	}
	r.applied = append(r.applied, append(slices.Clone(v4), v6...))
	return nil
}
func (r *recordTables) Delete(table string) error { r.deleted = append(r.deleted, table); return nil }

// A sync writes the table; an unchanged state writes nothing; a change
// rewrites it; a failed write is reported and retried by the next sync;
// cleanup removes the table.
func TestSteererSync(t *testing.T) {
	np := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	pods := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	rec := &recordTables{}
	s := newSteerer(SteerConfig{Table: SteerTable, NodeName: "n1"}, networkinglisters.NewNetworkPolicyLister(np), corelisters.NewPodLister(pods), rec)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.sync())
	must(s.sync())
	if len(rec.applied) != 1 || len(rec.applied[0]) != 0 {
		t.Fatalf("applied %v, want one empty table", rec.applied)
	}
	must(pods.Add(pod("a", "x", "n1", nil, false, "10.244.0.9")))
	must(s.sync())
	if len(rec.applied) != 1 {
		t.Fatalf("a pod no policy selects changed the table: %v", rec.applied)
	}
	must(np.Add(policy("a", "deny", nil)))
	rec.fail = errors.New("netlink: no such file or directory")
	if err := s.sync(); err == nil {
		t.Fatal("a failed write was not reported")
	}
	rec.fail = nil
	must(s.sync())
	if len(rec.applied) != 2 || fmt.Sprint(rec.applied[1]) != "[10.244.0.9]" {
		t.Fatalf("applied %v", rec.applied)
	}
	s.cleanup()
	if !slices.Equal(rec.deleted, []string{SteerTable}) {
		t.Errorf("deleted %v", rec.deleted)
	}
}

func TestHealthy(t *testing.T) {
	exists := func(ok bool, err error) func(string) (bool, error) {
		return func(string) (bool, error) { return ok, err }
	}
	if err := healthy(false, SteerTable, exists(true, nil)); err == nil {
		t.Error("healthy before the caches synced")
	}
	if err := healthy(true, SteerTable, exists(false, nil)); err == nil {
		t.Error("healthy without the table")
	}
	if err := healthy(true, SteerTable, exists(false, errors.New("EPERM"))); err == nil {
		t.Error("healthy when the tables cannot be listed")
	}
	if err := healthy(true, SteerTable, exists(true, nil)); err != nil {
		t.Errorf("not healthy with synced caches and the table: %v", err)
	}
}

// reset (phases, which must not import this package) deletes the tables
// the controller makes: the names must agree.
func TestTableNamesMatchReset(t *testing.T) {
	if !slices.Equal(manifests.NetworkPolicyTables, []string{UpstreamTable, SteerTable}) {
		t.Errorf("manifests.NetworkPolicyTables %v, want %v", manifests.NetworkPolicyTables, []string{UpstreamTable, SteerTable})
	}
}

// On the kernel (root only), in a private network namespace: the probe
// answers, the steering table installs with its sets and rules, a second
// apply replaces it, and Delete removes it (twice is fine).
func TestNetlinkTablesInNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	errc := make(chan error, 1)
	go func() {
		// The thread enters a new network namespace and is never given
		// back to the scheduler: it ends with this goroutine.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		errc <- func() error {
			supported, err := queueExprSupported()
			if err != nil {
				return fmt.Errorf("probe: %w", err)
			}
			t.Logf("kernel has the nftables queue expression: %v", supported)
			if ok, _ := tableExists(probeTable); ok {
				return errors.New("the probe left its table behind")
			}
			var nt netlinkTables
			cfg := SteerConfig{Table: SteerTable, QueueID: 100}
			for _, ips := range [][]netip.Addr{{netip.MustParseAddr("10.244.0.9")}, {netip.MustParseAddr("10.244.0.3"), netip.MustParseAddr("10.244.0.4")}} {
				if err := nt.Apply(cfg, ips, []netip.Addr{netip.MustParseAddr("fd00::1")}); err != nil {
					return fmt.Errorf("apply: %w", err)
				}
			}
			c, err := nftables.New()
			if err != nil {
				return err
			}
			tbl := &nftables.Table{Name: SteerTable, Family: nftables.TableFamilyINet}
			set, err := c.GetSetByName(tbl, podV4Set)
			if err != nil {
				return fmt.Errorf("set %s: %w", podV4Set, err)
			}
			elems, err := c.GetSetElements(set)
			if err != nil {
				return err
			}
			if len(elems) != 2 {
				return fmt.Errorf("set %s holds %d addresses after the second apply, want 2", podV4Set, len(elems))
			}
			rules, err := c.GetRules(tbl, &nftables.Chain{Name: "postrouting", Table: tbl})
			if err != nil {
				return fmt.Errorf("rules: %w", err)
			}
			if len(rules) != 7 {
				return fmt.Errorf("%d rules, want 7", len(rules))
			}
			for i := 0; i < 2; i++ {
				if err := nt.Delete(SteerTable); err != nil {
					return fmt.Errorf("delete #%d: %w", i+1, err)
				}
			}
			if ok, err := tableExists(SteerTable); err != nil || ok {
				return fmt.Errorf("table still there after Delete (%v)", err)
			}
			return nil
		}()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
