// Package lbpool is the pure logic behind kubeforge's LoadBalancer
// Services: the address pool (parsing, allocation) and the choice of the
// node that announces an address on the node network. The cloud controller
// (components/cloudcontroller) allocates; the speaker in every node service
// (components/lbspeaker) announces. Both depend on this package only for
// the decisions, so the decisions are unit-tested without a cluster.
package lbpool

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Range is an inclusive range of IPv4 or IPv6 addresses.
type Range struct{ First, Last netip.Addr }

// Contains reports whether a lies in r.
func (r Range) Contains(a netip.Addr) bool {
	return a.BitLen() == r.First.BitLen() && r.First.Compare(a) <= 0 && a.Compare(r.Last) <= 0
}

func (r Range) String() string {
	if r.First == r.Last {
		return r.First.String()
	}
	return r.First.String() + "-" + r.Last.String()
}

// Pool is a set of addresses LoadBalancer Services get theirs from, in the
// order it was written.
type Pool []Range

// maxPool bounds how many addresses a pool may hold: allocation walks it.
const maxPool = 1 << 16

// Parse reads a pool written as entries of a CIDR ("192.168.1.240/28",
// every address of it: a pool is a set of addresses, not a subnet) or a
// range ("192.168.1.240-192.168.1.250", or a single address). An empty
// list is an empty pool (no pool). Errors name the bad entry.
func Parse(entries []string) (Pool, error) {
	var p Pool
	var errs []error
	total := 0
	for i, e := range entries {
		r, err := parseEntry(strings.TrimSpace(e))
		if err != nil {
			errs = append(errs, fmt.Errorf("[%d] %q: %w", i, e, err))
			continue
		}
		for j, o := range p {
			if o.Contains(r.First) || o.Contains(r.Last) || r.Contains(o.First) {
				errs = append(errs, fmt.Errorf("[%d] %q overlaps [%d] %q", i, e, j, entries[j]))
			}
		}
		total += size(r)
		p = append(p, r)
	}
	if total > maxPool {
		errs = append(errs, fmt.Errorf("%d addresses: at most %d", total, maxPool))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

func parseEntry(e string) (Range, error) {
	if e == "" {
		return Range{}, errors.New("empty: write a CIDR (192.168.1.240/28) or a range (192.168.1.240-192.168.1.250)")
	}
	if strings.Contains(e, "/") {
		pfx, err := netip.ParsePrefix(e)
		if err != nil {
			return Range{}, fmt.Errorf("not a CIDR: %v", err)
		}
		if pfx.Masked() != pfx {
			return Range{}, fmt.Errorf("has host bits set: write %s", pfx.Masked())
		}
		if pfx.Addr().Is6() {
			return Range{}, errors.New("IPv6 addresses cannot be announced yet (the speakers answer ARP, not NDP): use IPv4 addresses")
		}
		if pfx.Addr().BitLen()-pfx.Bits() > 16 {
			return Range{}, fmt.Errorf("too large: at most %d addresses", maxPool)
		}
		first := pfx.Addr()
		last := first
		for n := 1 << (first.BitLen() - pfx.Bits()); n > 1; n-- {
			last = last.Next()
		}
		return Range{first, last}, nil
	}
	a, b, isRange := strings.Cut(e, "-")
	first, err := netip.ParseAddr(strings.TrimSpace(a))
	if err != nil {
		return Range{}, fmt.Errorf("not an address, CIDR or range: %v", err)
	}
	last := first
	if isRange {
		if last, err = netip.ParseAddr(strings.TrimSpace(b)); err != nil {
			return Range{}, fmt.Errorf("range end: %v", err)
		}
	}
	if first.Zone() != "" || last.Zone() != "" {
		return Range{}, errors.New("addresses with a zone are not supported")
	}
	if first.Is4In6() || last.Is4In6() || first.BitLen() != last.BitLen() {
		return Range{}, errors.New("both ends must be of the same family")
	}
	if first.Is6() {
		return Range{}, errors.New("IPv6 addresses cannot be announced yet (the speakers answer ARP, not NDP): use IPv4 addresses")
	}
	if last.Less(first) {
		return Range{}, errors.New("the range ends before it starts")
	}
	if first.IsUnspecified() || first.IsLoopback() || first.IsMulticast() || last.IsMulticast() || last.IsLoopback() {
		return Range{}, errors.New("loopback, multicast and unspecified addresses cannot be announced")
	}
	r := Range{first, last}
	if size(r) > maxPool {
		return Range{}, fmt.Errorf("too large: at most %d addresses", maxPool)
	}
	return r, nil
}

// size is how many addresses r holds, capped just above maxPool.
func size(r Range) int {
	n := 1
	for a := r.First; a != r.Last && n <= maxPool; a = a.Next() {
		n++
	}
	return n
}

// Contains reports whether a is in the pool.
func (p Pool) Contains(a netip.Addr) bool {
	return slices.ContainsFunc(p, func(r Range) bool { return r.Contains(a) })
}

// String writes the pool back as ranges.
func (p Pool) String() string {
	s := make([]string, len(p))
	for i, r := range p {
		s[i] = r.String()
	}
	return strings.Join(s, ",")
}

// Errors of Allocate; the service controller turns them into the
// Service's SyncLoadBalancerFailed events.
var (
	ErrNotInPool = errors.New("not in the address pool")
	ErrInUse     = errors.New("already used by another Service")
	ErrExhausted = errors.New("the address pool is exhausted")
)

// Allocate picks the address of the Service key: the one it asks for
// (want, from spec.loadBalancerIP), else the one it has (have, from its
// status), else the first free one of the pool. used maps addresses to
// the Service holding them (the caller's view of every Service); an
// address held by key itself is free for key.
func (p Pool) Allocate(key string, want, have netip.Addr, used map[netip.Addr]string) (netip.Addr, error) {
	free := func(a netip.Addr) bool { o, ok := used[a]; return !ok || o == key }
	if want.IsValid() {
		if !p.Contains(want) {
			return netip.Addr{}, fmt.Errorf("spec.loadBalancerIP %s: %w (%s): pick an address from it, or leave the field empty", want, ErrNotInPool, p)
		}
		if !free(want) {
			return netip.Addr{}, fmt.Errorf("spec.loadBalancerIP %s: %w (%s)", want, ErrInUse, used[want])
		}
		return want, nil
	}
	if have.IsValid() && p.Contains(have) && free(have) {
		return have, nil
	}
	for _, r := range p {
		for a := r.First; ; a = a.Next() {
			if free(a) {
				return a, nil
			}
			if a == r.Last {
				break
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("%w: all of %s are in use by other Services; add addresses to addons.cloudController.addressPool or delete a LoadBalancer Service", ErrExhausted, p)
}

// Candidate is a node that may announce addresses.
type Candidate struct {
	Name string
	// Ready: the node's Ready condition is True.
	Ready bool
	// Speaking: the node's speaker runs (it has marked the node so and has
	// not withdrawn since).
	Speaking bool
	// Excluded: the node carries node.kubernetes.io/exclude-from-external-load-balancers.
	Excluded bool
	// Deleting: the node is being deleted.
	Deleting bool
}

// eligible reports whether c may announce.
func (c Candidate) eligible() bool { return c.Ready && c.Speaking && !c.Excluded && !c.Deleting }

// Announcer chooses the one node that announces addr among the eligible
// candidates, by rendezvous hashing: each node scores sha256(addr, node)
// and the highest wins. Every speaker computes the same answer from the
// same view of the nodes; when the winner goes away only its addresses
// move, and every address it held moves to the node that scored next.
// It returns "" when no node is eligible.
func Announcer(addr netip.Addr, nodes []Candidate) string {
	best, bestScore := "", [sha256.Size]byte{}
	for _, n := range nodes {
		if !n.eligible() {
			continue
		}
		s := score(addr, n.Name)
		if best == "" || bytesGreater(s, bestScore) || (s == bestScore && n.Name < best) {
			best, bestScore = n.Name, s
		}
	}
	return best
}

func score(addr netip.Addr, node string) [sha256.Size]byte {
	b := addr.AsSlice()
	b = append(b, 0)
	b = append(b, node...)
	return sha256.Sum256(b)
}

func bytesGreater(a, b [sha256.Size]byte) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] > b[i]
		}
	}
	return false
}
