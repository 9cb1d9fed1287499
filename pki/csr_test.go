package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
)

// testCA is a certificate authority that lives only in the test (the
// "external CA": its key is never written where the node's files are).
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newTestCA(t *testing.T, cn string) testCA {
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
	return testCA{cert, key}
}

// sign issues a certificate for a request as a CA that honours the
// request's names and requested usages would.
func (ca testCA) sign(t *testing.T, csr *x509.CertificateRequest) *x509.Certificate {
	t.Helper()
	ku, eku, err := RequestedUsages(csr)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: csr.Subject, DNSNames: csr.DNSNames, IPAddresses: csr.IPAddresses,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(12 * time.Hour),
		KeyUsage: ku, ExtKeyUsage: eku, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, csr.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func readCSR(t *testing.T, path string) *x509.CertificateRequest {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := ParseCSR(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return csr
}

// wantKubeconfigCSRs: kubeadm's kubeconfig users, written out independently of the table.
var wantKubeconfigCSRs = []struct {
	file, user, server string
	orgs               []string
}{
	{"admin.conf", "kubernetes-admin", "https://cp.example.com:6443", []string{"kubeadm:cluster-admins"}},
	{"super-admin.conf", "kubernetes-super-admin", "https://cp.example.com:6443", []string{"system:masters"}},
	{"kubelet.conf", "system:node:n1", "https://10.201.0.2:6443", []string{"system:nodes"}},
	{"controller-manager.conf", "system:kube-controller-manager", "https://10.201.0.2:6443", nil},
	{"scheduler.conf", "system:kube-scheduler", "https://10.201.0.2:6443", nil},
}

func TestGenerateCSRs(t *testing.T) {
	spec := newSpec(t, AlgorithmECDSAP256)
	spec.ControlPlaneEndpoint = "cp.example.com"
	p := spec.Paths
	csrs, err := GenerateCSRs(spec)
	if err != nil {
		t.Fatal(err)
	}
	var leaves []wantCert
	for _, w := range kubeadmCerts {
		if w.ca != "" {
			leaves = append(leaves, w)
		}
	}
	if len(csrs) != len(leaves)+len(wantKubeconfigCSRs) {
		t.Fatalf("%d requests, want %d", len(csrs), len(leaves)+len(wantKubeconfigCSRs))
	}

	for i, w := range leaves {
		t.Run(w.name, func(t *testing.T) {
			if csrs[i].Name != w.name {
				t.Errorf("request %d is %s, want %s (table order)", i, csrs[i].Name, w.name)
			}
			keyPath := p.Host(filepath.Join(p.CertDir, w.base+".key"))
			csrPath := p.Host(filepath.Join(p.CertDir, w.base+".csr"))
			for _, f := range []string{keyPath, csrPath} {
				if m := mode(t, f); m != 0o600 {
					t.Errorf("%s mode %v, want 0600", f, m)
				}
			}
			if _, err := os.Stat(p.Host(filepath.Join(p.CertDir, w.base+".crt"))); err == nil {
				t.Error("a certificate was written")
			}
			csr := readCSR(t, csrPath)
			key, err := LoadKey(p, w.base)
			if err != nil {
				t.Fatal(err)
			}
			if !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(csr.PublicKey) {
				t.Error("the request is not for the key written next to it")
			}
			if csr.Subject.CommonName != w.cn || !slices.Equal(csr.Subject.Organization, w.orgs) {
				t.Errorf("subject CN=%s O=%v, want CN=%s O=%v", csr.Subject.CommonName, csr.Subject.Organization, w.cn, w.orgs)
			}
			dns := w.dns
			if w.name == "apiserver" { // and the control-plane endpoint
				dns = append(slices.Clone(dns), "cp.example.com")
				slices.Sort(dns)
			}
			if !slices.Equal(csr.DNSNames, dns) || !slices.Equal(ipStrings(csr.IPAddresses), w.ips) {
				t.Errorf("SANs %v %v, want %v %v", csr.DNSNames, ipStrings(csr.IPAddresses), dns, w.ips)
			}
			ku, eku, err := RequestedUsages(csr)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(eku, w.usages) {
				t.Errorf("requested extended usages %v, want %v", eku, w.usages)
			}
			if ku != x509.KeyUsageDigitalSignature {
				t.Errorf("requested key usage %b, want digital signature (ECDSA key)", ku)
			}
		})
	}
	for i, w := range wantKubeconfigCSRs {
		t.Run(w.file, func(t *testing.T) {
			r := csrs[len(leaves)+i]
			if r.Name != w.file || r.KeyPath != "" {
				t.Errorf("request %s key %q", r.Name, r.KeyPath)
			}
			path := p.Host(filepath.Join(p.KubernetesDir, w.file))
			if m := mode(t, path); m != 0o600 {
				t.Errorf("mode %v, want 0600", m)
			}
			cfg, err := clientcmd.LoadFromFile(path)
			if err != nil {
				t.Fatal(err)
			}
			ctx := cfg.Contexts[cfg.CurrentContext]
			if ctx == nil || ctx.AuthInfo != w.user || cfg.CurrentContext != w.user+"@kubernetes" {
				t.Fatalf("current context %q: %+v", cfg.CurrentContext, ctx)
			}
			if s := cfg.Clusters[ctx.Cluster].Server; s != w.server {
				t.Errorf("server %s, want %s", s, w.server)
			}
			if len(cfg.Clusters[ctx.Cluster].CertificateAuthorityData) != 0 {
				t.Error("CA data without a ca.crt to take it from")
			}
			auth := cfg.AuthInfos[w.user]
			if len(auth.ClientCertificateData) != 0 || len(auth.ClientKeyData) == 0 {
				t.Errorf("want the key embedded and no certificate: cert %d bytes, key %d bytes", len(auth.ClientCertificateData), len(auth.ClientKeyData))
			}
			key, err := ParseKey(auth.ClientKeyData)
			if err != nil {
				t.Fatal(err)
			}
			csrPath := path + ".csr"
			if m := mode(t, csrPath); m != 0o600 {
				t.Errorf("%s mode %v, want 0600", csrPath, m)
			}
			csr := readCSR(t, csrPath)
			if !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(csr.PublicKey) {
				t.Error("the request is not for the key in the kubeconfig")
			}
			if csr.Subject.CommonName != w.user || !slices.Equal(csr.Subject.Organization, w.orgs) || len(csr.DNSNames)+len(csr.IPAddresses) != 0 {
				t.Errorf("request CN=%s O=%v SANs %v %v", csr.Subject.CommonName, csr.Subject.Organization, csr.DNSNames, csr.IPAddresses)
			}
			if _, eku, _ := RequestedUsages(csr); !slices.Equal(eku, cli) {
				t.Errorf("requested usages %v, want client auth", eku)
			}
		})
	}

	t.Run("second run refuses and changes nothing", func(t *testing.T) {
		before := snapshot(t, p.Root)
		_, err := GenerateCSRs(spec)
		if err == nil {
			t.Fatal("a second run succeeded")
		}
		for _, w := range []string{"never overwrites", "/etc/kubernetes/pki/apiserver.key", "/etc/kubernetes/pki/etcd/peer.csr", "/etc/kubernetes/admin.conf", "/etc/kubernetes/scheduler.conf.csr", "remove them"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error lacks %q: %v", w, err)
			}
		}
		sameSnapshot(t, before, snapshot(t, p.Root))
	})
}

func TestGenerateCSRsRefusesAnyExistingFile(t *testing.T) {
	for _, existing := range []string{"etc/kubernetes/pki/front-proxy-client.key", "etc/kubernetes/pki/apiserver.csr",
		"etc/kubernetes/kubelet.conf", "etc/kubernetes/admin.conf.csr", "etc/kubernetes/admin.conf.key"} {
		t.Run(existing, func(t *testing.T) {
			spec := newSpec(t, AlgorithmECDSAP256)
			f := filepath.Join(spec.Paths.Root, existing)
			if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, spec.Paths.Root)
			if _, err := GenerateCSRs(spec); err == nil || !strings.Contains(err.Error(), "/"+existing) {
				t.Errorf("want a refusal naming /%s, got %v", existing, err)
			}
			sameSnapshot(t, before, snapshot(t, spec.Paths.Root))
		})
	}
	t.Run("bad spec", func(t *testing.T) {
		spec := newSpec(t, AlgorithmECDSAP256)
		spec.AdvertiseAddress = nil
		if _, err := GenerateCSRs(spec); err == nil || !strings.Contains(err.Error(), "advertise") {
			t.Errorf("no advertise address: %v", err)
		}
		if len(snapshot(t, spec.Paths.Root)) != 0 {
			t.Error("files written for a bad spec")
		}
	})
}

func TestCSRKeyUsageRSA(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := NewCSR(CertConfig{CommonName: "x", Usages: both}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	ku, eku, err := RequestedUsages(csr)
	if err != nil || ku != x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment || !slices.Equal(eku, both) {
		t.Errorf("RSA request: key usage %b, extended %v, %v", ku, eku, err)
	}
	if _, err := NewCSR(CertConfig{CommonName: "x", Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}, key); err == nil {
		t.Error("code signing requested")
	}
}

// TestExternalCAFromCSRs is the external-CA flow as a kubeadm user runs
// it: generate-csr, the external CA signs every request, the certificates
// and completed kubeconfigs and the CA certificates (no CA keys) are put in
// place; the certs and kubeconfig phases then use every file as provided
// and write nothing. With the front-proxy CA's key present (kubeadm allows
// each CA's key to be present or absent on its own), its leaf is signed
// here for the key generate-csr made.
func TestExternalCAFromCSRs(t *testing.T) {
	for _, tc := range []struct {
		name         string
		frontProxyCA bool // front-proxy-ca.key on the node
	}{{"every CA external", false}, {"front-proxy CA key present", true}} {
		t.Run(tc.name, func(t *testing.T) {
			spec := newSpec(t, AlgorithmECDSAP256)
			spec.Now = nil
			p := spec.Paths
			csrs, err := GenerateCSRs(spec)
			if err != nil {
				t.Fatal(err)
			}
			cas := map[string]testCA{CAName: newTestCA(t, "external-ca"), FrontProxyCA: newTestCA(t, "external-front-proxy-ca"), EtcdCA: newTestCA(t, "external-etcd-ca")}
			for name, ca := range cas {
				c, _ := LookupCert(name)
				writeTestFile(t, p.Host(CertPath(p, c.BaseName)), EncodeCertPEM(ca.cert))
				if name == FrontProxyCA && tc.frontProxyCA {
					k, _ := EncodeKeyPEM(ca.key)
					writeTestFile(t, p.Host(KeyPath(p, c.BaseName)), k)
				}
			}

			// Before anything is signed: the phases name what to do.
			if _, err := Ensure(spec, "apiserver"); err == nil || !strings.Contains(err.Error(), "sign the request /etc/kubernetes/pki/apiserver.csr") {
				t.Errorf("unsigned apiserver: %v", err)
			}
			if _, err := EnsureKubeconfig(spec, "admin"); err == nil || !strings.Contains(err.Error(), "client-certificate-data") || !strings.Contains(err.Error(), "certificate-authority-data") {
				t.Errorf("incomplete admin.conf: %v", err)
			}

			for _, r := range csrs {
				c, isCert := LookupCert(r.Name)
				if isCert && c.CAName == FrontProxyCA && tc.frontProxyCA {
					continue // kubeforge signs it with the CA key it has
				}
				caName := CAName
				if isCert {
					caName = c.CAName
				}
				cert := cas[caName].sign(t, r.Request)
				if !isCert {
					cfg, err := clientcmd.LoadFromFile(p.Host(r.Kubeconfig))
					if err != nil {
						t.Fatal(err)
					}
					ctx := cfg.Contexts[cfg.CurrentContext]
					cfg.Clusters[ctx.Cluster].CertificateAuthorityData = EncodeCertPEM(cas[CAName].cert)
					cfg.AuthInfos[ctx.AuthInfo].ClientCertificateData = EncodeCertPEM(cert)
					if err := clientcmd.WriteToFile(*cfg, p.Host(r.Kubeconfig)); err != nil {
						t.Fatal(err)
					}
					continue
				}
				writeTestFile(t, p.Host(r.CertPath), EncodeCertPEM(cert))
			}
			keyBefore, _ := os.ReadFile(p.Host(KeyPath(p, "front-proxy-client")))

			results, err := EnsureAll(spec)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range results {
				want := ActionExternal
				switch {
				case r.Name == ServiceAccount || r.Name == KubeletServingCA:
					want = ActionGenerated // made by init, as kubeadm makes sa
				case tc.frontProxyCA && r.Name == FrontProxyCA:
					want = ActionReused
				case tc.frontProxyCA && r.Name == "front-proxy-client":
					want = ActionGenerated
				}
				if r.Action != want {
					t.Errorf("%s: %s, want %s", r.Name, r.Action, want)
				}
			}
			if keyAfter, _ := os.ReadFile(p.Host(KeyPath(p, "front-proxy-client"))); string(keyAfter) != string(keyBefore) {
				t.Error("front-proxy-client.key was replaced; the certificate must be issued for generate-csr's key")
			}
			kcs, err := EnsureAllKubeconfigs(spec)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range kcs {
				if r.Action != ActionExternal {
					t.Errorf("%s: %s, want external", r.Name, r.Action)
				}
			}
			// A second run changes nothing.
			before := snapshot(t, p.Root)
			if _, err := EnsureAll(spec); err != nil {
				t.Fatal(err)
			}
			if _, err := EnsureAllKubeconfigs(spec); err != nil {
				t.Fatal(err)
			}
			sameSnapshot(t, before, snapshot(t, p.Root))
			renewed, err := RenewAll(spec)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range renewed {
				fp := tc.frontProxyCA && r.Name == "front-proxy-client"
				if fp != (r.Action == ActionRenewed) || !fp && r.Note != "external CA" {
					t.Errorf("RenewAll: %s %s (%s)", r.Name, r.Action, r.Note)
				}
			}
		})
	}
}

func writeTestFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Under an external CA the kubelet's own rotation cannot work (the
// controller-manager has no signer): kubelet.conf is the external CA's too.
func TestSetRenewalExternalKubelet(t *testing.T) {
	rows := []ExpirationInfo{{Name: "kubelet.conf", RotatedByKubelet: true, ExternallyManaged: true}, {Name: "kubelet.conf", RotatedByKubelet: true}}
	SetRenewal(rows, true, 2.0/3)
	if rows[0].Renewal != RenewalExternal || rows[1].Renewal != RenewalKubelet {
		t.Errorf("renewal %q (external CA), %q (own CA)", rows[0].Renewal, rows[1].Renewal)
	}
}
