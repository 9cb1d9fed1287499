package uploadcerts

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubeforge/kubeforge/config"
)

// sharedFiles writes every shared file ("content of NAME") under a new root.
func sharedFiles(t *testing.T) config.Paths {
	t.Helper()
	src := config.DefaultPaths().WithRoot(t.TempDir())
	for _, f := range Files {
		p := src.Host(filepath.Join(src.CertDir, f))
		os.MkdirAll(filepath.Dir(p), 0o700)
		os.WriteFile(p, []byte("content of "+f), 0o600)
	}
	return src
}

func TestUploadFetchWrite(t *testing.T) {
	src := sharedFiles(t)
	k, _ := NewKey()
	key, err := ParseKey(k)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c := fake.NewClientset()
	if err := Upload(ctx, c, src, key); err != nil {
		t.Fatal(err)
	}
	s, err := c.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, SecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.OwnerReferences) != 1 || !strings.HasPrefix(s.OwnerReferences[0].Name, "bootstrap-token-") {
		t.Fatalf("the Secret must be owned by a bootstrap token: %+v", s.OwnerReferences)
	}
	for k, v := range s.Data {
		if strings.Contains(string(v), "content of") {
			t.Fatalf("%s is stored in clear", k)
		}
	}
	if _, ok := s.Data["etcd-ca.key"]; !ok {
		t.Fatal("kubeadm's key name etcd-ca.key missing")
	}
	files, err := Fetch(ctx, c, key)
	if err != nil {
		t.Fatal(err)
	}
	dst := config.DefaultPaths().WithRoot(t.TempDir())
	if err := Write(dst, files); err != nil {
		t.Fatal(err)
	}
	for _, f := range Files {
		b, err := os.ReadFile(dst.Host(filepath.Join(dst.CertDir, f)))
		if err != nil || string(b) != "content of "+f {
			t.Fatalf("%s: %q %v", f, b, err)
		}
		st, _ := os.Stat(dst.Host(filepath.Join(dst.CertDir, f)))
		if strings.HasSuffix(f, ".key") && st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", f, st.Mode())
		}
	}
	other, _ := NewKey()
	wrong, _ := ParseKey(other)
	if _, err := Fetch(ctx, c, wrong); err == nil || !strings.Contains(err.Error(), "does not decrypt") {
		t.Fatalf("wrong key: %v", err)
	}
	c.CoreV1().Secrets(metav1.NamespaceSystem).Delete(ctx, SecretName, metav1.DeleteOptions{})
	if _, err := Fetch(ctx, c, key); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired: %v", err)
	}
	if _, err := ParseKey("abc"); err == nil {
		t.Fatal("short key accepted")
	}
}

// An upload made by a kubeforge without the kubelet serving CA is refused:
// the joining control plane must not make a second CA of its own.
func TestFetchRefusesUploadWithoutKubeletServingCA(t *testing.T) {
	src := sharedFiles(t)
	k, _ := NewKey()
	key, _ := ParseKey(k)
	ctx := context.Background()
	c := fake.NewClientset()
	if err := Upload(ctx, c, src, key); err != nil {
		t.Fatal(err)
	}
	s, _ := c.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, SecretName, metav1.GetOptions{})
	delete(s.Data, "kubelet-serving-ca.crt")
	delete(s.Data, "kubelet-serving-ca.key")
	if _, err := c.CoreV1().Secrets(metav1.NamespaceSystem).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Fetch(ctx, c, key); err == nil || !strings.Contains(err.Error(), "init phase certs kubelet-serving-ca") {
		t.Fatalf("want the migration steps, got %v", err)
	}
	// Nor a Secrets encryption key of its own.
	if err := Upload(ctx, c, src, key); err != nil {
		t.Fatal(err)
	}
	s, _ = c.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, SecretName, metav1.GetOptions{})
	delete(s.Data, "encryption-config.yaml")
	if _, err := c.CoreV1().Secrets(metav1.NamespaceSystem).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Fetch(ctx, c, key); err == nil || !strings.Contains(err.Error(), "lacks encryption-config.yaml") {
		t.Fatalf("an upload without the encryption key: %v", err)
	}
	// And an upload from a node that lacks the CA names the file.
	os.Remove(src.Host(filepath.Join(src.CertDir, "kubelet-serving-ca.key")))
	if err := Upload(ctx, c, src, key); err == nil || !strings.Contains(err.Error(), "kubelet-serving-ca.key") {
		t.Fatalf("upload without the CA key: %v", err)
	}
}

// External CA mode: the cluster's CA keys are not on the node. The upload
// leaves them out (as kubeadm's) and the fetch returns the rest; any other
// missing file still fails the upload.
func TestUploadWithoutExternalCAKeys(t *testing.T) {
	src := sharedFiles(t)
	for _, f := range ExternalCAKeys {
		if err := os.Remove(src.Host(filepath.Join(src.CertDir, f))); err != nil {
			t.Fatal(err)
		}
	}
	k, _ := NewKey()
	key, _ := ParseKey(k)
	ctx := context.Background()
	c := fake.NewClientset()
	if err := Upload(ctx, c, src, key); err != nil {
		t.Fatal(err)
	}
	files, err := Fetch(ctx, c, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(Files)-len(ExternalCAKeys) {
		t.Errorf("fetched %d files, want %d", len(files), len(Files)-len(ExternalCAKeys))
	}
	for _, f := range ExternalCAKeys {
		if _, ok := files[f]; ok {
			t.Errorf("fetched %s", f)
		}
	}
	if string(files["ca.crt"]) != "content of ca.crt" {
		t.Errorf("ca.crt: %q", files["ca.crt"])
	}
	os.Remove(src.Host(filepath.Join(src.CertDir, "sa.key")))
	if err := Upload(ctx, fake.NewClientset(), src, key); err == nil || !strings.Contains(err.Error(), "sa.key") {
		t.Errorf("upload without sa.key: %v", err)
	}
}
