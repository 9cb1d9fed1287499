package manifests

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"
	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/kubeletflags"
)

// KubeletConfig renders /var/lib/kubelet/config.yaml.
func KubeletConfig(c *config.Config) ([]byte, error) {
	k := c.Kubelet
	if c.Kubeforge.ControlPlane.Processes() {
		// The node service runs the manifests of the control plane; a
		// kubelet watching them too would start a second one.
		k.StaticPodPath = ""
	}
	return yaml.Marshal(&k)
}

// KubeletFlags renders kubeadm-flags.env (kubeletflags.Render, which says
// how values are quoted): the node-specific kubelet flags that do not
// belong in the shared KubeletConfiguration, then
// nodeRegistration.kubeletExtraArgs in order. As in kubeadm
// (ArgumentsToCommand), an extra arg replaces kubeforge's own flag of the
// same name rather than repeating it, so each of those is in the file
// once; config validation keeps an extra hostname-override equal to the
// node's name.
func KubeletFlags(c *config.Config, nodeIP string) []byte {
	extra := c.ThisNode.KubeletExtraArgs
	var flags []kubeletflags.Flag
	for _, f := range []kubeletflags.Flag{{Name: "hostname-override", Value: c.NodeName()}, {Name: "node-ip", Value: nodeIP}} {
		if !slices.ContainsFunc(extra, func(a v1beta4.Arg) bool { return kubeletflags.Normalize(a.Name) == f.Name }) {
			flags = append(flags, f)
		}
	}
	for _, a := range extra {
		flags = append(flags, kubeletflags.Flag{Name: a.Name, Value: a.Value})
	}
	return kubeletflags.Render(flags)
}

// BridgeName is the Linux bridge the pod network uses on every node.
const BridgeName = "kubeforge0"

// CNIConfigName is the CNI configuration file's name in /etc/cni/net.d.
const CNIConfigName = "10-kubeforge.conflist"

// VXLANName is the pod network's VXLAN device on every node (the overlay
// to peers on other subnets, see components/podnet), VXLANID its VNI and
// VXLANPort its UDP port (the Linux kernel's default, flannel's too).
const (
	VXLANName = "kubeforge.1"
	VXLANID   = 1
	VXLANPort = 8472
	// VXLANOverhead is what VXLAN encapsulation adds to a packet (outer
	// Ethernet, IPv4, UDP and VXLAN headers): the overlay's MTU is the
	// node link's less this.
	VXLANOverhead = 50
)

// PodNetworkTable is the nftables table (families ip and ip6) in which
// the node agent masquerades pod traffic that leaves the pod network.
const PodNetworkTable = "kubeforge-podnet"

// CNIConfig renders the node's CNI configuration: a bridge, portmap for
// hostPorts, and kubeforge's IPAM plugin, which hands out addresses from
// the node's own pod CIDR once the node agent has written it to
// podCIDRFile (see components/podnet). The bridge does not masquerade
// (ipMasq false): the node agent masquerades only traffic that leaves the
// cluster's pod network, so a pod on another node sees a client pod's own
// address (which NetworkPolicy rules by pod label need). mtu, when not 0,
// is the pods' MTU (the VXLAN overlay's, so that a pod's packets fit in
// it). The file exists from the node's start, so the kubelet reports the
// network ready at once.
func CNIConfig(podCIDRFile string, ipv4, ipv6 bool, mtu int) []byte {
	var routes []string
	if ipv4 {
		routes = append(routes, `{"dst": "0.0.0.0/0"}`)
	}
	if ipv6 {
		routes = append(routes, `{"dst": "::/0"}`)
	}
	mtuLine := ""
	if mtu > 0 {
		mtuLine = fmt.Sprintf("\n      \"mtu\": %d,", mtu)
	}
	return []byte(fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "kubeforge",
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,%s
      "ipam": {
        "type": "kubeforge-ipam",
        "podCIDRFile": %q,
        "routes": [%s]
      }
    },
    {
      "type": "portmap",
      "capabilities": {"portMappings": true}
    }
  ]
}
`, BridgeName, mtuLine, podCIDRFile, strings.Join(routes, ", ")))
}

// FirstNodeCIDR is the first per-node subnet of a cluster pod CIDR (/24 for
// IPv4, /64 for IPv6: the controller-manager's default node mask sizes),
// which the node allocator gives the first node that registers.
func FirstNodeCIDR(cluster netip.Prefix) netip.Prefix {
	bits := 24
	if cluster.Addr().Is6() {
		bits = 64
	}
	if cluster.Bits() > bits {
		bits = cluster.Bits()
	}
	return netip.PrefixFrom(cluster.Masked().Addr(), bits)
}
