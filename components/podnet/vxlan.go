package podnet

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kubeforge/kubeforge/internal/nodedir"
	"github.com/kubeforge/kubeforge/manifests"
)

// Node annotations through which the nodes tell each other about their
// overlay (each node writes its own; the others read it from the node
// directory, which carries them).
const (
	// AnnotationBackend is the node's configured backend (auto, host-gw,
	// vxlan): a pair of nodes uses the overlay when either asks for vxlan.
	AnnotationBackend = nodedir.AnnotationBackend
	// AnnotationVTEPMAC is the MAC address of the node's VXLAN device;
	// absent when the node has none (backend host-gw).
	AnnotationVTEPMAC = nodedir.AnnotationVTEPMAC
)

// vtep is this node's VXLAN device.
type vtep struct {
	index int
	mac   net.HardwareAddr
	mtu   int
}

// ensureVXLAN makes (or fixes) the node's VXLAN device: VNI
// manifests.VXLANID on UDP port manifests.VXLANPort, sending from nodeIP
// through the link that holds it, with that link's MTU less the
// encapsulation's overhead, no address learning (the agent writes every
// neighbour and FDB entry), and the first address of the node's pod CIDR
// (flannel's layout: a peer's pod CIDR is routed through its first
// address, which the neighbour table maps to the peer's device).
func ensureVXLAN(nodeIP net.IP, podCIDR *net.IPNet) (*vtep, error) {
	under, err := linkWithIP(nodeIP)
	if err != nil {
		return nil, err
	}
	mtu := under.Attrs().MTU - manifests.VXLANOverhead
	want := &netlink.Vxlan{
		LinkAttrs:    netlink.LinkAttrs{Name: manifests.VXLANName, MTU: mtu},
		VxlanId:      manifests.VXLANID,
		VtepDevIndex: under.Attrs().Index,
		SrcAddr:      nodeIP,
		Port:         manifests.VXLANPort,
		Learning:     false,
	}
	link, err := netlink.LinkByName(manifests.VXLANName)
	if err == nil {
		vx, ok := link.(*netlink.Vxlan)
		if !ok || vx.VxlanId != want.VxlanId || vx.VtepDevIndex != want.VtepDevIndex || !vx.SrcAddr.Equal(nodeIP) || vx.Port != want.Port {
			// Another node address or link (or not ours at all): make it anew.
			if err := netlink.LinkDel(link); err != nil {
				return nil, fmt.Errorf("replace the VXLAN device %s: %w", manifests.VXLANName, err)
			}
			link = nil
		} else if vx.MTU != mtu {
			if err := netlink.LinkSetMTU(link, mtu); err != nil {
				return nil, fmt.Errorf("set the MTU of %s to %d: %w", manifests.VXLANName, mtu, err)
			}
		}
	} else {
		link = nil
	}
	if link == nil {
		if err := netlink.LinkAdd(want); err != nil {
			return nil, fmt.Errorf("create the VXLAN device %s (VNI %d, UDP port %d, on %s): %w",
				manifests.VXLANName, manifests.VXLANID, manifests.VXLANPort, under.Attrs().Name, err)
		}
		if link, err = netlink.LinkByName(manifests.VXLANName); err != nil {
			return nil, err
		}
	}
	// Its address: the pod CIDR's first, alone.
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: podCIDR.IP.Mask(podCIDR.Mask), Mask: net.CIDRMask(32, 32)}}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return nil, err
	}
	have := false
	for i := range addrs {
		if addrs[i].IPNet.String() == addr.IPNet.String() {
			have = true
			continue
		}
		_ = netlink.AddrDel(link, &addrs[i])
	}
	if !have {
		if err := netlink.AddrAdd(link, addr); err != nil {
			return nil, fmt.Errorf("address %s on %s: %w", addr.IPNet, manifests.VXLANName, err)
		}
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(link); err != nil {
			return nil, fmt.Errorf("set %s up: %w", manifests.VXLANName, err)
		}
	}
	return &vtep{index: link.Attrs().Index, mac: link.Attrs().HardwareAddr, mtu: mtu}, nil
}

// deleteVXLAN removes the node's VXLAN device, if any (backend host-gw).
func deleteVXLAN() error {
	link, err := netlink.LinkByName(manifests.VXLANName)
	if err != nil {
		return nil
	}
	return netlink.LinkDel(link)
}

// linkWithIP is the link that holds ip.
func linkWithIP(ip net.IP) (netlink.Link, error) {
	fam := netlink.FAMILY_V4
	if ip.To4() == nil {
		fam = netlink.FAMILY_V6
	}
	addrs, err := netlink.AddrList(nil, fam)
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if a.IP.Equal(ip) {
			return netlink.LinkByIndex(a.LinkIndex)
		}
	}
	return nil, fmt.Errorf("no network interface of this host has the node's address %s", ip)
}

// onLink reports whether ip is reachable without a router: the kernel's
// route to it has no gateway (the peer is on one of this node's subnets).
func onLink(ip net.IP) bool {
	routes, err := netlink.RouteGet(ip)
	return err == nil && len(routes) > 0 && routes[0].Gw == nil
}

// peerEntry is what reaching one peer over the overlay takes besides the
// route: the neighbour entry (the peer's pod CIDR's first address → the
// peer's device MAC) and the FDB entry (that MAC → the peer's node address).
type peerEntry struct {
	gw     net.IP
	mac    net.HardwareAddr
	nodeIP net.IP
}

// syncNeighbours makes the device's permanent neighbour and FDB entries
// exactly want's (entries of peers that left go).
func syncNeighbours(v *vtep, want []peerEntry) error {
	var errs []error
	wantARP := map[string]string{}
	wantFDB := map[string]string{}
	for _, p := range want {
		wantARP[p.gw.String()] = p.mac.String()
		wantFDB[p.mac.String()] = p.nodeIP.String()
	}
	arp, err := netlink.NeighList(v.index, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list the neighbours on %s: %w", manifests.VXLANName, err)
	}
	haveARP := map[string]string{}
	for i := range arp {
		n := arp[i]
		if n.State&netlink.NUD_PERMANENT == 0 {
			continue
		}
		if mac, ok := wantARP[n.IP.String()]; ok && mac == n.HardwareAddr.String() {
			haveARP[n.IP.String()] = mac
			continue
		}
		errs = append(errs, netlink.NeighDel(&n))
	}
	fdb, err := netlink.NeighList(v.index, unix.AF_BRIDGE)
	if err != nil {
		return fmt.Errorf("list the forwarding entries on %s: %w", manifests.VXLANName, err)
	}
	haveFDB := map[string]string{}
	for i := range fdb {
		n := fdb[i]
		if n.State&netlink.NUD_PERMANENT == 0 {
			continue
		}
		if ip, ok := wantFDB[n.HardwareAddr.String()]; ok && ip == n.IP.String() {
			haveFDB[n.HardwareAddr.String()] = ip
			continue
		}
		errs = append(errs, netlink.NeighDel(&n))
	}
	for _, p := range want {
		if haveFDB[p.mac.String()] != p.nodeIP.String() {
			if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: v.index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF,
				State: netlink.NUD_PERMANENT, IP: p.nodeIP, HardwareAddr: p.mac}); err != nil {
				errs = append(errs, fmt.Errorf("forwarding entry %s → %s on %s: %w", p.mac, p.nodeIP, manifests.VXLANName, err))
			}
		}
		if haveARP[p.gw.String()] != p.mac.String() {
			if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: v.index, Family: netlink.FAMILY_V4,
				State: netlink.NUD_PERMANENT, Type: unix.RTN_UNICAST, IP: p.gw, HardwareAddr: p.mac}); err != nil {
				errs = append(errs, fmt.Errorf("neighbour %s → %s on %s: %w", p.gw, p.mac, manifests.VXLANName, err))
			}
		}
	}
	return errors.Join(errs...)
}
