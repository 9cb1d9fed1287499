package phases

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/encryption"
	"github.com/kubeforge/kubeforge/internal/progress"
	"github.com/kubeforge/kubeforge/internal/testutil"
	"github.com/kubeforge/kubeforge/join/discovery"
	"github.com/kubeforge/kubeforge/join/uploadcerts"
	"github.com/kubeforge/kubeforge/manifests"
	"github.com/kubeforge/kubeforge/pki"
)

// testCluster is a first control-plane node's certificate dir, as init
// makes it: every CA, the service-account keys, the etcd server
// certificate (for 127.0.0.1) and an encryption configuration.
type testCluster struct {
	paths config.Paths
}

func newTestCluster(t *testing.T) testCluster {
	t.Helper()
	p := config.DefaultPaths().WithRoot(t.TempDir())
	spec := pki.Spec{Paths: p, NodeName: "cp1", AdvertiseAddress: []byte{10, 201, 0, 2}, ServiceSubnet: "10.96.0.0/12",
		DNSDomain: "cluster.local", Algorithm: pki.AlgorithmECDSAP256}
	for _, name := range []string{pki.CAName, pki.FrontProxyCA, pki.EtcdCA, pki.KubeletServingCA, pki.ServiceAccount, "etcd-server"} {
		if _, err := pki.Ensure(spec, name); err != nil {
			t.Fatal(err)
		}
	}
	key, err := encryption.NewKey(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.Host(p.Cert("encryption-config.yaml")), encryption.Render(encryption.Initial(key)), 0o600); err != nil {
		t.Fatal(err)
	}
	return testCluster{paths: p}
}

func (c testCluster) read(t *testing.T, f string) []byte {
	t.Helper()
	b, err := os.ReadFile(c.paths.Host(c.paths.Cert(f)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (c testCluster) cert(t *testing.T, base string) *x509.Certificate {
	t.Helper()
	crt, err := pki.LoadCert(c.paths, base)
	if err != nil {
		t.Fatal(err)
	}
	return crt
}

// copyShared copies the shared files (those present) from cluster c to
// the certificate dir of p, as an operator does by hand.
func (c testCluster) copyShared(t *testing.T, p config.Paths) {
	t.Helper()
	for _, f := range uploadcerts.Files {
		b, err := os.ReadFile(c.paths.Host(c.paths.Cert(f)))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		writeTestFile(t, p, f, b)
	}
}

func writeTestFile(t *testing.T, p config.Paths, f string, b []byte) {
	t.Helper()
	path := p.Host(p.Cert(f))
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// handCopiedNode is a node about to join cluster c as a control plane
// without a certificate key, its shared files copied from c.
func handCopiedNode(t *testing.T, c testCluster) config.Paths {
	t.Helper()
	p := config.DefaultPaths().WithRoot(t.TempDir())
	c.copyShared(t, p)
	return p
}

const testServer = "https://10.201.0.2:6443"

func TestCheckSharedFilesAcceptsTheClusters(t *testing.T) {
	c := newTestCluster(t)
	p := handCopiedNode(t, c)
	before := testutil.Tree(t, p.Root)
	if err := checkSharedFiles(p, c.cert(t, "ca"), testServer, time.Now()); err != nil {
		t.Fatal(err)
	}
	if after := testutil.Tree(t, p.Root); !slices.Equal(before, after) {
		t.Errorf("the check wrote on the node:\nbefore %v\nafter  %v", before, after)
	}
}

// Each shared file that is missing or does not fit is named, with the
// fix, and nothing is written.
func TestCheckSharedFilesRefuses(t *testing.T) {
	other := newTestCluster(t)
	type tc struct {
		name  string
		spoil func(t *testing.T, p config.Paths)
		want  []string
	}
	var cases []tc
	for _, f := range uploadcerts.Files {
		cases = append(cases, tc{"missing " + f, func(t *testing.T, p config.Paths) {
			if err := os.Remove(p.Host(p.Cert(f))); err != nil {
				t.Fatal(err)
			}
		}, []string{"/etc/kubernetes/pki/" + f + " is missing"}})
	}
	cases = append(cases,
		tc{"nothing copied", func(t *testing.T, p config.Paths) {
			if err := os.RemoveAll(p.Host(p.CertDir)); err != nil {
				t.Fatal(err)
			}
		}, []string{"/etc/kubernetes/pki/ca.crt is missing", "/etc/kubernetes/pki/ca.key is missing", "/etc/kubernetes/pki/sa.key is missing",
			"/etc/kubernetes/pki/etcd/ca.crt is missing", "/etc/kubernetes/pki/kubelet-serving-ca.key is missing", "/etc/kubernetes/pki/encryption-config.yaml is missing"}},
		tc{"another cluster's CA", func(t *testing.T, p config.Paths) {
			writeTestFile(t, p, "ca.crt", other.read(t, "ca.crt"))
			writeTestFile(t, p, "ca.key", other.read(t, "ca.key"))
		}, []string{"/etc/kubernetes/pki/ca.crt is not the CA of the cluster at " + testServer, "discovery verified", pki.CAHash(other.cert(t, "ca"))}},
		tc{"a key of another CA", func(t *testing.T, p config.Paths) {
			writeTestFile(t, p, "front-proxy-ca.key", other.read(t, "front-proxy-ca.key"))
		}, []string{"/etc/kubernetes/pki/front-proxy-ca.key does not belong to /etc/kubernetes/pki/front-proxy-ca.crt"}},
		tc{"an etcd CA key of another cluster", func(t *testing.T, p config.Paths) {
			writeTestFile(t, p, "etcd/ca.key", other.read(t, "etcd/ca.key"))
		}, []string{"/etc/kubernetes/pki/etcd/ca.key does not belong to /etc/kubernetes/pki/etcd/ca.crt"}},
		tc{"sa.pub of another key", func(t *testing.T, p config.Paths) {
			writeTestFile(t, p, "sa.pub", other.read(t, "sa.pub"))
		}, []string{"/etc/kubernetes/pki/sa.pub is not the public key of /etc/kubernetes/pki/sa.key"}},
		tc{"a leaf certificate as a CA", func(t *testing.T, p config.Paths) {
			writeTestFile(t, p, "etcd/ca.crt", other.read(t, "etcd/server.crt"))
		}, []string{"/etc/kubernetes/pki/etcd/ca.crt is not a CA certificate"}},
		tc{"an unreadable certificate", func(t *testing.T, p config.Paths) {
			writeTestFile(t, p, "kubelet-serving-ca.crt", []byte("not PEM"))
		}, []string{"/etc/kubernetes/pki/kubelet-serving-ca.crt"}},
		tc{"a broken encryption configuration", func(t *testing.T, p config.Paths) {
			writeTestFile(t, p, "encryption-config.yaml", []byte("kind: Nothing\n"))
		}, []string{`/etc/kubernetes/pki/encryption-config.yaml: kind "Nothing"`, "want EncryptionConfiguration"}},
	)
	c := newTestCluster(t)
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "-"), func(t *testing.T) {
			p := handCopiedNode(t, c)
			tc.spoil(t, p)
			before := testutil.Tree(t, p.Root)
			err := checkSharedFiles(p, c.cert(t, "ca"), testServer, time.Now())
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range append([]string{"without --certificate-key", "nothing was written",
				"copy each named file from /etc/kubernetes/pki on a control-plane node", "or join with --certificate-key"}, tc.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the refusal does not say %q:\n%v", w, err)
				}
			}
			if after := testutil.Tree(t, p.Root); !slices.Equal(before, after) {
				t.Errorf("the check wrote on the node:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

// Under the cluster's external CA (no ca.key), the CA keys are absent and
// that is complete; kubeforge's own kubelet serving CA keeps its key. With
// ca.key present, every CA key must be there.
func TestCheckSharedFilesExternalCA(t *testing.T) {
	c := newTestCluster(t)
	p := handCopiedNode(t, c)
	for _, f := range uploadcerts.ExternalCAKeys {
		if err := os.Remove(p.Host(p.Cert(f))); err != nil {
			t.Fatal(err)
		}
	}
	// Without the node's own certificates, ca.key was forgotten.
	err := checkSharedFiles(p, c.cert(t, "ca"), testServer, time.Now())
	if err == nil || !strings.Contains(err.Error(), "/etc/kubernetes/pki/ca.key is missing (if the cluster's CA is external") ||
		!strings.Contains(err.Error(), "/etc/kubernetes/pki/etcd/ca.key is missing") {
		t.Errorf("no CA keys and no certificates of the node's own: %v", err)
	}
	// With them (checkProvidedFiles checks each; this check does not read
	// it), it is the cluster's external CA.
	writeTestFile(t, p, "apiserver.crt", c.read(t, "etcd/server.crt"))
	if err := checkSharedFiles(p, c.cert(t, "ca"), testServer, time.Now()); err != nil {
		t.Fatalf("external CA: %v", err)
	}
	if err := os.Remove(p.Host(p.Cert("kubelet-serving-ca.key"))); err != nil {
		t.Fatal(err)
	}
	err = checkSharedFiles(p, c.cert(t, "ca"), testServer, time.Now())
	if err == nil || !strings.Contains(err.Error(), "/etc/kubernetes/pki/kubelet-serving-ca.key is missing") || strings.Contains(err.Error(), "etcd/ca.key") {
		t.Errorf("external CA without kubelet-serving-ca.key: %v", err)
	}

	p = handCopiedNode(t, c)
	if err := os.Remove(p.Host(p.Cert("etcd/ca.key"))); err != nil {
		t.Fatal(err)
	}
	err = checkSharedFiles(p, c.cert(t, "ca"), testServer, time.Now())
	if err == nil || !strings.Contains(err.Error(), "/etc/kubernetes/pki/etcd/ca.key is missing") {
		t.Errorf("ca.key present, etcd/ca.key absent: %v", err)
	}
}

// The external-CA control-plane join with its shared files copied by hand:
// the CA certificates (no keys), the service-account keys, the kubelet
// serving CA and the encryption configuration on the node next to its own
// certificates and kubeconfig files. Both checks accept it, and it is
// recognised as external CA mode without downloaded files.
func TestJoinHandCopiedUnderExternalCA(t *testing.T) {
	d, cas, out := externalCAJoin(t)
	d.sharedCerts = nil
	d.Cfg.Join.ControlPlane.CertificateKey = ""
	if !d.sharedByHand() {
		t.Fatal("a control-plane join without a key does not take its shared files from the node")
	}
	c := newTestCluster(t) // its service-account keys, kubelet serving CA and encryption configuration
	p := d.Cfg.Paths
	for _, f := range []string{"sa.key", "sa.pub", "kubelet-serving-ca.crt", "kubelet-serving-ca.key", "encryption-config.yaml"} {
		writeTestFile(t, p, f, c.read(t, f))
	}
	writeTestFile(t, p, "ca.crt", cas[pki.CAName].CertPEM())
	writeTestFile(t, p, "front-proxy-ca.crt", cas[pki.FrontProxyCA].CertPEM())
	writeTestFile(t, p, "etcd/ca.crt", cas[pki.EtcdCA].CertPEM())
	if !d.externalCA() {
		t.Fatal("not recognised as external CA mode")
	}
	if err := checkSharedFiles(p, cas[pki.CAName].Cert, testServer, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := d.checkProvidedFiles(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "External CA mode") {
		t.Errorf("output: %s", out)
	}
	// The cluster's CA is another one than this node's ca.crt.
	err := checkSharedFiles(p, testutil.NewExternalCA(t, "other").Cert, testServer, time.Now())
	if err == nil || !strings.Contains(err.Error(), "/etc/kubernetes/pki/ca.crt is not the CA of the cluster") {
		t.Errorf("another cluster's CA: %v", err)
	}
}

// fakeCluster is what a running cluster publishes about its shared files:
// the ConfigMaps, the service-account keys, the encryption configuration
// each API server runs with, and one etcd member (a TLS server with the
// etcd server certificate that wants client certificates of the etcd CA).
type fakeCluster struct {
	objects []runtime.Object
	jwks    []byte
	hashes  map[string]string // node → hash; absent: the API server does not answer
	etcd    *httptest.Server
}

func newFakeCluster(t *testing.T, c testCluster) *fakeCluster {
	t.Helper()
	cm := func(name, key string, data []byte) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: metav1.NamespaceSystem}, Data: map[string]string{key: string(data)}}
	}
	f := &fakeCluster{
		objects: []runtime.Object{
			cm("extension-apiserver-authentication", "requestheader-client-ca-file", c.read(t, "front-proxy-ca.crt")),
			cm(manifests.KubeletServingCAConfigMap, "ca.crt", c.read(t, "kubelet-serving-ca.crt")),
		},
		hashes: map[string]string{"cp1": encryption.Hash(c.read(t, "encryption-config.yaml")), "cp2": encryption.Hash(c.read(t, "encryption-config.yaml"))},
	}
	f.setJWKS(t, c)
	f.etcd = etcdServer(t, c)
	for _, n := range []string{"cp1", "cp2"} {
		f.objects = append(f.objects,
			&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: map[string]string{"node-role.kubernetes.io/control-plane": ""}}},
			&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "kube-apiserver-" + n, Namespace: metav1.NamespaceSystem,
				Labels:      map[string]string{"component": "kube-apiserver", "tier": "control-plane"},
				Annotations: map[string]string{"kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint": n + ":6443"}},
				Spec: corev1.PodSpec{NodeName: n, Containers: []corev1.Container{{Name: "kube-apiserver",
					Command: []string{"kubeforge", "component", "kube-apiserver", "--encryption-provider-config-automatic-reload=true"}}}}},
		)
	}
	f.objects = append(f.objects, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "etcd-cp1", Namespace: metav1.NamespaceSystem,
		Labels:      map[string]string{"component": "etcd", "tier": "control-plane"},
		Annotations: map[string]string{"kubeadm.kubernetes.io/etcd.advertise-client-urls": f.etcd.URL}},
		Spec: corev1.PodSpec{NodeName: "cp1"}})
	return f
}

func (f *fakeCluster) setJWKS(t *testing.T, c testCluster) {
	t.Helper()
	_, pub, err := pki.LoadServiceAccountKeys(c.paths)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: pub, KeyID: "k", Use: "sig", Algorithm: "ES256"}}})
	if err != nil {
		t.Fatal(err)
	}
	f.jwks = b
}

// etcdServer answers GET /version over TLS with c's etcd server
// certificate, and only to client certificates of c's etcd CA.
func etcdServer(t *testing.T, c testCluster) *httptest.Server {
	t.Helper()
	crt, err := tls.X509KeyPair(c.read(t, "etcd/server.crt"), c.read(t, "etcd/server.key"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.cert(t, "etcd/ca"))
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/version" {
			w.Write([]byte(`{"etcdserver":"3.7.0","etcdcluster":"3.7.0"}`))
			return
		}
		http.NotFound(w, r)
	}))
	s.TLS = &tls.Config{Certificates: []tls.Certificate{crt}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// probe is a clusterProbe of the node at p against f, with an etcd client
// certificate signed by the node's etcd CA, as sharedProbe makes it.
func (f *fakeCluster) probe(t *testing.T, p config.Paths) clusterProbe {
	t.Helper()
	crt, key, err := pki.ClientCertificate(pki.Spec{Paths: p, Algorithm: pki.AlgorithmECDSAP256}, pki.EtcdCA, "kubeforge-join-preflight", nil, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	ca, err := pki.LoadCert(p, "etcd/ca")
	if err != nil {
		t.Fatal(err)
	}
	roots.AddCert(ca)
	return clusterProbe{
		client: fake.NewClientset(f.objects...),
		jwks:   func(context.Context) ([]byte, error) { return f.jwks, nil },
		hashes: func(_ context.Context, s encryption.APIServer) (string, error) {
			h, ok := f.hashes[s.Node]
			if !ok {
				return "", errors.New("GET https://" + s.Endpoint + "/metrics: connection refused")
			}
			return h, nil
		},
		etcdTLS: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12},
	}
}

func TestCompareSharedWithClusterSame(t *testing.T) {
	c := newTestCluster(t)
	p := handCopiedNode(t, c)
	f := newFakeCluster(t, c)
	res := f.probe(t, p).compare(context.Background(), p, "cp3", "")
	if len(res.different) > 0 || len(res.unchecked) > 0 {
		t.Fatalf("different %q, unchecked %q", res.different, res.unchecked)
	}
	want := []string{"front-proxy-ca.crt", "kubelet-serving-ca.crt", "sa.key", "sa.pub", "etcd/ca.crt", "encryption-config.yaml"}
	if !slices.Equal(res.same, want) {
		t.Errorf("same %v, want %v", res.same, want)
	}
}

// Each file that the running cluster shows not to be its own is refused,
// named, with what it would break.
func TestCompareSharedWithClusterDifferent(t *testing.T) {
	c := newTestCluster(t)
	other := newTestCluster(t)
	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, p config.Paths, f *fakeCluster)
		want  []string
	}{
		{"front-proxy CA", func(t *testing.T, p config.Paths, _ *fakeCluster) {
			writeTestFile(t, p, "front-proxy-ca.crt", other.read(t, "front-proxy-ca.crt"))
		}, []string{"/etc/kubernetes/pki/front-proxy-ca.crt is not the CA the cluster's API servers verify the front proxy with", "requestheader-client-ca-file"}},
		{"kubelet serving CA", func(t *testing.T, p config.Paths, _ *fakeCluster) {
			writeTestFile(t, p, "kubelet-serving-ca.crt", other.read(t, "kubelet-serving-ca.crt"))
		}, []string{"/etc/kubernetes/pki/kubelet-serving-ca.crt is not the kubelet serving CA the cluster publishes", "kube-system/kubelet-serving-ca"}},
		{"service-account keys", func(t *testing.T, p config.Paths, _ *fakeCluster) {
			writeTestFile(t, p, "sa.key", other.read(t, "sa.key"))
			writeTestFile(t, p, "sa.pub", other.read(t, "sa.pub"))
		}, []string{"/etc/kubernetes/pki/sa.pub (and sa.key) is not among the service-account keys", "/openid/v1/jwks", "refuse the tokens"}},
		{"etcd CA", func(t *testing.T, p config.Paths, _ *fakeCluster) {
			writeTestFile(t, p, "etcd/ca.crt", other.read(t, "etcd/ca.crt"))
			writeTestFile(t, p, "etcd/ca.key", other.read(t, "etcd/ca.key"))
		}, []string{"/etc/kubernetes/pki/etcd/ca.crt is not the CA of the cluster's etcd", "is not signed by it"}},
		{"etcd trusts another client CA", func(t *testing.T, _ config.Paths, f *fakeCluster) {
			pool := x509.NewCertPool()
			pool.AddCert(other.cert(t, "etcd/ca"))
			f.etcd.TLS.ClientCAs = pool
		}, []string{"/etc/kubernetes/pki/etcd/ca.crt (with etcd/ca.key) is not the CA the cluster's etcd trusts", "refused a client certificate"}},
		{"encryption configuration", func(t *testing.T, p config.Paths, _ *fakeCluster) {
			writeTestFile(t, p, "encryption-config.yaml", other.read(t, "encryption-config.yaml"))
		}, []string{"/etc/kubernetes/pki/encryption-config.yaml (SHA-256 sha256:", "is not the encryption configuration the cluster's API servers run with",
			"node cp1's API server runs with " + encryption.Hash(c.read(t, "encryption-config.yaml")), "unreadable by the others"}},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "-"), func(t *testing.T) {
			p := handCopiedNode(t, c)
			f := newFakeCluster(t, c)
			tc.spoil(t, p, f)
			res := f.probe(t, p).compare(context.Background(), p, "cp3", "")
			if len(res.different) != 1 {
				t.Fatalf("different %q (want one), unchecked %q", res.different, res.unchecked)
			}
			for _, w := range tc.want {
				if !strings.Contains(res.different[0], w) {
					t.Errorf("%q does not say %q", res.different[0], w)
				}
			}
			err := sharedFilesError(p, "some are not the ones the running cluster uses", res.different)
			for _, w := range []string{"nothing was written", "or join with --certificate-key", res.different[0]} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the refusal does not say %q: %v", w, err)
				}
			}
		})
	}
}

// What the cluster cannot tell is not refused: each such file is named
// with why (the join warns).
func TestCompareSharedWithClusterUnchecked(t *testing.T) {
	c := newTestCluster(t)
	p := handCopiedNode(t, c)
	f := newFakeCluster(t, c)
	f.objects = f.objects[1:]      // no extension-apiserver-authentication
	f.hashes = map[string]string{} // no API server answers
	f.jwks = []byte("404 page not found")
	f.etcd.Close()
	res := f.probe(t, p).compare(context.Background(), p, "cp3", "")
	if len(res.different) > 0 {
		t.Fatalf("different: %q", res.different)
	}
	for _, w := range []string{"front-proxy-ca.crt: the cluster has no ConfigMap kube-system/extension-apiserver-authentication",
		"sa.pub: the API server's /openid/v1/jwks", "etcd/ca.crt: no etcd member answered",
		"encryption-config.yaml: no API server said which encryption configuration it runs with"} {
		if !slices.ContainsFunc(res.unchecked, func(u string) bool { return strings.Contains(u, w) }) {
			t.Errorf("unchecked %q lacks %q", res.unchecked, w)
		}
	}
	// One API server of two runs with the node's file: a rotation under
	// way; accepted with a note.
	f = newFakeCluster(t, c)
	f.hashes["cp2"] = "sha256:0000"
	res = f.probe(t, p).compare(context.Background(), p, "cp3", "")
	if len(res.different) > 0 || !slices.Contains(res.same, "encryption-config.yaml") ||
		!slices.ContainsFunc(res.unchecked, func(u string) bool { return strings.Contains(u, "a key rotation may be under way") }) {
		t.Errorf("half-rotated: same %v, different %q, unchecked %q", res.same, res.different, res.unchecked)
	}
	// The node's own stale API server (a node that joins again) is not asked.
	f = newFakeCluster(t, c)
	f.hashes["cp2"] = "sha256:0000"
	res = f.probe(t, p).compare(context.Background(), p, "cp2", "")
	if len(res.unchecked) > 0 || len(res.different) > 0 {
		t.Errorf("self left out: different %q, unchecked %q", res.different, res.unchecked)
	}
}

// download-certs without a key uses the files on the node; a dry run
// copies them into its scratch root for its later phases and writes
// nothing on the node.
func TestDownloadCertsSharedByHand(t *testing.T) {
	c := newTestCluster(t)
	for _, dry := range []bool{false, true} {
		cfg := config.New()
		cfg.Paths = handCopiedNode(t, c)
		cfg.Join.ControlPlane = &v1beta4.JoinControlPlane{}
		var out bytes.Buffer
		n, err := NewNode(cfg, progress.New(&out, false), dry, config.HostFacts{})
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		d := &JoinData{Node: n}
		before := testutil.Tree(t, cfg.Paths.Root)
		if err := useSharedFilesOnNode(d); err != nil {
			t.Fatal(err)
		}
		if after := testutil.Tree(t, cfg.Paths.Root); !slices.Equal(before, after) {
			t.Errorf("dry run %v: wrote on the node:\nbefore %v\nafter  %v", dry, before, after)
		}
		if !dry {
			if !strings.Contains(out.String(), "Using the shared certificates and keys already in") {
				t.Errorf("output: %s", out.String())
			}
			continue
		}
		for _, f := range uploadcerts.Files {
			if !strings.Contains(out.String(), "Would use \"/etc/kubernetes/pki/"+f+"\"") {
				t.Errorf("dry run does not say it would use %s:\n%s", f, out.String())
			}
			if !bytes.Equal(readOrNil(d.Paths.Host(d.Paths.Cert(f))), c.read(t, f)) {
				t.Errorf("dry run: %s is not in the scratch root", f)
			}
		}
	}
}

func readOrNil(path string) []byte {
	b, _ := os.ReadFile(path)
	return b
}

// The probe's etcd client certificate: signed in memory by the copied
// etcd/ca.key, or, under an external etcd CA, the node's own
// apiserver-etcd-client (checkProvidedFiles verified it); the API client
// then is the node's admin.conf.
func TestSharedProbeCredentials(t *testing.T) {
	d, cas, _ := externalCAJoin(t)
	d.sharedCerts = nil
	probe, err := d.sharedProbe()
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(d.Paths.Host(d.Cfg.Paths.Cert("apiserver-etcd-client.crt")))
	if err != nil {
		t.Fatal(err)
	}
	wantCerts, err := pki.ParseCerts(want)
	if err != nil {
		t.Fatal(err)
	}
	if probe.client == nil || probe.etcdTLS == nil || len(probe.etcdTLS.Certificates) != 1 ||
		!bytes.Equal(probe.etcdTLS.Certificates[0].Certificate[0], wantCerts[0].Raw) {
		t.Errorf("external etcd CA: the probe does not use the node's apiserver-etcd-client certificate")
	}
	if !probe.etcdTLS.RootCAs.Equal(poolOf(cas[pki.EtcdCA].Cert)) {
		t.Errorf("external etcd CA: the probe does not verify etcd with etcd/ca.crt")
	}

	c := newTestCluster(t)
	cfg := config.New()
	cfg.Paths = handCopiedNode(t, c)
	cfg.Join.ControlPlane = &v1beta4.JoinControlPlane{}
	cfg.Cluster.EncryptionAlgorithm = pki.AlgorithmECDSAP256
	n, err := NewNode(cfg, progress.New(io.Discard, false), false, config.HostFacts{})
	if err != nil {
		t.Fatal(err)
	}
	d = &JoinData{Node: n, found: &discovery.Result{Server: testServer, CAData: c.read(t, "ca.crt"), CA: c.cert(t, "ca")}}
	if probe, err = d.sharedProbe(); err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(probe.etcdTLS.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.CheckSignatureFrom(c.cert(t, "etcd/ca")); err != nil || leaf.Subject.CommonName != "kubeforge-join-preflight" {
		t.Errorf("etcd client certificate %s: %v", leaf.Subject, err)
	}
	if after := testutil.Tree(t, cfg.Paths.Root); slices.ContainsFunc(after, func(f string) bool { return strings.Contains(f, "etcd-client") || strings.HasSuffix(f, ".conf") }) {
		t.Errorf("the probe wrote credentials: %v", after)
	}
}

func poolOf(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// A refusal is told by crypto/tls's error type, not by its text; the
// real path (a member refusing the client certificate) is in
// TestCompareSharedWithClusterDifferent.
func TestPeerTLSAlert(t *testing.T) {
	alert := &net.OpError{Op: "remote error", Err: errors.New("tls: unknown certificate authority")}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"alert", alert, true},
		{"alert through the HTTP client", &url.Error{Op: "Get", URL: "https://10.0.0.1:2379/version", Err: alert}, true},
		{"alert wrapped", fmt.Errorf("probe: %w", alert), true},
		{"dial refused", &url.Error{Op: "Get", Err: &net.OpError{Op: "dial", Err: errors.New("connect: connection refused")}}, false},
		{"only the words", errors.New("remote error: tls: bad certificate"), false},
		{"nil", nil, false},
	} {
		if got := peerTLSAlert(tc.err); got != tc.want {
			t.Errorf("%s: peerTLSAlert(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}
