package config

import (
	"fmt"
	"regexp"

	"github.com/kubeforge/kubeforge/internal/lbpool"
)

// Addons switches kubeforge's optional cluster addons on and off
// (KubeforgeConfiguration.addons). CoreDNS and kube-proxy are kubeadm's and
// keep kubeadm's switches (ClusterConfiguration dns.disabled, proxy.disabled).
type Addons struct {
	// MetricsServer is the resource metrics API (metrics.k8s.io) behind
	// `kubectl top` and the HorizontalPodAutoscaler. On by default.
	MetricsServer AddonSwitch `json:"metricsServer"`
	// LocalPath is the default StorageClass local-path and its
	// provisioner (node-local directories). On by default.
	LocalPath LocalPathAddon `json:"localPath"`
	// CloudController is kubeforge's bare-metal cloud controller manager:
	// LoadBalancer Services get an EXTERNAL-IP. On by default.
	CloudController CloudControllerAddon `json:"cloudController"`
	// Dashboard is kubeforge's web dashboard (`kubeforge dashboard`
	// opens it). On by default.
	Dashboard AddonSwitch `json:"dashboard"`
	// LogStore is the cluster log store (VictoriaLogs) that every node
	// ships its containers' and its own logs to, searched with `kubeforge
	// logs`. On by default.
	LogStore LogStoreAddon `json:"logStore"`
	// NetworkPolicy enforces NetworkPolicy objects on every node with the
	// SIG Network controller (sigs.k8s.io/kube-network-policies). On by
	// default.
	NetworkPolicy AddonSwitch `json:"networkPolicy"`
}

// CloudControllerAddon configures the cloud-controller addon.
type CloudControllerAddon struct {
	// Enabled says whether init installs it; defaulted to true.
	Enabled *bool `json:"enabled,omitempty"`
	// AddressPool lists the addresses LoadBalancer Services get theirs
	// from, each a CIDR ("192.168.1.240/28") or a range
	// ("192.168.1.240-192.168.1.250"), on the nodes' own network: the node
	// chosen for an address answers ARP for it. Empty: a Service's
	// EXTERNAL-IPs are the nodes' own InternalIPs.
	AddressPool []string `json:"addressPool,omitempty"`
}

// On reports whether the addon is enabled (an unset switch is on).
func (c CloudControllerAddon) On() bool { return c.Enabled == nil || *c.Enabled }

// validateCloudController checks the address pool, naming the field.
func validateCloudController(c *CloudControllerAddon) []error {
	if _, err := lbpool.Parse(c.AddressPool); err != nil {
		return []error{fmt.Errorf("%s.addons.cloudController.addressPool: %w", KubeforgeKind, err)}
	}
	return nil
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
	defaultLocalPath(&a.LocalPath)
	if a.CloudController.Enabled == nil {
		on := true
		a.CloudController.Enabled = &on
	}
	if a.Dashboard.Enabled == nil {
		on := true
		a.Dashboard.Enabled = &on
	}
	if a.LogStore.Enabled == nil {
		on := true
		a.LogStore.Enabled = &on
	}
	if a.LogStore.Retention == "" {
		a.LogStore.Retention = DefaultLogRetention
	}
	if a.NetworkPolicy.Enabled == nil {
		on := true
		a.NetworkPolicy.Enabled = &on
	}
}

// LogStoreAddon configures the log-store addon.
type LogStoreAddon struct {
	// Enabled says whether init installs the log store (and whether the
	// nodes ship logs: they ship only while it is installed); default true.
	Enabled *bool `json:"enabled,omitempty"`
	// Retention is how long the store keeps log lines, in VictoriaLogs'
	// units: a number and h, d, w or y ("7d", "72h", "4w"). Default 7d.
	Retention string `json:"retention,omitempty"`
}

// DefaultLogRetention is the log store's default retention.
const DefaultLogRetention = "7d"

// On reports whether the log store is enabled (unset is on).
func (l LogStoreAddon) On() bool { return l.Enabled == nil || *l.Enabled }

var logRetentionRE = regexp.MustCompile(`^[1-9][0-9]*(h|d|w|y)$`)

func validateLogStore(l *LogStoreAddon) []error {
	if l.Retention != "" && !logRetentionRE.MatchString(l.Retention) {
		return []error{fmt.Errorf("%s.addons.logStore.retention: %q is not a retention: write a whole number and a unit, h, d, w or y (such as 7d, 72h or 4w)",
			KubeforgeKind, l.Retention)}
	}
	return nil
}
