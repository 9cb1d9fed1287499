package config

// Addons switches kubeforge's optional cluster addons on and off
// (KubeforgeConfiguration.addons). CoreDNS and kube-proxy are kubeadm's and
// keep kubeadm's switches (ClusterConfiguration dns.disabled, proxy.disabled).
type Addons struct {
	// MetricsServer is the resource metrics API (metrics.k8s.io) behind
	// `kubectl top` and the HorizontalPodAutoscaler. On by default.
	MetricsServer AddonSwitch `json:"metricsServer"`
	// NetworkPolicy enforces NetworkPolicy objects on every node with the
	// SIG Network controller (sigs.k8s.io/kube-network-policies). On by
	// default.
	NetworkPolicy AddonSwitch `json:"networkPolicy"`
}

// AddonSwitch turns one addon on or off.
type AddonSwitch struct {
	// Enabled says whether init installs the addon; defaulted to true.
	Enabled *bool `json:"enabled,omitempty"`
}

// On reports whether the addon is enabled (an unset switch is on).
func (s AddonSwitch) On() bool { return s.Enabled == nil || *s.Enabled }

// defaultAddons fills in a's unset switches: every addon on.
func defaultAddons(a *Addons) {
	if a.MetricsServer.Enabled == nil {
		on := true
		a.MetricsServer.Enabled = &on
	}
	if a.NetworkPolicy.Enabled == nil {
		on := true
		a.NetworkPolicy.Enabled = &on
	}
}
