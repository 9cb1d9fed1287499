// Package podnet is kubeforge's pod network: a Linux bridge per node (the
// CNI bridge plugin), pod addresses from the node's own pod CIDR (which the
// controller-manager allocates from --pod-network-cidr), and, kept by the
// node agent, routes on each node to every other node's pod CIDR: through
// that node's address when it is on this node's subnet (flannel's host-gw
// design), else through a VXLAN overlay (one device per node, neighbour and
// FDB entries per peer: flannel's vxlan backend with DirectRouting).
// Traffic from pods to outside the cluster's pod network is masqueraded by
// the agent's nftables table; pod-to-pod traffic keeps its source address.
//
// The CNI configuration exists from the node's start, so the kubelet
// reports the network ready at once; its IPAM is the plugin of package ipam,
// which waits (briefly) for the node agent to learn the node's pod CIDR and
// then delegates to the standard host-local plugin with that range.
package podnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubeforge/kubeforge/components/node/duty"
	"github.com/kubeforge/kubeforge/components/podnet/ipam"
	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/nodedir"
	"github.com/kubeforge/kubeforge/manifests"
)

// RouteProtocol marks the routes the agent installs (so it finds its own
// after a restart and leaves every other route alone).
const RouteProtocol = netlink.RouteProtocol(0x4b)

// AgentOptions configure the node agent.
type AgentOptions struct {
	// Kubeconfig is the node's credentials (kubelet.conf, host path); the
	// agent waits for it (a joining node gets it from TLS bootstrap).
	Kubeconfig string
	// NodeName is this node.
	NodeName string
	// CIDRFile is where the node's pod CIDRs go for the IPAM plugin (host path).
	CIDRFile string
	// Backend is config.PodNetworkAuto (also when empty), PodNetworkHostGW
	// or PodNetworkVXLAN.
	Backend string
	// Health, when set, receives the agent's state for `node status`.
	Health *duty.Health
	Log    *slog.Logger
}

// RunAgent keeps the node's pod CIDR file and its routes to the other
// nodes' pod CIDRs in line with the cluster's Nodes, until ctx ends.
func RunAgent(ctx context.Context, o AgentOptions) error {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	// A joining node gets its credentials from the kubelet's TLS bootstrap:
	// wait for them, and retry while the kubelet is still writing them.
	var client kubernetes.Interface
	for client == nil {
		if _, err := os.Stat(o.Kubeconfig); err == nil {
			cfg, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
			if err == nil {
				cfg.UserAgent = "kubeforge-podnet"
				client, err = kubernetes.NewForConfig(cfg)
			}
			if err != nil {
				log.Debug("pod network agent: credentials not usable yet", "err", err)
			}
		}
		if client == nil {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	if o.Backend == "" {
		o.Backend = config.PodNetworkAuto
	}
	log.Info("pod network agent started", "node", o.NodeName, "backend", o.Backend)
	a := &agent{o: o, log: log, ctx: ctx, client: client}
	// The node reads its own Node directly (its pod CIDR must not wait for
	// anyone) and the other nodes from the node directory: the Node
	// authorizer lets it read no other Node.
	var w *nodedir.Watcher
	sync := func() { a.sync(view{self: w.Self(), selfRead: w.SelfSynced(), peers: w.Others}) }
	w, err := nodedir.NewWatcher(client, o.NodeName, log, sync)
	if err != nil {
		return err
	}
	w.Start(ctx.Done())
	// Routes also go when something else removes them (the node's link
	// going down and up drops every route through it): check the kernel's
	// table now and then, not only when a Node changes.
	tick := time.NewTicker(ResyncPeriod)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			w.Shutdown()
			return nil
		case <-tick.C:
			sync()
		}
	}
}

// ResyncPeriod is how often the agent checks its routes against the
// kernel's table besides reacting to Node changes.
const ResyncPeriod = 15 * time.Second

type agent struct {
	o      AgentOptions
	log    *slog.Logger
	ctx    context.Context
	client kubernetes.Interface

	mu      sync.Mutex
	masqKey [2]string // what each family's table was last made from
	health  string    // the last health message
}

// route is a route the agent wants to a peer's pod CIDR: through the
// peer's node address (host-gw, link 0), or onlink through the VXLAN
// device to the first address of the peer's pod CIDR.
type route struct {
	dst  *net.IPNet
	gw   net.IP
	link int
}

func podCIDRs(n *corev1.Node) []string {
	if len(n.Spec.PodCIDRs) == 0 && n.Spec.PodCIDR != "" {
		return []string{n.Spec.PodCIDR}
	}
	return n.Spec.PodCIDRs
}

// view is what the agent knows of the cluster.
type view struct {
	// self is this node's own Node (nil while it is not registered);
	// selfRead says it has been read.
	self     *corev1.Node
	selfRead bool
	// peers are the other nodes (from the node directory); an error says
	// why they are unknown.
	peers func() ([]*corev1.Node, error)
}

func (a *agent) sync(v view) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !v.selfRead {
		return
	}
	self := v.self
	peers, peersErr := v.peers()
	var all []string // every node's pod CIDRs: the cluster's pod network
	if self != nil {
		all = append(all, podCIDRs(self)...)
	}
	for _, n := range peers {
		all = append(all, podCIDRs(n)...)
	}
	var err error
	var problems []string
	var own []string
	var vx *vtep
	if self != nil {
		own = podCIDRs(self)
		if len(own) > 0 && !slices.Equal(own, ipam.ReadCIDRs(a.o.CIDRFile)) {
			if err := ipam.WriteCIDRs(a.o.CIDRFile, own); err != nil {
				a.log.Error("write the node's pod CIDRs", "err", err)
			} else {
				a.log.Info("this node's pod CIDRs", "cidrs", own)
			}
		}
		if vx, err = a.syncDevice(self, own); err != nil {
			a.log.Error("the pod network's VXLAN device", "err", err)
			problems = append(problems, err.Error())
		}
	}

	if peersErr != nil {
		// Without the other nodes, leave the routes, neighbours and
		// masquerading as they are rather than removing them; only a
		// node's first start makes its masquerading from its own pod CIDR.
		problems = append(problems, a.syncMasq(own, own, true)...)
		problems = append(problems, fmt.Sprintf("the other nodes are unknown, so the routes to their pods stay as they are: %v", peersErr))
		a.report(own, nil, nil, vx, problems)
		return
	}
	want := map[string]route{}
	var neighbours []peerEntry
	var direct, overlay []string
	for _, n := range peers {
		ip := internalIP(n)
		if ip == nil {
			continue
		}
		mac, _ := net.ParseMAC(n.Annotations[AnnotationVTEPMAC])
		linked := onLink(ip)
		useOverlay := vx != nil && mac != nil && ip.To4() != nil &&
			(a.o.Backend == config.PodNetworkVXLAN || n.Annotations[AnnotationBackend] == config.PodNetworkVXLAN || !linked)
		for _, c := range podCIDRs(n) {
			_, ipnet, err := net.ParseCIDR(c)
			if err != nil || (ip.To4() != nil) != (ipnet.IP.To4() != nil) {
				continue
			}
			if useOverlay {
				gw := ipnet.IP.Mask(ipnet.Mask)
				want[ipnet.String()] = route{dst: ipnet, gw: gw, link: vx.index}
				neighbours = append(neighbours, peerEntry{gw: gw, mac: mac, nodeIP: ip})
			} else {
				want[ipnet.String()] = route{dst: ipnet, gw: ip}
			}
		}
		switch {
		case useOverlay:
			overlay = append(overlay, n.Name)
		case linked:
			direct = append(direct, n.Name)
		default:
			why := "backend host-gw on this node: set KubeforgeConfiguration podNetwork.backend to auto or vxlan"
			if a.o.Backend != config.PodNetworkHostGW {
				why = "it has no VXLAN device (its podNetwork.backend is host-gw, or its agent has not started): give every node podNetwork.backend auto or vxlan"
			}
			problems = append(problems, fmt.Sprintf("node %s (%s) is not on this node's subnet and %s", n.Name, ip, why))
		}
	}

	// Compare with the kernel's table, not with what the agent did before:
	// routes are also removed by others (a link going down) and left over
	// from before a restart.
	existing, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Protocol: RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		a.log.Error("list the routes to other nodes' pods", "err", err)
		return
	}
	type hop struct {
		gw   net.IP
		link int
	}
	have := map[string]hop{}
	for _, r := range existing {
		if r.Dst != nil {
			have[r.Dst.String()] = hop{r.Gw, r.LinkIndex}
		}
	}
	for dst, w := range want {
		if cur, ok := have[dst]; ok && cur.gw.Equal(w.gw) && (w.link == 0 || cur.link == w.link) {
			continue
		}
		r := &netlink.Route{Dst: w.dst, Gw: w.gw, Protocol: RouteProtocol}
		via := w.gw.String()
		if w.link != 0 {
			r.LinkIndex, r.Flags = w.link, int(netlink.FLAG_ONLINK)
			via += " dev " + manifests.VXLANName
		}
		if err := netlink.RouteReplace(r); err != nil {
			a.log.Error("route to a node's pods", "cidr", dst, "via", via, "err", err)
			problems = append(problems, fmt.Sprintf("route %s via %s: %v", dst, via, err))
			continue
		}
		a.log.Info("route to a node's pods", "cidr", dst, "via", via)
	}
	// Routes of nodes that left (including ones from before a restart).
	for i := range existing {
		r := existing[i]
		if r.Dst == nil {
			continue
		}
		if _, keep := want[r.Dst.String()]; keep {
			continue
		}
		if err := netlink.RouteDel(&r); err == nil {
			a.log.Info("removed the route to a node that left", "cidr", r.Dst)
		}
	}
	if vx != nil {
		if err := syncNeighbours(vx, neighbours); err != nil {
			a.log.Error("the VXLAN device's neighbour entries", "err", err)
			problems = append(problems, err.Error())
		}
	}

	// Masquerading of traffic that leaves the pod network: once this
	// node's pod CIDR is known (until then, whatever a previous run made
	// stays).
	problems = append(problems, a.syncMasq(own, all, false)...)
	a.report(own, direct, overlay, vx, problems)
}

// syncMasq keeps the masquerading tables for the node's pod CIDRs own and
// the cluster's all. With onlyNew it makes a missing table and leaves an
// existing one alone (the other nodes are unknown: a node's first start,
// before the node directory, masquerades all but its own pods' traffic).
func (a *agent) syncMasq(own, all []string, onlyNew bool) []string {
	var problems []string
	if len(own) == 0 {
		return nil
	}
	for i, s := range masqSpecs(own, all) {
		key := s.key()
		exists := masqTableExists(s.v6)
		if onlyNew && (exists || len(s.local) == 0) {
			continue
		}
		if key == a.masqKey[i] && exists == (len(s.local) > 0) {
			continue
		}
		if err := applyMasq(s); err != nil {
			a.log.Error("masquerading of pod traffic leaving the pod network", "err", err)
			problems = append(problems, err.Error())
			a.masqKey[i] = ""
			continue
		}
		a.masqKey[i] = key
		if onlyNew {
			a.masqKey[i] = "" // made from this node alone: redone once the others are known
		}
		if len(s.local) > 0 {
			a.log.Info("masquerading pod traffic that leaves the pod network", "from", s.local, "except to", s.cluster)
		}
	}
	return problems
}

// report publishes the agent's state when it changed.
func (a *agent) report(own, direct, overlay []string, vx *vtep, problems []string) {
	direct, overlay = slices.Sorted(slices.Values(direct)), slices.Sorted(slices.Values(overlay))
	msg := fmt.Sprintf("backend %s, pod CIDR %s: %d peer(s) routed directly %v, %d over VXLAN %v",
		a.o.Backend, strings.Join(own, ","), len(direct), direct, len(overlay), overlay)
	if vx != nil {
		msg += fmt.Sprintf(" (%s, MTU %d)", manifests.VXLANName, vx.mtu)
	}
	if len(problems) > 0 {
		msg += "; " + strings.Join(problems, "; ")
	}
	if msg == a.health {
		return
	}
	a.health = msg
	if a.o.Health == nil {
		return
	}
	if len(problems) > 0 {
		a.o.Health.Warn("%s", msg)
	} else {
		a.o.Health.OK("%s", msg)
	}
}

// syncDevice keeps the node's VXLAN device (none with backend host-gw)
// and tells the other nodes about it through this node's annotations.
func (a *agent) syncDevice(self *corev1.Node, own []string) (*vtep, error) {
	var vx *vtep
	var devErr error
	if a.o.Backend == config.PodNetworkHostGW {
		devErr = deleteVXLAN()
	} else {
		ip := internalIP(self)
		var v4 *net.IPNet
		for _, c := range own {
			if _, n, err := net.ParseCIDR(c); err == nil && n.IP.To4() != nil {
				v4 = n
				break
			}
		}
		if ip != nil && ip.To4() != nil && v4 != nil {
			vx, devErr = ensureVXLAN(ip, v4)
		}
	}
	want := map[string]*string{AnnotationBackend: &a.o.Backend, AnnotationVTEPMAC: nil}
	if vx != nil {
		mac := vx.mac.String()
		want[AnnotationVTEPMAC] = &mac
	}
	changed := false
	for k, v := range want {
		cur, ok := self.Annotations[k]
		if (v == nil && ok) || (v != nil && (!ok || cur != *v)) {
			changed = true
		}
	}
	if changed {
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": want}})
		ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
		defer cancel()
		if _, err := a.client.CoreV1().Nodes().Patch(ctx, a.o.NodeName, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return vx, errors.Join(devErr, fmt.Errorf("annotate node %s with its VXLAN device: %w", a.o.NodeName, err))
		}
	}
	return vx, devErr
}

func internalIP(n *corev1.Node) net.IP {
	for _, addr := range n.Status.Addresses {
		if addr.Type == corev1.NodeInternalIP {
			return net.ParseIP(addr.Address)
		}
	}
	return nil
}
