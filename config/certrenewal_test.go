package config

import (
	"math"
	"os"
	"strings"
	"testing"
)

func TestCertificateRenewalShare(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		bad  bool
	}{
		{in: "", want: 2.0 / 3},
		{in: "2/3", want: 2.0 / 3},
		{in: "0.75", want: 0.75},
		{in: "80%", want: 0.8},
		{in: "1", bad: true},
		{in: "0", bad: true},
		{in: "3/2", bad: true},
		{in: "1/0", bad: true},
		{in: "-10%", bad: true},
		{in: "soon", bad: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := CertificateRenewal{RenewAt: tc.in}.Share()
			if tc.bad {
				if err == nil {
					t.Fatalf("Share(%q) = %v, want an error", tc.in, got)
				}
				return
			}
			if err != nil || math.Abs(got-tc.want) > 1e-9 {
				t.Fatalf("Share(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestCertificateRenewalConfig(t *testing.T) {
	var k KubeforgeConfiguration
	defaultKubeforge(&k)
	r := k.CertificateRenewal
	if !r.On() || r.RenewAt != "2/3" || r.MetricsBindAddress != "127.0.0.1:10263" {
		t.Errorf("defaults: %+v", r)
	}
	if errs := validateKubeforge(&k); len(errs) != 0 {
		t.Errorf("defaults do not validate: %v", errs)
	}

	// The node's file: bad values are refused naming the file and the field.
	p := Paths{Root: t.TempDir(), StateDir: "/var/lib/kubeforge"}
	if err := os.MkdirAll(p.Host(p.StateDir), 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(p.Host(p.KubeforgeConfigFile()), []byte("apiVersion: kubeforge.io/v1alpha1\nkind: KubeforgeConfiguration\n"+s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("certificateRenewal:\n  enabled: false\n  renewAt: 90%\n")
	k, err := LoadKubeforge(p)
	if err != nil || k.CertificateRenewal.On() || k.CertificateRenewal.MetricsBindAddress != DefaultCertMetricsBindAddress {
		t.Errorf("load: %+v, %v", k.CertificateRenewal, err)
	}
	for _, bad := range []struct{ yaml, field string }{
		{"certificateRenewal:\n  renewAt: \"1.5\"\n", "certificateRenewal.renewAt"},
		{"certificateRenewal:\n  metricsBindAddress: localhost\n", "certificateRenewal.metricsBindAddress"},
		{"certificateRenewal:\n  metricsBindAddress: \"127.0.0.1:0\"\n", "certificateRenewal.metricsBindAddress"},
	} {
		write(bad.yaml)
		_, err := LoadKubeforge(p)
		if err == nil || !strings.Contains(err.Error(), bad.field) || !strings.Contains(err.Error(), p.KubeforgeConfigFile()) {
			t.Errorf("%q: %v, want an error naming %s and the file", bad.yaml, err, bad.field)
		}
	}
}
