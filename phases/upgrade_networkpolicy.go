package phases

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeforge/kubeforge/manifests"
)

// runUpgradeNetworkPolicy moves the network policy DaemonSet to the new
// self-image when the cluster has it (init installed it: the addon was
// on). A cluster without it keeps running without: an upgrade does not
// start enforcing policies nobody asked to enforce; `kubeforge init phase
// addon network-policy` installs it.
func runUpgradeNetworkPolicy(ctx context.Context, d *UpgradeData) error {
	const phase = "upgrade/addon"
	if !d.DryRun {
		_, err := d.Client.AppsV1().DaemonSets(metav1.NamespaceSystem).Get(ctx, manifests.NetworkPolicyName, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			d.Out.Printf(phase, "Skipping network policy: the cluster has no DaemonSet %s/%s (the addon was off at init)", metav1.NamespaceSystem, manifests.NetworkPolicyName)
			return nil
		case err != nil:
			return fmt.Errorf("read DaemonSet %s/%s: %w", metav1.NamespaceSystem, manifests.NetworkPolicyName, err)
		}
	}
	if deferred, err := d.addonsDeferred(ctx, "network policy"); err != nil || deferred {
		return err
	}
	if err := d.applier().Apply(ctx, phase, manifests.NetworkPolicyObjects(d.Cfg)...); err != nil {
		return err
	}
	return d.waitRollout(ctx, "network policy", func(ctx context.Context) (bool, string, error) {
		ds, err := d.Client.AppsV1().DaemonSets(metav1.NamespaceSystem).Get(ctx, manifests.NetworkPolicyName, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		s := ds.Status
		done := s.ObservedGeneration >= ds.Generation && s.UpdatedNumberScheduled == s.DesiredNumberScheduled && s.NumberAvailable == s.DesiredNumberScheduled
		return done, fmt.Sprintf("%d/%d updated, %d available", s.UpdatedNumberScheduled, s.DesiredNumberScheduled, s.NumberAvailable), nil
	})
}
