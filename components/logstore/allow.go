package logstore

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/kubeforge/kubeforge/internal/nodedir"
)

// With -nodeDirectory the store's ports are an allowlist: a connection is
// served only when its source is
//
//   - one of the cluster's nodes' addresses (InternalIP and ExternalIP, as
//     the node directory carries them): the API server's Service proxy on
//     a control-plane node, and the kubelets' probes when a node reaches
//     the pod network from its own address (routed pod network);
//   - the first or second address of a node's pod CIDR (its VXLAN device,
//     .0, and its bridge's gateway, .1; IPAM gives neither to a pod): a
//     node reaching a pod on its own bridge or over the overlay;
//   - loopback (the store's own network namespace).
//
// Everything else is refused with 403 on every path: pods, and machines
// outside the cluster that route to the pod network. A source address
// cannot be forged for a TCP connection: the answers go to the real
// owner of the address (a node's stack, which resets the connection).
// Until the directory is first read, nothing but loopback is served
// (fail closed) and /health answers 503, so the kubelet keeps the pod
// unready. The directory is watched: a node that joins is served once the
// controller-manager has published it. The last directory read stays in
// force if the ConfigMap is deleted (the controller-manager writes it
// again).
//
// Without -nodeDirectory (the flags of a build before the allowlist, as
// `upgrade apply` keeps them), only pods' addresses are refused
// (podSources, -podNetwork).

// nodeSources is the allowlist read from the node directory.
type nodeSources struct {
	nodes int
	// addrs are the nodes' addresses, gateways the first two addresses
	// of their pod CIDRs; each maps to its node's name.
	addrs, gateways map[netip.Addr]string
}

// newNodeSources is the allowlist of nodes; an address or CIDR that does
// not parse is left out and named in problems.
func newNodeSources(nodes []*corev1.Node) (s *nodeSources, problems []string) {
	s = &nodeSources{nodes: len(nodes), addrs: map[netip.Addr]string{}, gateways: map[netip.Addr]string{}}
	for _, n := range nodes {
		for _, a := range n.Status.Addresses {
			if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
				continue
			}
			ip, err := netip.ParseAddr(a.Address)
			if err != nil {
				problems = append(problems, fmt.Sprintf("node %s: address %q: %v", n.Name, a.Address, err))
				continue
			}
			s.addrs[ip.Unmap()] = n.Name
		}
		for _, c := range n.Spec.PodCIDRs {
			p, err := netip.ParsePrefix(c)
			if err != nil {
				problems = append(problems, fmt.Sprintf("node %s: pod CIDR %q: %v", n.Name, c, err))
				continue
			}
			first := p.Masked().Addr()
			s.gateways[first] = n.Name
			if second := first.Next(); p.Contains(second) {
				s.gateways[second] = n.Name
			}
		}
	}
	return s, problems
}

// node is the node whose address addr is ("" when none): its own
// address, or its bridge or VXLAN device.
func (s *nodeSources) node(addr netip.Addr) string {
	if n, ok := s.addrs[addr]; ok {
		return n
	}
	return s.gateways[addr]
}

// gate decides which connections the store serves (see above).
type gate struct {
	// pods is the pod network (-podNetwork, may be nil): without the
	// directory the only check; with it, what tells a pod from an
	// outside machine in the refusals.
	pods *podSources
	// directory is the node directory's namespace and name ("" without
	// -nodeDirectory: refuse pods only).
	dirNS, dirName string

	nodes   atomic.Pointer[nodeSources] // nil until the directory is first read
	waiting atomic.Pointer[string]      // why it is not read yet
	refused *refusalLog
}

// newGate reads the flags; it is nil when there is nothing to check.
// directory is "NAMESPACE/NAME" or empty.
func newGate(podNetwork, masks, directory string, printf func(format string, args ...any)) (*gate, error) {
	pods, err := parsePodSources(podNetwork, masks)
	if err != nil {
		return nil, err
	}
	directory = strings.TrimSpace(directory)
	if pods == nil && directory == "" {
		return nil, nil
	}
	g := &gate{pods: pods, refused: newRefusalLog(time.Minute, printf)}
	if directory != "" {
		ns, name, ok := strings.Cut(directory, "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return nil, fmt.Errorf("-nodeDirectory: %q: want NAMESPACE/NAME of the node directory ConfigMap (%s/%s)", directory, nodedir.Namespace, nodedir.Name)
		}
		g.dirNS, g.dirName = ns, name
		g.setWaiting(fmt.Sprintf("the node directory (ConfigMap %s) is not read yet", directory))
	}
	return g, nil
}

func (g *gate) where() string { return "ConfigMap " + g.dirNS + "/" + g.dirName }

func (g *gate) setWaiting(why string) { g.waiting.Store(&why) }

// ready says whether the gate knows whom to serve.
func (g *gate) ready() (bool, string) {
	if g.dirName == "" || g.nodes.Load() != nil {
		return true, ""
	}
	return false, *g.waiting.Load()
}

// allow decides for a connection from addr; why says why it is refused.
func (g *gate) allow(addr netip.Addr) (ok bool, why string) {
	if !addr.IsValid() {
		return false, "no source address"
	}
	addr = addr.Unmap()
	if addr.IsLoopback() {
		return true, ""
	}
	if g.dirName == "" {
		if g.pods.fromPod(addr) {
			return false, "a pod's address"
		}
		return true, ""
	}
	s := g.nodes.Load()
	if s == nil {
		return false, *g.waiting.Load() + ": serving no one yet"
	}
	if s.node(addr) != "" {
		return true, ""
	}
	if g.pods != nil && g.pods.inNetwork(addr) {
		return false, "a pod's address (not a node's, nor a node's bridge or VXLAN address)"
	}
	return false, fmt.Sprintf("not an address of any of the cluster's %d nodes in the node directory (a machine outside the cluster)", s.nodes)
}

// wrap puts the gate in front of a store handler on port (named in the
// log). A nil gate checks nothing.
func (g *gate) wrap(port string, h func(w http.ResponseWriter, r *http.Request) bool) func(w http.ResponseWriter, r *http.Request) bool {
	if g == nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) bool {
		addr := remoteAddr(r)
		ok, why := g.allow(addr)
		if ok {
			return h(w, r)
		}
		g.refused.note(addr, fmt.Sprintf("%s %s on %s", r.Method, r.URL.Path, port), why)
		if ready, waiting := g.ready(); !ready && r.URL.Path == "/health" {
			http.Error(w, "not ready: "+waiting, http.StatusServiceUnavailable)
			return true
		}
		http.Error(w, "the log store serves the cluster's nodes and the API server's Service proxy only, not pods nor other machines ("+
			why+"): search with `kubeforge logs` or the dashboard", http.StatusForbidden)
		return true
	}
}

// remoteAddr is the request's TCP peer (the zero Addr when it does not
// parse).
func remoteAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return addr.Unmap()
}

// setDirectory makes the nodes of the directory cm the allowlist and
// says what changed (for the log).
func (g *gate) setDirectory(cm *corev1.ConfigMap) (summary string, problems []string) {
	nodes, err := nodedir.Decode(cm)
	if err != nil {
		problems = append(problems, err.Error())
	}
	s, bad := newNodeSources(nodes)
	problems = append(problems, bad...)
	first := g.nodes.Swap(s) == nil
	names := make([]string, 0, len(nodes))
	for _, n := range nodes {
		names = append(names, n.Name)
	}
	sort.Strings(names)
	verb := "now serves"
	if first {
		verb = "read the node directory: serves"
	}
	return fmt.Sprintf("%s the %d node(s) of %s (%s): %d addresses, %d bridge/VXLAN addresses",
		verb, len(nodes), g.where(), strings.Join(names, ", "), len(s.addrs), len(s.gateways)), problems
}

// watch follows the node directory with client until ctx ends and keeps
// the allowlist; infof and warnf log.
func (g *gate) watch(ctx context.Context, client kubernetes.Interface, infof, warnf func(format string, args ...any)) error {
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(g.dirNS),
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
			lo.FieldSelector = fields.OneTermEqualSelector("metadata.name", g.dirName).String()
		}))
	cms := factory.Core().V1().ConfigMaps()
	inf, lister := cms.Informer(), cms.Lister()
	kick := nodedir.NewKick()
	if _, err := inf.AddEventHandler(kick.Handler()); err != nil {
		return err
	}
	if err := inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		if g.nodes.Load() == nil {
			why := fmt.Sprintf("cannot read the node directory (%s): %v", g.where(), err)
			if apierrors.IsForbidden(err) {
				why = fmt.Sprintf("the store's ServiceAccount may not read the node directory (%s): %v; "+
					"run `kubeforge init phase addon log-store` on a control-plane node (it binds the Role that allows it)", g.where(), err)
			}
			g.setWaiting(why)
			warnf("%s", why)
		}
		cache.DefaultWatchErrorHandler(ctx, r, err)
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			kick.Poke()
		}
	}()
	var last *corev1.ConfigMap
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
		}
		cm, err := lister.ConfigMaps(g.dirNS).Get(g.dirName)
		switch {
		case apierrors.IsNotFound(err):
			if !inf.HasSynced() {
				continue
			}
			if g.nodes.Load() == nil {
				why := fmt.Sprintf("no node directory (%s) yet: the controller-manager publishes it", g.where())
				g.setWaiting(why)
				warnf("%s", why)
			} else if last != nil {
				warnf("the node directory (%s) was deleted: the store keeps serving the nodes it listed until the controller-manager writes it again", g.where())
				last = nil
			}
			continue
		case err != nil:
			warnf("read the node directory (%s): %v", g.where(), err)
			continue
		}
		if cm == last {
			continue
		}
		last = cm
		summary, problems := g.setDirectory(cm)
		infof("%s", summary)
		for _, p := range problems {
			warnf("the node directory: %s (left out of the allowlist)", p)
		}
	}
}

// refusalLog logs refused requests: who, what and why, at most one line
// per source address and period (a pod or a machine that retries in a
// loop cannot flood the log); the next line of that address counts the
// refusals in between. At most maxRefusalAddrs addresses are tracked at
// once; refusals beyond that are counted in the next line.
type refusalLog struct {
	mu      sync.Mutex
	every   time.Duration
	now     func() time.Time
	printf  func(format string, args ...any)
	seen    map[netip.Addr]*refusals
	dropped int
}

type refusals struct {
	at   time.Time // of its last logged line
	more int       // refusals since, not logged
}

const maxRefusalAddrs = 256

func newRefusalLog(every time.Duration, printf func(format string, args ...any)) *refusalLog {
	return &refusalLog{every: every, now: time.Now, printf: printf, seen: map[netip.Addr]*refusals{}}
}

func (l *refusalLog) note(addr netip.Addr, what, why string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	c := l.seen[addr]
	if c != nil && now.Sub(c.at) < l.every {
		c.more++
		return
	}
	if c == nil && len(l.seen) >= maxRefusalAddrs {
		for a, o := range l.seen {
			if now.Sub(o.at) >= l.every {
				l.dropped += o.more
				delete(l.seen, a)
			}
		}
		if len(l.seen) >= maxRefusalAddrs {
			l.dropped++
			return
		}
	}
	who := addr.String()
	if !addr.IsValid() {
		who = "an unknown address"
	}
	msg := fmt.Sprintf("refused %s from %s: %s", what, who, why)
	if c != nil && c.more > 0 {
		msg += fmt.Sprintf(" (and %d more requests from it in the %v before, not logged)", c.more, now.Sub(c.at).Round(time.Second))
	}
	if l.dropped > 0 {
		msg += fmt.Sprintf(" (%d refusals of other addresses not logged)", l.dropped)
		l.dropped = 0
	}
	l.seen[addr] = &refusals{at: now}
	l.printf("%s", msg)
}
