package config

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"
)

// ThisNode is the node that init or join sets up, built once from the
// configuration and flags (Complete for init, CompleteJoin for join) and
// read by the phases and renderers from then on. kubeadm's documents spread
// these over InitConfiguration (nodeRegistration, localAPIEndpoint) and
// JoinConfiguration (nodeRegistration, controlPlane.localAPIEndpoint); this
// is the one place that says which values this node has, whichever
// document they came from.
type ThisNode struct {
	// Name is the node's name (its certificates' and etcd member's too).
	Name string
	// IP is the kubelet's --node-ip: on init the API server's advertise
	// address, on join --node-ip (default: the address on the route to
	// the cluster).
	IP string
	// API is this node's API server endpoint: the advertise address and
	// bind port. A worker has none of its own; it holds IP and the
	// default port (the node's address for the pod network and preflight).
	API Endpoint
	// CRISocket is the container runtime's socket ("" for the bundled
	// containerd).
	CRISocket string
	// Taints are the node's taints: kubeadm's control-plane taint unless
	// the configuration lists its own (none on a worker by default).
	Taints []corev1.Taint
	// KubeletExtraArgs are the kubelet flags of nodeRegistration.
	KubeletExtraArgs []v1beta4.Arg
	// IgnorePreflightErrors are nodeRegistration.ignorePreflightErrors.
	IgnorePreflightErrors []string
}

// initNode is the node `kubeforge init` sets up (after defaulting).
func initNode(c *Config) ThisNode {
	nr := c.Init.NodeRegistration
	taints := nr.Taints
	if taints == nil {
		taints = []corev1.Taint{ControlPlaneTaint}
	}
	ep := c.Init.LocalAPIEndpoint
	return ThisNode{
		Name:                  nr.Name,
		IP:                    ep.AdvertiseAddress,
		API:                   Endpoint{Host: ep.AdvertiseAddress, Port: ep.BindPort},
		CRISocket:             nr.CRISocket,
		Taints:                taints,
		KubeletExtraArgs:      nr.KubeletExtraArgs,
		IgnorePreflightErrors: nr.IgnorePreflightErrors,
	}
}

// joinNode is the node `kubeforge join` sets up (after defaulting): nodeIP
// is its address, the API endpoint that of controlPlane.localAPIEndpoint
// on a control-plane join.
func joinNode(c *Config, nodeIP string) ThisNode {
	nr := c.Join.NodeRegistration
	n := ThisNode{
		Name:                  nr.Name,
		IP:                    nodeIP,
		API:                   Endpoint{Host: nodeIP, Port: DefaultBindPort},
		CRISocket:             nr.CRISocket,
		Taints:                nr.Taints,
		KubeletExtraArgs:      nr.KubeletExtraArgs,
		IgnorePreflightErrors: nr.IgnorePreflightErrors,
	}
	if cp := c.Join.ControlPlane; cp != nil {
		n.API = Endpoint{Host: cp.LocalAPIEndpoint.AdvertiseAddress, Port: cp.LocalAPIEndpoint.BindPort}
		if n.Taints == nil {
			n.Taints = []corev1.Taint{ControlPlaneTaint}
		}
	}
	return n
}
