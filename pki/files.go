package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/fsutil"
)

// File modes, as kubeadm's.
const (
	KeyFileMode        fs.FileMode = 0o600
	CertFileMode       fs.FileMode = 0o644
	KubeconfigFileMode fs.FileMode = 0o600
)

// CertPath and KeyPath return the logical paths of a base name's files
// ("etcd/server" → /etc/kubernetes/pki/etcd/server.crt).
func CertPath(p config.Paths, baseName string) string { return p.Cert(baseName + ".crt") }

// KeyPath: see CertPath.
func KeyPath(p config.Paths, baseName string) string { return p.Cert(baseName + ".key") }

// PublicKeyPath is the .pub file of a bare key pair (sa.pub).
func PublicKeyPath(p config.Paths, baseName string) string { return p.Cert(baseName + ".pub") }

// EncodeCertPEM returns the PEM encoding of cert.
func EncodeCertPEM(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}

// EncodeCertsPEM returns a PEM bundle of certs, in order.
func EncodeCertsPEM(certs ...*x509.Certificate) []byte {
	var b []byte
	for _, c := range certs {
		b = append(b, EncodeCertPEM(c)...)
	}
	return b
}

// ParseCerts parses every CERTIFICATE block of PEM data (at least one).
func ParseCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block found")
	}
	return certs, nil
}

// EncodeKeyPEM encodes a private key as kubeadm does: RSA as PKCS#1
// ("RSA PRIVATE KEY"), ECDSA as SEC 1 ("EC PRIVATE KEY").
func EncodeKeyPEM(key crypto.Signer) ([]byte, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), nil
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
	}
	return nil, fmt.Errorf("unsupported private key type %T", key)
}

// ParseKey parses the first PEM private key in data (PKCS#1, PKCS#8 or
// SEC 1), skipping other blocks (a kubelet's rotated pem holds the
// certificate first). Only RSA and ECDSA keys are accepted, as in kubeadm.
func ParseKey(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PEM private key block found")
		}
		var k any
		var err error
		switch block.Type {
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(block.Bytes)
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", block.Type, err)
		}
		switch k := k.(type) {
		case *rsa.PrivateKey:
			return k, nil
		case *ecdsa.PrivateKey:
			return k, nil
		}
		return nil, fmt.Errorf("private key is %T, neither RSA nor ECDSA", k)
	}
}

// EncodePublicKeyPEM encodes a public key as PKIX "PUBLIC KEY" (sa.pub).
func EncodePublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

func parsePublicKeyPEM(data []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, errors.New("no PEM PUBLIC KEY block found")
	}
	return x509.ParsePKIXPublicKey(block.Bytes)
}

// readFile reads a logical path through p; errors name the logical path.
func readFile(p config.Paths, logical string) ([]byte, error) {
	b, err := os.ReadFile(p.Host(logical))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s does not exist: %w", logical, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("read %s: %w", logical, err)
	}
	return b, nil
}

func exists(p config.Paths, logical string) bool { return fsutil.Exists(p.Host(logical)) }

// LoadCert loads the first certificate of baseName.crt.
func LoadCert(p config.Paths, baseName string) (*x509.Certificate, error) {
	path := CertPath(p, baseName)
	b, err := readFile(p, path)
	if err != nil {
		return nil, err
	}
	certs, err := ParseCerts(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs[0], nil
}

// LoadKey loads baseName.key.
func LoadKey(p config.Paths, baseName string) (crypto.Signer, error) {
	path := KeyPath(p, baseName)
	b, err := readFile(p, path)
	if err != nil {
		return nil, err
	}
	k, err := ParseKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// LoadCertAndKey loads baseName.crt and baseName.key and checks that the key
// belongs to the certificate. A missing file yields an error wrapping fs.ErrNotExist.
func LoadCertAndKey(p config.Paths, baseName string) (*x509.Certificate, crypto.Signer, error) {
	cert, err := LoadCert(p, baseName)
	if err != nil {
		return nil, nil, err
	}
	key, err := LoadKey(p, baseName)
	if err != nil {
		return nil, nil, err
	}
	if !keyMatches(cert, key) {
		return nil, nil, fmt.Errorf("%s does not belong to %s (public keys differ)", KeyPath(p, baseName), CertPath(p, baseName))
	}
	return cert, key, nil
}

// TryLoadCA loads a CA by table name ("etcd-ca") or base name ("etcd/ca").
// The key is nil when the CA is external (certificate present, key absent).
// It fails when the certificate is missing (wrapping fs.ErrNotExist), is not
// a CA, or when the key is present but unreadable or not the certificate's.
func TryLoadCA(p config.Paths, name string) (*x509.Certificate, crypto.Signer, error) {
	base := name
	if c, ok := LookupCert(name); ok {
		if !c.IsCA {
			return nil, nil, fmt.Errorf("%s is not a certificate authority in the table", name)
		}
		base = c.BaseName
	}
	cert, err := LoadCert(p, base)
	if err != nil {
		return nil, nil, err
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, nil, fmt.Errorf("%s is not a CA certificate (basic constraints CA:FALSE): replace it with the CA", CertPath(p, base))
	}
	if !exists(p, KeyPath(p, base)) {
		return cert, nil, nil
	}
	key, err := LoadKey(p, base)
	if err != nil {
		return nil, nil, err
	}
	if !keyMatches(cert, key) {
		return nil, nil, fmt.Errorf("%s does not belong to %s (public keys differ): restore the matching pair", KeyPath(p, base), CertPath(p, base))
	}
	return cert, key, nil
}

// LoadServiceAccountKeys loads the service-account key pair (sa.key,
// sa.pub) and checks that sa.pub is sa.key's public half. A missing file
// yields an error wrapping fs.ErrNotExist.
func LoadServiceAccountKeys(p config.Paths) (crypto.Signer, crypto.PublicKey, error) {
	base := ServiceAccountKey.BaseName
	key, err := LoadKey(p, base)
	if err != nil {
		return nil, nil, err
	}
	path := PublicKeyPath(p, base)
	b, err := readFile(p, path)
	if err != nil {
		return nil, nil, err
	}
	pub, err := parsePublicKeyPEM(b)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if e, ok := key.Public().(equaler); !ok || !e.Equal(pub) {
		return nil, nil, fmt.Errorf("%s is not the public key of %s (the pair differs)", path, KeyPath(p, base))
	}
	return key, pub, nil
}

// keyMatches reports whether key is the private half of cert's public key.
func keyMatches(cert *x509.Certificate, key crypto.Signer) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	pub, ok := key.Public().(equaler)
	return ok && pub.Equal(cert.PublicKey)
}

// CAHash is kubeadm's CA pin: "sha256:" + hex SHA-256 of the certificate's
// DER-encoded SubjectPublicKeyInfo (--discovery-token-ca-cert-hash).
func CAHash(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// DescribeCert summarises a certificate in one line for progress and dry-run
// output: subject, SANs, usages, issuer and expiry.
func DescribeCert(c *x509.Certificate) string {
	if c == nil {
		return "<no certificate>"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "CN=%s", c.Subject.CommonName)
	for _, o := range c.Subject.Organization {
		fmt.Fprintf(&b, ", O=%s", o)
	}
	if c.IsCA {
		b.WriteString(", CA")
	}
	if len(c.DNSNames) > 0 {
		fmt.Fprintf(&b, "; DNS names %v", c.DNSNames)
	}
	if len(c.IPAddresses) > 0 {
		fmt.Fprintf(&b, "; IPs %v", c.IPAddresses)
	}
	if len(c.ExtKeyUsage) > 0 {
		fmt.Fprintf(&b, "; %s", describeUsages(c.ExtKeyUsage))
	}
	if c.Issuer.CommonName != c.Subject.CommonName || !c.IsCA {
		fmt.Fprintf(&b, "; issuer CN=%s", c.Issuer.CommonName)
	}
	fmt.Fprintf(&b, "; %s key; not after %s", keyDescription(c.PublicKey), c.NotAfter.UTC().Format(time.RFC3339))
	return b.String()
}

func keyDescription(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA-" + strings.ReplaceAll(k.Curve.Params().Name, "-", "")
	}
	return fmt.Sprintf("%T", pub)
}
