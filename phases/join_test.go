package phases

import (
	"context"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestEtcdEndpointsSkipSelf(t *testing.T) {
	pod := func(node, url string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "etcd-" + node, Namespace: metav1.NamespaceSystem,
			Labels:      map[string]string{"component": "etcd", "tier": "control-plane"},
			Annotations: map[string]string{"kubeadm.kubernetes.io/etcd.advertise-client-urls": url}},
			Spec: corev1.PodSpec{NodeName: node}}
	}
	c := fake.NewClientset(pod("cp1", "https://10.0.0.1:2379"), pod("cp2", "https://10.0.0.2:2379"), pod("cp3", "https://10.0.0.3:2379"))
	got, err := etcdEndpoints(context.Background(), c, "cp3")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if want := []string{"https://10.0.0.1:2379", "https://10.0.0.2:2379"}; !slices.Equal(got, want) {
		t.Fatalf("endpoints %v, want %v (a joining node's own etcd pod is left out)", got, want)
	}
}
