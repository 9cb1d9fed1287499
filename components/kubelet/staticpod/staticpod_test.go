package staticpod

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	kubetypes "k8s.io/kubernetes/pkg/kubelet/types"
)

const manifest = `apiVersion: v1
kind: Pod
metadata:
  name: etcd
  namespace: kube-system
spec:
  hostNetwork: true
  containers:
  - name: etcd
    image: kubeforge.local/kubeforge:%s
`

func readOne(t *testing.T, dir, image string) *corev1.Pod {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "etcd.yaml"), []byte(fmt.Sprintf(manifest, image)), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pods, err := Read(ctx, dir, "cp1")
	if err != nil {
		t.Fatal(err)
	}
	p := Find(pods, "etcd", "cp1")
	if p == nil {
		t.Fatalf("no etcd-cp1 among %d pods", len(pods))
	}
	return p
}

func TestReadHashesAsTheKubelet(t *testing.T) {
	dir := t.TempDir()
	a := readOne(t, dir, "a")
	if a.Annotations[ConfigHashAnnotation] == "" || string(a.UID) != a.Annotations[ConfigHashAnnotation] {
		t.Fatalf("uid %q, hash annotation %q", a.UID, a.Annotations[ConfigHashAnnotation])
	}
	if a.Spec.NodeName != "cp1" || a.Annotations[kubetypes.ConfigSourceAnnotationKey] != kubetypes.FileSource {
		t.Errorf("node %q, source %q", a.Spec.NodeName, a.Annotations[kubetypes.ConfigSourceAnnotationKey])
	}
	if again := readOne(t, dir, "a"); again.UID != a.UID {
		t.Errorf("the same manifest hashes to %s and %s", a.UID, again.UID)
	}
	if b := readOne(t, dir, "b"); b.UID == a.UID {
		t.Errorf("another image keeps the hash %s", a.UID)
	}
	// The path is part of the hash: the same file elsewhere is another pod.
	if other := readOne(t, t.TempDir(), "a"); other.UID == a.UID {
		t.Errorf("the same manifest in another directory has the same hash %s", a.UID)
	}
}

func TestReplaceMirror(t *testing.T) {
	dir := t.TempDir()
	static := readOne(t, dir, "new")
	oldMirror := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "etcd-cp1", Namespace: "kube-system", UID: "old-uid",
		Annotations: map[string]string{kubetypes.ConfigMirrorAnnotationKey: "oldhash"}}}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "cp1", UID: "node-uid"}}
	client := fake.NewClientset(oldMirror, node)
	ctx := context.Background()
	// (The UID precondition of the delete is the API server's: the fake
	// clientset ignores preconditions.)
	if err := ReplaceMirror(ctx, client, "cp1", static, "old-uid"); err != nil {
		t.Fatal(err)
	}
	got, err := client.CoreV1().Pods("kube-system").Get(ctx, "etcd-cp1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := got.Annotations[kubetypes.ConfigMirrorAnnotationKey]; h != static.Annotations[ConfigHashAnnotation] {
		t.Errorf("mirror annotation %q, want the new hash %q", h, static.Annotations[ConfigHashAnnotation])
	}
	if len(got.OwnerReferences) != 1 || got.OwnerReferences[0].UID != "node-uid" {
		t.Errorf("owner references %+v, want the Node", got.OwnerReferences)
	}
}

// Hash gives the hash the kubelet's own file source gives the same file at
// the same path; Pod gives the pod it makes, before the file is there.
func TestHashAsTheKubelet(t *testing.T) {
	dir := t.TempDir()
	kubelet := readOne(t, dir, "x")
	path := filepath.Join(dir, "etcd.yaml")
	manifest, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h, err := Hash(manifest, path, "cp1")
	if err != nil {
		t.Fatal(err)
	}
	if h != string(kubelet.UID) {
		t.Fatalf("Hash = %s, the kubelet's file source says %s", h, kubelet.UID)
	}
	if other, _ := Hash(manifest, path, "cp2"); other == h {
		t.Errorf("another node's kubelet hashes to the same %s", h)
	}
	before, err := Pod(context.Background(), manifest, filepath.Join(t.TempDir(), "etcd.yaml"), "cp1")
	if err != nil {
		t.Fatal(err)
	}
	if before.UID == kubelet.UID {
		t.Errorf("Pod at another path kept the hash %s", before.UID)
	}
	p, err := Pod(context.Background(), manifest, path, "cp1")
	if err != nil {
		t.Fatal(err)
	}
	if p.UID != kubelet.UID || p.Annotations[ConfigHashAnnotation] != string(kubelet.UID) || p.Name != "etcd-cp1" {
		t.Errorf("Pod: uid %s, hash %s, name %s; the kubelet: %s", p.UID, p.Annotations[ConfigHashAnnotation], p.Name, kubelet.UID)
	}
	if _, err := Hash([]byte("kind: ConfigMap\napiVersion: v1\nmetadata: {name: x}\n"), path, "cp1"); err == nil {
		t.Error("Hash of a ConfigMap: no error")
	}
}
