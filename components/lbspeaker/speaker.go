// Package lbspeaker announces LoadBalancer Service addresses on the node
// network, as MetalLB's layer-2 mode does: it runs in every node service
// (a duty, with the kubelet's credentials), and for each address of a
// LoadBalancer Service that is not a node's own (an address the cloud
// controller took from its pool) exactly one node, chosen by
// lbpool.Announcer among the Ready nodes whose speaker runs, answers ARP
// for it; the node that takes an address over sends gratuitous ARP so that
// peers update their caches. kube-proxy on that node then routes the
// traffic to the Service (it programs every status.loadBalancer.ingress
// address).
//
// A speaker marks its Node with the annotation SpeakerAnnotation = "ready"
// while it runs and "stopped" when it stops (the node service stops, the
// node is reset): the other speakers take its addresses over at once. A
// node that dies without stopping its speaker loses its addresses when the
// node lifecycle controller marks it NotReady (node-monitor-grace-period).
//
// A speaker reads its own Node directly and the other nodes from the node
// directory (internal/nodedir): nodes may not list Nodes. While the
// directory cannot be read, a speaker keeps what it announces.
//
// A speaker announces only addresses of the cloud controller's pool (its
// cloud config ConfigMap, which the nodes may read): the annotation and
// status of a Service are not enough, so whoever may write those cannot
// make a node answer ARP for a gateway's or another host's address.
package lbspeaker

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/kubeforge/kubeforge/internal/lbpool"
	"github.com/kubeforge/kubeforge/internal/nodedir"
)

// AddressAnnotation on a Service names the pool address the cloud
// controller gave it (components/cloudcontroller.AddressAnnotation): a
// speaker announces only such addresses, never those another
// load-balancer implementation sets.
const AddressAnnotation = "kubeforge.io/load-balancer-address"

// SpeakerAnnotation on a Node says whether its speaker runs ("ready").
const SpeakerAnnotation = nodedir.SpeakerAnnotation

// Event reasons on a Service.
const (
	ReasonAnnouncing = "AnnouncingAddress"
	ReasonNoNode     = "NoAnnouncingNode"
	ReasonNotInPool  = "AddressNotInPool"
)

// Reporter receives the speaker's health (duty.Health in the node service).
type Reporter interface {
	OK(format string, args ...any)
	Warn(format string, args ...any)
}

// Options configure a speaker.
type Options struct {
	Client   kubernetes.Interface
	NodeName string
	Log      *slog.Logger
	Health   Reporter
	// Announce is where addresses are announced; nil means ARP on the
	// interfaces holding them (tests pass a fake).
	Announce Announcer
	// Resync re-evaluates everything this often besides on changes
	// (default 10 s).
	Resync time.Duration
}

// Announcer announces addresses on the network.
type Announcer interface {
	// Set makes addrs the announced addresses; it returns a problem per
	// address it cannot announce.
	Set(addrs []netip.Addr) map[netip.Addr]error
	Close()
}

// Run speaks for the node until ctx ends.
func Run(ctx context.Context, o Options) error {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Resync <= 0 {
		o.Resync = 10 * time.Second
	}
	if o.Announce == nil {
		o.Announce = newARPAnnouncer(o.Log)
	}
	defer o.Announce.Close()

	f := informers.NewSharedInformerFactory(o.Client, 0)
	svcs := f.Core().V1().Services()
	kick := nodedir.NewKick()
	poke, h := kick.Poke, kick.Handler()
	if _, err := svcs.Informer().AddEventHandler(h); err != nil {
		return err
	}
	// Its own Node directly, the others from the node directory (the Node
	// authorizer lets a node read only its own Node).
	nodes, err := nodedir.NewWatcher(o.Client, o.NodeName, o.Log, poke)
	if err != nil {
		return err
	}
	pool, err := newPoolWatcher(o.Client, poke)
	if err != nil {
		return err
	}
	f.Start(ctx.Done())
	defer f.Shutdown()
	pool.Start(ctx.Done())
	defer pool.Shutdown()
	go func() { // a pool read once the ConfigMap turns readable, or absent, is no event
		if cache.WaitForCacheSync(ctx.Done(), pool.HasSynced) {
			poke()
		}
	}()
	nodes.Start(ctx.Done())
	defer nodes.Shutdown()

	if err := mark(ctx, o, "ready", o.Health); err != nil {
		return err
	}
	defer func() {
		// Withdraw at once so that the others take the addresses over,
		// even though ctx has ended.
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := mark(sctx, o, "stopped", nil); err != nil {
			o.Log.Warn("cannot mark the node's speaker stopped: its addresses move when the node turns NotReady", "err", err)
		}
	}()
	if !cache.WaitForCacheSync(ctx.Done(), svcs.Informer().HasSynced, nodes.SelfSynced) {
		return ctx.Err()
	}

	bc := record.NewBroadcaster(record.WithContext(ctx))
	bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: o.Client.CoreV1().Events("")})
	defer bc.Shutdown()
	rec := bc.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubeforge-lb-speaker", Host: o.NodeName})

	s := &state{o: o, rec: rec, services: svcs.Lister(), nodes: nodes, pool: pool, held: map[netip.Addr]string{}, refused: map[netip.Addr]string{}}
	t := time.NewTicker(o.Resync)
	defer t.Stop()
	for {
		s.reconcile()
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
		case <-t.C:
		}
	}
}

// mark sets the node's SpeakerAnnotation, retrying while the Node does
// not exist yet (a joining node's kubelet registers it).
// Failures are reported to h (when not nil) from the fifth on.
func mark(ctx context.Context, o Options, v string, h Reporter) error {
	patch := []byte(`{"metadata":{"annotations":{` + strconv.Quote(SpeakerAnnotation) + `:` + strconv.Quote(v) + `}}}`)
	for tries := 1; ; tries++ {
		_, err := o.Client.CoreV1().Nodes().Patch(ctx, o.NodeName, types.MergePatchType, patch, metav1.PatchOptions{})
		if err == nil {
			return nil
		}
		if h != nil && tries >= 5 {
			h.Warn("cannot mark Node %s with %s=%s, so no address is announced from it (retrying every second): %v", o.NodeName, SpeakerAnnotation, v, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("annotate Node %s with %s=%s: %w", o.NodeName, SpeakerAnnotation, v, err)
		case <-time.After(time.Second):
		}
	}
}

type state struct {
	o        Options
	rec      record.EventRecorder
	services corelisters.ServiceLister
	nodes    *nodedir.Watcher
	pool     poolWatcher
	// held maps the addresses this node announces to their Service.
	held map[netip.Addr]string
	// refused maps the addresses outside the pool, already reported, to
	// their Service.
	refused map[netip.Addr]string
}

// Plan is what a speaker should announce: the addresses this node wins,
// by Service, the addresses no node may announce, and the addresses
// outside the pool, which no node announces.
type Plan struct {
	Mine     map[netip.Addr]*corev1.Service
	Orphaned map[netip.Addr]*corev1.Service
	Refused  map[netip.Addr]*corev1.Service
	Total    int
}

// Decide computes the plan of node me from the cluster's Nodes and
// Services and the address pool (pure: the unit tests drive it with
// fakes).
func Decide(me string, nodes []*corev1.Node, svcs []*corev1.Service, pool lbpool.Pool) Plan {
	own := map[netip.Addr]bool{}
	var cands []lbpool.Candidate
	for _, n := range nodes {
		for _, a := range n.Status.Addresses {
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				own[ip] = true
			}
		}
		c := lbpool.Candidate{Name: n.Name, Speaking: n.Annotations[SpeakerAnnotation] == "ready", Deleting: n.DeletionTimestamp != nil}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				c.Ready = cond.Status == corev1.ConditionTrue
			}
		}
		if v, ok := n.Labels[corev1.LabelNodeExcludeBalancers]; ok {
			b, err := strconv.ParseBool(v)
			c.Excluded = err != nil || b
		}
		cands = append(cands, c)
	}
	p := Plan{Mine: map[netip.Addr]*corev1.Service{}, Orphaned: map[netip.Addr]*corev1.Service{}, Refused: map[netip.Addr]*corev1.Service{}}
	for _, s := range svcs {
		if s.Spec.Type != corev1.ServiceTypeLoadBalancer || s.Spec.LoadBalancerClass != nil || s.DeletionTimestamp != nil {
			continue
		}
		for _, in := range s.Status.LoadBalancer.Ingress {
			ip, err := netip.ParseAddr(in.IP)
			if err != nil || own[ip] || !ip.Is4() || s.Annotations[AddressAnnotation] != ip.String() {
				continue // the nodes' own addresses need no announcing, others are not ours
			}
			if !pool.Contains(ip) {
				p.Refused[ip] = s
				continue
			}
			p.Total++
			switch Announce(ip, cands) {
			case me:
				p.Mine[ip] = s
			case "":
				p.Orphaned[ip] = s
			}
		}
	}
	return p
}

// Announce is lbpool.Announcer (exported here for the e2e test's sake).
func Announce(ip netip.Addr, c []lbpool.Candidate) string { return lbpool.Announcer(ip, c) }

func (s *state) reconcile() {
	nodes, err := s.nodes.Others()
	if err != nil {
		// Without the other nodes this node cannot know which addresses
		// are its own to announce: keep what it announces (when the
		// directory comes back, the plan is computed again).
		s.o.Health.Warn("the other nodes are unknown, so the %d address(es) announced from this node stay as they are: %v", len(s.held), err)
		return
	}
	pool, err := s.pool.Pool()
	if err != nil {
		s.o.Health.Warn("the address pool is unknown, so the %d address(es) announced from this node stay as they are: %v", len(s.held), err)
		return
	}
	if self := s.nodes.Self(); self != nil {
		nodes = append(nodes, self)
	}
	svcs, _ := s.services.List(labels.Everything())
	plan := Decide(s.o.NodeName, nodes, svcs, pool)
	addrs := make([]netip.Addr, 0, len(plan.Mine))
	for a := range plan.Mine {
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	problems := s.o.Announce.Set(addrs)
	next := map[netip.Addr]string{}
	var lines, bad []string
	for _, a := range addrs {
		svc := plan.Mine[a]
		key := svc.Namespace + "/" + svc.Name
		if err := problems[a]; err != nil {
			bad = append(bad, fmt.Sprintf("%s (%s): %v", a, key, err))
			continue
		}
		next[a] = key
		lines = append(lines, fmt.Sprintf("%s (%s)", a, key))
		if s.held[a] != key {
			s.o.Log.Info("announcing", "address", a, "service", key)
			s.rec.Eventf(svc, corev1.EventTypeNormal, ReasonAnnouncing, "Announcing %s from node %s (layer 2, ARP)", a, s.o.NodeName)
		}
	}
	for a, key := range s.held {
		if _, ok := next[a]; !ok {
			s.o.Log.Info("no longer announcing", "address", a, "service", key)
		}
	}
	for a, svc := range plan.Orphaned {
		if s.held[a] == "" && nodes != nil {
			s.o.Log.Warn("no Ready node with a running speaker may announce the address", "address", a, "service", svc.Namespace+"/"+svc.Name)
		}
	}
	s.held = next
	var refused []string
	refusedNow := map[netip.Addr]string{}
	for a, svc := range plan.Refused {
		key := svc.Namespace + "/" + svc.Name
		refusedNow[a] = key
		refused = append(refused, fmt.Sprintf("%s (%s)", a, key))
		if s.refused[a] != key {
			s.o.Log.Warn("not announcing an address outside the pool", "address", a, "service", key, "pool", pool.String())
			s.rec.Eventf(svc, corev1.EventTypeWarning, ReasonNotInPool, "Not announcing %s: it is not in the LoadBalancer address pool (%s)", a, describePool(pool))
		}
	}
	slices.Sort(refused)
	s.refused = refusedNow
	switch {
	case len(bad) > 0:
		s.o.Health.Warn("cannot announce %s", strings.Join(bad, "; "))
	case len(refused) > 0:
		s.o.Health.Warn("not announcing %s: not in the address pool (%s)", strings.Join(refused, ", "), describePool(pool))
	case len(lines) > 0:
		s.o.Health.OK("announcing %s from this node; %d LoadBalancer pool address(es) in the cluster", strings.Join(lines, ", "), plan.Total)
	default:
		s.o.Health.OK("announcing nothing from this node; %d LoadBalancer pool address(es) in the cluster", plan.Total)
	}
}

// describePool says what the pool is, and where it is kept.
func describePool(p lbpool.Pool) string {
	if len(p) == 0 {
		return "there is none: " + poolWhere + " has no addressPool, or does not exist"
	}
	return p.String() + ", from " + poolWhere
}

// arpAnnouncer answers ARP for each address on the interface whose subnet
// holds it (one responder per interface).
type arpAnnouncer struct {
	log  *slog.Logger
	byIf map[string]*responder
}

func newARPAnnouncer(log *slog.Logger) *arpAnnouncer {
	return &arpAnnouncer{log: log, byIf: map[string]*responder{}}
}

func (a *arpAnnouncer) Set(addrs []netip.Addr) map[netip.Addr]error {
	problems := map[netip.Addr]error{}
	want := map[string][]netip.Addr{}
	ifs := map[string]*net.Interface{}
	for _, ip := range addrs {
		ifi, err := interfaceFor(ip)
		if err != nil {
			problems[ip] = err
			continue
		}
		want[ifi.Name] = append(want[ifi.Name], ip)
		ifs[ifi.Name] = ifi
	}
	for name, ips := range want {
		r := a.byIf[name]
		if r == nil {
			var err error
			if r, err = newResponder(ifs[name]); err != nil {
				for _, ip := range ips {
					problems[ip] = err
				}
				continue
			}
			a.byIf[name] = r
		}
		r.set(ips)
	}
	for name, r := range a.byIf {
		if _, ok := want[name]; !ok {
			r.close()
			delete(a.byIf, name)
		}
	}
	return problems
}

func (a *arpAnnouncer) Close() {
	for name, r := range a.byIf {
		r.close()
		delete(a.byIf, name)
	}
}

// interfaceFor finds the up, non-loopback interface with an address whose
// subnet holds ip: only there do peers ask for ip by ARP.
func interfaceFor(ip netip.Addr) (*net.Interface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	for i := range ifs {
		ifi := &ifs[i]
		if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagLoopback != 0 || len(ifi.HardwareAddr) != 6 {
			continue
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, ad := range addrs {
			n, ok := ad.(*net.IPNet)
			if !ok {
				continue
			}
			pfx, err := netip.ParsePrefix(n.String())
			if err == nil && pfx.Addr().Is4() && pfx.Masked().Contains(ip) {
				return ifi, nil
			}
		}
	}
	return nil, fmt.Errorf("no interface of this node is on a subnet holding %s: pool addresses must be on the nodes' own network", ip)
}
