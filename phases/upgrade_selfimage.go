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

// selfImageAddon is a cluster addon that runs on kubeforge's self-image as
// one Deployment or DaemonSet in kube-system. `upgrade apply` moves each to
// this version's image once every node runs this version (older nodes'
// container runtimes lack the image). Only the image changes: the addon's
// settings stay those of the running object. An addon that is not there
// (turned off at init) is skipped.
type selfImageAddon struct {
	// Phase is the upgrade phase's name (upgrade apply phase addon/PHASE).
	Phase string
	// Title names the addon in messages.
	Title string
	// DaemonSet is true for a DaemonSet, false for a Deployment.
	DaemonSet bool
	// Name is the object's name and its container's.
	Name string
}

// selfImageAddons are the addons upgrade moves to the new self-image, in
// order. Each addon on the self-image adds its line here.
var selfImageAddons = []selfImageAddon{
	{Phase: "metrics-server", Title: "metrics-server", Name: manifests.MetricsServerName},
	{Phase: "local-path", Title: "local-path storage", DaemonSet: true, Name: manifests.LocalPathName},
	{Phase: "cloud-controller", Title: "the cloud controller manager", Name: manifests.CloudControllerName},
	{Phase: "dashboard", Title: "the dashboard", Name: manifests.DashboardName},
	// An upgrade does not start enforcing NetworkPolicy in a cluster made
	// without it: `kubeforge init phase addon network-policy` installs it.
	{Phase: "network-policy", Title: "network policy", DaemonSet: true, Name: manifests.NetworkPolicyName},
}

// selfImageAddonPhases are the upgrade phases of selfImageAddons.
func selfImageAddonPhases() []Phase[*UpgradeData] {
	var out []Phase[*UpgradeData]
	for _, a := range selfImageAddons {
		out = append(out, Phase[*UpgradeData]{Name: a.Phase, Short: "Move " + a.Title + " to the new image (its settings unchanged)",
			Run: func(ctx context.Context, d *UpgradeData) error { return upgradeSelfImageAddon(ctx, d, a) }})
	}
	return out
}

func (a selfImageAddon) kind() string {
	if a.DaemonSet {
		return "DaemonSet"
	}
	return "Deployment"
}

// workload reads the addon's object: the image of its container, and
// whether it exists.
func (a selfImageAddon) image(ctx context.Context, d *UpgradeData) (string, bool, error) {
	var err error
	var spec []string
	if a.DaemonSet {
		ds, e := d.Client.AppsV1().DaemonSets(metav1.NamespaceSystem).Get(ctx, a.Name, metav1.GetOptions{})
		if err = e; e == nil {
			for _, c := range ds.Spec.Template.Spec.Containers {
				if c.Name == a.Name {
					spec = append(spec, c.Image)
				}
			}
		}
	} else {
		dep, e := d.Client.AppsV1().Deployments(metav1.NamespaceSystem).Get(ctx, a.Name, metav1.GetOptions{})
		if err = e; e == nil {
			for _, c := range dep.Spec.Template.Spec.Containers {
				if c.Name == a.Name {
					spec = append(spec, c.Image)
				}
			}
		}
	}
	if apierrors.IsNotFound(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read %s %s/%s: %w", a.kind(), metav1.NamespaceSystem, a.Name, err)
	}
	if len(spec) == 0 {
		return "", true, fmt.Errorf("%s %s/%s has no container %q: it is not kubeforge's %s", a.kind(), metav1.NamespaceSystem, a.Name, a.Name, a.Title)
	}
	return spec[0], true, nil
}

// rolledOut reports whether the addon's object runs its current template
// everywhere, with a short status.
func (a selfImageAddon) rolledOut(ctx context.Context, d *UpgradeData) (bool, string, error) {
	if a.DaemonSet {
		ds, err := d.Client.AppsV1().DaemonSets(metav1.NamespaceSystem).Get(ctx, a.Name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		s := ds.Status
		done := s.ObservedGeneration >= ds.Generation && s.UpdatedNumberScheduled == s.DesiredNumberScheduled && s.NumberAvailable == s.DesiredNumberScheduled
		return done, fmt.Sprintf("%d/%d updated, %d available", s.UpdatedNumberScheduled, s.DesiredNumberScheduled, s.NumberAvailable), nil
	}
	dep, err := d.Client.AppsV1().Deployments(metav1.NamespaceSystem).Get(ctx, a.Name, metav1.GetOptions{})
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
}

func upgradeSelfImageAddon(ctx context.Context, d *UpgradeData, a selfImageAddon) error {
	const phase = "upgrade/addon"
	current, found, err := a.image(ctx, d)
	if err != nil {
		return err
	}
	if !found {
		d.Out.Printf(phase, "Skipping %s: there is no %s %s/%s (the addon is off)", a.Title, a.kind(), metav1.NamespaceSystem, a.Name)
		return nil
	}
	if current == version.Image() {
		d.Out.Printf(phase, "%s already runs %s: nothing to do", a.Title, version.Image())
		return nil
	}
	if deferred, err := d.addonsDeferred(ctx, a.Title); err != nil || deferred {
		return err
	}
	if d.DryRun {
		d.Out.Printf(phase, "Would set the image of %s %s/%s from %s to %s", a.kind(), metav1.NamespaceSystem, a.Name, current, version.Image())
		return nil
	}
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
		"containers": []map[string]string{{"name": a.Name, "image": version.Image()}}}}}})
	if err != nil {
		return err
	}
	if a.DaemonSet {
		_, err = d.Client.AppsV1().DaemonSets(metav1.NamespaceSystem).Patch(ctx, a.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager})
	} else {
		_, err = d.Client.AppsV1().Deployments(metav1.NamespaceSystem).Patch(ctx, a.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager})
	}
	if err != nil {
		return fmt.Errorf("set the image of %s %s/%s to %s: %w", a.kind(), metav1.NamespaceSystem, a.Name, version.Image(), err)
	}
	return d.waitRollout(ctx, a.Title, func(ctx context.Context) (bool, string, error) { return a.rolledOut(ctx, d) })
}
