package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubeforge/kubeforge/config"
)

// fuzzCert is a self-signed ECDSA certificate and its key.
func fuzzCert(f *testing.F, cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), BasicConstraintsValid: true, IsCA: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		f.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		f.Fatal(err)
	}
	return cert, key
}

// FuzzKubeconfig feeds arbitrary existing kubeconfigs (and a PEM file they
// may reference, as kubelet.conf references the kubelet's rotated
// kubelet-client-current.pem) to what the kubeconfig phases, certs
// check-expiration and renew read before they trust or replace a file: the
// current context, the CA certificates, the client certificate and key.
// Every error names a file; a key "matches" a certificate exactly when
// their public keys are the same.
func FuzzKubeconfig(f *testing.F) {
	ca, _ := fuzzCert(f, "kubernetes")
	cert, key := fuzzCert(f, "system:node:n1")
	cfg, err := kubeconfigWithCert("https://10.201.0.2:6443", "system:node:n1", ca, cert, key)
	if err != nil {
		f.Fatal(err)
	}
	embedded, err := clientcmd.Write(*cfg)
	if err != nil {
		f.Fatal(err)
	}
	keyPEM, err := EncodeKeyPEM(key)
	if err != nil {
		f.Fatal(err)
	}
	rotated := append(EncodeCertPEM(cert), keyPEM...)
	cfg.AuthInfos["system:node:n1"].ClientCertificateData = nil
	cfg.AuthInfos["system:node:n1"].ClientKeyData = nil
	cfg.AuthInfos["system:node:n1"].ClientCertificate = "pki/ref.pem"
	cfg.AuthInfos["system:node:n1"].ClientKey = "/etc/kubernetes/pki/ref.pem"
	refs, err := clientcmd.Write(*cfg)
	if err != nil {
		f.Fatal(err)
	}
	_, otherKey := fuzzCert(f, "other")
	otherPEM, _ := EncodeKeyPEM(otherKey)
	f.Add(embedded, []byte{})
	f.Add(refs, rotated)
	f.Add(refs, append(EncodeCertPEM(cert), otherPEM...))
	f.Add(refs, []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"))
	// A reference to a missing file outside the kubernetes directory: the
	// error must still name the kubeconfig that holds the reference.
	f.Add(bytes.Replace(refs, []byte("/etc/kubernetes/pki/ref.pem"), []byte("/etcJkubernetes/pki/ref.pem"), 1), rotated)
	f.Add(bytes.Replace(embedded, []byte("current-context: "), []byte("current-context: x"), 1), []byte{})
	f.Add([]byte("apiVersion: v1\nkind: Config\n"), []byte{})
	f.Add([]byte("clusters: ["), []byte{})
	f.Add([]byte{}, []byte{})

	p := config.DefaultPaths().WithRoot(f.TempDir())
	logical := p.Kubeconfig("fuzz.conf")
	ref := p.Kubeconfig("pki/ref.pem")
	if err := os.MkdirAll(filepath.Dir(p.Host(ref)), 0o700); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, kubeconfig, refFile []byte) {
		if err := os.WriteFile(p.Host(logical), kubeconfig, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p.Host(ref), refFile, 0o600); err != nil {
			t.Fatal(err)
		}
		namesFile := func(err error) {
			if !strings.Contains(err.Error(), p.KubernetesDir) {
				t.Fatalf("error names no file: %v", err)
			}
		}
		v, err := loadKubeconfigView(p, logical)
		if err != nil {
			namesFile(err)
			return
		}
		if v.cluster == nil || v.auth == nil {
			t.Fatalf("view without cluster or user: %+v", v)
		}
		if cas, err := v.caCerts(p, logical); err != nil {
			namesFile(err)
		} else if len(cas) == 0 {
			t.Fatal("no CA certificates and no error")
		}
		c, k, _, _, err := v.clientCert(p, logical)
		if err != nil {
			namesFile(err)
			return
		}
		if c == nil || k == nil {
			t.Fatal("client certificate or key missing without an error")
		}
		certPub, err1 := x509.MarshalPKIXPublicKey(c.PublicKey)
		keyPub, err2 := x509.MarshalPKIXPublicKey(k.Public())
		same := err1 == nil && err2 == nil && bytes.Equal(certPub, keyPub)
		if keyMatches(c, k) != same {
			t.Fatalf("keyMatches=%v, but the public keys are the same: %v", !same, same)
		}
	})
}
