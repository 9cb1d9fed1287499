package tokens

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
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
