package podnet

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/kubeforge/kubeforge/manifests"
)

// masqSpec is what the masquerading of one IP family depends on: the
// node's own pod CIDRs (the sources) and every node's pod CIDRs (the
// destinations that stay unmasqueraded: pod-to-pod traffic keeps the
// client pod's address, which NetworkPolicy rules by pod label need).
type masqSpec struct {
	v6      bool
	local   []netip.Prefix
	cluster []netip.Prefix
}

func (s masqSpec) family() nftables.TableFamily {
	if s.v6 {
		return nftables.TableFamilyIPv6
	}
	return nftables.TableFamilyIPv4
}

func (s masqSpec) key() string {
	var b strings.Builder
	fmt.Fprintf(&b, "v6=%v local=", s.v6)
	for _, p := range s.local {
		b.WriteString(p.String() + ",")
	}
	b.WriteString(" cluster=")
	for _, p := range s.cluster {
		b.WriteString(p.String() + ",")
	}
	return b.String()
}

// masqSpecs splits the node's and the cluster's pod CIDRs by family.
func masqSpecs(local, cluster []string) []masqSpec {
	specs := []masqSpec{{v6: false}, {v6: true}}
	add := func(list []string, to func(*masqSpec, netip.Prefix)) {
		for _, c := range list {
			p, err := netip.ParsePrefix(c)
			if err != nil {
				continue
			}
			p = p.Masked()
			to(&specs[map[bool]int{false: 0, true: 1}[p.Addr().Is6()]], p)
		}
	}
	add(local, func(s *masqSpec, p netip.Prefix) {
		if !slices.Contains(s.local, p) {
			s.local = append(s.local, p)
		}
	})
	add(cluster, func(s *masqSpec, p netip.Prefix) {
		if !slices.Contains(s.cluster, p) {
			s.cluster = append(s.cluster, p)
		}
	})
	for i := range specs {
		slices.SortFunc(specs[i].local, comparePrefix)
		slices.SortFunc(specs[i].cluster, comparePrefix)
	}
	return specs
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// Chain names in manifests.PodNetworkTable.
const (
	masqBaseChain  = "postrouting"
	masqCheckChain = "pod-egress"
)

// masqRules is the table of one family, as nft prints it:
//
//	table ip kubeforge-podnet {
//	  chain postrouting { type nat hook postrouting priority srcnat; policy accept;
//	    ip saddr 10.244.1.0/24 jump pod-egress }
//	  chain pod-egress {
//	    ip daddr 10.244.0.0/24 return  (every node's pod CIDR)
//	    ip daddr 224.0.0.0/4 return
//	    masquerade fully-random }
//	}
//
// so traffic from this node's pods is masqueraded only when it leaves the
// cluster's pod network (to a node, a host outside, the Internet).
func masqRules(t *nftables.Table, base, check *nftables.Chain, s masqSpec) []*nftables.Rule {
	offSrc, offDst, size := uint32(12), uint32(16), uint32(4)
	multicast := netip.MustParsePrefix("224.0.0.0/4")
	if s.v6 {
		offSrc, offDst, size = 8, 24, 16
		multicast = netip.MustParsePrefix("ff00::/8")
	}
	match := func(offset uint32, p netip.Prefix) []expr.Any {
		mask := make([]byte, size)
		for i := 0; i < p.Bits(); i++ {
			mask[i/8] |= 0x80 >> (i % 8)
		}
		return []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: size},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: size, Mask: mask, Xor: make([]byte, size)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Addr().AsSlice()},
		}
	}
	var rules []*nftables.Rule
	for _, p := range s.local {
		rules = append(rules, &nftables.Rule{Table: t, Chain: base,
			Exprs: append(match(offSrc, p), &expr.Verdict{Kind: expr.VerdictJump, Chain: masqCheckChain})})
	}
	for _, p := range append(slices.Clone(s.cluster), multicast) {
		rules = append(rules, &nftables.Rule{Table: t, Chain: check,
			Exprs: append(match(offDst, p), &expr.Verdict{Kind: expr.VerdictReturn})})
	}
	rules = append(rules, &nftables.Rule{Table: t, Chain: check, Exprs: []expr.Any{&expr.Masq{FullyRandom: true}}})
	return rules
}

// applyMasq replaces the family's table in one transaction with the rules
// of s, or removes it when this node has no pod CIDR of the family.
func applyMasq(s masqSpec) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	t := &nftables.Table{Name: manifests.PodNetworkTable, Family: s.family()}
	// Add, then delete: removes the table whether or not it exists.
	c.AddTable(t)
	c.DelTable(t)
	if len(s.local) > 0 {
		c.AddTable(t)
		base := c.AddChain(&nftables.Chain{Name: masqBaseChain, Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
		check := c.AddChain(&nftables.Chain{Name: masqCheckChain, Table: t})
		for _, r := range masqRules(t, base, check, s) {
			c.AddRule(r)
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables table %s %s: %w", familyName(s.v6), manifests.PodNetworkTable, err)
	}
	return nil
}

// masqTableExists reports whether the family's table is in the kernel.
func masqTableExists(v6 bool) bool {
	c, err := nftables.New()
	if err != nil {
		return false
	}
	fam := nftables.TableFamilyIPv4
	if v6 {
		fam = nftables.TableFamilyIPv6
	}
	t, err := c.ListTableOfFamily(manifests.PodNetworkTable, fam)
	return err == nil && t != nil
}

func familyName(v6 bool) string {
	if v6 {
		return "ip6"
	}
	return "ip"
}
