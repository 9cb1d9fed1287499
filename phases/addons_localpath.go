package phases

import (
	"context"
	"fmt"

	"github.com/kubeforge/kubeforge/manifests"
)

// runAddonLocalPath installs the default StorageClass local-path and its
// provisioner (one per node, node-local directories under
// addons.localPath.root) unless KubeforgeConfiguration
// addons.localPath.enabled is false. Server-side apply makes a rerun
// change nothing.
func runAddonLocalPath(ctx context.Context, d *InitData) error {
	const phase = "addons"
	lp := d.Cfg.Kubeforge.Addons.LocalPath
	if !lp.On() {
		d.Out.Printf(phase, "Skipping local-path storage: KubeforgeConfiguration addons.localPath.enabled is false")
		return nil
	}
	a, err := d.applier()
	if err != nil {
		return err
	}
	if err := a.Apply(ctx, phase, manifests.LocalPathObjects(d.Cfg)...); err != nil {
		return err
	}
	reportAddon(d, a, fmt.Sprintf("local-path storage (default StorageClass %s, volumes under %s on each node)", manifests.LocalPathClass, manifests.LocalPathRoot(d.Cfg)))
	return nil
}
