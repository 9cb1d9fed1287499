package pki

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"
)

// EnsureServingPair issues a pair signed by the CA, reuses it on a rerun,
// and replaces what another CA signed, what lacks a name, what has a
// foreign key and what is about to expire.
func TestEnsureServingPair(t *testing.T) {
	now := time.Now()
	caKey, err := NewPrivateKey(AlgorithmECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := issue(CertConfig{CommonName: "kubernetes"}, true, caKey, nil, nil, now, DefaultCAValidity)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _ := NewPrivateKey(AlgorithmECDSAP256)
	other, err := issue(CertConfig{CommonName: "other"}, true, otherKey, nil, nil, now, DefaultCAValidity)
	if err != nil {
		t.Fatal(err)
	}
	want := CertConfig{CommonName: "metrics-server", DNSNames: []string{"metrics-server.kube-system.svc"}, Usages: serverAuth}
	pair, reused, why, err := EnsureServingPair(ServingPair{}, ca, caKey, want, AlgorithmECDSAP256, DefaultValidity, now)
	if err != nil || reused || why != "" {
		t.Fatalf("first: reused %v, why %q, err %v", reused, why, err)
	}
	certs, err := ParseCerts(pair.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if err := certs[0].VerifyHostname("metrics-server.kube-system.svc"); err != nil {
		t.Error(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, DNSName: "metrics-server.kube-system.svc",
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("the serving certificate does not verify with the CA as a TLS client would: %v", err)
	}
	again, reused, _, err := EnsureServingPair(pair, ca, caKey, want, AlgorithmECDSAP256, DefaultValidity, now.Add(time.Hour))
	if err != nil || !reused || string(again.Cert) != string(pair.Cert) {
		t.Fatalf("rerun: reused %v, err %v", reused, err)
	}

	foreign, _, _, err := EnsureServingPair(ServingPair{}, other, otherKey, want, AlgorithmECDSAP256, DefaultValidity, now)
	if err != nil {
		t.Fatal(err)
	}
	otherKeyPEM, _ := EncodeKeyPEM(otherKey)
	for _, c := range []struct {
		name string
		have ServingPair
		want CertConfig
		at   time.Time
		why  string
	}{
		{"another CA", foreign, want, now, "not signed by the CA"},
		{"a new name", pair, CertConfig{CommonName: "metrics-server", DNSNames: []string{"metrics-server.other.svc"}, Usages: serverAuth}, now, "lacks SAN metrics-server.other.svc"},
		{"a foreign key", ServingPair{Cert: pair.Cert, Key: otherKeyPEM}, want, now, "key is not the certificate's"},
		{"close to expiry", pair, want, now.Add(300 * 24 * time.Hour), "less than a third"},
		{"expired", pair, want, now.Add(400 * 24 * time.Hour), "expired"},
		{"garbage", ServingPair{Cert: []byte("x"), Key: []byte("y")}, want, now, "does not parse"},
	} {
		got, reused, why, err := EnsureServingPair(c.have, ca, caKey, c.want, AlgorithmECDSAP256, DefaultValidity, c.at)
		if err != nil || reused || !strings.Contains(why, c.why) || string(got.Cert) == string(c.have.Cert) {
			t.Errorf("%s: reused %v, why %q (want %q), err %v", c.name, reused, why, c.why, err)
		}
	}
	if _, _, _, err := EnsureServingPair(ServingPair{}, ca, nil, want, AlgorithmECDSAP256, DefaultValidity, now); err == nil {
		t.Error("no CA key: no error")
	}
}
