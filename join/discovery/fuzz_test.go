package discovery

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	clientcmdlatest "k8s.io/client-go/tools/clientcmd/api/latest"
	"k8s.io/cluster-bootstrap/token/jws"

	"github.com/kubeforge/kubeforge/pki"
)

// fuzzKubeconfig is cluster-info's kubeconfig: one unnamed cluster.
func fuzzKubeconfig(f *testing.F, server string, ca []byte) string {
	kc := &clientcmdapi.Config{Clusters: map[string]*clientcmdapi.Cluster{"": {Server: server, CertificateAuthorityData: ca}}}
	b, err := runtime.Encode(clientcmdlatest.Codec, kc)
	if err != nil {
		f.Fatal(err)
	}
	return string(b)
}

// FuzzDiscoveryFile feeds arbitrary files to --discovery-file: a refusal
// that names the file, or a cluster with a server and the CA it parsed.
func FuzzDiscoveryFile(f *testing.F) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	ca := pki.EncodeCertPEM(srv.Certificate())
	srv.Close()
	good := fuzzKubeconfig(f, "https://10.201.0.2:6443", ca)
	f.Add([]byte(good))
	f.Add([]byte(strings.Replace(good, `name: ""`, "name: kubernetes", 1) + "contexts:\n- context:\n    cluster: kubernetes\n    user: admin\n  name: admin@kubernetes\ncurrent-context: admin@kubernetes\n"))
	f.Add([]byte(fuzzKubeconfig(f, "", ca)))
	f.Add([]byte(fuzzKubeconfig(f, "https://10.201.0.2:6443", nil)))
	f.Add([]byte(fuzzKubeconfig(f, "https://10.201.0.2:6443", []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"))))
	f.Add([]byte(`{"apiVersion":"v1","kind":"Config","clusters":[{"name":"a","cluster":{"server":"https://a:6443","certificate-authority-data":"bm9wZQ=="}}]}`))
	f.Add([]byte("nope: ["))
	f.Add([]byte("apiVersion: v1\nkind: Pod\n"))
	f.Fuzz(func(t *testing.T, file []byte) {
		if len(file) == 0 {
			return // token discovery
		}
		res, err := Discover(context.Background(), Options{File: file, FileName: "fuzz.conf"})
		if err != nil {
			var r *Refusal
			if !errors.As(err, &r) || !strings.Contains(err.Error(), "fuzz.conf") {
				t.Fatalf("not a refusal naming the file: %v", err)
			}
			return
		}
		if res.Server == "" || len(res.CAData) == 0 || res.CA == nil || res.Kubeconfig == nil {
			t.Fatalf("incomplete result: server %q, CA data %d bytes, CA %v", res.Server, len(res.CAData), res.CA != nil)
		}
		certs, err := pki.ParseCerts(res.CAData)
		if err != nil || !certs[0].Equal(res.CA) {
			t.Fatalf("result CA is not the first of its CA data: %v", err)
		}
	})
}

// FuzzClusterInfo serves an arbitrary kube-public/cluster-info (its
// kubeconfig, the JWS signature for the token, and whether the server signs
// it with the real token) to token discovery, from a local TLS server. It
// is accepted only when its signature verifies with the token and its CA is
// the pinned one; anything else is a refusal, never a retry loop.
func FuzzClusterInfo(f *testing.F) {
	var mu sync.Mutex
	var data map[string]string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/namespaces/kube-public/configmaps/cluster-info" {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		cm := corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{Name: "cluster-info", Namespace: "kube-public"}, Data: data}
		json.NewEncoder(w).Encode(cm)
		mu.Unlock()
	}))
	defer srv.Close()
	ca := srv.Certificate()
	pin := pki.CAHash(ca)
	endpoint := strings.TrimPrefix(srv.URL, "https://")
	good := fuzzKubeconfig(f, srv.URL, pki.EncodeCertPEM(ca))
	goodSig, err := jws.ComputeDetachedSignature(good, tokenID, tokenSecret)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, goodSig, true)
	f.Add(good, goodSig, false)
	f.Add(good, "", false)
	f.Add(good, "eyJhbGciOiJIUzI1NiIsImtpZCI6ImFiY2RlZiJ9..AAAA", false)
	f.Add(good, "..", false)
	f.Add(fuzzKubeconfig(f, srv.URL, nil), "", true)
	f.Add(fuzzKubeconfig(f, "", pki.EncodeCertPEM(ca)), "", true)
	f.Add(fuzzKubeconfig(f, srv.URL, []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")), "", true)
	f.Add("nope: [", "", true)
	f.Add("", "", true)
	f.Fuzz(func(t *testing.T, kubeconfig, sig string, signWithToken bool) {
		if len(kubeconfig)+len(sig) > 64<<10 {
			return // the client reads at most 1 MiB
		}
		// What the client receives: JSON replaces invalid UTF-8.
		var served string
		if b, err := json.Marshal(kubeconfig); err == nil {
			_ = json.Unmarshal(b, &served)
		}
		if signWithToken {
			if sig, err = jws.ComputeDetachedSignature(served, tokenID, tokenSecret); err != nil {
				t.Fatal(err)
			}
		}
		mu.Lock()
		data = map[string]string{"kubeconfig": kubeconfig, "jws-kubeconfig-" + tokenID: sig}
		mu.Unlock()
		res, err := Discover(context.Background(), Options{Endpoint: endpoint, Token: token, CACertHashes: []string{pin},
			Timeout: 30 * time.Second, UnsignedGrace: time.Nanosecond})
		if err != nil {
			var r *Refusal
			if !errors.As(err, &r) {
				t.Fatalf("not a refusal: %v", err)
			}
			return
		}
		if !jws.DetachedTokenIsValid(sig, served, tokenID, tokenSecret) {
			t.Fatalf("accepted cluster-info whose signature %q does not verify", sig)
		}
		if res.Server == "" || res.CA == nil || res.Kubeconfig == nil || len(res.CAData) == 0 {
			t.Fatalf("incomplete result: server %q, CA data %d bytes, CA %v", res.Server, len(res.CAData), res.CA != nil)
		}
		// As kubeadm's: the pin must match one certificate of the bundle.
		certs, err := pki.ParseCerts(res.CAData)
		if err != nil || !slices.ContainsFunc(certs, func(c *x509.Certificate) bool { return pki.CAHash(c) == pin }) {
			t.Fatalf("accepted a CA bundle without the pinned CA (%v)", err)
		}
	})
}
