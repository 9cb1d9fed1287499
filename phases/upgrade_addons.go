package phases

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/coredns/corefile-migration/migration"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubeforge/kubeforge/internal/version"
	"github.com/kubeforge/kubeforge/manifests"
)

// coreDNSVersionAnnotation on the coredns Deployment records the CoreDNS
// version it runs (the image tag is kubeforge's), for the Corefile
// migration of the next upgrade.
const coreDNSVersionAnnotation = "kubeforge.io/coredns-version"

// laggingNodes are the nodes whose node service does not run this version
// yet: their container runtime lacks the new image, which no registry
// serves, so the addons wait for them.
func (d *UpgradeData) laggingNodes(ctx context.Context) ([]string, error) {
	nodes, err := d.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list the nodes: %w", err)
	}
	var out []string
	for i := range nodes.Items {
		if nodeVersion(&nodes.Items[i]) != version.Version {
			out = append(out, nodes.Items[i].Name)
		}
	}
	return out, nil
}

// addonsDeferred says (once) when the addons must wait for other nodes.
func (d *UpgradeData) addonsDeferred(ctx context.Context, what string) (bool, error) {
	if d.DryRun {
		return false, nil
	}
	lagging, err := d.laggingNodes(ctx)
	if err != nil {
		return false, err
	}
	if len(lagging) == 0 {
		return false, nil
	}
	d.Out.Printf("upgrade/addon", "Not upgrading %s yet: node(s) %s still run an older kubeforge, whose container runtime lacks %s. Run `kubeforge upgrade node` on them, then `kubeforge upgrade apply` here again",
		what, strings.Join(lagging, ", "), version.Image())
	return true, nil
}

func runUpgradeCoreDNS(ctx context.Context, d *UpgradeData) error {
	const phase = "upgrade/addon"
	if d.Cfg.Cluster.DNS.Disabled {
		d.Out.Printf(phase, "Skipping CoreDNS: ClusterConfiguration.dns.disabled is set")
		return nil
	}
	if deferred, err := d.addonsDeferred(ctx, "CoreDNS"); err != nil || deferred {
		return err
	}
	var objs []runtime.Object
	var ours *corev1.ConfigMap
	for _, o := range manifests.CoreDNSObjects(d.Cfg) {
		switch v := o.(type) {
		case *corev1.ConfigMap:
			if v.Name == manifests.CoreDNSName {
				ours = v
				continue
			}
		case *appsv1.Deployment:
			if v.Annotations == nil {
				v.Annotations = map[string]string{}
			}
			v.Annotations[coreDNSVersionAnnotation] = version.CoreDNS
		}
		objs = append(objs, o)
	}
	if ours != nil {
		if err := d.upgradeCorefile(ctx, ours); err != nil {
			return err
		}
	}
	a := d.applier()
	if err := a.Apply(ctx, phase, objs...); err != nil {
		return err
	}
	return d.waitRollout(ctx, "CoreDNS", func(ctx context.Context) (bool, string, error) {
		dep, err := d.Client.AppsV1().Deployments(metav1.NamespaceSystem).Get(ctx, manifests.CoreDNSName, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		want := int32(1)
		if dep.Spec.Replicas != nil {
			want = *dep.Spec.Replicas
		}
		s := dep.Status
		done := s.ObservedGeneration >= dep.Generation && s.UpdatedReplicas == want && s.Replicas == want && s.AvailableReplicas == want
		return done, fmt.Sprintf("%d/%d updated, %d available", s.UpdatedReplicas, want, s.AvailableReplicas), nil
	})
}

// upgradeCorefile keeps the cluster's Corefile, as kubeadm does: a default
// Corefile is replaced by this version's, an edited one is migrated to
// this CoreDNS version with corefile-migration (kept as it is when there
// is nothing to migrate or the library does not know the versions).
func (d *UpgradeData) upgradeCorefile(ctx context.Context, ours *corev1.ConfigMap) error {
	const phase = "upgrade/addon"
	const key = "Corefile"
	if d.DryRun {
		return (&PrintingApplier{Out: d.Out}).Apply(ctx, phase, ours)
	}
	cms := d.Client.CoreV1().ConfigMaps(metav1.NamespaceSystem)
	live, err := cms.Get(ctx, manifests.CoreDNSName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return d.applier().Apply(ctx, phase, ours)
	}
	if err != nil {
		return fmt.Errorf("read the CoreDNS Corefile (ConfigMap kube-system/%s): %w", manifests.CoreDNSName, err)
	}
	cur, want := live.Data[key], ours.Data[key]
	switch {
	case cur == want:
		d.Out.Printf(phase, "The Corefile is this version's default: unchanged")
		return nil
	case cur == "" || migration.Default("", cur):
		d.Out.Printf(phase, "The Corefile is a default one: replacing it with this version's")
		return d.applier().Apply(ctx, phase, ours)
	}
	from := version.CoreDNS
	if dep, err := d.Client.AppsV1().Deployments(metav1.NamespaceSystem).Get(ctx, manifests.CoreDNSName, metav1.GetOptions{}); err == nil {
		if v := dep.Annotations[coreDNSVersionAnnotation]; v != "" {
			from = v
		}
	}
	migrated, err := migration.Migrate(strings.TrimPrefix(from, "v"), strings.TrimPrefix(version.CoreDNS, "v"), cur, false)
	if err != nil {
		d.Out.Warnf(phase, "keeping the cluster's edited Corefile as it is: it cannot be migrated from CoreDNS %s to %s (%v); check it against CoreDNS %s's plugins", from, version.CoreDNS, err, version.CoreDNS)
		return nil
	}
	if migrated == cur {
		d.Out.Printf(phase, "Keeping the cluster's edited Corefile: nothing in it needs migrating from CoreDNS %s to %s", from, version.CoreDNS)
		return nil
	}
	live.Data[key] = migrated
	live.Data["Corefile-backup"] = cur
	if _, err := cms.Update(ctx, live, metav1.UpdateOptions{FieldManager: FieldManager}); err != nil {
		return fmt.Errorf("write the migrated Corefile: %w", err)
	}
	d.Out.Printf(phase, "Migrated the cluster's Corefile from CoreDNS %s to %s (the previous one is kept under Corefile-backup)", from, version.CoreDNS)
	return nil
}

func runUpgradeKubeProxy(ctx context.Context, d *UpgradeData) error {
	const phase = "upgrade/addon"
	if d.Cfg.Cluster.Proxy.Disabled {
		d.Out.Printf(phase, "Skipping kube-proxy: ClusterConfiguration.proxy.disabled is set")
		return nil
	}
	if deferred, err := d.addonsDeferred(ctx, "kube-proxy"); err != nil || deferred {
		return err
	}
	objs, err := manifests.KubeProxyObjects(d.Cfg)
	if err != nil {
		return err
	}
	if err := d.applier().Apply(ctx, phase, objs...); err != nil {
		return err
	}
	return d.waitRollout(ctx, "kube-proxy", func(ctx context.Context) (bool, string, error) {
		ds, err := d.Client.AppsV1().DaemonSets(metav1.NamespaceSystem).Get(ctx, manifests.KubeProxyName, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		s := ds.Status
		done := s.ObservedGeneration >= ds.Generation && s.UpdatedNumberScheduled == s.DesiredNumberScheduled && s.NumberAvailable == s.DesiredNumberScheduled
		return done, fmt.Sprintf("%d/%d updated, %d available", s.UpdatedNumberScheduled, s.DesiredNumberScheduled, s.NumberAvailable), nil
	})
}

// waitRollout waits for an addon's rollout to finish. A dry run's waiter
// polls nothing, so there is no rollout to report.
func (d *UpgradeData) waitRollout(ctx context.Context, what string, done func(context.Context) (bool, string, error)) error {
	start := time.Now()
	var state string
	observed := false
	err := d.waiter().Poll(ctx, 100*time.Millisecond, 3*time.Minute, func(context.Context) (bool, error) {
		ok, s, err := done(ctx)
		state, observed = s, ok
		return ok, err
	})
	if err != nil {
		return fmt.Errorf("the %s rollout did not finish within 3m (%s): %w; see `kubectl -n kube-system get pods`", what, state, err)
	}
	if observed {
		d.Out.Done("upgrade/addon", "rolled-out", "", start, "%s runs %s (%s)", what, version.Image(), state)
	}
	return nil
}
