package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/kubeforge/kubeforge/config"
	"k8s.io/apimachinery/pkg/util/duration"
)

// ExpirationInfo is one row of `certs check-expiration`. Its JSON field
// names are kubeadm's (output.kubeadm.k8s.io/v1alpha3 Certificate) plus
// path, certificateAuthority and error.
type ExpirationInfo struct {
	// Name: the table name ("apiserver", "etcd-ca") or the kubeconfig file
	// name ("admin.conf").
	Name string `json:"name"`
	// Path is the logical path the certificate was read from.
	Path string `json:"path"`
	// CertificateAuthority marks rows of the CA section.
	CertificateAuthority bool `json:"certificateAuthority"`
	// ExpirationDate is NotAfter, in UTC; zero when Missing or Error.
	ExpirationDate time.Time `json:"expirationDate,omitzero"`
	// ResidualTimeSeconds is ExpirationDate - now, in seconds (negative once expired).
	ResidualTimeSeconds int64 `json:"residualTime"`
	// CAName is the signing CA's table name (empty for CAs).
	CAName string `json:"caName,omitempty"`
	// ExternallyManaged: the signing CA's (for a CA row: its own) key is
	// absent, so kubeforge cannot renew this certificate.
	ExternallyManaged bool `json:"externallyManaged"`
	// Missing: the file does not exist.
	Missing bool `json:"missing"`
	// Error says why an existing file could not be read.
	Error string `json:"error,omitempty"`
	// NotBefore is the start of the certificate's validity, in UTC.
	NotBefore time.Time `json:"notBefore,omitzero"`
	// RotatedByKubelet: a kubeconfig (kubelet.conf) whose client
	// certificate is a file the kubelet rotates itself.
	RotatedByKubelet bool `json:"rotatedByKubelet,omitempty"`
	// RenewalDate is when automatic renewal renews it (see SetRenewal);
	// zero when it is not renewed automatically.
	RenewalDate time.Time `json:"renewalDate,omitzero"`
	// Renewal says how the certificate is renewed: "automatic", "off",
	// "external CA", "kubelet", "never (CA)"; empty when not computed.
	Renewal string `json:"renewal,omitempty"`
	// Cert is the certificate read (nil when Missing or Error).
	Cert *x509.Certificate `json:"-"`
}

// RenewalPoint is when share (0 < share < 1) of the validity period
// [notBefore, notAfter] has passed.
func RenewalPoint(notBefore, notAfter time.Time, share float64) time.Time {
	return notBefore.Add(time.Duration(float64(notAfter.Sub(notBefore)) * share))
}

// Renewal kinds of ExpirationInfo.Renewal.
const (
	RenewalAutomatic = "automatic"
	RenewalOff       = "off"
	RenewalExternal  = "external CA"
	RenewalKubelet   = "kubelet"
	RenewalNeverCA   = "never (CA)"
)

// CAWarningWindow: a CA expiring within this time gets a warning (CAs are
// never renewed automatically).
const CAWarningWindow = 365 * 24 * time.Hour

// SetRenewal fills Renewal and RenewalDate of each row: when automatic
// renewal is on, a leaf certificate or kubeforge-made kubeconfig signed by
// a CA whose key is present is renewed once share of its lifetime has
// passed. CAs are never renewed automatically; the kubelet rotates its own
// client certificate, unless the CA is external.
func SetRenewal(rows []ExpirationInfo, on bool, share float64) {
	for i := range rows {
		r := &rows[i]
		switch {
		case r.CertificateAuthority:
			r.Renewal = RenewalNeverCA
		case r.ExternallyManaged:
			// Before the kubelet's rotation: under an external CA the
			// controller-manager signs no kubelet client certificate.
			r.Renewal = RenewalExternal
		case r.RotatedByKubelet:
			r.Renewal = RenewalKubelet
		case !on:
			r.Renewal = RenewalOff
		default:
			r.Renewal = RenewalAutomatic
			if !r.Missing && r.Error == "" && !r.NotBefore.IsZero() {
				r.RenewalDate = RenewalPoint(r.NotBefore, r.ExpirationDate, share).UTC()
			}
		}
	}
}

// Residual is the time left before expiry.
func (e ExpirationInfo) Residual() time.Duration {
	return time.Duration(e.ResidualTimeSeconds) * time.Second
}

// CheckExpiration reads every certificate of the table, every kubeconfig's
// client certificate (kubelet.conf's even when it points at the kubelet's
// rotated file, which kubeadm leaves out) and the CAs. Missing or unreadable
// files become rows, not errors. Certificates and kubeconfigs come first,
// sorted by name, then the CAs sorted by name, as kubeadm prints them.
func CheckExpiration(p config.Paths, now time.Time) ([]ExpirationInfo, error) {
	if p.CertDir == "" || p.KubernetesDir == "" {
		return nil, errors.New("pki: Paths has no CertDir/KubernetesDir: build it with config.DefaultPaths()")
	}
	external := map[string]bool{}
	for _, c := range Certificates {
		if c.IsCA {
			external[c.Name] = exists(p, CertPath(p, c.BaseName)) && !exists(p, KeyPath(p, c.BaseName))
		}
	}
	var certs, cas []ExpirationInfo
	for _, c := range Certificates {
		row := ExpirationInfo{Name: c.Name, Path: CertPath(p, c.BaseName), CAName: c.CAName, CertificateAuthority: c.IsCA}
		if c.IsCA {
			row.ExternallyManaged = external[c.Name]
		} else {
			row.ExternallyManaged = external[c.CAName]
		}
		cert, err := LoadCert(p, c.BaseName)
		fill(&row, cert, err, now)
		if c.IsCA {
			cas = append(cas, row)
		} else {
			certs = append(certs, row)
		}
	}
	for _, k := range Kubeconfigs {
		row := ExpirationInfo{Name: k.FileName, Path: KubeconfigPath(p, k.FileName), CAName: CAName, ExternallyManaged: external[CAName]}
		v, err := loadKubeconfigView(p, row.Path)
		var cert *x509.Certificate
		if err == nil {
			var source string
			var embedded bool
			cert, _, source, embedded, err = v.clientCert(p, row.Path)
			if cert != nil {
				err = nil // the key is not needed to report expiry
				row.Path = source
				row.RotatedByKubelet = !embedded && k.FileName == "kubelet.conf"
			}
		}
		fill(&row, cert, err, now)
		certs = append(certs, row)
	}
	sort.SliceStable(certs, func(i, j int) bool { return certs[i].Name < certs[j].Name })
	sort.SliceStable(cas, func(i, j int) bool { return cas[i].Name < cas[j].Name })
	return append(certs, cas...), nil
}

func fill(row *ExpirationInfo, cert *x509.Certificate, err error, now time.Time) {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		row.Missing = true
	case err != nil:
		row.Error = err.Error()
	default:
		row.ExpirationDate = cert.NotAfter.UTC()
		row.NotBefore = cert.NotBefore.UTC()
		row.Cert = cert
		row.ResidualTimeSeconds = int64(cert.NotAfter.Sub(now) / time.Second)
	}
}

// ExpirationReport groups rows the way `kubeadm certs check-expiration -o
// json` does (kind CertificateExpirationInfo, apiVersion
// output.kubeadm.k8s.io/v1alpha3), for callers that want kubeadm's JSON shape.
type ExpirationReport struct {
	Kind                   string           `json:"kind"`
	APIVersion             string           `json:"apiVersion"`
	Certificates           []ExpirationInfo `json:"certificates"`
	CertificateAuthorities []ExpirationInfo `json:"certificateAuthorities"`
	// AutomaticRenewal is kubeforge's addition (nil: not computed).
	AutomaticRenewal *AutomaticRenewal `json:"automaticRenewal,omitempty"`
}

// NewExpirationReport splits rows into kubeadm's two lists.
func NewExpirationReport(rows []ExpirationInfo) ExpirationReport {
	r := ExpirationReport{Kind: "CertificateExpirationInfo", APIVersion: "output.kubeadm.k8s.io/v1alpha3",
		Certificates: []ExpirationInfo{}, CertificateAuthorities: []ExpirationInfo{}}
	for _, row := range rows {
		if row.CertificateAuthority {
			r.CertificateAuthorities = append(r.CertificateAuthorities, row)
		} else {
			r.Certificates = append(r.Certificates, row)
		}
	}
	return r
}

// FormatExpirationTable prints rows in kubeadm's check-expiration layout:
// the certificates table, a blank line, the CA table. Expired certificates
// show "expired" as residual time (kubeadm prints "<invalid>"); unreadable
// ones "!INVALID! name" with the reason listed below the tables.
func FormatExpirationTable(w io.Writer, rows []ExpirationInfo) error {
	yesNo := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	residual := func(r ExpirationInfo) string {
		if r.ResidualTimeSeconds <= 0 {
			return "expired"
		}
		return duration.HumanDuration(r.Residual())
	}
	const date = "Jan 02, 2006 15:04 MST"
	tw := tabwriter.NewWriter(w, 10, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "CERTIFICATE\tEXPIRES\tRESIDUAL TIME\tCERTIFICATE AUTHORITY\tEXTERNALLY MANAGED")
	for _, r := range rows {
		if r.CertificateAuthority {
			continue
		}
		switch {
		case r.Missing:
			fmt.Fprintf(tw, "!MISSING! %s\t\t\t\t\n", r.Name)
		case r.Error != "":
			fmt.Fprintf(tw, "!INVALID! %s\t\t\t\t\n", r.Name)
		default:
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%-8v\n", r.Name, r.ExpirationDate.UTC().Format(date), residual(r), r.CAName, yesNo(r.ExternallyManaged))
		}
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "CERTIFICATE AUTHORITY\tEXPIRES\tRESIDUAL TIME\tEXTERNALLY MANAGED")
	for _, r := range rows {
		if !r.CertificateAuthority {
			continue
		}
		switch {
		case r.Missing:
			fmt.Fprintf(tw, "!MISSING! %s\t\t\t\n", r.Name)
		case r.Error != "":
			fmt.Fprintf(tw, "!INVALID! %s\t\t\t\n", r.Name)
		default:
			fmt.Fprintf(tw, "%s\t%s\t%s\t%-8v\n", r.Name, r.ExpirationDate.UTC().Format(date), residual(r), yesNo(r.ExternallyManaged))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// Reasons go below the tables so that they do not widen the columns.
	first := true
	for _, r := range rows {
		if r.Error == "" {
			continue
		}
		if first {
			fmt.Fprintln(w)
			first = false
		}
		fmt.Fprintf(w, "!INVALID! %s (%s): %s\n", r.Name, r.Path, r.Error)
	}
	return nil
}

// AutomaticRenewal says whether and how the node service renews this
// node's certificates (the JSON report's automaticRenewal).
type AutomaticRenewal struct {
	Enabled bool `json:"enabled"`
	// RenewAt is the configured share of the lifetime ("2/3").
	RenewAt string `json:"renewAt"`
	// Reason says why it is off, when it is.
	Reason string `json:"reason,omitempty"`
}

// FormatRenewal prints, after FormatExpirationTable, whether automatic
// renewal is on, when each certificate will be renewed, and a warning for
// each CA that expires within CAWarningWindow. Rows must have been through
// SetRenewal.
func FormatRenewal(w io.Writer, rows []ExpirationInfo, a AutomaticRenewal, now time.Time) error {
	const date = "Jan 02, 2006 15:04 MST"
	fmt.Fprintln(w)
	if a.Enabled {
		fmt.Fprintf(w, "Automatic renewal: on. The node service renews each leaf certificate and kubeconfig once %s of its lifetime has passed.\n", a.RenewAt)
	} else {
		fmt.Fprintf(w, "Automatic renewal: off (%s). Renew with `kubeforge certs renew all`.\n", a.Reason)
	}
	tw := tabwriter.NewWriter(w, 10, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "CERTIFICATE\tRENEWAL")
	for _, r := range rows {
		var s string
		switch {
		case r.Missing || r.Error != "":
			continue
		case r.Renewal == RenewalAutomatic && !r.RenewalDate.IsZero():
			if r.RenewalDate.After(now) {
				s = fmt.Sprintf("automatic, %s (in %s)", r.RenewalDate.Format(date), duration.HumanDuration(r.RenewalDate.Sub(now)))
			} else {
				s = fmt.Sprintf("automatic, due since %s", r.RenewalDate.Format(date))
			}
		case r.Renewal == RenewalKubelet:
			s = "rotated by the kubelet"
		case r.Renewal == RenewalExternal:
			s = "external CA: renew it with your CA"
		case r.Renewal == RenewalNeverCA:
			s = "never automatically (CA)"
		case r.Renewal == RenewalOff:
			s = "by hand: `kubeforge certs renew " + r.Name + "`"
		default:
			s = r.Renewal
		}
		fmt.Fprintf(tw, "%s\t%s\n", r.Name, s)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rows {
		if r.CertificateAuthority && !r.Missing && r.Error == "" && r.ExpirationDate.Sub(now) < CAWarningWindow {
			fmt.Fprintf(w, "WARNING: the CA %s (%s) expires on %s, within a year; CAs are never renewed automatically: plan its rotation.\n",
				r.Name, r.Path, r.ExpirationDate.Format(date))
		}
	}
	return nil
}
