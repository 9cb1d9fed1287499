package phases

import (
	"context"

	"github.com/kubeforge/kubeforge/manifests"
)

// runAddonCloudController installs kubeforge's cloud controller manager
// (LoadBalancer Services get an EXTERNAL-IP: from
// addons.cloudController.addressPool, announced by the nodes' speakers,
// or else the nodes' own addresses) unless
// KubeforgeConfiguration addons.cloudController.enabled is false.
func runAddonCloudController(ctx context.Context, d *InitData) error {
	const phase = "addons"
	cc := d.Cfg.Kubeforge.Addons.CloudController
	if !cc.On() {
		d.Out.Printf(phase, "Skipping the cloud controller: KubeforgeConfiguration addons.cloudController.enabled is false (LoadBalancer Services stay pending)")
		return nil
	}
	objs, err := manifests.CloudControllerObjects(d.Cfg)
	if err != nil {
		return err
	}
	return applyAddon(ctx, d, "cloud-controller-manager", objs...)
}
