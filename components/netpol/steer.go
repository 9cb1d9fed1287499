package netpol

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// SteerMode is how new connections reach the NFQUEUE.
type SteerMode string

const (
	// SteerNFT is upstream's way: its own table with the nftables queue
	// expression (the kernel needs CONFIG_NFT_QUEUE).
	SteerNFT SteerMode = "nft-queue"
	// SteerXT installs upstream's rules in SteerTable with the xtables
	// NFQUEUE target (nft_compat + CONFIG_NETFILTER_XT_TARGET_NFQUEUE).
	SteerXT SteerMode = "xt-nfqueue"
)

// chooseSteer resolves the --steer flag; "auto" asks the kernel.
func chooseSteer(flagValue string, queueSupported func() (bool, error)) (SteerMode, error) {
	switch SteerMode(flagValue) {
	case SteerNFT, SteerXT:
		return SteerMode(flagValue), nil
	case "auto", "":
		ok, err := queueSupported()
		if err != nil {
			return "", fmt.Errorf("probe the kernel's nftables: %w (the pod needs CAP_NET_ADMIN in the host network namespace)", err)
		}
		if ok {
			return SteerNFT, nil
		}
		return SteerXT, nil
	default:
		return "", fmt.Errorf("--steer=%q: want auto, %s or %s", flagValue, SteerNFT, SteerXT)
	}
}

const probeTable = "kubeforge-netpol-probe"

// queueExprSupported reports whether the kernel accepts the nftables
// queue expression, by adding a rule with one to a throwaway table.
func queueExprSupported() (bool, error) {
	c, err := nftables.New()
	if err != nil {
		return false, err
	}
	t := &nftables.Table{Name: probeTable, Family: nftables.TableFamilyINet}
	c.AddTable(t)
	ch := c.AddChain(&nftables.Chain{Name: "probe", Table: t})
	if err := c.Flush(); err != nil {
		return false, fmt.Errorf("add table inet %s: %w", probeTable, err)
	}
	defer func() {
		c.DelTable(t)
		_ = c.Flush()
	}()
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{&expr.Queue{Num: 0, Flag: expr.QueueFlagBypass}}})
	return c.Flush() == nil, nil
}

// SteerConfig is what the xt-nfqueue rules depend on.
type SteerConfig struct {
	Table    string
	QueueID  uint16
	FailOpen bool
	NodeName string
}

// Set names, as upstream's.
const (
	podV4Set = "podips-v4"
	podV6Set = "podips-v6"
)

// nfqFlagBypass is xt_NFQUEUE's NFQ_FLAG_BYPASS: accept when no program
// listens on the queue (--fail-open).
const nfqFlagBypass = 0x01

// xtQueueInfo is the NFQUEUE target's revision 3 info, struct
// xt_NFQ_info_v3 {__u16 queuenum; __u16 queues_total; __u16 flags;} in
// host byte order.
func xtQueueInfo(num uint16, bypass bool) []byte {
	b := make([]byte, 6)
	binary.NativeEndian.PutUint16(b[0:], num)
	binary.NativeEndian.PutUint16(b[2:], 1)
	if bypass {
		binary.NativeEndian.PutUint16(b[4:], nfqFlagBypass)
	}
	return b
}

// steerRules are upstream's postrouting rules (v0.8.0 syncNFTablesRules,
// without AdminNetworkPolicy), in upstream's order, with the xtables
// NFQUEUE target where upstream has the queue expression: ICMPv6 (neighbour
// discovery) and the node's root-owned sockets pass, established and
// related connections pass, and a new connection from or to a local pod
// that a NetworkPolicy selects goes to the queue.
func steerRules(t *nftables.Table, ch *nftables.Chain, cfg SteerConfig) []*nftables.Rule {
	queue := func() expr.Any {
		info := xt.Unknown(xtQueueInfo(cfg.QueueID, cfg.FailOpen))
		return &expr.Target{Name: "NFQUEUE", Rev: 3, Info: &info}
	}
	rule := func(e ...expr.Any) *nftables.Rule { return &nftables.Rule{Table: t, Chain: ch, Exprs: e} }
	accept := &expr.Verdict{Kind: expr.VerdictAccept}
	lookup := func(proto byte, offset, length uint32, set string) *nftables.Rule {
		return rule(
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: length},
			&expr.Lookup{SourceRegister: 1, SetName: set},
			queue())
	}
	return []*nftables.Rule{
		rule(
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV6}},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_ICMPV6}},
			accept),
		rule(
			&expr.Meta{Key: expr.MetaKeySKUID, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0, 0, 0, 0}},
			accept),
		rule(
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED), Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
			accept),
		lookup(unix.NFPROTO_IPV4, 12, 4, podV4Set),  // ip saddr @podips-v4
		lookup(unix.NFPROTO_IPV4, 16, 4, podV4Set),  // ip daddr @podips-v4
		lookup(unix.NFPROTO_IPV6, 8, 16, podV6Set),  // ip6 saddr @podips-v6
		lookup(unix.NFPROTO_IPV6, 24, 16, podV6Set), // ip6 daddr @podips-v6
	}
}

// localSelectedPodIPs are the addresses of this node's pods that some
// NetworkPolicy selects (upstream's getLocalPodsForNetworkPolicy over every
// policy), sorted. Host-network pods are left out: they share the node's
// address, and upstream's packet evaluation ignores them too.
func localSelectedPodIPs(policies networkinglisters.NetworkPolicyLister, pods corelisters.PodLister, node string) (v4, v6 []netip.Addr, err error) {
	nps, err := policies.List(labels.Everything())
	if err != nil {
		return nil, nil, err
	}
	seen := map[netip.Addr]bool{}
	for _, np := range nps {
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			klog.InfoS("Skipping a NetworkPolicy with an invalid podSelector", "policy", klog.KObj(np), "err", err)
			continue
		}
		ps, err := pods.Pods(np.Namespace).List(sel)
		if err != nil {
			return nil, nil, err
		}
		for _, p := range ps {
			if p.Spec.NodeName != node || p.Spec.HostNetwork {
				continue
			}
			for _, ip := range p.Status.PodIPs {
				a, err := netip.ParseAddr(ip.IP)
				if err != nil || seen[a] {
					continue
				}
				seen[a] = true
				if a.Is4() {
					v4 = append(v4, a)
				} else {
					v6 = append(v6, a)
				}
			}
		}
	}
	slices.SortFunc(v4, netip.Addr.Compare)
	slices.SortFunc(v6, netip.Addr.Compare)
	return v4, v6, nil
}

// tables writes and removes the steering table (netlinkTables on a node,
// a recorder in tests).
type tables interface {
	Apply(cfg SteerConfig, v4, v6 []netip.Addr) error
	Delete(table string) error
}

// steerer keeps SteerTable's pod address sets in line with the
// NetworkPolicies and this node's pods.
type steerer struct {
	cfg      SteerConfig
	policies networkinglisters.NetworkPolicyLister
	pods     corelisters.PodLister
	tables   tables
	kick     chan struct{}
	// last is what was applied, to skip rewriting an unchanged table.
	last    string
	applied bool
}

func newSteerer(cfg SteerConfig, policies networkinglisters.NetworkPolicyLister, pods corelisters.PodLister, t tables) *steerer {
	return &steerer{cfg: cfg, policies: policies, pods: pods, tables: t, kick: make(chan struct{}, 1)}
}

func (s *steerer) trigger() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// watch resyncs on every NetworkPolicy change and every change of a pod
// on this node.
func (s *steerer) watch(policies, pods cache.SharedIndexInformer) error {
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.trigger() },
		UpdateFunc: func(any, any) { s.trigger() },
		DeleteFunc: func(any) { s.trigger() },
	}
	local := func(obj any) bool {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		p, ok := obj.(*corev1.Pod)
		return !ok || p.Spec.NodeName == s.cfg.NodeName
	}
	if _, err := policies.AddEventHandler(h); err != nil {
		return err
	}
	_, err := pods.AddEventHandler(cache.FilteringResourceEventHandler{FilterFunc: local, Handler: h})
	return err
}

// sync applies the table for the current state unless it is unchanged.
func (s *steerer) sync() error {
	v4, v6, err := localSelectedPodIPs(s.policies, s.pods, s.cfg.NodeName)
	if err != nil {
		return err
	}
	key := fmt.Sprint(v4, v6)
	if s.applied && key == s.last {
		return nil
	}
	if err := s.tables.Apply(s.cfg, v4, v6); err != nil {
		return fmt.Errorf("install nftables table inet %s: %w", s.cfg.Table, err)
	}
	s.last, s.applied = key, true
	klog.V(2).InfoS("Synced the NFQUEUE steering table", "table", s.cfg.Table, "podIPsV4", len(v4), "podIPsV6", len(v6))
	return nil
}

// run syncs now and on every change until ctx ends, retrying a failed
// sync after a second.
func (s *steerer) run(ctx context.Context) {
	s.trigger()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		}
		if err := s.sync(); err != nil {
			klog.ErrorS(err, "Syncing the NFQUEUE steering table")
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
				s.trigger()
			}
		}
	}
}

// cleanup removes the table (on exit: the pods it selects would otherwise
// lose every new connection while nothing reads the queue).
func (s *steerer) cleanup() {
	if err := s.tables.Delete(s.cfg.Table); err != nil {
		klog.ErrorS(err, "Removing the NFQUEUE steering table", "table", s.cfg.Table)
	}
}

// netlinkTables talks to the kernel's nftables over netlink.
type netlinkTables struct{}

func (netlinkTables) Apply(cfg SteerConfig, v4, v6 []netip.Addr) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	t := &nftables.Table{Name: cfg.Table, Family: nftables.TableFamilyINet}
	// add, delete, add: replace the whole table in one transaction.
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	elems := func(as []netip.Addr) []nftables.SetElement {
		out := make([]nftables.SetElement, 0, len(as))
		for _, a := range as {
			out = append(out, nftables.SetElement{Key: a.AsSlice()})
		}
		return out
	}
	if err := c.AddSet(&nftables.Set{Table: t, Name: podV4Set, KeyType: nftables.TypeIPAddr}, elems(v4)); err != nil {
		return err
	}
	if err := c.AddSet(&nftables.Set{Table: t, Name: podV6Set, KeyType: nftables.TypeIP6Addr}, elems(v6)); err != nil {
		return err
	}
	ch := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityRef(*nftables.ChainPriorityNATSource - 5)})
	for _, r := range steerRules(t, ch, cfg) {
		c.AddRule(r)
	}
	return c.Flush()
}

func (netlinkTables) Delete(table string) error {
	ok, err := tableExists(table)
	if err != nil || !ok {
		return err
	}
	c, err := nftables.New()
	if err != nil {
		return err
	}
	c.DelTable(&nftables.Table{Name: table, Family: nftables.TableFamilyINet})
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

// tableExists reports whether the inet table is installed.
func tableExists(name string) (bool, error) {
	c, err := nftables.New()
	if err != nil {
		return false, err
	}
	ts, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, err
	}
	for _, t := range ts {
		if t.Name == name {
			return true, nil
		}
	}
	return false, nil
}
