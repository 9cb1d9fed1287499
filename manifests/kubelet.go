package manifests

import (
	"fmt"
	"net/netip"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/config"
)

// KubeletConfig renders /var/lib/kubelet/config.yaml.
func KubeletConfig(c *config.Config) ([]byte, error) {
	return yaml.Marshal(&c.Kubelet)
}

// KubeletFlags renders kubeadm-flags.env: the node-specific kubelet flags
// that do not belong in the shared KubeletConfiguration.
func KubeletFlags(c *config.Config, nodeIP string) []byte {
	flags := []string{"--hostname-override=" + c.NodeName(), "--node-ip=" + nodeIP}
	for _, a := range c.Init.NodeRegistration.KubeletExtraArgs {
		flags = append(flags, "--"+a.Name+"="+a.Value)
	}
	return []byte(fmt.Sprintf("KUBELET_KUBEADM_ARGS=%q\n", strings.Join(flags, " ")))
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
