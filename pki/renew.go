package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/kubeforge/kubeforge/internal/fsutil"
)

// RenewNames lists what Renew accepts, as `kubeadm certs renew` does: every
// leaf certificate, then every renewable kubeconfig file name.
func RenewNames() []string {
	var n []string
	for _, c := range Certificates {
		if !c.IsCA {
			n = append(n, c.Name)
		}
	}
	for _, k := range Kubeconfigs {
		if k.Renewable {
			n = append(n, k.FileName)
		}
	}
	return n
}

// Renew issues a new certificate for a leaf ("apiserver") or a kubeconfig
// ("admin.conf") with the same subject, SANs and usages as the existing one,
// signed by its CA, valid from now for spec.Validity, with a new key (as
// kubeadm does). The spec's SANs are not consulted: to change SANs, remove
// the files and run the certs phase. It refuses when the CA is external,
// when the file is missing, and for kubelet.conf once it points at the
// kubelet's rotated certificate.
func Renew(spec Spec, name string) (Result, error) {
	spec, err := prepare(spec)
	if err != nil {
		return Result{Name: name}, err
	}
	return renew(spec, name, spec.Keys)
}

// RenewAll renews every name in RenewNames. Like kubeadm's `renew all`, a
// missing file, an external CA or a kubelet-rotated kubelet.conf is skipped
// (Action "skipped", Note says why) rather than failing; other errors are
// collected and returned joined, after trying every item.
func RenewAll(spec Spec) ([]Result, error) {
	spec, err := prepare(spec)
	if err != nil {
		return nil, err
	}
	pool := spec.Keys
	if pool == nil {
		if pool, err = NewKeyPool(spec.Algorithm, len(RenewNames())); err != nil {
			return nil, err
		}
		defer pool.Close()
	}
	var results []Result
	var errs []error
	for _, name := range RenewNames() {
		r, err := renew(spec, name, pool)
		var skip *skipError
		switch {
		case errors.As(err, &skip):
			r.Action = ActionSkipped
			r.Note = skip.reason
		case err != nil:
			errs = append(errs, err)
			continue
		}
		results = append(results, r)
	}
	return results, errors.Join(errs...)
}

// skipError is a refusal that RenewAll reports as a skip.
type skipError struct{ reason, msg string }

func (e *skipError) Error() string { return e.msg }

func renew(spec Spec, name string, pool *KeyPool) (Result, error) {
	if c, ok := LookupCert(name); ok && !c.IsCA {
		return renewCert(spec, c, pool)
	}
	if k, ok := LookupKubeconfig(name); ok && k.Renewable {
		return renewKubeconfig(spec, k, pool)
	}
	if c, ok := LookupCert(name); ok && c.IsCA {
		return Result{Name: name}, fmt.Errorf("%s is a certificate authority: CAs are not renewed in place (as in kubeadm); see `kubeforge certs check-expiration` for its expiry", name)
	}
	return Result{Name: name}, fmt.Errorf("unknown certificate %q: renewable names are %s", name, strings.Join(RenewNames(), ", "))
}

func renewCert(spec Spec, c Cert, pool *KeyPool) (Result, error) {
	start := time.Now()
	p := spec.Paths
	res := Result{Name: c.Name, CertPath: CertPath(p, c.BaseName), KeyPath: KeyPath(p, c.BaseName)}
	caDef := mustCA(c.CAName)
	old, err := LoadCert(p, c.BaseName)
	if errors.Is(err, fs.ErrNotExist) {
		return res, &skipError{reason: "missing", msg: fmt.Sprintf("cannot renew %s: %s does not exist: run `kubeforge init phase certs %s` to create it", c.Name, res.CertPath, c.Name)}
	}
	if err != nil {
		return res, fmt.Errorf("cannot renew %s: %w", c.Name, err)
	}
	caCert, caKey, err := TryLoadCA(p, caDef.BaseName)
	if err != nil {
		return res, fmt.Errorf("cannot renew %s: %w", c.Name, err)
	}
	if caKey == nil {
		return res, &skipError{reason: "external CA", msg: fmt.Sprintf("cannot renew %s: its CA is external (%s present, %s absent): renew it with your CA and replace %s and %s",
			c.Name, CertPath(p, caDef.BaseName), KeyPath(p, caDef.BaseName), res.CertPath, res.KeyPath)}
	}
	if err := checkPeriod(caCert, spec.Now()); err != nil {
		return res, fmt.Errorf("cannot renew %s: its CA %s %v", c.Name, CertPath(p, caDef.BaseName), err)
	}
	key, err := pool.Get(spec.Algorithm)
	if err != nil {
		return res, fmt.Errorf("renew %s: %w", c.Name, err)
	}
	cert, err := issue(configOf(old), false, key, caCert, caKey, spec.Now(), capToCA(spec.renewValidity(old), caCert, spec.Now()))
	if err != nil {
		return res, fmt.Errorf("renew %s: %w", c.Name, err)
	}
	// Key first: should the certificate write fail, Ensure reports the
	// mismatch and a second `certs renew` repairs it.
	if err := writeKeyFile(p, res.KeyPath, key); err != nil {
		return res, err
	}
	if _, err := fsutil.WriteFile(p.Host(res.CertPath), EncodeCertPEM(cert), CertFileMode); err != nil {
		return res, err
	}
	res.Cert = cert
	res.Action = ActionRenewed
	res.Duration = time.Since(start)
	return res, nil
}

// configOf extracts what a renewal keeps from an existing certificate.
func configOf(c *x509.Certificate) CertConfig {
	return CertConfig{
		CommonName:    c.Subject.CommonName,
		Organizations: c.Subject.Organization,
		DNSNames:      c.DNSNames,
		IPs:           c.IPAddresses,
		Usages:        c.ExtKeyUsage,
	}
}

func renewKubeconfig(spec Spec, k Kubeconfig, pool *KeyPool) (Result, error) {
	start := time.Now()
	p := spec.Paths
	res := Result{Name: k.FileName, CertPath: KubeconfigPath(p, k.FileName)}
	if !exists(p, res.CertPath) {
		return res, &skipError{reason: "missing", msg: fmt.Sprintf("cannot renew %s: %s does not exist: run `kubeforge init phase kubeconfig %s` to create it", k.FileName, res.CertPath, k.Name)}
	}
	v, err := loadKubeconfigView(p, res.CertPath)
	if err != nil {
		return res, fmt.Errorf("cannot renew %s: %w", k.FileName, err)
	}
	old, _, source, embedded, err := v.clientCert(p, res.CertPath)
	if old == nil {
		return res, fmt.Errorf("cannot renew %s: %w", k.FileName, err)
	}
	if !embedded {
		return res, &skipError{reason: "rotated by the kubelet", msg: fmt.Sprintf("cannot renew %s: it points at %s, which the kubelet rotates itself", k.FileName, source)}
	}
	caCert, caKey, err := TryLoadCA(p, CAName)
	if err != nil {
		return res, fmt.Errorf("cannot renew %s: %w", k.FileName, err)
	}
	if caKey == nil {
		return res, &skipError{reason: "external CA", msg: fmt.Sprintf("cannot renew %s: the CA is external (%s present, %s absent): issue a new client certificate with your CA and update %s",
			k.FileName, CertPath(p, "ca"), KeyPath(p, "ca"), res.CertPath)}
	}
	if err := checkPeriod(caCert, spec.Now()); err != nil {
		return res, fmt.Errorf("cannot renew %s: the CA %s %v", k.FileName, CertPath(p, "ca"), err)
	}
	want := configOf(old)
	if len(want.Usages) == 0 {
		want.Usages = clientAuth
	}
	key, err := pool.Get(spec.Algorithm)
	if err != nil {
		return res, fmt.Errorf("renew %s: %w", k.FileName, err)
	}
	cert, err := issue(want, false, key, caCert, caKey, spec.Now(), capToCA(spec.renewValidity(old), caCert, spec.Now()))
	if err != nil {
		return res, fmt.Errorf("renew %s: %w", k.FileName, err)
	}
	keyPEM, err := EncodeKeyPEM(key)
	if err != nil {
		return res, err
	}
	// Keep everything else in the file (server, names, extra users), as
	// kubeadm does; refresh the embedded CA to the current ca.crt.
	cfg := v.cfg.DeepCopy()
	cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster].CertificateAuthorityData = EncodeCertPEM(caCert)
	cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster].CertificateAuthority = ""
	auth := cfg.AuthInfos[v.authName]
	auth.ClientCertificateData = EncodeCertPEM(cert)
	auth.ClientKeyData = keyPEM
	auth.ClientCertificate, auth.ClientKey = "", ""
	if err := writeKubeconfig(p, res.CertPath, cfg); err != nil {
		return res, err
	}
	res.Cert = cert
	res.Action = ActionRenewed
	res.Duration = time.Since(start)
	return res, nil
}

// capToCA shortens validity so that a renewed certificate does not outlive
// its CA (it could not be verified past the CA's expiry anyway).
func capToCA(validity time.Duration, ca *x509.Certificate, now time.Time) time.Duration {
	if left := ca.NotAfter.Sub(now); left > 0 && left < validity {
		return left
	}
	return validity
}

// renewValidity is the validity of old's replacement: spec.Validity, or
// old's own lifetime (without the backdating) under KeepLifetime.
func (s Spec) renewValidity(old *x509.Certificate) time.Duration {
	if !s.keepLifetime {
		return s.Validity
	}
	d := old.NotAfter.Sub(old.NotBefore)
	if d > CertificateBackdate {
		d -= CertificateBackdate
	}
	return d
}
