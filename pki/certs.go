package pki

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/fsutil"
)

// Action says what Ensure, EnsureKubeconfig or Renew did.
type Action string

const (
	// ActionGenerated: the files did not exist (or only the key did) and were written.
	ActionGenerated Action = "generated"
	// ActionReused: the files existed, were verified against the spec and left untouched.
	ActionReused Action = "reused"
	// ActionExternal: the files belong to an external CA (its key is absent);
	// they were verified and used as provided.
	ActionExternal Action = "external"
	// ActionRenewed: a new certificate (and key) replaced the old one.
	ActionRenewed Action = "renewed"
	// ActionSkipped: nothing was done; Result.Note says why (RenewAll only).
	ActionSkipped Action = "skipped"
)

// Result reports one certificate, key pair or kubeconfig.
type Result struct {
	// Name is the table name ("apiserver", "sa", "admin.conf" for kubeconfigs).
	Name   string
	Action Action
	// CertPath is the logical path of the certificate (sa.pub for "sa", the
	// file itself for kubeconfigs); KeyPath that of the private key (empty
	// for kubeconfigs, whose key is embedded).
	CertPath string
	KeyPath  string
	// Cert is the certificate now on disk (nil for "sa"); for kubeconfigs,
	// the client certificate.
	Cert *x509.Certificate
	// Duration is the wall time spent on this item, including waiting for its key.
	Duration time.Duration
	// Note explains a skip or adds detail (e.g. "external CA").
	Note string
}

// prepare applies defaults and checks what every operation needs.
func prepare(spec Spec) (Spec, error) {
	s, err := spec.withDefaults()
	if err != nil {
		return s, err
	}
	if s.Paths.CertDir == "" || s.Paths.KubernetesDir == "" {
		return s, errors.New("pki: Spec.Paths has no CertDir/KubernetesDir: build it with config.DefaultPaths()")
	}
	return s, nil
}

// Ensure makes sure one certificate (a Certificates name such as
// "etcd-server", or "sa") exists and fits the spec; see the package comment.
func Ensure(spec Spec, name string) (Result, error) {
	spec, err := prepare(spec)
	if err != nil {
		return Result{Name: name}, err
	}
	if name == ServiceAccount {
		return ensureServiceAccount(spec, spec.Keys)
	}
	c, ok := LookupCert(name)
	if !ok {
		return Result{Name: name}, fmt.Errorf("unknown certificate %q: known names are %s", name, strings.Join(CertNames(), ", "))
	}
	return ensureCert(spec, c, spec.Keys)
}

// EnsureAll runs Ensure over the whole table in order, then "sa". The keys
// that are missing are generated concurrently up front (or taken from
// spec.Keys); results come back in table order. A failing certificate does
// not stop the others (except the leaves of a failing CA, which are not
// attempted): the results of those that succeeded are returned with every
// error, joined, so that one run reports every problem.
func EnsureAll(spec Spec) ([]Result, error) {
	spec, err := prepare(spec)
	if err != nil {
		return nil, err
	}
	pool := spec.Keys
	if pool == nil {
		if pool, err = NewKeyPool(spec.Algorithm, missingCertKeys(spec)); err != nil {
			return nil, err
		}
		defer pool.Close()
	}
	var results []Result
	var errs []error
	failedCA := map[string]bool{}
	for _, c := range Certificates {
		if failedCA[c.CAName] {
			continue
		}
		r, err := ensureCert(spec, c, pool)
		if err != nil {
			errs = append(errs, err)
			if c.IsCA {
				failedCA[c.Name] = true
			}
			continue
		}
		results = append(results, r)
	}
	if r, err := ensureServiceAccount(spec, pool); err != nil {
		errs = append(errs, err)
	} else {
		results = append(results, r)
	}
	return results, errors.Join(errs...)
}

// KeysNeeded counts the private keys that EnsureAll and then
// EnsureAllKubeconfigs will generate for spec, given what is on disk: size a
// shared KeyPool with it (NewKeyPool(spec.Algorithm, KeysNeeded(spec))).
func KeysNeeded(spec Spec) int {
	p := spec.Paths
	n := missingCertKeys(spec)
	caKeyComing := exists(p, KeyPath(p, "ca")) || !exists(p, CertPath(p, "ca"))
	if caKeyComing {
		for _, k := range Kubeconfigs {
			if !exists(p, KubeconfigPath(p, k.FileName)) {
				n++
			}
		}
	}
	return n
}

// missingCertKeys counts the private keys EnsureAll will have to generate.
func missingCertKeys(spec Spec) int {
	p := spec.Paths
	n := 0
	for _, c := range Certificates {
		if exists(p, KeyPath(p, c.BaseName)) {
			continue
		}
		if c.IsCA {
			if !exists(p, CertPath(p, c.BaseName)) {
				n++
			}
			continue
		}
		ca := mustCA(c.CAName)
		if exists(p, CertPath(p, ca.BaseName)) && !exists(p, KeyPath(p, ca.BaseName)) {
			continue // external CA: nothing will be signed
		}
		if !exists(p, CertPath(p, c.BaseName)) {
			n++
		}
	}
	if !exists(p, KeyPath(p, ServiceAccountKey.BaseName)) {
		n++
	}
	return n
}

func ensureCert(spec Spec, c Cert, pool *KeyPool) (Result, error) {
	start := time.Now()
	p := spec.Paths
	res := Result{Name: c.Name, CertPath: CertPath(p, c.BaseName), KeyPath: KeyPath(p, c.BaseName)}
	want, err := c.Config(spec)
	if err != nil {
		return res, fmt.Errorf("certificate %s: %w", c.Name, err)
	}
	var r Result
	if c.IsCA {
		r, err = ensureCA(spec, c, want, pool, res)
	} else {
		r, err = ensureLeaf(spec, c, want, pool, res)
	}
	r.Duration = time.Since(start)
	return r, err
}

func ensureCA(spec Spec, c Cert, want CertConfig, pool *KeyPool, res Result) (Result, error) {
	p := spec.Paths
	now := spec.Now()
	certOK, keyOK := exists(p, res.CertPath), exists(p, res.KeyPath)
	switch {
	case certOK:
		cert, key, err := TryLoadCA(p, c.BaseName)
		if err != nil {
			return res, fmt.Errorf("certificate authority %s: %w", c.Name, err)
		}
		if err := checkPeriod(cert, now); err != nil {
			return res, fmt.Errorf("%s exists but %v: a CA cannot be renewed in place; replace the cluster's %s CA (and everything it signed)", res.CertPath, err, c.Name)
		}
		res.Cert = cert
		res.Action = ActionReused
		if key == nil {
			res.Action = ActionExternal
			res.Note = fmt.Sprintf("external CA: %s absent, certificates it signs must be provided", res.KeyPath)
		}
		return res, nil
	case keyOK:
		// A key without its certificate: an interrupted earlier run (keys are
		// written first). Issue the CA certificate for the existing key.
		key, err := LoadKey(p, c.BaseName)
		if err != nil {
			return res, fmt.Errorf("%s exists without %s and cannot be read (%v): remove it", res.KeyPath, res.CertPath, err)
		}
		return writeNew(spec, res, want, true, key, nil, nil, now, spec.CAValidity, false)
	default:
		key, err := pool.Get(spec.Algorithm)
		if err != nil {
			return res, fmt.Errorf("certificate authority %s: %w", c.Name, err)
		}
		return writeNew(spec, res, want, true, key, nil, nil, now, spec.CAValidity, true)
	}
}

func ensureLeaf(spec Spec, c Cert, want CertConfig, pool *KeyPool, res Result) (Result, error) {
	p := spec.Paths
	now := spec.Now()
	caDef := mustCA(c.CAName)
	caCert, caKey, err := TryLoadCA(p, caDef.BaseName)
	if errors.Is(err, fs.ErrNotExist) {
		return res, fmt.Errorf("certificate %s: its CA %s does not exist: run `kubeforge init phase certs %s` first (or provide the CA)", c.Name, CertPath(p, caDef.BaseName), caDef.Name)
	}
	if err != nil {
		return res, fmt.Errorf("certificate %s: %w", c.Name, err)
	}
	if err := checkPeriod(caCert, now); err != nil {
		return res, fmt.Errorf("certificate %s: its CA %s %v: replace the %s CA", c.Name, CertPath(p, caDef.BaseName), err, caDef.Name)
	}
	external := caKey == nil
	certOK, keyOK := exists(p, res.CertPath), exists(p, res.KeyPath)

	if certOK && keyOK {
		cert, intermediates, err := loadCertChain(p, c.BaseName)
		if err != nil {
			return res, fmt.Errorf("%s exists but cannot be used: %v: remove it and its key to regenerate it", res.CertPath, err)
		}
		key, err := LoadKey(p, c.BaseName)
		if err != nil {
			return res, fmt.Errorf("%s exists but cannot be used: %v: remove it and %s to regenerate them", res.KeyPath, err, res.CertPath)
		}
		if err := verifyLeaf(c.Name, res.CertPath, res.KeyPath, cert, intermediates, key, caCert, CertPath(p, caDef.BaseName), want, now, external); err != nil {
			return res, err
		}
		res.Cert = cert
		res.Action = ActionReused
		if external {
			res.Action = ActionExternal
			res.Note = "signed by the external " + caDef.Name
		}
		return res, nil
	}
	if external {
		missing := res.CertPath
		if certOK {
			missing = res.KeyPath
		}
		if csr := CSRPath(p, c.BaseName); keyOK && exists(p, csr) {
			return res, fmt.Errorf("%s is missing and must be provided: the %s CA is external (%s present, %s absent), so kubeforge cannot sign %s; sign the request %s with your CA (%s) and save the certificate as %s",
				res.CertPath, caDef.Name, CertPath(p, caDef.BaseName), KeyPath(p, caDef.BaseName), c.Name, csr, describeWant(want), res.CertPath)
		}
		return res, fmt.Errorf("%s is missing and must be provided: the %s CA is external (%s present, %s absent), so kubeforge cannot sign %s; issue it from your CA (%s) and place the certificate and key at %s and %s",
			missing, caDef.Name, CertPath(p, caDef.BaseName), KeyPath(p, caDef.BaseName), c.Name, describeWant(want), res.CertPath, res.KeyPath)
	}
	if certOK {
		return res, fmt.Errorf("%s exists without its key %s: remove %s to regenerate it, or restore the key", res.CertPath, res.KeyPath, res.CertPath)
	}
	if keyOK {
		// Key without certificate: an interrupted earlier run; sign the existing key.
		key, err := LoadKey(p, c.BaseName)
		if err != nil {
			return res, fmt.Errorf("%s exists without %s and cannot be read (%v): remove it", res.KeyPath, res.CertPath, err)
		}
		return writeNew(spec, res, want, false, key, caCert, caKey, now, spec.Validity, false)
	}
	key, err := pool.Get(spec.Algorithm)
	if err != nil {
		return res, fmt.Errorf("certificate %s: %w", c.Name, err)
	}
	return writeNew(spec, res, want, false, key, caCert, caKey, now, spec.Validity, true)
}

// writeNew issues a certificate for key and writes key (when writeKey) then
// certificate: a crash in between leaves a key that the next run signs.
func writeNew(spec Spec, res Result, want CertConfig, isCA bool, key crypto.Signer, caCert *x509.Certificate, caKey crypto.Signer, now time.Time, validity time.Duration, writeKey bool) (Result, error) {
	cert, err := issue(want, isCA, key, caCert, caKey, now, validity)
	if err != nil {
		return res, fmt.Errorf("certificate %s: %w", res.Name, err)
	}
	if writeKey {
		if err := writeKeyFile(spec.Paths, res.KeyPath, key); err != nil {
			return res, err
		}
	}
	if _, err := fsutil.WriteFile(spec.Paths.Host(res.CertPath), EncodeCertPEM(cert), CertFileMode); err != nil {
		return res, fmt.Errorf("certificate %s: %w", res.Name, err)
	}
	res.Cert = cert
	res.Action = ActionGenerated
	return res, nil
}

func writeKeyFile(p config.Paths, logical string, key crypto.Signer) error {
	pemKey, err := EncodeKeyPEM(key)
	if err != nil {
		return fmt.Errorf("encode %s: %w", logical, err)
	}
	if _, err := fsutil.WriteFile(p.Host(logical), pemKey, KeyFileMode); err != nil {
		return err
	}
	return nil
}

// loadCertChain loads a certificate file: the first certificate and any
// intermediates after it.
func loadCertChain(p config.Paths, baseName string) (*x509.Certificate, []*x509.Certificate, error) {
	b, err := readFile(p, CertPath(p, baseName))
	if err != nil {
		return nil, nil, err
	}
	certs, err := ParseCerts(b)
	if err != nil {
		return nil, nil, err
	}
	return certs[0], certs[1:], nil
}

func checkPeriod(c *x509.Certificate, now time.Time) error {
	if now.After(c.NotAfter) {
		return fmt.Errorf("expired on %s", c.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(c.NotBefore) {
		return fmt.Errorf("is not valid before %s (is the clock right?)", c.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// verifyLeaf checks an existing leaf against its CA and the spec. The error
// names the file, every reason, and the fix.
func verifyLeaf(name, certPath, keyPath string, cert *x509.Certificate, intermediates []*x509.Certificate, key crypto.Signer, ca *x509.Certificate, caPath string, want CertConfig, now time.Time, external bool) error {
	if !keyMatches(cert, key) {
		fix := fmt.Sprintf("run `kubeforge certs renew %s`, or remove both files to regenerate them", name)
		if external {
			fix = "provide the matching pair"
		}
		return fmt.Errorf("%s exists but %s does not belong to it (public keys differ): %s", certPath, keyPath, fix)
	}
	if err := verifyChain(cert, intermediates, ca, now); err != nil {
		fix := fmt.Sprintf("remove %s and %s so that kubeforge issues them from %s", certPath, keyPath, caPath)
		if external {
			fix = "provide a certificate issued by " + caPath
		}
		return fmt.Errorf("%s exists but is not signed by %s (%v): %s", certPath, caPath, err, fix)
	}
	if problems := mismatches(cert, want); len(problems) > 0 {
		fix := fmt.Sprintf("remove %s and %s and run `kubeforge init phase certs %s` to issue it for the current configuration", certPath, keyPath, name)
		if external {
			fix = fmt.Sprintf("re-issue it from your CA with %s", describeWant(want))
		}
		return fmt.Errorf("%s exists but %s: %s", certPath, strings.Join(problems, ", "), fix)
	}
	if err := checkPeriod(cert, now); err != nil {
		fix := fmt.Sprintf("run `kubeforge certs renew %s`", name)
		if external {
			fix = "renew it with your CA"
		}
		return fmt.Errorf("%s exists but %v: %s", certPath, err, fix)
	}
	return nil
}

// verifyChain checks the signature chain up to ca, ignoring validity
// periods (checked separately, with a clearer message).
func verifyChain(cert *x509.Certificate, intermediates []*x509.Certificate, ca *x509.Certificate, now time.Time) error {
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	inter := x509.NewCertPool()
	for _, c := range intermediates {
		inter.AddCert(c)
	}
	at := now
	if at.After(cert.NotAfter) || at.Before(cert.NotBefore) {
		at = cert.NotBefore.Add(cert.NotAfter.Sub(cert.NotBefore) / 2)
	}
	_, err := cert.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: at,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	return err
}

// mismatches lists what cert lacks compared to want: CN, organizations,
// SANs (wildcards in the certificate count, as in kubeadm's VerifyHostname
// check), extended key usages.
func mismatches(cert *x509.Certificate, want CertConfig) []string {
	var p []string
	if cert.Subject.CommonName != want.CommonName {
		p = append(p, fmt.Sprintf("has CN %q instead of %q", cert.Subject.CommonName, want.CommonName))
	}
	for _, o := range want.Organizations {
		if !slices.Contains(cert.Subject.Organization, o) {
			p = append(p, fmt.Sprintf("lacks organization O=%s", o))
		}
	}
	for _, d := range want.DNSNames {
		if cert.VerifyHostname(d) != nil {
			p = append(p, "lacks SAN "+d)
		}
	}
	for _, ip := range want.IPs {
		if cert.VerifyHostname(ip.String()) != nil {
			p = append(p, "lacks SAN "+ip.String())
		}
	}
	if !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageAny) {
		for _, u := range want.Usages {
			if !slices.Contains(cert.ExtKeyUsage, u) {
				p = append(p, "lacks extended key usage "+describeUsages([]x509.ExtKeyUsage{u}))
			}
		}
	}
	return p
}

func describeWant(w CertConfig) string {
	s := "CN=" + w.CommonName
	for _, o := range w.Organizations {
		s += ", O=" + o
	}
	var sans []string
	sans = append(sans, w.DNSNames...)
	for _, ip := range w.IPs {
		sans = append(sans, ip.String())
	}
	if len(sans) > 0 {
		s += ", SANs " + strings.Join(sans, " ")
	}
	if len(w.Usages) > 0 {
		s += ", " + describeUsages(w.Usages)
	}
	return s
}

// ensureServiceAccount: sa.key and sa.pub. An existing sa.key is reused (its
// sa.pub must match it, and is rewritten when missing).
func ensureServiceAccount(spec Spec, pool *KeyPool) (Result, error) {
	start := time.Now()
	p := spec.Paths
	res := Result{Name: ServiceAccount, CertPath: PublicKeyPath(p, ServiceAccountKey.BaseName), KeyPath: KeyPath(p, ServiceAccountKey.BaseName)}
	keyOK, pubOK := exists(p, res.KeyPath), exists(p, res.CertPath)
	if keyOK {
		key, err := LoadKey(p, ServiceAccountKey.BaseName)
		if err != nil {
			return res, fmt.Errorf("%s exists but cannot be used: %v: remove %s and %s to regenerate them (every service-account token will be invalidated)", res.KeyPath, err, res.KeyPath, res.CertPath)
		}
		wantPub, err := EncodePublicKeyPEM(key.Public())
		if err != nil {
			return res, fmt.Errorf("%s: %w", res.KeyPath, err)
		}
		if pubOK {
			b, err := readFile(p, res.CertPath)
			if err != nil {
				return res, err
			}
			pub, err := parsePublicKeyPEM(b)
			if err != nil {
				return res, fmt.Errorf("%s exists but cannot be used (%v): remove it; it will be rewritten from %s", res.CertPath, err, res.KeyPath)
			}
			type equaler interface{ Equal(crypto.PublicKey) bool }
			if e, ok := key.Public().(equaler); !ok || !e.Equal(pub) {
				return res, fmt.Errorf("%s exists but is not the public key of %s: remove %s; it will be rewritten from %s", res.CertPath, res.KeyPath, res.CertPath, res.KeyPath)
			}
			res.Action = ActionReused
			res.Duration = time.Since(start)
			return res, nil
		}
		if _, err := fsutil.WriteFile(p.Host(res.CertPath), wantPub, CertFileMode); err != nil {
			return res, err
		}
		res.Action = ActionGenerated
		res.Note = "public key rewritten from the existing " + res.KeyPath
		res.Duration = time.Since(start)
		return res, nil
	}
	if pubOK {
		return res, fmt.Errorf("%s exists without %s: provide the private key, or remove %s to generate a new pair", res.CertPath, res.KeyPath, res.CertPath)
	}
	key, err := pool.Get(spec.Algorithm)
	if err != nil {
		return res, fmt.Errorf("service-account key: %w", err)
	}
	pub, err := EncodePublicKeyPEM(key.Public())
	if err != nil {
		return res, fmt.Errorf("service-account key: %w", err)
	}
	if err := writeKeyFile(p, res.KeyPath, key); err != nil {
		return res, err
	}
	if _, err := fsutil.WriteFile(p.Host(res.CertPath), pub, CertFileMode); err != nil {
		return res, err
	}
	res.Action = ActionGenerated
	res.Duration = time.Since(start)
	return res, nil
}
