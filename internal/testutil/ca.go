package testutil

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubeforge/kubeforge/pki"
)

// ExternalCA is a certificate authority made by a test, standing for a
// user's own CA in kubeadm's external CA mode: its key stays in the test
// and never goes where a node's files are.
type ExternalCA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// NewExternalCA makes a self-signed CA valid from an hour ago for a day.
func NewExternalCA(t testing.TB, cn string) ExternalCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return ExternalCA{cert, key}
}

// Sign issues a certificate for a PEM request as a CA that honours the
// request does: its subject and SANs, and the usages it requests, which
// must be the ones kubeadm's documentation gives a kubeadm certificate
// (digital signature, key encipherment for RSA, and server and/or client
// auth). Valid for validity from now (backdated an hour).
func (ca ExternalCA) Sign(csrPEM []byte, validity time.Duration) ([]byte, error) {
	csr, err := pki.ParseCSR(csrPEM)
	if err != nil {
		return nil, err
	}
	ku, eku, err := pki.RequestedUsages(csr)
	if err != nil {
		return nil, err
	}
	if ku&^(x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment) != 0 || len(eku) == 0 {
		return nil, fmt.Errorf("request for %s asks for key usage %b and extended usages %v: not a kubeadm leaf", csr.Subject.CommonName, ku, eku)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: csr.Subject, DNSNames: csr.DNSNames, IPAddresses: csr.IPAddresses,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(validity),
		KeyUsage: ku, ExtKeyUsage: eku, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, csr.PublicKey, ca.Key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return pki.EncodeCertPEM(cert), nil
}

// CertPEM is the CA's certificate in PEM.
func (ca ExternalCA) CertPEM() []byte { return pki.EncodeCertPEM(ca.Cert) }

// SignCSRDirs does, on the files `kubeforge certs generate-csr` wrote under
// certDir and kubeconfigDir (host paths), what the owner of the external
// CAs does: sign every request with the CA of its certificate (etcd/* with
// etcd, front-proxy-client with front-proxy, the rest and the kubeconfigs
// with cas["ca"]), save each certificate as .crt next to its key, complete
// each kubeconfig (client-certificate-data, certificate-authority-data),
// and place the CA certificates without their keys. cas is keyed by the
// CA's table name (pki.CAName, pki.FrontProxyCA, pki.EtcdCA).
func SignCSRDirs(certDir, kubeconfigDir string, cas map[string]ExternalCA, validity time.Duration) error {
	for _, c := range pki.Certificates {
		ca, ok := cas[c.Name]
		if c.IsCA {
			if ok {
				if err := writeFile(filepath.Join(certDir, c.BaseName+".crt"), ca.CertPEM(), 0o644); err != nil {
					return err
				}
			}
			continue
		}
		signer, ok := cas[c.CAName]
		if !ok {
			continue // its CA key is on the node: kubeforge signs it
		}
		csr, err := os.ReadFile(filepath.Join(certDir, c.BaseName+".csr"))
		if err != nil {
			return err
		}
		crt, err := signer.Sign(csr, validity)
		if err != nil {
			return fmt.Errorf("%s: %w", c.Name, err)
		}
		if err := writeFile(filepath.Join(certDir, c.BaseName+".crt"), crt, 0o644); err != nil {
			return err
		}
	}
	for _, k := range pki.Kubeconfigs {
		path := filepath.Join(kubeconfigDir, k.FileName)
		csr, err := os.ReadFile(path + ".csr")
		if err != nil {
			return err
		}
		crt, err := cas[pki.CAName].Sign(csr, validity)
		if err != nil {
			return fmt.Errorf("%s: %w", k.FileName, err)
		}
		cfg, err := clientcmd.LoadFromFile(path)
		if err != nil {
			return err
		}
		ctx := cfg.Contexts[cfg.CurrentContext]
		if ctx == nil || cfg.Clusters[ctx.Cluster] == nil || cfg.AuthInfos[ctx.AuthInfo] == nil {
			return fmt.Errorf("%s: no current context with a cluster and a user", path)
		}
		cfg.Clusters[ctx.Cluster].CertificateAuthorityData = cas[pki.CAName].CertPEM()
		cfg.AuthInfos[ctx.AuthInfo].ClientCertificateData = crt
		if err := clientcmd.WriteToFile(*cfg, path); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, data, mode)
}
