package phases

import (
	"context"

	"github.com/kubeforge/kubeforge/manifests"
)

// runAddonNetworkPolicy installs NetworkPolicy enforcement (the
// kube-network-policies DaemonSet on the self-image, one controller per
// node, workers that join later included) unless KubeforgeConfiguration
// addons.networkPolicy.enabled is false. A rerun reapplies the same
// objects and changes nothing.
func runAddonNetworkPolicy(ctx context.Context, d *InitData) error {
	const phase = "addons"
	if !d.Cfg.Kubeforge.Addons.NetworkPolicy.On() {
		d.Out.Printf(phase, "Skipping network policy: KubeforgeConfiguration addons.networkPolicy.enabled is false (NetworkPolicy objects are then not enforced)")
		return nil
	}
	return applyAddon(ctx, d, "network policy (kube-network-policies)", manifests.NetworkPolicyObjects(d.Cfg)...)
}
