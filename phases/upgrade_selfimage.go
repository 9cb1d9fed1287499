package phases

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubeforge/kubeforge/internal/version"
	"github.com/kubeforge/kubeforge/manifests"
)

// selfImageAddon is a cluster addon that runs on kubeforge's self-image as
// one Deployment, DaemonSet or StatefulSet in kube-system. `upgrade apply` moves each to
// this version's image once every node runs this version (older nodes'
// container runtimes lack the image). Only the image changes, with the
// system shim group that names the version too (so the new pods start a
// shim of the new executable, and the old one ends): the addon's settings
// stay those of the running object. An addon that is not there (turned off
// at init) is skipped.
type selfImageAddon struct {
	// Phase is the upgrade phase's name (upgrade apply phase addon/PHASE).
	Phase string
	// Title names the addon in messages.
	Title string
	// The addon's workload (its kind and name, its container's name),
	// as its renderer in manifests/ makes it.
	manifests.WorkloadRef
}

// selfImageAddons are the addons upgrade moves to the new self-image, in
// order. Each addon on the self-image adds its line here.
var selfImageAddons = []selfImageAddon{
	{Phase: "metrics-server", Title: "metrics-server", WorkloadRef: manifests.MetricsServerWorkload},
	{Phase: "local-path", Title: "local-path storage", WorkloadRef: manifests.LocalPathWorkload},
	{Phase: "cloud-controller", Title: "the cloud controller manager", WorkloadRef: manifests.CloudControllerWorkload},
	{Phase: "dashboard", Title: "the dashboard", WorkloadRef: manifests.DashboardWorkload},
	// An upgrade does not start enforcing NetworkPolicy in a cluster made
	// without it: `kubeforge init phase addon network-policy` installs it.
	{Phase: "network-policy", Title: "network policy", WorkloadRef: manifests.NetworkPolicyWorkload},
	// The store restarts on the new image with its data (its volume).
	{Phase: "log-store", Title: "the log store", WorkloadRef: manifests.LogStoreWorkload},
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

// object reads the addon's object: its pod template and whether its pods
// run the current template everywhere (with a short status).
func (a selfImageAddon) object(ctx context.Context, d *UpgradeData) (*corev1.PodTemplateSpec, bool, string, error) {
	apps := d.Client.AppsV1()
	get := metav1.GetOptions{}
	ns := metav1.NamespaceSystem
	switch a.Kind {
	case manifests.DaemonSet:
		o, err := apps.DaemonSets(ns).Get(ctx, a.Name, get)
		if err != nil {
			return nil, false, "", err
		}
		s := o.Status
		done := s.ObservedGeneration >= o.Generation && s.UpdatedNumberScheduled == s.DesiredNumberScheduled && s.NumberAvailable == s.DesiredNumberScheduled
		return &o.Spec.Template, done, fmt.Sprintf("%d/%d updated, %d available", s.UpdatedNumberScheduled, s.DesiredNumberScheduled, s.NumberAvailable), nil
	case manifests.StatefulSet:
		o, err := apps.StatefulSets(ns).Get(ctx, a.Name, get)
		if err != nil {
			return nil, false, "", err
		}
		want, s := replicas(o.Spec.Replicas), o.Status
		done := s.ObservedGeneration >= o.Generation && s.UpdatedReplicas == want && s.ReadyReplicas == want && s.CurrentRevision == s.UpdateRevision
		return &o.Spec.Template, done, fmt.Sprintf("%d/%d updated, %d ready", s.UpdatedReplicas, want, s.ReadyReplicas), nil
	default:
		o, err := apps.Deployments(ns).Get(ctx, a.Name, get)
		if err != nil {
			return nil, false, "", err
		}
		want, s := replicas(o.Spec.Replicas), o.Status
		done := s.ObservedGeneration >= o.Generation && s.UpdatedReplicas == want && s.Replicas == want && s.AvailableReplicas == want
		return &o.Spec.Template, done, fmt.Sprintf("%d/%d updated, %d available", s.UpdatedReplicas, want, s.AvailableReplicas), nil
	}
}

func replicas(r *int32) int32 {
	if r == nil {
		return 1
	}
	return *r
}

// image is the image of the addon's container, and whether the addon's
// object exists.
func (a selfImageAddon) image(ctx context.Context, d *UpgradeData) (string, bool, error) {
	tmpl, _, _, err := a.object(ctx, d)
	if apierrors.IsNotFound(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read %s %s/%s: %w", a.Kind, metav1.NamespaceSystem, a.Name, err)
	}
	for _, c := range tmpl.Spec.Containers {
		if c.Name == a.Name {
			return c.Image, true, nil
		}
	}
	return "", true, fmt.Errorf("%s %s/%s has no container %q: it is not kubeforge's %s", a.Kind, metav1.NamespaceSystem, a.Name, a.Name, a.Title)
}

func upgradeSelfImageAddon(ctx context.Context, d *UpgradeData, a selfImageAddon) error {
	const phase = "upgrade/addon"
	current, found, err := a.image(ctx, d)
	if err != nil {
		return err
	}
	if !found {
		d.Out.Printf(phase, "Skipping %s: there is no %s %s/%s (the addon is off)", a.Title, a.Kind, metav1.NamespaceSystem, a.Name)
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
		d.Out.Printf(phase, "Would set the image of %s %s/%s from %s to %s (and its pods' shim group to %s)", a.Kind, metav1.NamespaceSystem, a.Name, current, version.Image(), manifests.SystemShimGroup())
		return nil
	}
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{
		"metadata": map[string]any{"annotations": map[string]string{manifests.ShimGroupAnnotation: manifests.SystemShimGroup()}},
		"spec":     map[string]any{"containers": []map[string]string{{"name": a.Name, "image": version.Image()}}}}}})
	if err != nil {
		return err
	}
	apps, ns, pt, opts := d.Client.AppsV1(), metav1.NamespaceSystem, types.StrategicMergePatchType, metav1.PatchOptions{FieldManager: FieldManager}
	switch a.Kind {
	case manifests.DaemonSet:
		_, err = apps.DaemonSets(ns).Patch(ctx, a.Name, pt, patch, opts)
	case manifests.StatefulSet:
		_, err = apps.StatefulSets(ns).Patch(ctx, a.Name, pt, patch, opts)
	default:
		_, err = apps.Deployments(ns).Patch(ctx, a.Name, pt, patch, opts)
	}
	if err != nil {
		return fmt.Errorf("set the image of %s %s/%s to %s: %w", a.Kind, metav1.NamespaceSystem, a.Name, version.Image(), err)
	}
	return d.waitRollout(ctx, a.Title, func(ctx context.Context) (bool, string, error) {
		_, done, status, err := a.object(ctx, d)
		return done, status, err
	})
}
