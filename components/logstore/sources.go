package logstore

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// The store's ports take connections from the cluster's nodes only: the
// API server's Service proxy (through which the nodes ship and `kubeforge
// logs` and the dashboard search, each authorized by RBAC there) and the
// kubelet's probes. A pod could otherwise reach them directly, by the
// Services' cluster IPs or the store pod's address, and read every
// namespace's logs or write lines in another pod's name. The API server's
// proxy presents no credential the store could check (it strips the
// client's Authorization header and has no client certificate), so the
// store tells nodes from others by the source address, which cannot be
// forged for a TCP connection: the answers to a node's address go to the
// node. With -nodeDirectory the store serves the nodes' addresses only
// (an allowlist, see gate in allow.go); podSources is the pod network,
// which without it is the only check (refuse pods) and with it names the
// refusals.
//
// A node connects to a pod from an address outside the pod network (its
// own) or, to a pod on its own bridge or over the VXLAN overlay, from one
// of its pod CIDR's first two addresses (the VXLAN device has the network
// address, the bridge the gateway address .1), which IPAM never gives to
// a pod. Every other address inside the cluster's pod CIDRs is a pod's.
type podSources struct {
	cidrs []netip.Prefix
	// block is the size of each node's pod CIDR by family (the
	// controller-manager's --node-cidr-mask-size-*): 4 and 6.
	block map[int]int
}

// parsePodSources reads the flags: comma-separated CIDRs, and the node
// block sizes "v4,v6" (either may be empty: 24 and 64, the
// controller-manager's defaults).
func parsePodSources(cidrs, masks string) (*podSources, error) {
	if strings.TrimSpace(cidrs) == "" {
		return nil, nil
	}
	s := &podSources{block: map[int]int{4: 24, 6: 64}}
	for _, c := range strings.Split(cidrs, ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(c))
		if err != nil {
			return nil, fmt.Errorf("-podNetwork: %q is not a CIDR: %w", c, err)
		}
		s.cidrs = append(s.cidrs, p.Masked())
	}
	if strings.TrimSpace(masks) != "" {
		parts := strings.Split(masks, ",")
		if len(parts) > 2 {
			return nil, fmt.Errorf("-podNetwork.nodeMaskSizes: %q: want at most two sizes, IPv4 then IPv6", masks)
		}
		for i, part := range parts {
			if strings.TrimSpace(part) == "" {
				continue
			}
			fam, max := 4, 32
			if i == 1 {
				fam, max = 6, 128
			}
			n, err := strconv.Atoi(strings.TrimSpace(part))
			if err != nil || n < 1 || n > max {
				return nil, fmt.Errorf("-podNetwork.nodeMaskSizes: %q: the IPv%d size must be a number from 1 to %d", part, fam, max)
			}
			s.block[fam] = n
		}
	}
	return s, nil
}

// fromPod reports whether addr is a pod's address.
func (s *podSources) fromPod(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, c := range s.cidrs {
		if !c.Contains(addr) {
			continue
		}
		fam := 4
		if addr.Is6() {
			fam = 6
		}
		bits := max(s.block[fam], c.Bits())
		base, err := addr.Prefix(bits)
		if err != nil {
			return true
		}
		first := base.Addr()
		return addr != first && addr != first.Next()
	}
	return false
}

// inNetwork reports whether addr is inside the cluster's pod CIDRs.
func (s *podSources) inNetwork(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, c := range s.cidrs {
		if c.Contains(addr) {
			return true
		}
	}
	return false
}
