package phases

import (
	"bytes"
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/progress"
	"github.com/kubeforge/kubeforge/internal/version"
	"github.com/kubeforge/kubeforge/manifests"
)

// The old pod-network-reader RBAC stays while a node runs an older
// kubeforge, goes once none does, and a rerun finds it gone.
func TestUpgradeRBACCleanup(t *testing.T) {
	cfg := config.New()
	name := manifests.PodNetworkReader
	node := func(n, v string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n, Annotations: map[string]string{NodeVersionAnnotation: v}}}
	}
	old := []runtime.Object{
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name}},
	}
	run := func(t *testing.T, client *fake.Clientset, dry bool) string {
		t.Helper()
		var buf bytes.Buffer
		d := &UpgradeData{Node: &Node{Cfg: cfg, Paths: cfg.Paths, Out: progress.New(&buf, false), DryRun: dry}, Client: client}
		if err := runUpgradeRBACCleanup(context.Background(), d); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	exists := func(client *fake.Clientset) (bool, bool) {
		_, e1 := client.RbacV1().ClusterRoles().Get(context.Background(), name, metav1.GetOptions{})
		_, e2 := client.RbacV1().ClusterRoleBindings().Get(context.Background(), name, metav1.GetOptions{})
		return e1 == nil, e2 == nil
	}

	lagging := fake.NewClientset(append(old, node("cp1", version.Version), node("w1", "v0.0.1"))...)
	if out := run(t, lagging, false); !strings.Contains(out, "Keeping ClusterRole "+name) || !strings.Contains(out, "w1") {
		t.Errorf("lagging node: %s", out)
	}
	if r, b := exists(lagging); !r || !b {
		t.Errorf("deleted while w1 lags: role %v, binding %v", r, b)
	}
	dry := fake.NewClientset(append(old, node("cp1", version.Version))...)
	if out := run(t, dry, true); !strings.Contains(out, "Would delete") {
		t.Errorf("dry run: %s", out)
	}
	if r, b := exists(dry); !r || !b {
		t.Errorf("deleted by a dry run")
	}
	client := fake.NewClientset(append(old, node("cp1", version.Version), node("w1", version.Version))...)
	if out := run(t, client, false); !strings.Contains(out, "Deleted ClusterRoleBinding and ClusterRole "+name) {
		t.Errorf("no node lags: %s", out)
	}
	if r, b := exists(client); r || b {
		t.Errorf("left: role %v, binding %v", r, b)
	}
	if out := run(t, client, false); !strings.Contains(out, "No ClusterRole "+name) {
		t.Errorf("rerun: %s", out)
	}
	// Half gone (a run interrupted between the two deletes): finished.
	half := fake.NewClientset(old[0], node("cp1", version.Version))
	run(t, half, false)
	if r, _ := exists(half); r {
		t.Errorf("the ClusterRole stays when its binding was already gone")
	}
}

// The upgrade applies the node directory's RBAC and no longer the old role.
func TestUpgradeApplyWorkflowHasRBAC(t *testing.T) {
	var names []string
	for _, p := range UpgradeApplyWorkflow().Phases {
		names = append(names, p.Name)
	}
	got := strings.Join(names, " ")
	if !strings.Contains(got, "certs rbac control-plane") || !strings.Contains(got, "node-service rbac-cleanup addon") {
		t.Errorf("upgrade apply phases: %s", got)
	}
	for _, o := range manifests.BootstrapRBAC() {
		if c, ok := o.(*rbacv1.ClusterRole); ok && c.Name == manifests.PodNetworkReader {
			t.Errorf("BootstrapRBAC still makes %s", c.Name)
		}
	}
}
