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
	return applyAddon(ctx, d, fmt.Sprintf("local-path storage (default StorageClass %s, volumes under %s on each node)", manifests.LocalPathClass, manifests.LocalPathRoot(d.Cfg)), manifests.LocalPathObjects(d.Cfg)...)
}
