package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Defaults of KubeforgeConfiguration.certificateRenewal.
const (
	DefaultRenewAt                = "2/3"
	DefaultCertMetricsBindAddress = "127.0.0.1:10263"
)

// CertificateRenewal configures the node service's certificate renewal
// duty (control-plane nodes): it renews the leaf certificates and the
// kubeconfig files kubeforge made once a share of their lifetime has passed,
// and serves a Prometheus gauge of the seconds until each certificate
// expires.
type CertificateRenewal struct {
	// Enabled turns automatic renewal (and its metrics endpoint) on or off;
	// on by default.
	Enabled *bool `json:"enabled,omitempty"`
	// RenewAt is the share of a certificate's lifetime (NotBefore to
	// NotAfter) after which it is renewed: a fraction "2/3", a decimal
	// "0.75" or a percentage "80%"; "2/3" by default. It must lie strictly
	// between 0 and 1.
	RenewAt string `json:"renewAt,omitempty"`
	// MetricsBindAddress is host:port of the HTTP endpoint serving the
	// gauges at /metrics; 127.0.0.1:10263 by default. Set 0.0.0.0:10263 (or
	// the node's address) for a monitoring stack on another host.
	MetricsBindAddress string `json:"metricsBindAddress,omitempty"`
}

// On reports whether automatic renewal is on.
func (r CertificateRenewal) On() bool { return r.Enabled == nil || *r.Enabled }

// Share is RenewAt as a number in (0, 1).
func (r CertificateRenewal) Share() (float64, error) {
	s := strings.TrimSpace(r.RenewAt)
	if s == "" {
		s = DefaultRenewAt
	}
	var v float64
	var err error
	switch {
	case strings.HasSuffix(s, "%"):
		v, err = strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
		v /= 100
	case strings.Contains(s, "/"):
		num, den, _ := strings.Cut(s, "/")
		var n, d float64
		if n, err = strconv.ParseFloat(strings.TrimSpace(num), 64); err == nil {
			if d, err = strconv.ParseFloat(strings.TrimSpace(den), 64); err == nil && d == 0 {
				err = fmt.Errorf("division by zero")
			}
		}
		v = n / d
	default:
		v, err = strconv.ParseFloat(s, 64)
	}
	if err != nil || !(v > 0 && v < 1) {
		return 0, fmt.Errorf("%q must be a share of the lifetime strictly between 0 and 1, written as a fraction (2/3), a decimal (0.75) or a percentage (80%%)", r.RenewAt)
	}
	return v, nil
}

func defaultCertificateRenewal(r *CertificateRenewal) {
	if r.Enabled == nil {
		on := true
		r.Enabled = &on
	}
	if r.RenewAt == "" {
		r.RenewAt = DefaultRenewAt
	}
	if r.MetricsBindAddress == "" {
		r.MetricsBindAddress = DefaultCertMetricsBindAddress
	}
}

func validateCertificateRenewal(r *CertificateRenewal) []error {
	const field = KubeforgeKind + ".certificateRenewal"
	var errs []error
	if _, err := r.Share(); err != nil {
		errs = append(errs, fmt.Errorf("%s.renewAt: %w", field, err))
	}
	if a := r.MetricsBindAddress; a != "" {
		host, port, err := net.SplitHostPort(a)
		n, perr := strconv.Atoi(port)
		if err != nil || perr != nil || n < 1 || n > 65535 || (host != "" && net.ParseIP(host) == nil) {
			errs = append(errs, fmt.Errorf("%s.metricsBindAddress: %q must be IP:port (for example %s, or 0.0.0.0:10263 to be scraped from other hosts)", field, a, DefaultCertMetricsBindAddress))
		}
	}
	return errs
}
