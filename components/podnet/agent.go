package podnet

import (
	"context"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
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
	Log      *slog.Logger
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
	log.Info("pod network agent started", "node", o.NodeName)
	a := &agent{o: o, log: log}
	factory := informers.NewSharedInformerFactory(client, 10*time.Minute)
	nodes := factory.Core().V1().Nodes()
	sync := func(any) { a.sync(nodes.Lister().List) }
	if _, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: sync, UpdateFunc: func(_, n any) { sync(n) }, DeleteFunc: sync,
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	// Routes also go when something else removes them (the node's link
	// going down and up drops every route through it): check the kernel's
	// table now and then, not only when a Node changes.
	tick := time.NewTicker(ResyncPeriod)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			factory.Shutdown()
			return nil
		case <-tick.C:
			if nodes.Informer().HasSynced() {
				sync(nil)
			}
		}
	}
}

// ResyncPeriod is how often the agent checks its routes against the
// kernel's table besides reacting to Node changes.
const ResyncPeriod = 15 * time.Second

type agent struct {
	o   AgentOptions
	log *slog.Logger
	mu  sync.Mutex
}

func (a *agent) sync(list func(labels.Selector) ([]*corev1.Node, error)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	nodes, err := list(labels.Everything())
	if err != nil {
		return
	}
	want := map[string]net.IP{}
	for _, n := range nodes {
		cidrs := n.Spec.PodCIDRs
		if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
			cidrs = []string{n.Spec.PodCIDR}
		}
		if n.Name == a.o.NodeName {
			if len(cidrs) > 0 && !slices.Equal(cidrs, ReadCIDRs(a.o.CIDRFile)) {
				if err := WriteCIDRs(a.o.CIDRFile, cidrs); err != nil {
					a.log.Error("write the node's pod CIDRs", "err", err)
				} else {
					a.log.Info("this node's pod CIDRs", "cidrs", cidrs)
				}
			}
			continue
		}
		ip := internalIP(n)
		if ip == nil {
			continue
		}
		for _, c := range cidrs {
			if (ip.To4() != nil) == isV4CIDR(c) {
				want[c] = ip
			}
		}
	}
	wantNet := map[string]bool{}
	for c := range want {
		if _, ipnet, err := net.ParseCIDR(c); err == nil {
			wantNet[ipnet.String()] = true
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
	have := map[string]net.IP{}
	for _, r := range existing {
		if r.Dst != nil {
			have[r.Dst.String()] = r.Gw
		}
	}
	for dst, gw := range want {
		_, ipnet, err := net.ParseCIDR(dst)
		if err != nil {
			continue
		}
		if cur, ok := have[ipnet.String()]; ok && cur.Equal(gw) {
			continue
		}
		r := &netlink.Route{Dst: ipnet, Gw: gw, Protocol: RouteProtocol}
		if err := netlink.RouteReplace(r); err != nil {
			a.log.Error("route to a node's pods", "cidr", dst, "via", gw, "err", err)
			continue
		}
		a.log.Info("route to a node's pods", "cidr", dst, "via", gw)
	}
	// Routes of nodes that left (including ones from before a restart).
	for i := range existing {
		r := existing[i]
		if r.Dst == nil {
			continue
		}
		if _, keep := wantNet[r.Dst.String()]; keep {
			continue
		}
		if err := netlink.RouteDel(&r); err == nil {
			a.log.Info("removed the route to a node that left", "cidr", r.Dst)
		}
	}
}

func internalIP(n *corev1.Node) net.IP {
	for _, addr := range n.Status.Addresses {
		if addr.Type == corev1.NodeInternalIP {
			return net.ParseIP(addr.Address)
		}
	}
	return nil
}

func isV4CIDR(c string) bool {
	ip, _, err := net.ParseCIDR(c)
	return err == nil && ip.To4() != nil
}
