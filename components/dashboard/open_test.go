package dashboard

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubeforge/kubeforge/manifests"
)

// The names `kubeforge dashboard` looks for are the addon's.
func TestOpenNamesAreTheAddons(t *testing.T) {
	if addonService != manifests.DashboardName || adminSA != manifests.DashboardAdminName || addonNamespace != metav1.NamespaceSystem {
		t.Errorf("open.go's names %s %s %s differ from manifests'", addonNamespace, addonService, adminSA)
	}
}

// The port-forward goes to a running, ready pod of the Service, on the
// container port its target port names; without one the error says so.
func TestDashboardPod(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: addonService, Namespace: addonNamespace},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"k8s-app": addonService},
			Ports: []corev1.ServicePort{{Port: 8080, TargetPort: intstr.FromString("http")}}}}
	pod := func(name string, phase corev1.PodPhase, ready corev1.ConditionStatus) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: addonNamespace, Labels: svc.Spec.Selector},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "d", Ports: []corev1.ContainerPort{
				{Name: "health", ContainerPort: 8081}, {Name: "http", ContainerPort: 8080}}}}},
			Status: corev1.PodStatus{Phase: phase, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: ready}}}}
	}
	ctx := context.Background()
	cs := fake.NewClientset(pod("a", corev1.PodPending, corev1.ConditionFalse), pod("b", corev1.PodRunning, corev1.ConditionFalse))
	if _, _, err := dashboardPod(ctx, cs, svc); err == nil || !strings.Contains(err.Error(), "no ready dashboard pod") {
		t.Errorf("no ready pod: %v", err)
	}
	cs = fake.NewClientset(pod("b", corev1.PodRunning, corev1.ConditionFalse), pod("c", corev1.PodRunning, corev1.ConditionTrue))
	p, port, err := dashboardPod(ctx, cs, svc)
	if err != nil || p.Name != "c" || port != 8080 {
		t.Errorf("got %v %d %v, want pod c port 8080", p, port, err)
	}
}

// --admin creates its ServiceAccount and binding once; a token request
// names the ServiceAccount and its lifetime; a bad name is refused.
func TestAdminAndToken(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset()
	var out bytes.Buffer
	for range 2 {
		if err := ensureAdmin(ctx, cs, &out); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Count(out.String(), "Created") != 2 {
		t.Errorf("want two objects created once:\n%s", out.String())
	}
	crb, err := cs.RbacV1().ClusterRoleBindings().Get(ctx, adminSA, metav1.GetOptions{})
	if err != nil || crb.RoleRef.Name != "cluster-admin" || crb.Subjects[0].Name != adminSA {
		t.Errorf("binding %+v %v", crb, err)
	}
	var asked int64
	cs.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "token" {
			return false, nil, nil
		}
		tr := a.(k8stesting.CreateAction).GetObject().(*authnv1.TokenRequest)
		asked = *tr.Spec.ExpirationSeconds
		tr.Status = authnv1.TokenRequestStatus{Token: "tok", ExpirationTimestamp: metav1.NewTime(time.Now().Add(15 * time.Minute))}
		return true, tr, nil
	})
	tok, _, err := serviceAccountToken(ctx, cs, addonNamespace+"/"+adminSA, 15*time.Minute)
	if err != nil || tok != "tok" || asked != 900 {
		t.Errorf("token %q %v, asked for %ds", tok, err, asked)
	}
	if _, _, err := serviceAccountToken(ctx, cs, "admin", time.Hour); err == nil || !strings.Contains(err.Error(), "NAMESPACE/NAME") {
		t.Errorf("bad name: %v", err)
	}
}
