package config

import "fmt"

// How a control-plane node runs its control plane
// (KubeforgeConfiguration.controlPlane.runtime).
const (
	// ControlPlaneStaticPods: the kubelet runs etcd, the API server, the
	// controller-manager and the scheduler as static pods from the
	// manifests directory, as kubeadm does. The default.
	ControlPlaneStaticPods = "StaticPods"
	// ControlPlaneProcesses: the node service runs the same manifests as
	// its own child processes (as k0s does), from the moment they are
	// written, without waiting for containerd, the images or the kubelet.
	ControlPlaneProcesses = "Processes"
)

// ControlPlane is how this node runs its control plane
// (KubeforgeConfiguration.controlPlane).
type ControlPlane struct {
	// Runtime is StaticPods (the default) or Processes. With Processes the
	// manifests in /etc/kubernetes/manifests keep their meaning (flags,
	// environment, probes; edit one and its process restarts), but no
	// mirror pod shows the control plane in the API, its logs are in
	// /var/log/kubeforge, and the kubelet runs no static pods.
	// The flag --control-plane-runtime of init sets it.
	Runtime string `json:"runtime,omitempty"`
}

// Processes reports whether the node service runs the control plane.
func (c ControlPlane) Processes() bool { return c.Runtime == ControlPlaneProcesses }

func defaultControlPlane(c *ControlPlane) {
	if c.Runtime == "" {
		c.Runtime = ControlPlaneStaticPods
	}
}

func validateControlPlane(c *ControlPlane) []error {
	switch c.Runtime {
	case "", ControlPlaneStaticPods, ControlPlaneProcesses:
		return nil
	}
	return []error{fmt.Errorf("%s.controlPlane.runtime: %q is not a control-plane runtime: write %s (the kubelet runs static pods, as kubeadm) or %s (the node service runs them as processes)",
		KubeforgeKind, c.Runtime, ControlPlaneStaticPods, ControlPlaneProcesses)}
}
