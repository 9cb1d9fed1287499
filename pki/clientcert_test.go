package pki

import (
	"crypto/x509"
	"errors"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// ClientCertificate signs in memory: a client certificate of the CA, for
// the user and groups, valid no longer than asked; nothing is written. An
// external CA (no key) or a missing CA is refused.
func TestClientCertificate(t *testing.T) {
	spec := newSpec(t, AlgorithmECDSAP256)
	for _, name := range []string{CAName, EtcdCA} {
		if _, err := Ensure(spec, name); err != nil {
			t.Fatal(err)
		}
	}
	before := snapshot(t, spec.Paths.Root)
	crtPEM, keyPEM, err := ClientCertificate(spec, CAName, "kubeforge-join-preflight", []string{ClusterAdmins}, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, spec.Paths.Root); !maps.EqualFunc(before, after, func(a, b fileState) bool { return string(a.data) == string(b.data) }) {
		t.Error("ClientCertificate wrote files")
	}
	certs, err := ParseCerts(crtPEM)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	c := certs[0]
	ca, err := LoadCert(spec.Paths, "ca")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckSignatureFrom(ca); err != nil {
		t.Errorf("not signed by the CA: %v", err)
	}
	if !keyMatches(c, key) {
		t.Error("the key is not the certificate's")
	}
	if c.Subject.CommonName != "kubeforge-join-preflight" || !slices.Equal(c.Subject.Organization, []string{ClusterAdmins}) {
		t.Errorf("subject %v", c.Subject)
	}
	if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || c.IsCA {
		t.Errorf("usages %v, CA %v", c.ExtKeyUsage, c.IsCA)
	}
	if life := c.NotAfter.Sub(spec.Now()); life > 10*time.Minute {
		t.Errorf("valid for %v past now, want at most 10m", life)
	}
	if _, _, err := ClientCertificate(spec, EtcdCA, "x", nil, time.Minute); err != nil {
		t.Errorf("etcd CA: %v", err)
	}

	if err := os.Remove(spec.Paths.Host(KeyPath(spec.Paths, "etcd/ca"))); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ClientCertificate(spec, EtcdCA, "x", nil, time.Minute); err == nil || !strings.Contains(err.Error(), "external CA") {
		t.Errorf("external etcd CA: %v", err)
	}
	if _, _, err := ClientCertificate(spec, FrontProxyCA, "x", nil, time.Minute); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing front-proxy CA: %v", err)
	}
}

// LoadServiceAccountKeys checks that sa.pub is sa.key's public half.
func TestLoadServiceAccountKeys(t *testing.T) {
	spec := newSpec(t, AlgorithmECDSAP256)
	if _, err := Ensure(spec, ServiceAccount); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadServiceAccountKeys(spec.Paths); err != nil {
		t.Fatal(err)
	}
	other := newSpec(t, AlgorithmECDSAP256)
	if _, err := Ensure(other, ServiceAccount); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(other.Paths.Host(PublicKeyPath(other.Paths, "sa")))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(spec.Paths.Host(PublicKeyPath(spec.Paths, "sa")), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadServiceAccountKeys(spec.Paths); err == nil || !strings.Contains(err.Error(), "/etc/kubernetes/pki/sa.pub is not the public key of /etc/kubernetes/pki/sa.key") {
		t.Errorf("mismatched pair: %v", err)
	}
	if err := os.Remove(spec.Paths.Host(KeyPath(spec.Paths, "sa"))); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadServiceAccountKeys(spec.Paths); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("no sa.key: %v", err)
	}
}
