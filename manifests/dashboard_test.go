package manifests

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

func TestDashboardGolden(t *testing.T) {
	golden(t, "kubeforge-dashboard.yaml", objectsYAML(t, DashboardObjects(testConfig(t))))
}

// The dashboard has no rights of its own (no RBAC object, no token in the
// pod), runs the self-image, and serves the UI on the pod's loopback only.
func TestDashboardNoRights(t *testing.T) {
	var dep *appsv1.Deployment
	for _, o := range DashboardObjects(testConfig(t)) {
		switch o := o.(type) {
		case *appsv1.Deployment:
			dep = o
		case *corev1.ServiceAccount:
			if o.AutomountServiceAccountToken == nil || *o.AutomountServiceAccountToken {
				t.Errorf("ServiceAccount %s mounts its token", o.Name)
			}
		case *corev1.Service:
		default:
			t.Errorf("unexpected %s: the dashboard must get no rights of its own", o.GetObjectKind().GroupVersionKind().Kind)
		}
	}
	if dep == nil {
		t.Fatal("no Deployment")
	}
	spec := dep.Spec.Template.Spec
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("the pod mounts a service account token")
	}
	ctr := spec.Containers[0]
	if !slices.Equal(ctr.Command, []string{"kubeforge", "component", DashboardComponent}) || !strings.HasPrefix(ctr.Image, "kubeforge.local/kubeforge:") {
		t.Errorf("not the self-image's dashboard: %s %v", ctr.Image, ctr.Command)
	}
	if !slices.Contains(ctr.Args, "--listen=127.0.0.1:8080") {
		t.Errorf("the UI is not on the pod's loopback only: %v", ctr.Args)
	}
}
