package phases

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubeforge/kubeforge/manifests"
)

// addonPhase installs CoreDNS and kube-proxy (kubeadm's `addon` phase)
// and kubeforge's cluster addons, reapplying them idempotently on a rerun.
// The addons do not depend on each other, so they are applied at once (a
// dozen API round trips in a row otherwise), but for the log store, which
// puts its data on a local-path claim when that StorageClass exists. A
// dry run prints them in order.
func addonPhase() Phase[*InitData] {
	return Phase[*InitData]{Name: "addon", Short: "Install the addons: CoreDNS, kube-proxy and kubeforge's cluster addons (each can be turned off in KubeforgeConfiguration.addons)", Concurrent: true,
		InOrder: func(d *InitData) bool { return d.DryRun }, Phases: []Phase[*InitData]{
			{Name: "coredns", Short: "Install the CoreDNS addon (Deployment, kube-dns Service, Corefile)", Run: runAddonCoreDNS},
			{Name: "kube-proxy", Short: "Install the kube-proxy addon (DaemonSet and its configuration)", Run: runAddonKubeProxy},
			{Name: "metrics-server", Short: "Install metrics-server, the resource metrics API behind kubectl top and autoscaling (unless addons.metricsServer.enabled is false)", Run: runAddonMetricsServer},
			{Name: "local-path", Short: "Install the default StorageClass local-path and its provisioner: node-local persistent volumes (unless addons.localPath.enabled is false)", Run: runAddonLocalPath},
			{Name: "cloud-controller", Short: "Install the cloud controller manager: LoadBalancer Services get an address from addons.cloudController.addressPool or the nodes' own (unless addons.cloudController.enabled is false)", Run: runAddonCloudController},
			{Name: "dashboard", Short: "Install kubeforge's web dashboard, opened with `kubeforge dashboard` (unless addons.dashboard.enabled is false)", Run: runAddonDashboard},
			{Name: "log-store", Short: "Install the cluster log store the nodes ship logs to, searched by kubeforge logs (unless addons.logStore.enabled is false)", Run: runAddonLogStore, After: []string{"local-path"}},
			{Name: "network-policy", Short: "Install NetworkPolicy enforcement on every node, kube-network-policies (unless addons.networkPolicy.enabled is false)", Run: runAddonNetworkPolicy},
		}}
}

func runAddonCoreDNS(ctx context.Context, d *InitData) error {
	const phase = "addons"
	if d.Cfg.Cluster.DNS.Disabled {
		d.Out.Printf(phase, "Skipping CoreDNS: ClusterConfiguration.dns.disabled is set")
		return nil
	}
	return applyAddon(ctx, d, "CoreDNS", manifests.CoreDNSObjects(d.Cfg)...)
}

// applyAddon applies an addon's objects (server-side apply; a dry run
// prints them) and reports it as what.
func applyAddon(ctx context.Context, d *InitData, what string, objs ...runtime.Object) error {
	a, err := d.applier()
	if err != nil {
		return err
	}
	if err := a.Apply(ctx, "addons", objs...); err != nil {
		return err
	}
	reportAddon(d, a, what)
	return nil
}

// reportAddon prints kubeadm's "Applied essential addon" line, or that
// the addon was already as it should be (a rerun changed nothing).
func reportAddon(d *InitData, a Applier, what string) {
	const phase = "addons"
	if sa, ok := a.(*ServerApplier); ok && sa.Changed == 0 {
		d.Out.Printf(phase, "Essential addon %s is up to date: nothing changed", what)
		return
	}
	d.Out.Printf(phase, "Applied essential addon: %s", what)
}

func runAddonKubeProxy(ctx context.Context, d *InitData) error {
	const phase = "addons"
	if d.Cfg.Cluster.Proxy.Disabled {
		d.Out.Printf(phase, "Skipping kube-proxy: ClusterConfiguration.proxy.disabled is set")
		return nil
	}
	objs, err := manifests.KubeProxyObjects(d.Cfg)
	if err != nil {
		return err
	}
	return applyAddon(ctx, d, fmt.Sprintf("kube-proxy (%s mode)", d.Cfg.KubeProxy.Mode), objs...)
}
