package pki

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	cfconfig "github.com/cloudflare/cfssl/config"
	"github.com/cloudflare/cfssl/csr"
	"github.com/cloudflare/cfssl/helpers"
	cflog "github.com/cloudflare/cfssl/log"
	"github.com/cloudflare/cfssl/signer"
	"github.com/cloudflare/cfssl/signer/local"
)

// cfssl's package logger prints an INFO line per CSR and per signature on
// stderr. Route it to log/slog (INFO → debug), once per process.
var cfsslLogOnce sync.Once

func quietCFSSL() {
	cfsslLogOnce.Do(func() { cflog.SetLogger(slogWriter{}) })
}

type slogWriter struct{}

func (slogWriter) Debug(m string)   { slog.Debug(m, "source", "cfssl") }
func (slogWriter) Info(m string)    { slog.Debug(m, "source", "cfssl") }
func (slogWriter) Warning(m string) { slog.Warn(m, "source", "cfssl") }
func (slogWriter) Err(m string)     { slog.Error(m, "source", "cfssl") }
func (slogWriter) Crit(m string)    { slog.Error(m, "source", "cfssl") }
func (slogWriter) Emerg(m string)   { slog.Error(m, "source", "cfssl") }

// usages returns the cfssl profile usages: digital signature always, key
// encipherment only for RSA keys (kubeadm sets it for ECDSA keys too, where
// RFC 5480 does not allow it), cert sign for CAs, plus the extended usages.
func usages(pub crypto.PublicKey, isCA bool, ext []x509.ExtKeyUsage) ([]string, error) {
	u := []string{"digital signature"}
	if _, ok := pub.(*rsa.PublicKey); ok {
		u = append(u, "key encipherment")
	}
	if isCA {
		u = append(u, "cert sign")
	}
	for _, e := range ext {
		switch e {
		case x509.ExtKeyUsageServerAuth:
			u = append(u, "server auth")
		case x509.ExtKeyUsageClientAuth:
			u = append(u, "client auth")
		default:
			return nil, fmt.Errorf("unsupported extended key usage %v", e)
		}
	}
	return u, nil
}

func cfsslRequest(cfg CertConfig, isCA bool) *csr.CertificateRequest {
	req := &csr.CertificateRequest{CN: cfg.CommonName}
	for _, o := range cfg.Organizations {
		req.Names = append(req.Names, csr.Name{O: o})
	}
	if isCA {
		req.CA = &csr.CAConfig{}
	}
	return req
}

func hosts(cfg CertConfig) []string {
	if len(cfg.DNSNames)+len(cfg.IPs) == 0 {
		return nil
	}
	h := append([]string(nil), cfg.DNSNames...)
	for _, ip := range cfg.IPs {
		h = append(h, ip.String())
	}
	return h
}

// issue creates a certificate for key with cfg, signed by caCert/caKey, or
// self-signed when caCert is nil (a CA). The validity window is
// [now-CertificateBackdate, now+validity], as kubeadm's.
func issue(cfg CertConfig, isCA bool, key crypto.Signer, caCert *x509.Certificate, caKey crypto.Signer, now time.Time, validity time.Duration) (*x509.Certificate, error) {
	quietCFSSL()
	if cfg.CommonName == "" {
		return nil, fmt.Errorf("certificate has no common name")
	}
	if !isCA && len(cfg.Usages) == 0 {
		return nil, fmt.Errorf("certificate %s: at least one extended key usage is needed", cfg.CommonName)
	}
	csrPEM, err := csr.Generate(key, cfsslRequest(cfg, isCA))
	if err != nil {
		return nil, fmt.Errorf("certificate request for %s: %w", cfg.CommonName, err)
	}
	u, err := usages(key.Public(), isCA, cfg.Usages)
	if err != nil {
		return nil, err
	}
	profile := &cfconfig.SigningProfile{
		Usage:        u,
		Expiry:       validity,
		ExpiryString: validity.String(),
		CAConstraint: cfconfig.CAConstraint{IsCA: isCA},
	}
	policy := &cfconfig.Signing{Profiles: map[string]*cfconfig.SigningProfile{}, Default: profile}
	signKey := caKey
	if caCert == nil {
		signKey = key
	}
	s, err := local.NewSigner(signKey, caCert, signer.DefaultSigAlgo(signKey), policy)
	if err != nil {
		return nil, fmt.Errorf("signer for %s: %w", cfg.CommonName, err)
	}
	now = now.UTC()
	certPEM, err := s.Sign(signer.SignRequest{
		Request:   string(csrPEM),
		Hosts:     hosts(cfg),
		NotBefore: now.Add(-CertificateBackdate),
		NotAfter:  now.Add(validity),
	})
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", cfg.CommonName, err)
	}
	cert, err := helpers.ParseCertificatePEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("parse signed %s: %w", cfg.CommonName, err)
	}
	return cert, nil
}

// describeUsages names extended key usages for messages.
func describeUsages(u []x509.ExtKeyUsage) string {
	var s []string
	for _, e := range u {
		switch e {
		case x509.ExtKeyUsageServerAuth:
			s = append(s, "server auth")
		case x509.ExtKeyUsageClientAuth:
			s = append(s, "client auth")
		case x509.ExtKeyUsageAny:
			s = append(s, "any")
		default:
			s = append(s, fmt.Sprintf("usage(%d)", e))
		}
	}
	return strings.Join(s, ", ")
}
