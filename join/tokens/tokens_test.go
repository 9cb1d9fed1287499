package tokens

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/cluster-bootstrap/token/jws"
	bootstraptokenv1 "k8s.io/kubernetes/cmd/kubeadm/app/apis/bootstraptoken/v1"
)

func TestCreateListDeleteSigns(t *testing.T) {
	ctx := context.Background()
	ci := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cluster-info", Namespace: "kube-public"},
		Data: map[string]string{"kubeconfig": "apiVersion: v1\nkind: Config\n"}}
	c := fake.NewClientset(ci)
	s, _ := Generate()
	ts, err := bootstraptokenv1.NewBootstrapTokenString(s)
	if err != nil {
		t.Fatal(err)
	}
	tok := &bootstraptokenv1.BootstrapToken{Token: ts, Usages: DefaultUsages, Groups: DefaultGroups, TTL: &metav1.Duration{Duration: time.Hour}}
	if err := Create(ctx, c, tok); err != nil {
		t.Fatal(err)
	}
	if err := Create(ctx, c, tok); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("duplicate: %v", err)
	}
	got, _ := c.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{})
	sig := got.Data["jws-kubeconfig-"+ts.ID]
	if !jws.DetachedTokenIsValid(sig, got.Data["kubeconfig"], ts.ID, ts.Secret) {
		t.Fatal("cluster-info not signed for the new token")
	}
	list, err := List(ctx, c)
	if err != nil || len(list) != 1 || list[0].Token.ID != ts.ID || list[0].Expires == nil {
		t.Fatalf("list: %v %v", list, err)
	}
	if err := Delete(ctx, c, ts.String()); err != nil {
		t.Fatal(err)
	}
	got, _ = c.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{})
	if _, ok := got.Data["jws-kubeconfig-"+ts.ID]; ok {
		t.Fatal("signature of a deleted token kept")
	}
	if err := Delete(ctx, c, ts.ID); err == nil || !strings.Contains(err.Error(), "no token") {
		t.Fatalf("delete twice: %v", err)
	}
}

// The controller-manager's bootstrap signer updates cluster-info at the
// same time as `token create`: a conflicting update is retried.
func TestSignRetriesConflicts(t *testing.T) {
	ctx := context.Background()
	ci := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cluster-info", Namespace: "kube-public"},
		Data: map[string]string{"kubeconfig": "apiVersion: v1\nkind: Config\n"}}
	c := fake.NewClientset(ci)
	conflicts := 2
	c.PrependReactor("update", "configmaps", func(action k8stesting.Action) (bool, runtime.Object, error) {
		if conflicts > 0 {
			conflicts--
			return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "configmaps"}, "cluster-info", errors.New("the object has been modified"))
		}
		return false, nil, nil
	})
	s, _ := Generate()
	ts, _ := bootstraptokenv1.NewBootstrapTokenString(s)
	tok := &bootstraptokenv1.BootstrapToken{Token: ts, Usages: DefaultUsages, Groups: DefaultGroups, TTL: &metav1.Duration{Duration: time.Hour}}
	if err := Create(ctx, c, tok); err != nil {
		t.Fatal(err)
	}
	if conflicts != 0 {
		t.Fatalf("%d conflicts left: the update was not retried", conflicts)
	}
	got, _ := c.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{})
	if !jws.DetachedTokenIsValid(got.Data["jws-kubeconfig-"+ts.ID], got.Data["kubeconfig"], ts.ID, ts.Secret) {
		t.Fatal("cluster-info not signed after the conflicts")
	}
}
