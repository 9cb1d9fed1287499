package phases

import (
	"context"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubeforge/kubeforge/manifests"
)

// The store's storage: the local-path class when the cluster has it, else
// the control-plane hostPath; a rerun keeps what the StatefulSet has
// (its volume claims cannot change).
func TestLogStorage(t *testing.T) {
	ctx := context.Background()
	class := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: manifests.LogStoreClass}}
	name := manifests.LogStoreClass
	withClaim := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: manifests.LogStoreName, Namespace: "kube-system"},
		Spec: appsv1.StatefulSetSpec{VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: &name}}}}}
	hostPath := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: manifests.LogStoreName, Namespace: "kube-system"}}
	for _, c := range []struct {
		name string
		objs []any
		want string
	}{
		{"no class", nil, ""},
		{"class", []any{class}, manifests.LogStoreClass},
		{"hostPath kept when the class came later", []any{class, hostPath}, ""},
		{"claim kept", []any{withClaim}, manifests.LogStoreClass},
	} {
		client := fake.NewClientset()
		for _, o := range c.objs {
			switch o := o.(type) {
			case *storagev1.StorageClass:
				client.StorageV1().StorageClasses().Create(ctx, o, metav1.CreateOptions{})
			case *appsv1.StatefulSet:
				client.AppsV1().StatefulSets("kube-system").Create(ctx, o, metav1.CreateOptions{})
			}
		}
		st, err := logStorage(ctx, client)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if st.Class != c.want {
			t.Errorf("%s: class %q, want %q", c.name, st.Class, c.want)
		}
	}
}
