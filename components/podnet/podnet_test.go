package podnet

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubeforge/kubeforge/components/podnet/ipam"
	"github.com/kubeforge/kubeforge/internal/nodedir"
	"github.com/kubeforge/kubeforge/manifests"
)

// The masquerading's inputs are split by family, without duplicates, in
// a stable order (so that an unchanged cluster never rewrites the table).
func TestMasqSpecs(t *testing.T) {
	specs := masqSpecs([]string{"10.244.1.0/24", "fd00:1::/64"},
		[]string{"10.244.2.0/24", "10.244.1.0/24", "fd00:1::/64", "10.244.0.0/24", "10.244.2.0/24", "bogus"})
	if len(specs) != 2 || specs[0].v6 || !specs[1].v6 {
		t.Fatalf("specs %+v", specs)
	}
	if got := specs[0].key(); got != "v6=false local=10.244.1.0/24, cluster=10.244.0.0/24,10.244.1.0/24,10.244.2.0/24," {
		t.Errorf("v4 %s", got)
	}
	if got := specs[1].key(); got != "v6=true local=fd00:1::/64, cluster=fd00:1::/64," {
		t.Errorf("v6 %s", got)
	}
	again := masqSpecs([]string{"10.244.1.0/24"}, []string{"10.244.0.0/24", "10.244.2.0/24", "10.244.1.0/24"})
	if again[0].key() != specs[0].key() {
		t.Errorf("order changes the key: %s vs %s", again[0].key(), specs[0].key())
	}
	if len(again[1].local) != 0 {
		t.Errorf("no IPv6 pod CIDR, yet a v6 table: %+v", again[1])
	}
}

// inNetns runs f on a thread in a new network namespace of its own (root
// only); the thread is never reused.
func inNetns(t *testing.T, f func() error) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		errc <- f()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func sh(args ...string) (string, error) {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// On the kernel: the table masquerades traffic from the node's pods to
// anything but the cluster's pod CIDRs and multicast; a second apply
// replaces it; without a local pod CIDR it is removed.
func TestMasqueradeTableInNetns(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft is not installed")
	}
	inNetns(t, func() error {
		specs := masqSpecs([]string{"10.244.1.0/24"}, []string{"10.244.0.0/24", "10.244.1.0/24"})
		for i := 0; i < 2; i++ {
			if err := applyMasq(specs[0]); err != nil {
				return err
			}
		}
		out, err := sh("nft", "list", "table", "ip", manifests.PodNetworkTable)
		if err != nil {
			return err
		}
		for _, want := range []string{"type nat hook postrouting priority srcnat", "ip saddr 10.244.1.0/24 jump pod-egress",
			"ip daddr 10.244.0.0/24 return", "ip daddr 10.244.1.0/24 return", "ip daddr 224.0.0.0/4 return", "masquerade fully-random"} {
			if !strings.Contains(out, want) {
				return fmt.Errorf("the table lacks %q:\n%s", want, out)
			}
		}
		if strings.Count(out, "jump pod-egress") != 1 {
			return fmt.Errorf("a second apply added rules:\n%s", out)
		}
		if !masqTableExists(false) || masqTableExists(true) {
			return fmt.Errorf("masqTableExists: v4 %v v6 %v", masqTableExists(false), masqTableExists(true))
		}
		if err := applyMasq(specs[1]); err != nil { // no IPv6 pod CIDR: nothing (and no error)
			return err
		}
		if err := applyMasq(masqSpec{}); err != nil {
			return err
		}
		if masqTableExists(false) {
			return fmt.Errorf("the table stays without a local pod CIDR")
		}
		return nil
	})
}

// On the kernel: the VXLAN device is made on the link holding the node's
// address, with that link's MTU less 50 and the pod CIDR's first address;
// a second call changes nothing; the neighbour and FDB entries are exactly
// the peers'; host-gw removes the device.
func TestVXLANDeviceInNetns(t *testing.T) {
	inNetns(t, func() error {
		if _, err := sh("ip", "link", "add", "eth0", "mtu", "1400", "type", "veth", "peer", "name", "eth1"); err != nil {
			return err
		}
		if _, err := sh("ip", "addr", "add", "10.1.0.2/24", "dev", "eth0"); err != nil {
			return err
		}
		for _, l := range []string{"eth0", "eth1"} {
			if _, err := sh("ip", "link", "set", l, "up"); err != nil {
				return err
			}
		}
		nodeIP := net.ParseIP("10.1.0.2")
		_, cidr, _ := net.ParseCIDR("10.244.1.0/24")
		v, err := ensureVXLAN(nodeIP, cidr)
		if err != nil {
			return err
		}
		if v.mtu != 1350 || len(v.mac) != 6 {
			return fmt.Errorf("device %+v: want MTU 1350 and a MAC", v)
		}
		again, err := ensureVXLAN(nodeIP, cidr)
		if err != nil {
			return err
		}
		if again.index != v.index || again.mac.String() != v.mac.String() {
			return fmt.Errorf("a second call made the device anew: %+v, then %+v", v, again)
		}
		out, err := sh("ip", "-d", "addr", "show", manifests.VXLANName)
		if err != nil {
			return err
		}
		for _, want := range []string{"vxlan id 1", "local 10.1.0.2", "dev eth0", "dstport 8472", "nolearning", "mtu 1350", "inet 10.244.1.0/32", "UP"} {
			if !strings.Contains(out, want) {
				return fmt.Errorf("the device lacks %q:\n%s", want, out)
			}
		}
		mac := func(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }
		peers := []peerEntry{
			{gw: net.ParseIP("10.244.2.0").To4(), mac: mac("02:00:00:00:00:02"), nodeIP: net.ParseIP("192.168.7.2").To4()},
			{gw: net.ParseIP("10.244.3.0").To4(), mac: mac("02:00:00:00:00:03"), nodeIP: net.ParseIP("192.168.8.2").To4()},
		}
		for i := 0; i < 2; i++ {
			if err := syncNeighbours(v, peers); err != nil {
				return err
			}
		}
		if err := syncNeighbours(v, peers[1:]); err != nil { // the first peer left
			return err
		}
		neigh, _ := sh("ip", "neigh", "show", "dev", manifests.VXLANName)
		fdb, _ := sh("bridge", "fdb", "show", "dev", manifests.VXLANName)
		if !strings.Contains(neigh, "10.244.3.0 lladdr 02:00:00:00:00:03 PERMANENT") || strings.Contains(neigh, "10.244.2.0") {
			return fmt.Errorf("neighbours after the first peer left:\n%s", neigh)
		}
		if !strings.Contains(fdb, "02:00:00:00:00:03 dst 192.168.8.2") || strings.Contains(fdb, "02:00:00:00:00:02") {
			return fmt.Errorf("forwarding entries after the first peer left:\n%s", fdb)
		}
		if err := deleteVXLAN(); err != nil {
			return err
		}
		if _, err := netlink.LinkByName(manifests.VXLANName); err == nil {
			return fmt.Errorf("%s is still there", manifests.VXLANName)
		}
		return deleteVXLAN() // twice is fine
	})
}

// The agent on the kernel, with the cluster's Nodes from a fake API: a
// peer on the node's subnet gets a direct route, a peer behind a router
// an onlink route through the VXLAN device with its neighbour and FDB
// entries, and this node's Node its annotations; the routed peer's entries
// go when it leaves; backend vxlan sends the on-link peer over the overlay
// too; host-gw removes the device and its annotation.
func TestAgentSyncInNetns(t *testing.T) {
	node := func(name, ip, cidr, mac, backend string) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{}},
			Spec:   corev1.NodeSpec{PodCIDR: cidr, PodCIDRs: []string{cidr}},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}}}
		if mac != "" {
			n.Annotations[AnnotationVTEPMAC] = mac
			n.Annotations[AnnotationBackend] = backend
		}
		return n
	}
	self := node("self", "10.1.0.2", "10.244.1.0/24", "", "")
	near := node("near", "10.1.0.3", "10.244.2.0/24", "02:00:00:00:00:02", "auto")
	far := node("far", "192.168.7.2", "10.244.3.0/24", "02:00:00:00:00:03", "auto")
	client := fake.NewClientset(self.DeepCopy())
	dir := t.TempDir()
	inNetns(t, func() error {
		for _, args := range [][]string{
			{"ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"},
			{"ip", "addr", "add", "10.1.0.2/24", "dev", "eth0"},
			{"ip", "link", "set", "eth0", "up"}, {"ip", "link", "set", "eth1", "up"},
			{"ip", "route", "add", "192.168.7.0/24", "via", "10.1.0.1"},
		} {
			if _, err := sh(args...); err != nil {
				return err
			}
		}
		a := &agent{o: AgentOptions{NodeName: "self", CIDRFile: dir + "/cidrs.json", Backend: "auto"},
			log: slog.New(slog.NewTextHandler(io.Discard, nil)), ctx: context.Background(), client: client}
		list := func(self *corev1.Node, peers ...*corev1.Node) view {
			return view{self: self, selfRead: true, peers: func() ([]*corev1.Node, error) { return peers, nil }}
		}
		routes := func() string { out, _ := sh("ip", "route", "show", "proto", "75"); return out }
		a.sync(list(self, near, far))
		got := routes()
		if !strings.Contains(got, "10.244.2.0/24 via 10.1.0.3 dev eth0") ||
			!strings.Contains(got, "10.244.3.0/24 via 10.244.3.0 dev "+manifests.VXLANName+" onlink") {
			return fmt.Errorf("routes:\n%s", got)
		}
		if fdb, _ := sh("bridge", "fdb", "show", "dev", manifests.VXLANName); !strings.Contains(fdb, "02:00:00:00:00:03 dst 192.168.7.2") || strings.Contains(fdb, "02:00:00:00:00:02") {
			return fmt.Errorf("forwarding entries:\n%s", fdb)
		}
		n, err := client.CoreV1().Nodes().Get(context.Background(), "self", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if n.Annotations[AnnotationBackend] != "auto" || len(n.Annotations[AnnotationVTEPMAC]) != 17 {
			return fmt.Errorf("annotations of this node: %v", n.Annotations)
		}
		if got := ipam.ReadCIDRs(a.o.CIDRFile); len(got) != 1 || got[0] != "10.244.1.0/24" {
			return fmt.Errorf("pod CIDR file: %v", got)
		}
		if out, _ := sh("nft", "list", "table", "ip", manifests.PodNetworkTable); !strings.Contains(out, "ip daddr 10.244.3.0/24 return") {
			return fmt.Errorf("masquerading does not spare the far peer's pods:\n%s", out)
		}
		// The node directory unreadable: the routes stay, and health says why.
		before := routes()
		a.sync(view{self: n, selfRead: true, peers: func() ([]*corev1.Node, error) { return nil, nodedir.ErrNotPublished }})
		if got := routes(); got != before {
			return fmt.Errorf("routes changed while the other nodes were unknown:\n%s\nbefore:\n%s", got, before)
		}
		if !strings.Contains(a.health, "no kube-system/kubeforge-nodes yet: the controller-manager publishes it") {
			return fmt.Errorf("health without the node directory: %s", a.health)
		}
		// A first start (no masquerading table yet) without the directory
		// masquerades all but its own pods' traffic; the directory back,
		// the other nodes' pods are spared again.
		if _, err := sh("nft", "delete", "table", "ip", manifests.PodNetworkTable); err != nil {
			return err
		}
		a.sync(view{self: n, selfRead: true, peers: func() ([]*corev1.Node, error) { return nil, nodedir.ErrNotPublished }})
		if out, _ := sh("nft", "list", "table", "ip", manifests.PodNetworkTable); !strings.Contains(out, "10.244.1.0/24") || strings.Contains(out, "10.244.3.0/24") {
			return fmt.Errorf("masquerading on a first start without the directory:\n%s", out)
		}
		a.sync(list(n, near, far))
		if out, _ := sh("nft", "list", "table", "ip", manifests.PodNetworkTable); !strings.Contains(out, "ip daddr 10.244.3.0/24 return") {
			return fmt.Errorf("masquerading once the directory is back:\n%s", out)
		}
		// The far node leaves.
		a.sync(list(n, near))
		if got := routes(); strings.Contains(got, "10.244.3.0") || !strings.Contains(got, "10.244.2.0/24 via 10.1.0.3") {
			return fmt.Errorf("routes after the far node left:\n%s", got)
		}
		if neigh, _ := sh("ip", "neigh", "show", "dev", manifests.VXLANName); strings.Contains(neigh, "10.244.3.0") {
			return fmt.Errorf("neighbour of the far node left behind:\n%s", neigh)
		}
		// Backend vxlan: the near peer over the overlay as well.
		a.o.Backend = "vxlan"
		a.sync(list(n, near, far))
		if got := routes(); !strings.Contains(got, "10.244.2.0/24 via 10.244.2.0 dev "+manifests.VXLANName+" onlink") {
			return fmt.Errorf("routes with backend vxlan:\n%s", got)
		}
		// Backend host-gw: no device, no MAC annotation, the far peer unreachable (reported).
		a.o.Backend = "host-gw"
		a.sync(list(n, near, far))
		if !strings.Contains(a.health, "node far (192.168.7.2) is not on this node's subnet and backend host-gw on this node") {
			return fmt.Errorf("the unreachable peer is not reported: %s", a.health)
		}
		if _, err := netlink.LinkByName(manifests.VXLANName); err == nil {
			return fmt.Errorf("%s stays with backend host-gw", manifests.VXLANName)
		}
		if got := routes(); !strings.Contains(got, "10.244.2.0/24 via 10.1.0.3") || strings.Contains(got, "10.244.3.0") {
			return fmt.Errorf("routes with backend host-gw:\n%s", got)
		}
		n, _ = client.CoreV1().Nodes().Get(context.Background(), "self", metav1.GetOptions{})
		if _, ok := n.Annotations[AnnotationVTEPMAC]; ok || n.Annotations[AnnotationBackend] != "host-gw" {
			return fmt.Errorf("annotations with backend host-gw: %v", n.Annotations)
		}
		return nil
	})
}
