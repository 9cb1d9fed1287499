package config

import "fmt"

// Pod network backends (KubeforgeConfiguration.podNetwork.backend).
const (
	// PodNetworkAuto routes to a peer on this node's own subnet directly
	// (host-gw) and through the VXLAN overlay to a peer behind a router.
	PodNetworkAuto = "auto"
	// PodNetworkHostGW routes to every peer directly: every node must be
	// on one layer-2 segment.
	PodNetworkHostGW = "host-gw"
	// PodNetworkVXLAN sends pod traffic to every peer through the VXLAN
	// overlay.
	PodNetworkVXLAN = "vxlan"
)

// PodNetwork is kubeforge's built-in pod network
// (KubeforgeConfiguration.podNetwork): a bridge per node, the node
// agent's routes to the other nodes' pod CIDRs and its masquerading of
// traffic that leaves the pod network.
type PodNetwork struct {
	// Enabled: false leaves the pod network to a CNI of the user's
	// (Cilium, Calico, ...): the pod-network phase writes no CNI
	// configuration, the node agent does nothing, and the node stays
	// NotReady until the user's CNI writes its configuration to
	// /etc/cni/net.d (as with kubeadm). Defaulted to true. `--skip-phases
	// pod-network` on init and join does the same for one node.
	Enabled *bool `json:"enabled,omitempty"`
	// Backend is how pod traffic reaches the other nodes: auto (direct
	// routes to peers on the node's own subnet, VXLAN to the others),
	// host-gw or vxlan. Defaulted to auto.
	Backend string `json:"backend,omitempty"`
}

// On reports whether the built-in pod network is enabled (unset is on).
func (p PodNetwork) On() bool { return p.Enabled == nil || *p.Enabled }

// defaultPodNetwork fills in p's unset fields.
func defaultPodNetwork(p *PodNetwork) {
	if p.Enabled == nil {
		on := true
		p.Enabled = &on
	}
	if p.Backend == "" {
		p.Backend = PodNetworkAuto
	}
}

// validatePodNetwork checks the backend, naming the field.
func validatePodNetwork(p *PodNetwork) []error {
	switch p.Backend {
	case "", PodNetworkAuto, PodNetworkHostGW, PodNetworkVXLAN:
		return nil
	}
	return []error{fmt.Errorf("%s.podNetwork.backend: %q is not a pod network backend: write %s (direct routes on one subnet, VXLAN across routers), %s (every node on one layer-2 segment) or %s (an overlay to every node)",
		KubeforgeKind, p.Backend, PodNetworkAuto, PodNetworkHostGW, PodNetworkVXLAN)}
}
