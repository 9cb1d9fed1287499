package phases

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/manifests"
	"github.com/kubeforge/kubeforge/pki"
)

func TestEtcdEndpointsSkipSelf(t *testing.T) {
	pod := func(node, url string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "etcd-" + node, Namespace: metav1.NamespaceSystem,
			Labels:      map[string]string{"component": "etcd", "tier": "control-plane"},
			Annotations: map[string]string{"kubeadm.kubernetes.io/etcd.advertise-client-urls": url}},
			Spec: corev1.PodSpec{NodeName: node}}
	}
	c := fake.NewClientset(pod("cp1", "https://10.0.0.1:2379"), pod("cp2", "https://10.0.0.2:2379"), pod("cp3", "https://10.0.0.3:2379"))
	got, err := etcdEndpoints(context.Background(), c, "cp3", "10.0.0.3")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if want := []string{"https://10.0.0.1:2379", "https://10.0.0.2:2379"}; !slices.Equal(got, want) {
		t.Fatalf("endpoints %v, want %v (a joining node's own etcd pod is left out)", got, want)
	}
}

// A control plane run as processes has no etcd pods: the etcd members are
// found at the API servers' addresses, the joining node's left out.
func TestEtcdEndpointsWithoutEtcdPods(t *testing.T) {
	slice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: metav1.NamespaceDefault,
		Labels: map[string]string{"kubernetes.io/service-name": "kubernetes"}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}}, {Addresses: []string{"10.0.0.3"}}}}
	got, err := etcdEndpoints(context.Background(), fake.NewClientset(slice), "cp3", "10.0.0.3")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"https://10.0.0.1:2379"}; !slices.Equal(got, want) {
		t.Fatalf("endpoints %v, want %v", got, want)
	}
	if _, err := etcdEndpoints(context.Background(), fake.NewClientset(), "cp3", "10.0.0.3"); err == nil {
		t.Error("no etcd pod and no API server: no error")
	}
}

// What a static pod depends on besides the configuration reaches the
// renderer as an argument: a joining etcd member's initial cluster (the
// etcd phase's finding, kept on the node's data) and the external CAs (read
// from the certificate dir at render time). The configuration is not
// written to.
func TestRenderStaticPodDerived(t *testing.T) {
	cfg := config.New()
	cfg.Paths = config.DefaultPaths().WithRoot(t.TempDir())
	cfg.ThisNode = config.ThisNode{Name: "cp2", IP: "10.0.0.2", API: config.Endpoint{Host: "10.0.0.2", Port: 6443}}
	cfg.Cluster.Etcd.Local = &v1beta4.LocalEtcd{DataDir: "/var/lib/etcd"}
	before := fmt.Sprintf("%+v", *cfg)
	n := &Node{Cfg: cfg, Paths: cfg.Paths, EtcdInitialCluster: "cp1=https://10.0.0.1:2380,cp2=https://10.0.0.2:2380"}
	pod, err := n.renderStaticPod(manifests.Etcd)
	if err != nil {
		t.Fatal(err)
	}
	if f := manifests.PodFlags(pod); f["initial-cluster"] != n.EtcdInitialCluster || f["initial-cluster-state"] != "existing" {
		t.Errorf("etcd flags %v", f)
	}
	cm, err := n.renderStaticPod(manifests.KubeControllerMgr)
	if err != nil {
		t.Fatal(err)
	}
	if f := manifests.PodFlags(cm); f["cluster-signing-kubelet-client-key-file"] == "" {
		t.Errorf("the cluster CA's key is not known to be missing yet: %v", f)
	}
	// The cluster CA's certificate without its key: an external CA.
	crt := cfg.Paths.Host(pki.CertPath(cfg.Paths, "ca"))
	if err := os.MkdirAll(filepath.Dir(crt), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(crt, []byte("a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	if cm, err = n.renderStaticPod(manifests.KubeControllerMgr); err != nil {
		t.Fatal(err)
	}
	if f := manifests.PodFlags(cm); f["cluster-signing-kubelet-client-key-file"] != "" || f["cluster-signing-kubelet-serving-key-file"] == "" {
		t.Errorf("external cluster CA: controller-manager flags %v", f)
	}
	if after := fmt.Sprintf("%+v", *cfg); after != before {
		t.Errorf("rendering changed the configuration:\n%s\n%s", before, after)
	}
}
