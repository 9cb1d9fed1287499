package phases

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/progress"
	"github.com/kubeforge/kubeforge/internal/version"
	"github.com/kubeforge/kubeforge/manifests"
)

// The local-path upgrade moves the DaemonSet to this version's image and
// keeps its root; it waits for nodes on an older kubeforge, skips a
// cluster without the addon, and a rerun changes nothing.
func TestUpgradeLocalPath(t *testing.T) {
	cfg := config.New()
	cfg.Kubeforge.Addons.LocalPath.Root = "/srv/volumes"
	old := "kubeforge.local/kubeforge:v0.0.1"
	ds := func() *appsv1.DaemonSet {
		for _, o := range manifests.LocalPathObjects(cfg) {
			if d, ok := o.(*appsv1.DaemonSet); ok {
				d = d.DeepCopy()
				d.Spec.Template.Spec.Containers[0].Image = old
				d.Spec.Template.Annotations[manifests.ShimGroupAnnotation] = manifests.SystemShimGroupPrefix + "-v0.0.1"
				return d
			}
		}
		t.Fatal("no DaemonSet")
		return nil
	}
	node := func(v string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Annotations: map[string]string{NodeVersionAnnotation: v}}}
	}
	run := func(t *testing.T, client *fake.Clientset, dry bool) string {
		var buf bytes.Buffer
		d := &UpgradeData{Node: &Node{Cfg: cfg, Paths: cfg.Paths, Out: progress.New(&buf, false), DryRun: dry}, Client: client}
		if err := upgradeSelfImageAddon(context.Background(), d, addonByPhase(t, "local-path")); err != nil && !strings.Contains(err.Error(), "rollout") {
			t.Fatal(err)
		}
		return buf.String()
	}
	image := func(client *fake.Clientset) (string, []string) {
		got, err := client.AppsV1().DaemonSets("kube-system").Get(context.Background(), manifests.LocalPathName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return got.Spec.Template.Spec.Containers[0].Image, got.Spec.Template.Spec.Containers[0].Command
	}

	if out := run(t, fake.NewClientset(node(version.Version)), false); !strings.Contains(out, "Skipping local-path storage") {
		t.Errorf("no DaemonSet: %s", out)
	}
	lagging := fake.NewClientset(node("v0.0.1"), ds())
	if out := run(t, lagging, false); !strings.Contains(out, "Not upgrading local-path storage yet") {
		t.Errorf("lagging node: %s", out)
	}
	if img, _ := image(lagging); img != old {
		t.Errorf("lagging node: image set to %s", img)
	}
	dry := fake.NewClientset(node(version.Version), ds())
	if out := run(t, dry, true); !strings.Contains(out, "Would set the image") {
		t.Errorf("dry run: %s", out)
	}
	if img, _ := image(dry); img != old {
		t.Errorf("dry run: image set to %s", img)
	}
	// The fake clientset reports no rollout status: the wait fails and
	// run tolerates that; the image is what this test checks.
	client := fake.NewClientset(node(version.Version), ds())
	run(t, client, false)
	img, cmd := image(client)
	if img != version.Image() || !strings.Contains(strings.Join(cmd, " "), "--root=/srv/volumes") {
		t.Errorf("after upgrade: %s %v", img, cmd)
	}
	// The system shim group moves with the image: the new pods start a
	// shim of the new executable.
	got, _ := client.AppsV1().DaemonSets("kube-system").Get(context.Background(), manifests.LocalPathName, metav1.GetOptions{})
	if g := got.Spec.Template.Annotations[manifests.ShimGroupAnnotation]; g != manifests.SystemShimGroup() {
		t.Errorf("after upgrade: shim group %q, want %q", g, manifests.SystemShimGroup())
	}
	if out := run(t, client, false); !strings.Contains(out, "already runs") {
		t.Errorf("rerun: %s", out)
	}
}

func addonByPhase(t *testing.T, phase string) selfImageAddon {
	t.Helper()
	for _, a := range selfImageAddons {
		if a.Phase == phase {
			return a
		}
	}
	t.Fatalf("no self-image addon %q", phase)
	return selfImageAddon{}
}

// A Deployment addon (metrics-server) moves to the new image too, and
// the upgrade waits for its rollout: it returns once the Deployment
// reports every replica updated and available, and fails naming the
// rollout when that does not come before its deadline.
func TestUpgradeSelfImageDeployment(t *testing.T) {
	cfg := config.New()
	dep := func(s appsv1.DeploymentStatus) *appsv1.Deployment {
		return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: manifests.MetricsServerName, Namespace: "kube-system"},
			Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{
				{Name: manifests.MetricsServerName, Image: "kubeforge.local/kubeforge:v0.0.1"}}}}},
			Status: s}
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Annotations: map[string]string{NodeVersionAnnotation: version.Version}}}
	run := func(ctx context.Context, client *fake.Clientset) (string, error) {
		var buf bytes.Buffer
		d := &UpgradeData{Node: &Node{Cfg: cfg, Paths: cfg.Paths, Out: progress.New(&buf, false)}, Client: client}
		err := upgradeSelfImageAddon(ctx, d, addonByPhase(t, "metrics-server"))
		return buf.String(), err
	}
	image := func(client *fake.Clientset) string {
		got, err := client.AppsV1().Deployments("kube-system").Get(context.Background(), manifests.MetricsServerName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return got.Spec.Template.Spec.Containers[0].Image
	}

	// Rolled out (the fake runs no controller: the status says so from
	// the start).
	client := fake.NewClientset(node, dep(appsv1.DeploymentStatus{Replicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1}))
	out, err := run(context.Background(), client)
	if err != nil {
		t.Fatalf("rolled-out Deployment: %v\n%s", err, out)
	}
	if img := image(client); img != version.Image() {
		t.Errorf("metrics-server image after upgrade: %s", img)
	}
	if !strings.Contains(out, "1/1 updated, 1 available") {
		t.Errorf("the upgrade did not report the finished rollout:\n%s", out)
	}

	// Never available: the wait ends at the context's deadline (not the
	// 3 minutes of a real rollout) with an error naming the rollout.
	client = fake.NewClientset(node, dep(appsv1.DeploymentStatus{Replicas: 1, UpdatedReplicas: 1}))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = run(ctx, client)
	if err == nil || !strings.Contains(err.Error(), "rollout did not finish") || !strings.Contains(err.Error(), "0 available") {
		t.Errorf("a rollout that never finishes: %v", err)
	}
	if img := image(client); img != version.Image() {
		t.Errorf("metrics-server image after the failed wait: %s", img)
	}
}

// Every workload an addon of kubeforge's runs on the self-image has its
// line in selfImageAddons, with its kind and its container's name: an
// addon added without one would stay on the old image after an upgrade.
func TestSelfImageAddonsComplete(t *testing.T) {
	cfg := config.New()
	var objs []runtime.Object
	cc, err := manifests.CloudControllerObjects(cfg)
	if err != nil {
		t.Fatal(err)
	}
	objs = append(objs, cc...)
	objs = append(objs, manifests.DashboardObjects(cfg)...)
	objs = append(objs, manifests.LocalPathObjects(cfg)...)
	objs = append(objs, manifests.LogStoreObjects(cfg, manifests.LogStorage{})...)
	objs = append(objs, manifests.MetricsServerObjects(cfg, manifests.MetricsServerTLS{})...)
	objs = append(objs, manifests.NetworkPolicyObjects(cfg)...)
	inTable := map[string]manifests.Kind{}
	for _, a := range selfImageAddons {
		inTable[a.Name] = a.Kind
	}
	for _, o := range objs {
		var kind manifests.Kind
		var name string
		var tmpl corev1.PodTemplateSpec
		switch w := o.(type) {
		case *appsv1.Deployment:
			kind, name, tmpl = manifests.Deployment, w.Name, w.Spec.Template
		case *appsv1.DaemonSet:
			kind, name, tmpl = manifests.DaemonSet, w.Name, w.Spec.Template
		case *appsv1.StatefulSet:
			kind, name, tmpl = manifests.StatefulSet, w.Name, w.Spec.Template
		default:
			continue
		}
		for _, c := range tmpl.Spec.Containers {
			if c.Image != version.Image() {
				continue
			}
			if c.Name != name {
				t.Errorf("%s %s: its self-image container is %q; the upgrade table expects the object's name", kind, name, c.Name)
			}
			if got, ok := inTable[name]; !ok || got != kind {
				t.Errorf("%s %s runs the self-image but selfImageAddons has %q for it: add its line", kind, name, got)
			}
		}
	}
}
