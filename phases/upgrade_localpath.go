package phases

import (
	"context"
	"encoding/json"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubeforge/kubeforge/internal/version"
	"github.com/kubeforge/kubeforge/manifests"
)

// runUpgradeLocalPath moves the local-path provisioner's DaemonSet to this
// version's self-image, once every node runs it. Only the image changes:
// upgrade has no KubeforgeConfiguration to render the addon from, so the
// volume root (addons.localPath.root) stays the one the DaemonSet has.
// Without the DaemonSet (the addon turned off or removed) there is nothing
// to do.
func runUpgradeLocalPath(ctx context.Context, d *UpgradeData) error {
	const phase = "upgrade/addon"
	dss := d.Client.AppsV1().DaemonSets(metav1.NamespaceSystem)
	ds, err := dss.Get(ctx, manifests.LocalPathName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		d.Out.Printf(phase, "Skipping local-path storage: there is no DaemonSet %s/%s (the addon is off)", metav1.NamespaceSystem, manifests.LocalPathName)
		return nil
	}
	if err != nil {
		return fmt.Errorf("read DaemonSet %s/%s: %w", metav1.NamespaceSystem, manifests.LocalPathName, err)
	}
	current := ""
	for _, c := range ds.Spec.Template.Spec.Containers {
		if c.Name == manifests.LocalPathName {
			current = c.Image
		}
	}
	if current == version.Image() {
		d.Out.Printf(phase, "local-path storage already runs %s: nothing to do", version.Image())
		return nil
	}
	if deferred, err := d.addonsDeferred(ctx, "local-path storage"); err != nil || deferred {
		return err
	}
	if d.DryRun {
		d.Out.Printf(phase, "Would set the image of DaemonSet %s/%s from %s to %s", metav1.NamespaceSystem, manifests.LocalPathName, current, version.Image())
		return nil
	}
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
		"containers": []map[string]string{{"name": manifests.LocalPathName, "image": version.Image()}}}}}})
	if err != nil {
		return err
	}
	if _, err := dss.Patch(ctx, manifests.LocalPathName, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager}); err != nil {
		return fmt.Errorf("set the image of DaemonSet %s/%s to %s: %w", metav1.NamespaceSystem, manifests.LocalPathName, version.Image(), err)
	}
	return d.waitRollout(ctx, "local-path storage", func(ctx context.Context) (bool, string, error) {
		ds, err := dss.Get(ctx, manifests.LocalPathName, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		s := ds.Status
		done := s.ObservedGeneration >= ds.Generation && s.UpdatedNumberScheduled == s.DesiredNumberScheduled && s.NumberAvailable == s.DesiredNumberScheduled
		return done, fmt.Sprintf("%d/%d updated, %d available", s.UpdatedNumberScheduled, s.DesiredNumberScheduled, s.NumberAvailable), nil
	})
}
