package phases

import (
	"context"

	"github.com/kubeforge/kubeforge/manifests"
)

// runAddonDashboard installs kubeforge's web dashboard unless
// KubeforgeConfiguration addons.dashboard.enabled is false. Its objects
// carry no credential and grant no right, so a rerun only reapplies them.
func runAddonDashboard(ctx context.Context, d *InitData) error {
	const phase = "addons"
	if !d.Cfg.Kubeforge.Addons.Dashboard.On() {
		d.Out.Printf(phase, "Skipping the dashboard: KubeforgeConfiguration addons.dashboard.enabled is false")
		return nil
	}
	return applyAddon(ctx, d, "dashboard (open it with `kubeforge dashboard`)", manifests.DashboardObjects(d.Cfg)...)
}
