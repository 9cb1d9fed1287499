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
	return yaml.Marshal(&c.Kubelet)
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
	extra := c.Init.NodeRegistration.KubeletExtraArgs
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

// CNIConfig renders the node's CNI configuration: a bridge, masquerading
// traffic that leaves the pod network, portmap for hostPorts, and
// kubeforge's IPAM plugin, which hands out addresses from the node's own
// pod CIDR once the node agent has written it to podCIDRFile (see
// components/podnet). The file exists from the node's start, so the kubelet
// reports the network ready at once.
func CNIConfig(podCIDRFile string, ipv4, ipv6 bool) []byte {
	var routes []string
	if ipv4 {
		routes = append(routes, `{"dst": "0.0.0.0/0"}`)
	}
	if ipv6 {
		routes = append(routes, `{"dst": "::/0"}`)
	}
	return []byte(fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "kubeforge",
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
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
`, BridgeName, podCIDRFile, strings.Join(routes, ", ")))
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
