package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/fsutil"
)

// CSRFileMode is the mode of the .csr files GenerateCSRs writes (kubeadm's).
const CSRFileMode fs.FileMode = 0o600

// CSR is one key and certificate signing request GenerateCSRs wrote.
type CSR struct {
	// Name is the table name: "apiserver", or the kubeconfig's file name
	// ("admin.conf").
	Name string
	// KeyPath is the private key (certificates); empty for kubeconfigs,
	// whose key is embedded in the kubeconfig (Kubeconfig).
	KeyPath string
	// CSRPath is the request: <cert dir>/<base name>.csr, or
	// <kubeconfig dir>/<file name>.csr (as kubeadm names them).
	CSRPath string
	// CertPath is where the signed certificate goes: <base name>.crt, or,
	// for kubeconfigs, the kubeconfig itself (client-certificate-data).
	CertPath string
	// Kubeconfig is the kubeconfig written with the key and no certificate.
	Kubeconfig string
	// Want is what the certificate must say (the table's row for the spec).
	Want CertConfig
	// Request is the parsed request as written.
	Request *x509.CertificateRequest
}

// CSRPath is the logical path of the request for a certificate base name.
func CSRPath(p config.Paths, baseName string) string { return p.Cert(baseName + ".csr") }

// kubeconfigCSRPath and kubeconfigKeyPath are the request, and the key file
// kubeadm also refuses to overwrite, next to a kubeconfig.
func kubeconfigCSRPath(p config.Paths, fileName string) string {
	return KubeconfigPath(p, fileName) + ".csr"
}

func kubeconfigKeyPath(p config.Paths, fileName string) string {
	return KubeconfigPath(p, fileName) + ".key"
}

// GenerateCSRs is kubeadm's `certs generate-csr` (external CA mode): a new
// private key and a certificate signing request for every leaf certificate
// of the table (<base name>.key and .csr in the certificate dir) and for
// every kubeconfig (<file>.csr next to it, and the kubeconfig written with
// the key embedded and no client certificate). Subjects, SANs and usages
// are the ones the certs and kubeconfig phases would issue for spec; the
// requests carry the usages as requested extensions (key usage and extended
// key usage), which kubeadm's leave to the CA. CAs and the service-account
// key are not requested: the CAs are the external CA's, and init makes
// sa.key/sa.pub (and kubeforge's own kubelet serving CA) when absent.
//
// Like kubeadm it never overwrites: an existing key or CSR of a
// certificate, or an existing kubeconfig or its .csr/.key, is refused. Unlike
// kubeadm, which stops at the first one after writing the others, every
// such file is checked first and named in one error, and then nothing is
// written. The kubeconfigs embed ca.crt when it is already in the
// certificate dir; otherwise its certificate-authority-data is empty, as
// kubeadm leaves it, to be filled with the CA certificate.
func GenerateCSRs(spec Spec) ([]CSR, error) {
	spec, err := prepare(spec)
	if err != nil {
		return nil, err
	}
	p := spec.Paths
	var todo []CSR
	var errs []error
	for _, c := range Certificates {
		if c.IsCA {
			continue
		}
		want, err := c.Config(spec)
		if err != nil {
			errs = append(errs, fmt.Errorf("certificate %s: %w", c.Name, err))
			continue
		}
		todo = append(todo, CSR{Name: c.Name, KeyPath: KeyPath(p, c.BaseName), CSRPath: CSRPath(p, c.BaseName),
			CertPath: CertPath(p, c.BaseName), Want: want})
	}
	for _, k := range Kubeconfigs {
		want, err := k.Client(spec)
		if err != nil {
			errs = append(errs, fmt.Errorf("kubeconfig %s: %w", k.FileName, err))
			continue
		}
		if _, err := k.server(spec); err != nil {
			errs = append(errs, fmt.Errorf("kubeconfig %s: %w", k.FileName, err))
			continue
		}
		path := KubeconfigPath(p, k.FileName)
		todo = append(todo, CSR{Name: k.FileName, CSRPath: kubeconfigCSRPath(p, k.FileName), CertPath: path, Kubeconfig: path, Want: want})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var existing []string
	for _, c := range todo {
		for _, f := range []string{c.Kubeconfig, c.KeyPath, c.CSRPath} {
			if f != "" && exists(p, f) {
				existing = append(existing, f)
			}
		}
		if c.Kubeconfig != "" && exists(p, kubeconfigKeyPath(p, c.Name)) {
			existing = append(existing, kubeconfigKeyPath(p, c.Name))
		}
	}
	if len(existing) > 0 {
		return nil, fmt.Errorf("generate-csr never overwrites a key, a CSR or a kubeconfig, and these exist: %s; "+
			"they are the request of an earlier run (sign those) or files of a cluster: remove them to make new keys and requests",
			strings.Join(existing, ", "))
	}

	var caPEM []byte
	if ca, err := LoadCert(p, "ca"); err == nil {
		caPEM = EncodeCertPEM(ca)
	}
	pool, err := NewKeyPool(spec.Algorithm, len(todo))
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	for i := range todo {
		c := &todo[i]
		key, err := pool.Get(spec.Algorithm)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
		der, err := NewCSR(c.Want, key)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
		if c.Request, err = x509.ParseCertificateRequest(der); err != nil {
			return nil, fmt.Errorf("%s: parse the request just made: %w", c.Name, err)
		}
		// The key first: a crash before the request leaves a key that the
		// next run names, not a request for a lost key.
		if c.Kubeconfig != "" {
			k, _ := LookupKubeconfig(c.Name)
			server, _ := k.server(spec)
			keyPEM, err := EncodeKeyPEM(key)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", c.Name, err)
			}
			cfg := NewKubeconfig(server, c.Want.CommonName, caPEM)
			cfg.AuthInfos[c.Want.CommonName].ClientKeyData = keyPEM
			if err := writeKubeconfig(p, c.Kubeconfig, cfg); err != nil {
				return nil, err
			}
		} else if err := writeKeyFile(p, c.KeyPath, key); err != nil {
			return nil, err
		}
		if _, err := fsutil.WriteFile(p.Host(c.CSRPath), EncodeCSRPEM(der), CSRFileMode); err != nil {
			return nil, err
		}
	}
	return todo, nil
}

// EncodeCSRPEM is the PEM form of a DER certificate request.
func EncodeCSRPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// ParseCSR parses a PEM certificate request and checks its signature.
func ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("no PEM CERTIFICATE REQUEST block found")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("request signature: %w", err)
	}
	return csr, nil
}

// Object identifiers of the two usage extensions (RFC 5280 4.2.1.3, 4.2.1.12).
var (
	oidKeyUsage    = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtKeyUsage = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidServerAuth  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 1}
	oidClientAuth  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 2}
)

// NewCSR makes a DER certificate request for key with cfg's subject and
// SANs (as kubeadm's pkiutil.NewCSR) and, as requested extensions, the key
// usage and extended key usages the certs phase gives such a certificate:
// digital signature (+ key encipherment for RSA keys), and cfg.Usages.
func NewCSR(cfg CertConfig, key crypto.Signer) ([]byte, error) {
	if cfg.CommonName == "" {
		return nil, errors.New("certificate request has no common name")
	}
	exts, err := usageExtensions(key.Public(), cfg.Usages)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.CertificateRequest{
		Subject:         pkix.Name{CommonName: cfg.CommonName, Organization: cfg.Organizations},
		DNSNames:        cfg.DNSNames,
		IPAddresses:     cfg.IPs,
		ExtraExtensions: exts,
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("certificate request for %s: %w", cfg.CommonName, err)
	}
	return der, nil
}

func usageExtensions(pub crypto.PublicKey, usages []x509.ExtKeyUsage) ([]pkix.Extension, error) {
	// KeyUsage is a BIT STRING, bit 0 first: digitalSignature (0),
	// keyEncipherment (2).
	ku := asn1.BitString{Bytes: []byte{0x80}, BitLength: 1}
	if _, ok := pub.(*rsa.PublicKey); ok {
		ku = asn1.BitString{Bytes: []byte{0xa0}, BitLength: 3}
	}
	kuDER, err := asn1.Marshal(ku)
	if err != nil {
		return nil, err
	}
	var oids []asn1.ObjectIdentifier
	for _, u := range usages {
		switch u {
		case x509.ExtKeyUsageServerAuth:
			oids = append(oids, oidServerAuth)
		case x509.ExtKeyUsageClientAuth:
			oids = append(oids, oidClientAuth)
		default:
			return nil, fmt.Errorf("unsupported extended key usage %v", u)
		}
	}
	exts := []pkix.Extension{{Id: oidKeyUsage, Critical: true, Value: kuDER}}
	if len(oids) > 0 {
		ekuDER, err := asn1.Marshal(oids)
		if err != nil {
			return nil, err
		}
		exts = append(exts, pkix.Extension{Id: oidExtKeyUsage, Value: ekuDER})
	}
	return exts, nil
}

// RequestedUsages returns the key usage and extended key usages a request
// asks for (its requested extensions), for a CA that honours them.
func RequestedUsages(csr *x509.CertificateRequest) (x509.KeyUsage, []x509.ExtKeyUsage, error) {
	var ku x509.KeyUsage
	var eku []x509.ExtKeyUsage
	for _, e := range csr.Extensions {
		switch {
		case e.Id.Equal(oidKeyUsage):
			var bits asn1.BitString
			if _, err := asn1.Unmarshal(e.Value, &bits); err != nil {
				return 0, nil, fmt.Errorf("key usage extension: %w", err)
			}
			for i := 0; i < bits.BitLength; i++ {
				if bits.At(i) == 1 {
					ku |= 1 << uint(i)
				}
			}
		case e.Id.Equal(oidExtKeyUsage):
			var oids []asn1.ObjectIdentifier
			if _, err := asn1.Unmarshal(e.Value, &oids); err != nil {
				return 0, nil, fmt.Errorf("extended key usage extension: %w", err)
			}
			for _, o := range oids {
				switch {
				case o.Equal(oidServerAuth):
					eku = append(eku, x509.ExtKeyUsageServerAuth)
				case o.Equal(oidClientAuth):
					eku = append(eku, x509.ExtKeyUsageClientAuth)
				default:
					return 0, nil, fmt.Errorf("extended key usage %v is not one kubeforge requests", o)
				}
			}
		}
	}
	return ku, eku, nil
}

// ExternalCAs lists the base names of the table's CAs whose certificate is
// present without its key (external CA mode), in table order.
func ExternalCAs(p config.Paths) []string {
	var out []string
	for _, c := range Certificates {
		if c.IsCA && exists(p, CertPath(p, c.BaseName)) && !exists(p, KeyPath(p, c.BaseName)) {
			out = append(out, c.BaseName)
		}
	}
	return out
}

// DescribeRequest summarises a request in one line: subject, SANs and the
// usages it asks for.
func DescribeRequest(r *x509.CertificateRequest) string {
	if r == nil {
		return "<no request>"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "CN=%s", r.Subject.CommonName)
	for _, o := range r.Subject.Organization {
		fmt.Fprintf(&b, ", O=%s", o)
	}
	if len(r.DNSNames) > 0 {
		fmt.Fprintf(&b, "; DNS names %v", r.DNSNames)
	}
	if len(r.IPAddresses) > 0 {
		fmt.Fprintf(&b, "; IPs %v", r.IPAddresses)
	}
	if _, eku, err := RequestedUsages(r); err == nil && len(eku) > 0 {
		fmt.Fprintf(&b, "; %s", describeUsages(eku))
	}
	return b.String()
}
