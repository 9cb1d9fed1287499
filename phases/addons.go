package phases

import (
	"context"

	"github.com/kubeforge/kubeforge/manifests"
)

// addonPhase installs CoreDNS and kube-proxy (kubeadm's `addon` phase),
// reapplying them idempotently on a rerun.
func addonPhase() Phase[*InitData] {
	return Phase[*InitData]{Name: "addon", Short: "Install the essential addons: CoreDNS and kube-proxy", Phases: []Phase[*InitData]{
		{Name: "coredns", Short: "Install the CoreDNS addon (Deployment, kube-dns Service, Corefile)", Run: runAddonCoreDNS},
		{Name: "kube-proxy", Short: "Install the kube-proxy addon (DaemonSet and its configuration)", Run: runAddonKubeProxy},
	}}
}

func runAddonCoreDNS(ctx context.Context, d *InitData) error {
	const phase = "addons"
	if d.Cfg.Cluster.DNS.Disabled {
		d.Out.Printf(phase, "Skipping CoreDNS: ClusterConfiguration.dns.disabled is set")
		return nil
	}
	a, err := d.applier()
	if err != nil {
		return err
	}
	if err := a.Apply(ctx, phase, manifests.CoreDNSObjects(d.Cfg)...); err != nil {
		return err
	}
	d.Out.Printf(phase, "Applied essential addon: CoreDNS")
	return nil
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
	a, err := d.applier()
	if err != nil {
		return err
	}
	if err := a.Apply(ctx, phase, objs...); err != nil {
		return err
	}
	d.Out.Printf(phase, "Applied essential addon: kube-proxy (%s mode)", d.Cfg.KubeProxy.Mode)
	return nil
}
