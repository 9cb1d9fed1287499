package phases

import (
	"context"
	"encoding/json"
	"net"
	"path/filepath"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/manifests"
)

// podNetworkShort is the pod-network phase's description (init and join).
const podNetworkShort = "Write the node's CNI configuration for kubeforge's built-in pod network (unless podNetwork.enabled is false: then the node waits for the user's CNI)"

// runInitPodNetwork writes the node's CNI configuration and, since the
// first node's pod CIDR is the first of the cluster's pod network (the
// controller-manager's allocator gives it the first block), notes that
// CIDR, so that the node's first pods start before the controller-manager
// is up. The node agent replaces it with the allocated one.
func runInitPodNetwork(_ context.Context, d *InitData) error {
	const phase = "pod-network"
	if skipPodNetwork(d.Node, phase) {
		return nil
	}
	var first []string
	for _, c := range d.Cfg.PodSubnets() {
		first = append(first, manifests.FirstNodeCIDR(c).String())
	}
	b, _ := json.Marshal(first)
	if err := d.WriteFile(phase, "node pod CIDRs", d.Cfg.Paths.PodCIDRFile(), b, 0o600, ShowContent); err != nil {
		return err
	}
	return writeCNIConfig(d.Node, phase, d.Cfg.ThisNode.IP)
}

// runJoinPodNetwork writes the joining node's CNI configuration.
func runJoinPodNetwork(_ context.Context, d *JoinData) error {
	const phase = "pod-network"
	if skipPodNetwork(d.Node, phase) {
		return nil
	}
	return writeCNIConfig(d.Node, phase, d.Cfg.ThisNode.IP)
}

// skipPodNetwork reports (and says) that the built-in pod network is off.
func skipPodNetwork(n *Node, phase string) bool {
	if n.Cfg.Kubeforge.PodNetwork.On() {
		return false
	}
	n.Out.Printf(phase, "Skipping the built-in pod network: KubeforgeConfiguration podNetwork.enabled is false. "+
		"The node stays NotReady until your CNI (Cilium, Calico, ...) writes its configuration to %s", n.Cfg.Paths.CNIConfDir)
	return true
}

// writeCNIConfig writes the node's CNI configuration. Unless the backend
// is host-gw, the pods' MTU leaves room for the VXLAN overlay's headers
// on the link that holds nodeIP.
func writeCNIConfig(n *Node, phase, nodeIP string) error {
	var v4, v6 bool
	for _, c := range n.Cfg.PodSubnets() {
		v4 = v4 || c.Addr().Is4()
		v6 = v6 || c.Addr().Is6()
	}
	mtu := 0
	if n.Cfg.Kubeforge.PodNetwork.Backend != config.PodNetworkHostGW {
		mtu = PodMTU(linkMTU(nodeIP))
	}
	p := n.Cfg.Paths
	return n.WriteFile(phase, "CNI configuration", filepath.Join(p.CNIConfDir, manifests.CNIConfigName),
		manifests.CNIConfig(p.PodCIDRFile(), v4, v6, mtu), 0o600, ShowContent)
}

// PodMTU is the pods' MTU over the VXLAN overlay on a link of linkMTU
// (1500 when unknown).
func PodMTU(linkMTU int) int {
	if linkMTU <= 0 {
		linkMTU = 1500
	}
	return linkMTU - manifests.VXLANOverhead
}

// linkMTU is the MTU of the interface that holds ip (0 when none does).
func linkMTU(ip string) int {
	want := net.ParseIP(ip)
	ifs, err := net.Interfaces()
	if want == nil || err != nil {
		return 0
	}
	for _, i := range ifs {
		addrs, _ := i.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(want) {
				return i.MTU
			}
		}
	}
	return 0
}
