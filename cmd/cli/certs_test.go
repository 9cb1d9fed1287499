package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/internal/testutil"
	"github.com/kubeforge/kubeforge/pki"
)

const csrConfig = `apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: 127.0.0.5
nodeRegistration:
  name: n1
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
encryptionAlgorithm: ECDSA-P256
`

// `certs generate-csr`, then the external CA flow offline: the CA signs
// every request, the certs and kubeconfig phases use the files as given,
// check-expiration reports them as the external CA's, renew refuses, and
// the controller-manager manifest signs nothing with the absent key.
func TestCertsGenerateCSR(t *testing.T) {
	root := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "init.yaml")
	if err := os.WriteFile(cfg, []byte(csrConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	out := mustRun(t, "certs", "generate-csr", "--root-dir", root, "--config", cfg)
	for _, w := range []string{`Generated "apiserver" key and CSR`, "CN=kube-apiserver", "127.0.0.5", `Generated "admin.conf" kubeconfig with its key, and CSR`, "Next: sign each .csr"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	for _, f := range []string{"etc/kubernetes/pki/apiserver.key", "etc/kubernetes/pki/apiserver.csr", "etc/kubernetes/pki/etcd/peer.csr",
		"etc/kubernetes/pki/front-proxy-client.csr", "etc/kubernetes/admin.conf", "etc/kubernetes/admin.conf.csr", "etc/kubernetes/kubelet.conf.csr"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("missing %s", f)
		}
	}
	for _, f := range []string{"etc/kubernetes/pki/ca.key", "etc/kubernetes/pki/ca.crt", "etc/kubernetes/pki/sa.key", "etc/kubernetes/pki/apiserver.crt"} {
		if _, err := os.Stat(filepath.Join(root, f)); err == nil {
			t.Errorf("generate-csr wrote %s", f)
		}
	}
	before := snapshot(t, root)
	if out, code := run(t, "certs", "generate-csr", "--root-dir", root, "--config", cfg); code == 0 || !strings.Contains(out, "never overwrites") || !strings.Contains(out, "/etc/kubernetes/pki/apiserver.key") {
		t.Errorf("second run: exit %d\n%s", code, out)
	}
	if after := snapshot(t, root); len(after) != len(before) {
		t.Errorf("the refused run changed the file set: %d → %d", len(before), len(after))
	}

	// Other directories, as kubeadm's example.
	mustRun(t, "certs", "generate-csr", "--root-dir", root, "--config", cfg, "--cert-dir", "/tmp/etc-k8s/pki", "--kubeconfig-dir", "/tmp/etc-k8s")
	for _, f := range []string{"tmp/etc-k8s/pki/apiserver.csr", "tmp/etc-k8s/pki/etcd/server.key", "tmp/etc-k8s/scheduler.conf", "tmp/etc-k8s/scheduler.conf.csr"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("missing %s", f)
		}
	}

	cas := map[string]testutil.ExternalCA{
		pki.CAName:       testutil.NewExternalCA(t, "corp-ca"),
		pki.FrontProxyCA: testutil.NewExternalCA(t, "corp-front-proxy-ca"),
		pki.EtcdCA:       testutil.NewExternalCA(t, "corp-etcd-ca"),
	}
	if err := testutil.SignCSRDirs(filepath.Join(root, "etc/kubernetes/pki"), filepath.Join(root, "etc/kubernetes"), cas, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	out = mustRun(t, append([]string{"init", "phase", "certs", "all"}, offline(root)...)...)
	for _, w := range []string{"External CA mode for ca:", `Using externally managed "apiserver" certificate`, `Using externally managed "etcd-peer" certificate`, `Generated "sa"`} {
		if !strings.Contains(out, w) {
			t.Errorf("certs phase output lacks %q:\n%s", w, out)
		}
	}
	out = mustRun(t, append([]string{"init", "phase", "kubeconfig", "all"}, offline(root)...)...)
	if strings.Count(out, "Using externally managed") != 5 {
		t.Errorf("kubeconfig phase should use the 5 provided files:\n%s", out)
	}
	out = mustRun(t, "certs", "check-expiration", "--root-dir", root)
	if strings.Count(out, "external CA: renew it with your CA") < 12 { // 7 leaves, 5 kubeconfigs
		t.Errorf("check-expiration does not mark them external:\n%s", out)
	}
	if out, code := run(t, "certs", "renew", "apiserver", "--root-dir", root); code == 0 || !strings.Contains(out, "its CA is external") || !strings.Contains(out, "renew it with your CA") {
		t.Errorf("renew under an external CA: exit %d\n%s", code, out)
	}
	mustRun(t, append([]string{"init", "phase", "control-plane", "controller-manager"}, offline(root)...)...)
	m, err := os.ReadFile(filepath.Join(root, "etc/kubernetes/manifests/kube-controller-manager.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(m), "/pki/ca.key") || !strings.Contains(string(m), "kubelet-serving-ca.key") {
		t.Errorf("controller-manager manifest under an external CA:\n%s", m)
	}
}
