package pki

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"slices"
	"strings"
	"testing"

	certutil "k8s.io/client-go/util/cert"

	"github.com/kubeforge/kubeforge/internal/version"
)

// The patch self-signed-certs-ecdsa (hack/patches) makes client-go's
// throw-away self-signed certificates (the API server's loopback one, the
// serving certificates of a controller-manager or scheduler given none)
// with ECDSA P-256 keys. Where the test binary says the patch is compiled
// in, the key must be one; either way the pair must load and verify.
func TestSelfSignedCertKey(t *testing.T) {
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKeyWithOptions(certutil.SelfSignedCertKeyOptions{Host: "apiserver-loopback-client"})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("the pair does not load: %v", err)
	}
	certs, err := certutil.ParseCertsPEM(certPEM)
	if err != nil || len(certs) != 2 {
		t.Fatalf("want the leaf and its CA: %d certificates, %v", len(certs), err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(certs[1])
	if _, err := certs[0].Verify(x509.VerifyOptions{DNSName: "apiserver-loopback-client", Roots: pool}); err != nil {
		t.Errorf("the leaf does not verify against its CA: %v", err)
	}
	patched := slices.Contains(strings.Split(version.Patches, ","), "self-signed-certs-ecdsa")
	switch pair.PrivateKey.(type) {
	case *ecdsa.PrivateKey:
		if !patched {
			t.Error("an ECDSA key from the upstream code")
		}
		for _, c := range certs {
			if c.KeyUsage&x509.KeyUsageKeyEncipherment != 0 {
				t.Errorf("%s: key encipherment with an ECDSA key", c.Subject.CommonName)
			}
		}
	case *rsa.PrivateKey:
		if patched {
			t.Error("stamped with self-signed-certs-ecdsa, but the key is RSA: the test ran on the unpatched client-go")
		}
	default:
		t.Errorf("key type %T", pair.PrivateKey)
	}
}
