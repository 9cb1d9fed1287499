package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/config"
	"k8s.io/client-go/tools/clientcmd"
)

// newSpec is the spec most tests use: node n1 at 10.201.0.2 (the reference
// kubeadm run's values), two extra apiserver SANs, a fixed clock.
func newSpec(t *testing.T, alg string) Spec {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	return Spec{
		Paths:             config.DefaultPaths().WithRoot(t.TempDir()),
		NodeName:          "n1",
		AdvertiseAddress:  net.ParseIP("10.201.0.2"),
		BindPort:          6443,
		ServiceSubnet:     "10.96.0.0/12",
		DNSDomain:         "cluster.local",
		APIServerCertSANs: []string{"10.0.0.5", "api.example.com"},
		Algorithm:         alg,
		Now:               func() time.Time { return now },
	}
}

type fileState struct {
	data  []byte
	mode  fs.FileMode
	mtime time.Time
}

// snapshot records every file under root.
func snapshot(t *testing.T, root string) map[string]fileState {
	t.Helper()
	m := map[string]fileState{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		st, err := os.Stat(path)
		if err != nil {
			return err
		}
		m[strings.TrimPrefix(path, root)] = fileState{b, st.Mode().Perm(), st.ModTime()}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func sameSnapshot(t *testing.T, before, after map[string]fileState) {
	t.Helper()
	for name, a := range after {
		b, ok := before[name]
		switch {
		case !ok:
			t.Errorf("%s was created", name)
		case !bytes.Equal(a.data, b.data):
			t.Errorf("%s changed content", name)
		case a.mode != b.mode:
			t.Errorf("%s changed mode %v → %v", name, b.mode, a.mode)
		case !a.mtime.Equal(b.mtime):
			t.Errorf("%s changed mtime", name)
		}
	}
	for name := range before {
		if _, ok := after[name]; !ok {
			t.Errorf("%s was removed", name)
		}
	}
}

// wantCert is kubeadm v1.37.2's certificate list, written out independently of the table.
type wantCert struct {
	name, base, ca string
	cn             string
	orgs           []string
	dns            []string
	ips            []string
	usages         []x509.ExtKeyUsage
}

var (
	srv  = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	cli  = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	both = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
)

var kubeadmCerts = []wantCert{
	{name: "ca", base: "ca", cn: "kubernetes"},
	{name: "apiserver", base: "apiserver", ca: "ca", cn: "kube-apiserver", usages: srv,
		dns: []string{"api.example.com", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "n1"},
		ips: []string{"10.96.0.1", "10.201.0.2", "10.0.0.5"}},
	{name: "apiserver-kubelet-client", base: "apiserver-kubelet-client", ca: "ca", cn: "kube-apiserver-kubelet-client", usages: cli},
	// kubeforge's own (not kubeadm's): the CA of the kubelets' serving certificates.
	{name: "kubelet-serving-ca", base: "kubelet-serving-ca", cn: "kubelet-serving-ca"},
	{name: "front-proxy-ca", base: "front-proxy-ca", cn: "front-proxy-ca"},
	{name: "front-proxy-client", base: "front-proxy-client", ca: "front-proxy-ca", cn: "front-proxy-client", usages: cli},
	{name: "etcd-ca", base: "etcd/ca", cn: "etcd-ca"},
	{name: "etcd-server", base: "etcd/server", ca: "etcd/ca", cn: "n1", usages: both,
		dns: []string{"localhost", "n1"}, ips: []string{"10.201.0.2", "127.0.0.1", "::1"}},
	{name: "etcd-peer", base: "etcd/peer", ca: "etcd/ca", cn: "n1", usages: both,
		dns: []string{"localhost", "n1"}, ips: []string{"10.201.0.2", "127.0.0.1", "::1"}},
	{name: "etcd-healthcheck-client", base: "etcd/healthcheck-client", ca: "etcd/ca", cn: "kube-etcd-healthcheck-client", usages: cli},
	{name: "apiserver-etcd-client", base: "apiserver-etcd-client", ca: "etcd/ca", cn: "kube-apiserver-etcd-client", usages: cli},
}

func ipStrings(ips []net.IP) []string {
	var s []string
	for _, ip := range ips {
		s = append(s, ip.String())
	}
	return s
}

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func TestEnsureAll(t *testing.T) {
	for _, tc := range []struct {
		alg     string
		checkPK func(t *testing.T, pub any)
	}{
		{AlgorithmRSA2048, func(t *testing.T, pub any) {
			if k, ok := pub.(*rsa.PublicKey); !ok || k.N.BitLen() != 2048 {
				t.Errorf("key is %T, want RSA-2048", pub)
			}
		}},
		{AlgorithmECDSAP256, func(t *testing.T, pub any) {
			if k, ok := pub.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
				t.Errorf("key is %T, want ECDSA P-256", pub)
			}
		}},
	} {
		t.Run(tc.alg, func(t *testing.T) {
			spec := newSpec(t, tc.alg)
			now := spec.Now()
			start := time.Now()
			results, err := EnsureAll(spec)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("EnsureAll %s: %v for %d certificates and keys", tc.alg, time.Since(start), len(results))
			var names []string
			for _, r := range results {
				names = append(names, r.Name)
				if r.Action != ActionGenerated {
					t.Errorf("%s: action %s, want generated", r.Name, r.Action)
				}
			}
			if want := append(namesOf(kubeadmCerts), "sa"); !slices.Equal(names, want) {
				t.Errorf("results in order %v, want %v", names, want)
			}
			p := spec.Paths
			for _, w := range kubeadmCerts {
				t.Run(w.name, func(t *testing.T) {
					crt := p.Host(filepath.Join(p.CertDir, w.base+".crt"))
					key := p.Host(filepath.Join(p.CertDir, w.base+".key"))
					if m := mode(t, crt); m != 0o644 {
						t.Errorf("%s mode %v, want 0644", crt, m)
					}
					if m := mode(t, key); m != 0o600 {
						t.Errorf("%s mode %v, want 0600", key, m)
					}
					cert, k, err := LoadCertAndKey(p, w.base)
					if err != nil {
						t.Fatal(err)
					}
					tc.checkPK(t, cert.PublicKey)
					tc.checkPK(t, k.Public())
					if cert.Subject.CommonName != w.cn || !slices.Equal(cert.Subject.Organization, w.orgs) {
						t.Errorf("subject %v, want CN=%s O=%v", cert.Subject, w.cn, w.orgs)
					}
					if !slices.Equal(cert.DNSNames, w.dns) {
						t.Errorf("DNS SANs %v, want %v", cert.DNSNames, w.dns)
					}
					if got := ipStrings(cert.IPAddresses); !slices.Equal(got, w.ips) {
						t.Errorf("IP SANs %v, want %v", got, w.ips)
					}
					if !slices.Equal(cert.ExtKeyUsage, w.usages) {
						t.Errorf("extended key usages %v, want %v", cert.ExtKeyUsage, w.usages)
					}
					if cert.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
						t.Errorf("key usage %v lacks digital signature", cert.KeyUsage)
					}
					if !cert.NotBefore.Equal(now.Add(-5 * time.Minute)) {
						t.Errorf("NotBefore %v, want now-5m (%v)", cert.NotBefore, now.Add(-5*time.Minute))
					}
					validity := 365 * 24 * time.Hour
					if w.ca == "" {
						validity = 10 * 365 * 24 * time.Hour
					}
					if !cert.NotAfter.Equal(now.Add(validity)) {
						t.Errorf("NotAfter %v, want now+%v", cert.NotAfter, validity)
					}
					if w.ca == "" {
						if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
							t.Errorf("CA has IsCA=%v key usage %v", cert.IsCA, cert.KeyUsage)
						}
						if err := cert.CheckSignatureFrom(cert); err != nil {
							t.Errorf("CA is not self-signed: %v", err)
						}
						return
					}
					if cert.IsCA {
						t.Error("leaf is a CA")
					}
					ca, err := LoadCert(p, w.ca)
					if err != nil {
						t.Fatal(err)
					}
					roots := x509.NewCertPool()
					roots.AddCert(ca)
					for _, u := range w.usages {
						if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
							t.Errorf("does not verify against %s for %v: %v", w.ca, u, err)
						}
					}
					for _, h := range append(slices.Clone(w.dns), w.ips...) {
						if err := cert.VerifyHostname(h); err != nil {
							t.Errorf("VerifyHostname(%s): %v", h, err)
						}
					}
				})
			}
			// sa.key / sa.pub
			if m := mode(t, p.Host(p.Cert("sa.key"))); m != 0o600 {
				t.Errorf("sa.key mode %v", m)
			}
			if m := mode(t, p.Host(p.Cert("sa.pub"))); m != 0o644 {
				t.Errorf("sa.pub mode %v", m)
			}
			saKey, err := LoadKey(p, "sa")
			if err != nil {
				t.Fatal(err)
			}
			tc.checkPK(t, saKey.Public())
			pubPEM, _ := os.ReadFile(p.Host(p.Cert("sa.pub")))
			pub, err := parsePublicKeyPEM(pubPEM)
			if err != nil {
				t.Fatal(err)
			}
			if !saKey.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
				t.Error("sa.pub is not the public half of sa.key")
			}

			// Second run: everything reused, nothing touched.
			before := snapshot(t, p.Root)
			again, err := EnsureAll(spec)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range again {
				if r.Action != ActionReused {
					t.Errorf("second run: %s %s, want reused", r.Name, r.Action)
				}
				if r.Name != "sa" && r.Cert == nil {
					t.Errorf("second run: %s has no certificate", r.Name)
				}
			}
			sameSnapshot(t, before, snapshot(t, p.Root))
			// One by one, as the sub-phases call it.
			for _, name := range CertNames() {
				r, err := Ensure(spec, name)
				if err != nil || r.Action != ActionReused {
					t.Errorf("Ensure(%s) = %s, %v", name, r.Action, err)
				}
			}
			sameSnapshot(t, before, snapshot(t, p.Root))
		})
	}
}

func namesOf(w []wantCert) []string {
	var n []string
	for _, c := range w {
		n = append(n, c.name)
	}
	return n
}

// TestEnsureRefuses: what exists but does not fit is refused with its path
// and reason, and left alone.
func TestEnsureRefuses(t *testing.T) {
	base := newSpec(t, AlgorithmECDSAP256)
	if _, err := EnsureAll(base); err != nil {
		t.Fatal(err)
	}
	other := newSpec(t, AlgorithmECDSAP256) // a second, unrelated PKI
	if _, err := EnsureAll(other); err != nil {
		t.Fatal(err)
	}
	p := base.Paths
	copyFile := func(t *testing.T, from, to config.Paths, name string) {
		t.Helper()
		b, err := os.ReadFile(from.Host(from.Cert(name)))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to.Host(to.Cert(name)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		cert   string
		mutate func(t *testing.T, s *Spec) // may change files under s.Paths or the spec
		want   []string
	}{
		{"missing SAN", "apiserver", func(t *testing.T, s *Spec) {
			s.APIServerCertSANs = append(s.APIServerCertSANs, "10.0.0.99", "new.example.com")
		}, []string{"/etc/kubernetes/pki/apiserver.crt exists but lacks SAN new.example.com, lacks SAN 10.0.0.99", "kubeforge init phase certs apiserver"}},
		{"new advertise address", "etcd-peer", func(t *testing.T, s *Spec) {
			s.AdvertiseAddress = net.ParseIP("10.201.0.3")
		}, []string{"etcd/peer.crt exists but lacks SAN 10.201.0.3"}},
		{"other node name", "etcd-server", func(t *testing.T, s *Spec) {
			s.NodeName = "n2"
		}, []string{"etcd/server.crt exists but has CN \"n1\" instead of \"n2\", lacks SAN n2"}},
		{"expired", "apiserver", func(t *testing.T, s *Spec) {
			later := s.Now().Add(400 * 24 * time.Hour)
			s.Now = func() time.Time { return later }
		}, []string{"apiserver.crt exists but expired on", "kubeforge certs renew apiserver"}},
		{"signed by another CA", "front-proxy-client", func(t *testing.T, s *Spec) {
			copyFile(t, other.Paths, s.Paths, "front-proxy-client.crt")
			copyFile(t, other.Paths, s.Paths, "front-proxy-client.key")
		}, []string{"front-proxy-client.crt exists but is not signed by /etc/kubernetes/pki/front-proxy-ca.crt"}},
		{"foreign key", "apiserver-etcd-client", func(t *testing.T, s *Spec) {
			copyFile(t, other.Paths, s.Paths, "apiserver-etcd-client.key")
		}, []string{"apiserver-etcd-client.crt exists but /etc/kubernetes/pki/apiserver-etcd-client.key does not belong to it"}},
		{"certificate without key", "apiserver-kubelet-client", func(t *testing.T, s *Spec) {
			os.Remove(s.Paths.Host(s.Paths.Cert("apiserver-kubelet-client.key")))
		}, []string{"apiserver-kubelet-client.crt exists without its key /etc/kubernetes/pki/apiserver-kubelet-client.key"}},
		{"corrupt certificate", "etcd-healthcheck-client", func(t *testing.T, s *Spec) {
			os.WriteFile(s.Paths.Host(s.Paths.Cert("etcd/healthcheck-client.crt")), []byte("garbage"), 0o644)
		}, []string{"etcd/healthcheck-client.crt exists but cannot be used"}},
		{"sa.pub of another key", "sa", func(t *testing.T, s *Spec) {
			copyFile(t, other.Paths, s.Paths, "sa.pub")
		}, []string{"sa.pub exists but is not the public key of /etc/kubernetes/pki/sa.key"}},
		{"leaf is a CA", "ca", func(t *testing.T, s *Spec) {
			b, _ := os.ReadFile(s.Paths.Host(s.Paths.Cert("apiserver.crt")))
			os.WriteFile(s.Paths.Host(s.Paths.Cert("ca.crt")), b, 0o644)
		}, []string{"ca.crt is not a CA certificate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := base
			spec.Paths = config.DefaultPaths().WithRoot(t.TempDir())
			if err := os.CopyFS(spec.Paths.Root, os.DirFS(p.Root)); err != nil {
				t.Fatal(err)
			}
			tc.mutate(t, &spec)
			before := snapshot(t, spec.Paths.Root)
			_, err := Ensure(spec, tc.cert)
			if err == nil {
				t.Fatal("Ensure succeeded, want a refusal")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
			sameSnapshot(t, before, snapshot(t, spec.Paths.Root))
			if _, err := EnsureAll(spec); err == nil {
				t.Error("EnsureAll succeeded, want a refusal")
			}
		})
	}
}

// TestEnsureAllReportsEverything: one run names every problem, skips the
// leaves of a broken CA and still handles the rest.
func TestEnsureAllReportsEverything(t *testing.T) {
	spec := newSpec(t, AlgorithmECDSAP256)
	if _, err := EnsureAll(spec); err != nil {
		t.Fatal(err)
	}
	p := spec.Paths
	os.WriteFile(p.Host(p.Cert("front-proxy-ca.crt")), []byte("garbage"), 0o644)
	os.Remove(p.Host(p.Cert("etcd/peer.key")))
	os.Remove(p.Host(p.Cert("apiserver.crt")))
	os.Remove(p.Host(p.Cert("apiserver.key")))
	results, err := EnsureAll(spec)
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{"front-proxy-ca", "etcd/peer.crt exists without its key"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
	if strings.Contains(err.Error(), "front-proxy-client") {
		t.Errorf("leaf of the broken CA was attempted: %v", err)
	}
	var names []string
	for _, r := range results {
		names = append(names, r.Name+":"+string(r.Action))
	}
	want := []string{"ca:reused", "apiserver:generated", "apiserver-kubelet-client:reused", "kubelet-serving-ca:reused", "etcd-ca:reused", "etcd-server:reused",
		"etcd-healthcheck-client:reused", "apiserver-etcd-client:reused", "sa:reused"}
	if !slices.Equal(names, want) {
		t.Errorf("results %v\nwant %v", names, want)
	}
	if _, err := EnsureAllKubeconfigs(Spec{Paths: config.DefaultPaths().WithRoot(t.TempDir()), NodeName: "n1", AdvertiseAddress: net.ParseIP("10.0.0.1")}); err == nil ||
		strings.Count(err.Error(), "does not exist") != 1 || !strings.Contains(err.Error(), "run `kubeforge init phase certs ca` first") {
		t.Errorf("EnsureAllKubeconfigs without a CA: %v", err)
	}
}

// TestEnsureRecoversKeyWithoutCert: a key left without its certificate (an
// interrupted run) gets a certificate; the key is kept.
func TestEnsureRecoversKeyWithoutCert(t *testing.T) {
	spec := newSpec(t, AlgorithmECDSAP256)
	if _, err := EnsureAll(spec); err != nil {
		t.Fatal(err)
	}
	p := spec.Paths
	for _, base := range []string{"apiserver", "etcd/ca"} {
		keyBefore, _ := os.ReadFile(p.Host(p.Cert(base + ".key")))
		os.Remove(p.Host(p.Cert(base + ".crt")))
		if base == "etcd/ca" { // its leaves still verify: same key, same subject
			results, err := EnsureAll(spec)
			if err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(results, func(r Result) bool { return r.Name == "etcd-ca" })
			if i < 0 || results[i].Action != ActionGenerated {
				t.Errorf("etcd-ca: %+v", results)
			}
			continue
		}
		r, err := Ensure(spec, "apiserver")
		if err != nil || r.Action != ActionGenerated {
			t.Fatalf("Ensure = %v, %v", r.Action, err)
		}
		keyAfter, _ := os.ReadFile(p.Host(p.Cert(base + ".key")))
		if !bytes.Equal(keyBefore, keyAfter) {
			t.Error("key was replaced")
		}
	}
}

// externalCopy copies a generated PKI without the keys of the given CAs.
func externalCopy(t *testing.T, from Spec, withoutKeys ...string) Spec {
	t.Helper()
	spec := from
	spec.Paths = config.DefaultPaths().WithRoot(t.TempDir())
	if err := os.CopyFS(spec.Paths.Root, os.DirFS(from.Paths.Root)); err != nil {
		t.Fatal(err)
	}
	for _, base := range withoutKeys {
		if err := os.Remove(spec.Paths.Host(spec.Paths.Cert(base + ".key"))); err != nil {
			t.Fatal(err)
		}
	}
	return spec
}

func TestExternalCA(t *testing.T) {
	full := newSpec(t, AlgorithmECDSAP256)
	if _, err := EnsureAll(full); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureAllKubeconfigs(full); err != nil {
		t.Fatal(err)
	}

	t.Run("all present", func(t *testing.T) {
		spec := externalCopy(t, full, "ca", "front-proxy-ca", "etcd/ca")
		before := snapshot(t, spec.Paths.Root)
		results, err := EnsureAll(spec)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range results {
			want := ActionExternal
			// kubeforge's own kubelet serving CA keeps its key even when
			// the cluster CA is external (it signs nothing a client trusts
			// for the API server).
			if r.Name == "sa" || r.Name == KubeletServingCA {
				want = ActionReused
			}
			if r.Action != want {
				t.Errorf("%s: %s, want %s", r.Name, r.Action, want)
			}
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
		sameSnapshot(t, before, snapshot(t, spec.Paths.Root))
		rows, err := CheckExpiration(spec.Paths, spec.Now())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if r.ExternallyManaged == (r.Name == KubeletServingCA) {
				t.Errorf("%s: externally managed %v", r.Name, r.ExternallyManaged)
			}
		}
		if _, err := Renew(spec, "apiserver"); err == nil || !strings.Contains(err.Error(), "external") {
			t.Errorf("Renew in external mode: %v", err)
		}
		if _, err := Renew(spec, "admin.conf"); err == nil || !strings.Contains(err.Error(), "external") {
			t.Errorf("Renew admin.conf in external mode: %v", err)
		}
		renewed, err := RenewAll(spec)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range renewed {
			if r.Action != ActionSkipped || r.Note != "external CA" {
				t.Errorf("RenewAll: %s %s (%s)", r.Name, r.Action, r.Note)
			}
		}
		sameSnapshot(t, before, snapshot(t, spec.Paths.Root))
	})

	for _, tc := range []struct {
		name     string
		noKeys   []string
		remove   string
		ensure   func(Spec) error
		wantPath string
		want     string
	}{
		{"missing leaf", []string{"ca"}, "pki/apiserver.crt", func(s Spec) error { _, err := EnsureAll(s); return err },
			"/etc/kubernetes/pki/apiserver.crt is missing and must be provided", "the ca CA is external"},
		{"missing leaf key", []string{"front-proxy-ca"}, "pki/front-proxy-client.key", func(s Spec) error { _, err := Ensure(s, "front-proxy-client"); return err },
			"/etc/kubernetes/pki/front-proxy-client.key is missing and must be provided", "the front-proxy-ca CA is external"},
		{"missing etcd leaf", []string{"etcd/ca"}, "pki/etcd/peer.crt", func(s Spec) error { _, err := EnsureAll(s); return err },
			"/etc/kubernetes/pki/etcd/peer.crt is missing and must be provided", "SANs localhost n1 10.201.0.2 127.0.0.1 ::1"},
		{"missing kubeconfig", []string{"ca"}, "admin.conf", func(s Spec) error { _, err := EnsureAllKubeconfigs(s); return err },
			"/etc/kubernetes/admin.conf is missing and must be provided", "CN=kubernetes-admin, O=kubeadm:cluster-admins"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := externalCopy(t, full, tc.noKeys...)
			if err := os.Remove(filepath.Join(spec.Paths.Root, "etc/kubernetes", tc.remove)); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, spec.Paths.Root)
			err := tc.ensure(spec)
			if err == nil {
				t.Fatal("succeeded, want an error naming the missing file")
			}
			for _, w := range []string{tc.wantPath, tc.want} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
			sameSnapshot(t, before, snapshot(t, spec.Paths.Root))
		})
	}

	t.Run("invalid leaf", func(t *testing.T) {
		spec := externalCopy(t, full, "ca")
		spec.APIServerCertSANs = []string{"10.9.9.9"}
		_, err := Ensure(spec, "apiserver")
		if err == nil || !strings.Contains(err.Error(), "apiserver.crt exists but lacks SAN 10.9.9.9: re-issue it from your CA") {
			t.Errorf("got %v", err)
		}
	})
}

func TestKubeconfigs(t *testing.T) {
	spec := newSpec(t, AlgorithmECDSAP256)
	spec.ControlPlaneEndpoint = "cp.example.com"
	if _, err := EnsureAll(spec); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	results, err := EnsureAllKubeconfigs(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("EnsureAllKubeconfigs: %v", time.Since(start))
	p := spec.Paths
	ca, err := LoadCert(p, "ca")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	want := []struct {
		file, user, server string
		orgs               []string
	}{
		{"admin.conf", "kubernetes-admin", "https://cp.example.com:6443", []string{"kubeadm:cluster-admins"}},
		{"super-admin.conf", "kubernetes-super-admin", "https://cp.example.com:6443", []string{"system:masters"}},
		{"kubelet.conf", "system:node:n1", "https://10.201.0.2:6443", []string{"system:nodes"}}, // local, as kubeadm v1.37
		{"controller-manager.conf", "system:kube-controller-manager", "https://10.201.0.2:6443", nil},
		{"scheduler.conf", "system:kube-scheduler", "https://10.201.0.2:6443", nil},
	}
	if len(results) != len(want) {
		t.Fatalf("%d results", len(results))
	}
	for i, w := range want {
		t.Run(w.file, func(t *testing.T) {
			if results[i].Name != w.file || results[i].Action != ActionGenerated {
				t.Errorf("result %s %s", results[i].Name, results[i].Action)
			}
			path := p.Host(filepath.Join(p.KubernetesDir, w.file))
			if m := mode(t, path); m != 0o600 {
				t.Errorf("mode %v, want 0600", m)
			}
			cfg, err := clientcmd.LoadFromFile(path)
			if err != nil {
				t.Fatal(err)
			}
			ctxName := w.user + "@kubernetes"
			ctx := cfg.Contexts[ctxName]
			if cfg.CurrentContext != ctxName || ctx == nil || ctx.Cluster != "kubernetes" || ctx.AuthInfo != w.user {
				t.Fatalf("current context %q: %+v", cfg.CurrentContext, ctx)
			}
			cluster := cfg.Clusters["kubernetes"]
			if cluster.Server != w.server {
				t.Errorf("server %s, want %s", cluster.Server, w.server)
			}
			if !bytes.Equal(cluster.CertificateAuthorityData, EncodeCertPEM(ca)) {
				t.Error("embedded CA is not ca.crt")
			}
			auth := cfg.AuthInfos[w.user]
			certs, err := ParseCerts(auth.ClientCertificateData)
			if err != nil {
				t.Fatal(err)
			}
			c := certs[0]
			if c.Subject.CommonName != w.user || !slices.Equal(c.Subject.Organization, w.orgs) {
				t.Errorf("client subject %v, want CN=%s O=%v", c.Subject, w.user, w.orgs)
			}
			if _, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: spec.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Errorf("client certificate does not verify against ca.crt: %v", err)
			}
			key, err := ParseKey(auth.ClientKeyData)
			if err != nil || !keyMatches(c, key) {
				t.Errorf("client key does not match: %v", err)
			}
			// clientcmd can build a REST config from it.
			if _, err := clientcmd.NewDefaultClientConfig(*cfg, nil).ClientConfig(); err != nil {
				t.Errorf("clientcmd: %v", err)
			}
		})
	}

	before := snapshot(t, p.Root)
	again, err := EnsureAllKubeconfigs(spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range again {
		if r.Action != ActionReused {
			t.Errorf("second run: %s %s", r.Name, r.Action)
		}
	}
	sameSnapshot(t, before, snapshot(t, p.Root))

	t.Run("refuses", func(t *testing.T) {
		other := newSpec(t, AlgorithmECDSAP256)
		other.ControlPlaneEndpoint = "cp.example.com"
		if _, err := EnsureAll(other); err != nil {
			t.Fatal(err)
		}
		if _, err := EnsureAllKubeconfigs(other); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name   string
			file   string
			mutate func(s *Spec)
			want   string
		}{
			{"other server", "admin.conf", func(s *Spec) { s.ControlPlaneEndpoint = "cp2.example.com:443" },
				"/etc/kubernetes/admin.conf exists but points at server https://cp.example.com:6443 instead of https://cp2.example.com:443"},
			{"other local endpoint", "scheduler.conf", func(s *Spec) { s.AdvertiseAddress = net.ParseIP("10.201.0.9") },
				"/etc/kubernetes/scheduler.conf exists but points at server https://10.201.0.2:6443 instead of https://10.201.0.9:6443"},
			{"other node", "kubelet.conf", func(s *Spec) { s.NodeName = "n2" },
				"/etc/kubernetes/kubelet.conf exists but its client certificate (in /etc/kubernetes/kubelet.conf) has CN \"system:node:n1\" instead of \"system:node:n2\""},
			{"other CA", "super-admin.conf", func(s *Spec) {
				b, _ := os.ReadFile(other.Paths.Host(other.Paths.Kubeconfig("super-admin.conf")))
				os.WriteFile(s.Paths.Host(s.Paths.Kubeconfig("super-admin.conf")), b, 0o600)
			}, "/etc/kubernetes/super-admin.conf exists but trusts another CA"},
			{"kubelet.conf at a third server", "kubelet.conf", func(s *Spec) { setServer(t, s.Paths, "kubelet.conf", "https://10.9.9.9:6443") },
				"kubelet.conf exists but points at server https://10.9.9.9:6443 instead of https://10.201.0.2:6443 or https://cp.example.com:6443"},
			{"expired", "controller-manager.conf", func(s *Spec) {
				later := s.Now().Add(366 * 24 * time.Hour)
				s.Now = func() time.Time { return later }
			}, "run `kubeforge certs renew controller-manager.conf`"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				s := externalCopy(t, spec)
				tc.mutate(&s)
				before := snapshot(t, s.Paths.Root)
				_, err := EnsureKubeconfig(s, tc.file)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("got %v\nwant %q", err, tc.want)
				}
				sameSnapshot(t, before, snapshot(t, s.Paths.Root))
			})
		}
	})

	t.Run("kubelet.conf at the control-plane endpoint", func(t *testing.T) {
		s := externalCopy(t, spec)
		setServer(t, s.Paths, "kubelet.conf", "https://cp.example.com:6443")
		if r, err := EnsureKubeconfig(s, "kubelet.conf"); err != nil || r.Action != ActionReused {
			t.Errorf("EnsureKubeconfig = %s, %v", r.Action, err)
		}
	})

	t.Run("kubelet rotated", func(t *testing.T) {
		s := externalCopy(t, spec)
		// What kubelet-finalize does: point kubelet.conf at the rotated pem.
		cfg, err := LoadKubeconfig(s.Paths, s.Paths.Kubeconfig("kubelet.conf"))
		if err != nil {
			t.Fatal(err)
		}
		auth := cfg.AuthInfos["system:node:n1"]
		pemPath := filepath.Join(s.Paths.KubeletPKIDir(), "kubelet-client-current.pem")
		if err := os.MkdirAll(filepath.Dir(s.Paths.Host(pemPath)), 0o700); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(s.Paths.Host(pemPath), append(slices.Clone(auth.ClientCertificateData), auth.ClientKeyData...), 0o600)
		auth.ClientCertificateData, auth.ClientKeyData = nil, nil
		auth.ClientCertificate, auth.ClientKey = pemPath, pemPath
		if err := writeKubeconfig(s.Paths, s.Paths.Kubeconfig("kubelet.conf"), cfg); err != nil {
			t.Fatal(err)
		}
		if r, err := EnsureKubeconfig(s, "kubelet"); err != nil || r.Action != ActionReused {
			t.Errorf("EnsureKubeconfig(kubelet) = %s, %v", r.Action, err)
		}
		rows, _ := CheckExpiration(s.Paths, s.Now())
		found := false
		for _, r := range rows {
			if r.Name == "kubelet.conf" {
				found = true
				if r.Path != pemPath || r.Missing || r.Error != "" || r.ResidualTimeSeconds <= 0 {
					t.Errorf("kubelet.conf row %+v", r)
				}
			}
		}
		if !found {
			t.Error("no kubelet.conf row")
		}
		if _, err := Renew(s, "kubelet.conf"); err == nil || !strings.Contains(err.Error(), "kubelet rotates itself") {
			t.Errorf("Renew(kubelet.conf) = %v", err)
		}
	})
}

func TestCheckExpiration(t *testing.T) {
	spec := newSpec(t, AlgorithmECDSAP256)
	if _, err := EnsureAll(spec); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureAllKubeconfigs(spec); err != nil {
		t.Fatal(err)
	}
	p := spec.Paths
	os.Remove(p.Host(p.Kubeconfig("scheduler.conf")))
	os.Remove(p.Host(p.Cert("etcd/peer.crt")))
	os.WriteFile(p.Host(p.Kubeconfig("super-admin.conf")), []byte("not: [a kubeconfig"), 0o600)
	now := spec.Now().Add(24 * time.Hour)
	rows, err := CheckExpiration(p, now)
	if err != nil {
		t.Fatal(err)
	}
	wantOrder := []string{"admin.conf", "apiserver", "apiserver-etcd-client", "apiserver-kubelet-client", "controller-manager.conf",
		"etcd-healthcheck-client", "etcd-peer", "etcd-server", "front-proxy-client", "kubelet.conf", "scheduler.conf", "super-admin.conf",
		"ca", "etcd-ca", "front-proxy-ca", "kubelet-serving-ca"}
	var got []string
	for _, r := range rows {
		got = append(got, r.Name)
		switch {
		case r.Name == "scheduler.conf" || r.Name == "etcd-peer":
			if !r.Missing {
				t.Errorf("%s not missing: %+v", r.Name, r)
			}
		case r.Name == "super-admin.conf":
			if r.Error == "" || r.Missing {
				t.Errorf("%s: %+v", r.Name, r)
			}
		case r.CertificateAuthority:
			if r.CAName != "" || r.Residual() != 10*365*24*time.Hour-24*time.Hour {
				t.Errorf("%s: %+v", r.Name, r)
			}
		default:
			if r.Residual() != 364*24*time.Hour || r.ExternallyManaged {
				t.Errorf("%s residual %v: %+v", r.Name, r.Residual(), r)
			}
			if !r.ExpirationDate.Equal(spec.Now().Add(365 * 24 * time.Hour)) {
				t.Errorf("%s expires %v", r.Name, r.ExpirationDate)
			}
		}
	}
	if !slices.Equal(got, wantOrder) {
		t.Errorf("rows %v\nwant %v", got, wantOrder)
	}
	if rows[1].CAName != "ca" || rows[2].CAName != "etcd-ca" || rows[8].CAName != "front-proxy-ca" || rows[0].CAName != "ca" {
		t.Errorf("CA names: %+v %+v %+v", rows[1], rows[2], rows[8])
	}

	b, err := json.Marshal(rows)
	if err != nil {
		t.Fatal(err)
	}
	var decoded []map[string]any
	if err := json.Unmarshal(b, &decoded); err != nil {
		t.Fatal(err)
	}
	if d := decoded[1]; d["name"] != "apiserver" || d["residualTime"] != float64(364*24*3600) || d["caName"] != "ca" ||
		d["externallyManaged"] != false || d["missing"] != false || d["expirationDate"] == nil {
		t.Errorf("JSON row %v", d)
	}
	if d := decoded[6]; d["missing"] != true || d["expirationDate"] != nil {
		t.Errorf("missing JSON row %v", d)
	}
	rep, _ := json.Marshal(NewExpirationReport(rows))
	if !strings.Contains(string(rep), `"kind":"CertificateExpirationInfo","apiVersion":"output.kubeadm.k8s.io/v1alpha3","certificates":[`) {
		t.Errorf("report JSON %s", rep)
	}

	var out bytes.Buffer
	if err := FormatExpirationTable(&out, rows); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"!MISSING! scheduler.conf", "!MISSING! etcd-peer", "!INVALID! super-admin.conf\t", "\n!INVALID! super-admin.conf (/etc/kubernetes/super-admin.conf): /etc/kubernetes/super-admin.conf is not a valid kubeconfig"} {
		if !strings.Contains(strings.ReplaceAll(out.String(), "   ", "\t"), w) {
			t.Errorf("table lacks %q:\n%s", w, out.String())
		}
	}
	t.Logf("\n%s", out.String())

	// kubeadm's exact layout, on a complete PKI.
	var clean []ExpirationInfo
	for _, r := range rows {
		if !r.Missing && r.Error == "" {
			clean = append(clean, r)
		}
	}
	clean[0].ResidualTimeSeconds = -1 // show an expired row
	out.Reset()
	if err := FormatExpirationTable(&out, clean); err != nil {
		t.Fatal(err)
	}
	exp := spec.Now().Add(365 * 24 * time.Hour).Format("Jan 02, 2006 15:04 MST")
	caExp := spec.Now().Add(10 * 365 * 24 * time.Hour).Format("Jan 02, 2006 15:04 MST")
	want := "" +
		"CERTIFICATE                EXPIRES                  RESIDUAL TIME   CERTIFICATE AUTHORITY   EXTERNALLY MANAGED\n" +
		"admin.conf                 " + exp + "   expired         ca                      no      \n" +
		"apiserver                  " + exp + "   364d            ca                      no      \n" +
		"apiserver-etcd-client      " + exp + "   364d            etcd-ca                 no      \n" +
		"apiserver-kubelet-client   " + exp + "   364d            ca                      no      \n" +
		"controller-manager.conf    " + exp + "   364d            ca                      no      \n" +
		"etcd-healthcheck-client    " + exp + "   364d            etcd-ca                 no      \n" +
		"etcd-server                " + exp + "   364d            etcd-ca                 no      \n" +
		"front-proxy-client         " + exp + "   364d            front-proxy-ca          no      \n" +
		"kubelet.conf               " + exp + "   364d            ca                      no      \n" +
		"\n" +
		"CERTIFICATE AUTHORITY   EXPIRES                  RESIDUAL TIME   EXTERNALLY MANAGED\n" +
		"ca                      " + caExp + "   9y              no      \n" +
		"etcd-ca                 " + caExp + "   9y              no      \n" +
		"front-proxy-ca          " + caExp + "   9y              no      \n" +
		"kubelet-serving-ca      " + caExp + "   9y              no      \n"
	if out.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestRenew(t *testing.T) {
	spec := newSpec(t, AlgorithmECDSAP256)
	spec.EtcdServerCertSANs = []string{"etcd.example.com"}
	if _, err := EnsureAll(spec); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureAllKubeconfigs(spec); err != nil {
		t.Fatal(err)
	}
	p := spec.Paths
	later := spec.Now().Add(30 * 24 * time.Hour)
	renewSpec := spec
	renewSpec.Now = func() time.Time { return later }
	renewSpec.APIServerCertSANs = nil // renewal keeps the existing SANs, not the spec's
	renewSpec.EtcdServerCertSANs = nil

	for _, name := range []string{"apiserver", "etcd-server", "admin.conf", "kubelet.conf"} {
		t.Run(name, func(t *testing.T) {
			current := func() (*x509.Certificate, []byte) {
				t.Helper()
				if c, ok := LookupCert(name); ok {
					cert, err := LoadCert(p, c.BaseName)
					if err != nil {
						t.Fatal(err)
					}
					key, _ := os.ReadFile(p.Host(KeyPath(p, c.BaseName)))
					return cert, key
				}
				cfg, err := LoadKubeconfig(p, p.Kubeconfig(name))
				if err != nil {
					t.Fatal(err)
				}
				a := cfg.AuthInfos[cfg.Contexts[cfg.CurrentContext].AuthInfo]
				certs, err := ParseCerts(a.ClientCertificateData)
				if err != nil {
					t.Fatal(err)
				}
				return certs[0], a.ClientKeyData
			}
			old, oldKey := current()
			r, err := Renew(renewSpec, name)
			if err != nil {
				t.Fatal(err)
			}
			n := r.Cert
			if r.Action != ActionRenewed || n == nil {
				t.Fatalf("result %+v", r)
			}
			if n.Subject.String() != old.Subject.String() || !slices.Equal(n.DNSNames, old.DNSNames) ||
				!slices.Equal(ipStrings(n.IPAddresses), ipStrings(old.IPAddresses)) || !slices.Equal(n.ExtKeyUsage, old.ExtKeyUsage) {
				t.Errorf("renewed %s\n  differs from %s", DescribeCert(n), DescribeCert(old))
			}
			if got := n.NotAfter.Sub(old.NotAfter); got != 30*24*time.Hour {
				t.Errorf("NotAfter moved by %v, want 30 days", got)
			}
			if !n.NotBefore.Equal(later.Add(-5 * time.Minute)) {
				t.Errorf("NotBefore %v", n.NotBefore)
			}
			if n.SerialNumber.Cmp(old.SerialNumber) == 0 || bytes.Equal(n.RawSubjectPublicKeyInfo, old.RawSubjectPublicKeyInfo) {
				t.Error("same serial or same key after renewal")
			}
			onDisk, newKey := current()
			if !onDisk.Equal(n) {
				t.Error("Result.Cert is not the certificate on disk")
			}
			if bytes.Equal(oldKey, newKey) {
				t.Error("key was not regenerated")
			}
		})
	}
	// The renewed files pass Ensure with the original spec at the later time.
	renewSpec.APIServerCertSANs = spec.APIServerCertSANs
	renewSpec.EtcdServerCertSANs = spec.EtcdServerCertSANs
	for _, name := range []string{"apiserver", "etcd-server"} {
		if r, err := Ensure(renewSpec, name); err != nil || r.Action != ActionReused {
			t.Errorf("Ensure(%s) after renew = %s, %v", name, r.Action, err)
		}
	}
	for _, name := range []string{"admin", "kubelet"} {
		if r, err := EnsureKubeconfig(renewSpec, name); err != nil || r.Action != ActionReused {
			t.Errorf("EnsureKubeconfig(%s) after renew = %s, %v", name, r.Action, err)
		}
	}

	t.Run("refusals", func(t *testing.T) {
		for name, want := range map[string]string{
			"ca":      "CAs are not renewed in place",
			"etcd-ca": "CAs are not renewed in place",
			"bogus":   "unknown certificate \"bogus\": renewable names are apiserver, apiserver-kubelet-client",
		} {
			if _, err := Renew(renewSpec, name); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Renew(%s) = %v, want %q", name, err, want)
			}
		}
		s := externalCopy(t, spec)
		os.Remove(s.Paths.Host(s.Paths.Cert("front-proxy-client.crt")))
		if _, err := Renew(s, "front-proxy-client"); err == nil || !strings.Contains(err.Error(), "front-proxy-client.crt does not exist") {
			t.Errorf("Renew of a missing cert = %v", err)
		}
	})

	t.Run("all", func(t *testing.T) {
		s := externalCopy(t, spec)
		os.Remove(s.Paths.Host(s.Paths.Kubeconfig("scheduler.conf")))
		results, err := RenewAll(s)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, r := range results {
			names = append(names, r.Name)
			want := ActionRenewed
			if r.Name == "scheduler.conf" {
				want = ActionSkipped
			}
			if r.Action != want {
				t.Errorf("%s: %s (%s)", r.Name, r.Action, r.Note)
			}
		}
		if !slices.Equal(names, RenewNames()) {
			t.Errorf("RenewAll names %v", names)
		}
		if r, err := EnsureAll(s); err != nil {
			t.Errorf("EnsureAll after RenewAll: %v %v", r, err)
		}
	})
}

// TestCAHash: the pin of a CA made by openssl (testdata/ca-openssl.crt),
// computed independently with
//
//	openssl x509 -pubkey -noout -in ca-openssl.crt | openssl pkey -pubin -outform der | sha256sum
func TestCAHash(t *testing.T) {
	b, err := os.ReadFile("testdata/ca-openssl.crt")
	if err != nil {
		t.Fatal(err)
	}
	certs, err := ParseCerts(b)
	if err != nil {
		t.Fatal(err)
	}
	const want = "sha256:79fdb1d573d6f160cbd0c9b75ec3d399b8babf6eed7cbf3d7971f5d122bf725e"
	if got := CAHash(certs[0]); got != want {
		t.Errorf("CAHash = %s, want %s", got, want)
	}
}

// TestOpenSSLCAAsExternal: a CA made by another tool (openssl) without its
// key is an external CA: kubeforge refuses to sign with it and says which
// file must be provided.
func TestOpenSSLCAAsExternal(t *testing.T) {
	spec := newSpec(t, AlgorithmECDSAP256)
	b, _ := os.ReadFile("testdata/ca-openssl.crt")
	ca := spec.Paths.Host(spec.Paths.Cert("ca.crt"))
	os.MkdirAll(filepath.Dir(ca), 0o755)
	os.WriteFile(ca, b, 0o644)
	spec.Now = time.Now
	r, err := Ensure(spec, "ca")
	if err != nil || r.Action != ActionExternal {
		t.Fatalf("Ensure(ca) = %+v, %v", r, err)
	}
	_, err = Ensure(spec, "apiserver")
	if err == nil || !strings.Contains(err.Error(), "/etc/kubernetes/pki/apiserver.crt is missing and must be provided") {
		t.Errorf("Ensure(apiserver) = %v", err)
	}
}

func TestDescribeCert(t *testing.T) {
	spec := newSpec(t, AlgorithmECDSAP256)
	r, err := func() (Result, error) {
		if _, err := Ensure(spec, "ca"); err != nil {
			return Result{}, err
		}
		return Ensure(spec, "apiserver")
	}()
	if err != nil {
		t.Fatal(err)
	}
	d := DescribeCert(r.Cert)
	for _, w := range []string{"CN=kube-apiserver", "DNS names [api.example.com kubernetes", "IPs [10.96.0.1 10.201.0.2 10.0.0.5]", "server auth", "issuer CN=kubernetes", "ECDSA-P256", "not after " + spec.Now().Add(365*24*time.Hour).Format(time.RFC3339)} {
		if !strings.Contains(d, w) {
			t.Errorf("DescribeCert = %q, lacks %q", d, w)
		}
	}
}

func TestSpecValues(t *testing.T) {
	for _, tc := range []struct{ subnet, want string }{
		{"10.96.0.0/12", "10.96.0.1"},
		{"10.96.0.0/12,fd00:10:96::/112", "10.96.0.1"},
		{"fd00:10:96::/112,10.96.0.0/12", "fd00:10:96::1"},
		{"192.168.0.255/32", ""},
		{"", ""},
		{"nonsense", ""},
	} {
		ip, err := serviceIP(tc.subnet)
		if tc.want == "" {
			if err == nil {
				t.Errorf("serviceIP(%q) = %v, want an error", tc.subnet, ip)
			}
			continue
		}
		if err != nil || ip.String() != tc.want {
			t.Errorf("serviceIP(%q) = %v, %v; want %s", tc.subnet, ip, err, tc.want)
		}
	}
	s := Spec{AdvertiseAddress: net.ParseIP("fd00::2"), BindPort: 6443}
	for _, tc := range []struct{ cpe, want string }{
		{"", "https://[fd00::2]:6443"},
		{"cp.example.com", "https://cp.example.com:6443"},
		{"cp.example.com:443", "https://cp.example.com:443"},
		{"10.0.0.1", "https://10.0.0.1:6443"},
		{"[fd00::1]:8443", "https://[fd00::1]:8443"},
		{"bad_host!", ""},
		{"cp.example.com:99999", ""},
	} {
		s.ControlPlaneEndpoint = tc.cpe
		got, err := s.ControlPlaneURL()
		if (tc.want == "") != (err != nil) || got != tc.want {
			t.Errorf("ControlPlaneURL(%q) = %q, %v; want %q", tc.cpe, got, err, tc.want)
		}
	}
	if u, _ := s.LocalURL(); u != "https://[fd00::2]:6443" {
		t.Errorf("LocalURL = %s", u)
	}

	spec := newSpec(t, AlgorithmECDSAP256)
	for _, tc := range []struct {
		name   string
		mutate func(*Spec)
		cert   string
		want   string
	}{
		{"no advertise address", func(s *Spec) { s.AdvertiseAddress = nil }, "apiserver", "advertise address is not set"},
		{"bad algorithm", func(s *Spec) { s.Algorithm = "DSA-1024" }, "ca", `unknown key algorithm "DSA-1024"`},
		{"bad SAN", func(s *Spec) { s.APIServerCertSANs = []string{"not a name"} }, "apiserver", `extra SAN "not a name" for the apiserver certificate`},
		{"no node name", func(s *Spec) { s.NodeName = "" }, "etcd-server", "node name is not set"},
		{"unknown cert", func(*Spec) {}, "kubelet", `unknown certificate "kubelet"`},
		{"no paths", func(s *Spec) { s.Paths = config.Paths{} }, "ca", "Spec.Paths has no CertDir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := spec
			s.Paths = config.DefaultPaths().WithRoot(t.TempDir())
			if _, err := Ensure(s, "ca"); err != nil {
				t.Fatal(err)
			}
			tc.mutate(&s)
			_, err := Ensure(s, tc.cert)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestKeyPool(t *testing.T) {
	pool, err := NewKeyPool(AlgorithmECDSAP384, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	seen := map[string]bool{}
	for i := range 5 { // 3 pre-generated, 2 inline
		k, err := pool.Get(AlgorithmECDSAP384)
		if err != nil {
			t.Fatal(err)
		}
		if e, ok := k.(*ecdsa.PrivateKey); !ok || e.Curve != elliptic.P384() {
			t.Fatalf("key %d is %T", i, k)
		}
		der, _ := x509.MarshalPKIXPublicKey(k.Public())
		if seen[string(der)] {
			t.Fatal("pool handed out the same key twice")
		}
		seen[string(der)] = true
	}
	if k, err := pool.Get(AlgorithmRSA2048); err != nil || k.(*rsa.PrivateKey).N.BitLen() != 2048 {
		t.Errorf("other algorithm: %T %v", k, err)
	}
	var nilPool *KeyPool
	if _, err := nilPool.Get(""); err != nil {
		t.Error(err)
	}
	if _, err := NewKeyPool("RSA-1024", 1); err == nil {
		t.Error("RSA-1024 accepted")
	}

	// A shared pool sized by KeysNeeded serves both phases.
	spec := newSpec(t, AlgorithmECDSAP256)
	if n := KeysNeeded(spec); n != 17 {
		t.Errorf("KeysNeeded on an empty dir = %d, want 17 (11 certificates, sa, 5 kubeconfigs)", n)
	}
	spec.Keys, _ = NewKeyPool(spec.Algorithm, KeysNeeded(spec))
	defer spec.Keys.Close()
	if _, err := EnsureAll(spec); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureAllKubeconfigs(spec); err != nil {
		t.Fatal(err)
	}
	if n := KeysNeeded(spec); n != 0 {
		t.Errorf("KeysNeeded after generation = %d", n)
	}
	if got := spec.Keys.taken.Load(); got != 17 {
		t.Errorf("pool handed out %d keys, want 17", got)
	}
}

func TestLoadHelpers(t *testing.T) {
	spec := newSpec(t, AlgorithmRSA2048)
	p := spec.Paths
	if _, _, err := TryLoadCA(p, "ca"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("TryLoadCA on empty dir: %v", err)
	}
	if _, err := Ensure(spec, "etcd-ca"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"etcd-ca", "etcd/ca"} {
		c, k, err := TryLoadCA(p, name)
		if err != nil || c == nil || k == nil || c.Subject.CommonName != "etcd-ca" {
			t.Errorf("TryLoadCA(%s) = %v, %v, %v", name, c, k, err)
		}
	}
	os.Remove(p.Host(p.Cert("etcd/ca.key")))
	if c, k, err := TryLoadCA(p, "etcd-ca"); err != nil || c == nil || k != nil {
		t.Errorf("TryLoadCA without key = %v, %v, %v", c, k, err)
	}
	if _, _, err := LoadCertAndKey(p, "etcd/ca"); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "/etc/kubernetes/pki/etcd/ca.key does not exist") {
		t.Errorf("LoadCertAndKey without key: %v", err)
	}
	if _, err := ParseCerts([]byte("nothing")); err == nil {
		t.Error("ParseCerts accepted garbage")
	}
	k, _ := NewPrivateKey(AlgorithmECDSAP256)
	b, _ := EncodeKeyPEM(k)
	if !bytes.HasPrefix(b, []byte("-----BEGIN EC PRIVATE KEY-----")) {
		t.Errorf("EC key PEM: %s", b)
	}
	if k2, err := ParseKey(append([]byte("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"), b...)); err != nil || !k2.(*ecdsa.PrivateKey).Equal(k) {
		t.Errorf("ParseKey after a certificate block: %v", err)
	}
}

// setServer points a kubeconfig's cluster at another server.
func setServer(t *testing.T, p config.Paths, file, server string) {
	t.Helper()
	cfg, err := LoadKubeconfig(p, p.Kubeconfig(file))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cfg.Clusters {
		c.Server = server
	}
	if err := writeKubeconfig(p, p.Kubeconfig(file), cfg); err != nil {
		t.Fatal(err)
	}
}

// TestTable: the tables are consistent and name what kubeadm names.
func TestTable(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range Certificates {
		if seen[c.Name] || seen[c.BaseName] && c.BaseName != c.Name {
			t.Errorf("%s listed twice", c.Name)
		}
		if c.IsCA != (c.CAName == "") {
			t.Errorf("%s: IsCA %v with CAName %q", c.Name, c.IsCA, c.CAName)
		}
		if c.CAName != "" && !seen[c.CAName] {
			t.Errorf("%s: CA %q is not listed before it", c.Name, c.CAName)
		}
		seen[c.Name], seen[c.BaseName] = true, true
	}
	if got, want := CertNames(), append(namesOf(kubeadmCerts), "sa"); !slices.Equal(got, want) {
		t.Errorf("CertNames %v", got)
	}
	// kubeadm certs renew's names (sorted there; table order here), plus kubelet.conf.
	want := []string{"apiserver", "apiserver-kubelet-client", "front-proxy-client", "etcd-server", "etcd-peer", "etcd-healthcheck-client",
		"apiserver-etcd-client", "admin.conf", "super-admin.conf", "kubelet.conf", "controller-manager.conf", "scheduler.conf"}
	if got := RenewNames(); !slices.Equal(got, want) {
		t.Errorf("RenewNames %v\nwant %v", got, want)
	}
	for _, name := range []string{"admin", "admin.conf"} {
		if k, ok := LookupKubeconfig(name); !ok || k.FileName != "admin.conf" {
			t.Errorf("LookupKubeconfig(%s) = %+v", name, k)
		}
	}
	if c, ok := LookupCert("etcd/server"); !ok || c.Name != "etcd-server" {
		t.Errorf("LookupCert(etcd/server) = %+v", c)
	}
}

func TestAlgorithmP384(t *testing.T) {
	spec := newSpec(t, AlgorithmECDSAP384)
	for _, name := range []string{"ca", "apiserver", "sa"} {
		if _, err := Ensure(spec, name); err != nil {
			t.Fatal(err)
		}
	}
	cert, key, err := LoadCertAndKey(spec.Paths, "apiserver")
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := key.(*ecdsa.PrivateKey); !ok || k.Curve != elliptic.P384() || cert.SignatureAlgorithm != x509.ECDSAWithSHA384 {
		t.Errorf("key %T, signature %v", key, cert.SignatureAlgorithm)
	}
	if cert.KeyUsage&x509.KeyUsageKeyEncipherment != 0 {
		t.Error("ECDSA certificate has key encipherment usage")
	}
}

func TestRenewKeepLifetimeAndRenewalSchedule(t *testing.T) {
	spec := newSpec(t, AlgorithmECDSAP256)
	spec.Validity = 10 * time.Minute
	if _, err := EnsureAll(spec); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureAllKubeconfigs(spec); err != nil {
		t.Fatal(err)
	}
	now := spec.Now()
	// KeepLifetime: renewed with the old lifetime, not the 1-year default.
	keep := spec
	keep.Validity, keep.KeepLifetime = 0, true
	for _, name := range []string{"apiserver", "admin.conf"} {
		r, err := Renew(keep, name)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Cert.NotAfter.Sub(now); got != 10*time.Minute {
			t.Errorf("%s renewed for %s, want its former 10m", name, got)
		}
	}
	// A renewal never outlives the CA.
	long := spec
	long.Validity = 20 * 365 * 24 * time.Hour
	r, err := Renew(long, "apiserver")
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := LoadCert(spec.Paths, "ca")
	if !r.Cert.NotAfter.Equal(ca.NotAfter) {
		t.Errorf("renewed until %s, after its CA %s", r.Cert.NotAfter, ca.NotAfter)
	}

	rows, err := CheckExpiration(spec.Paths, now)
	if err != nil {
		t.Fatal(err)
	}
	SetRenewal(rows, true, 0.5)
	byName := map[string]ExpirationInfo{}
	for _, r := range rows {
		byName[r.Name] = r
	}
	if r := byName["admin.conf"]; r.Renewal != RenewalAutomatic || !r.RenewalDate.Equal(RenewalPoint(r.NotBefore, r.ExpirationDate, 0.5)) {
		t.Errorf("admin.conf: %+v", r)
	}
	if r := byName["ca"]; r.Renewal != RenewalNeverCA || !r.RenewalDate.IsZero() {
		t.Errorf("ca: %+v", r)
	}
	var b strings.Builder
	if err := FormatRenewal(&b, rows, AutomaticRenewal{Enabled: true, RenewAt: "1/2"}, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Automatic renewal: on", "1/2 of its lifetime", "admin.conf", "automatic, ", "never automatically (CA)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("FormatRenewal lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "WARNING") {
		t.Errorf("a CA warning for a 10-year CA:\n%s", b.String())
	}
	b.Reset()
	SetRenewal(rows, false, 0.5)
	_ = FormatRenewal(&b, rows, AutomaticRenewal{Reason: "not a control-plane node"}, now.Add(DefaultCAValidity-CAWarningWindow+time.Hour))
	for _, want := range []string{"Automatic renewal: off (not a control-plane node)", "kubeforge certs renew apiserver", "WARNING: the CA ca "} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("FormatRenewal (off, CA near expiry) lacks %q:\n%s", want, b.String())
		}
	}
}

func TestUserKubeconfig(t *testing.T) {
	spec := newSpec(t, AlgorithmECDSAP256)
	if _, err := EnsureAll(spec); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureAllKubeconfigs(spec); err != nil {
		t.Fatal(err)
	}
	b, err := UserKubeconfig(spec, "alice", []string{"devs", "ops"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := clientcmd.Load(b)
	if err != nil {
		t.Fatal(err)
	}
	ctx := kc.Contexts[kc.CurrentContext]
	certs, err := ParseCerts(kc.AuthInfos[ctx.AuthInfo].ClientCertificateData)
	if err != nil {
		t.Fatal(err)
	}
	c := certs[0]
	orgs := slices.Sorted(slices.Values(c.Subject.Organization))
	if c.Subject.CommonName != "alice" || strings.Join(orgs, ",") != "devs,ops" || c.NotAfter.Sub(spec.Now()) != time.Hour {
		t.Errorf("certificate %s, valid %s", DescribeCert(c), c.NotAfter.Sub(spec.Now()))
	}
	ca, _ := LoadCert(spec.Paths, "ca")
	if err := c.CheckSignatureFrom(ca); err != nil {
		t.Errorf("not signed by the cluster CA: %v", err)
	}
	admin, _ := LoadKubeconfig(spec.Paths, KubeconfigPath(spec.Paths, "admin.conf"))
	if got, want := kc.Clusters[ctx.Cluster].Server, admin.Clusters[admin.Contexts[admin.CurrentContext].Cluster].Server; got != want {
		t.Errorf("server %s, want admin.conf's %s", got, want)
	}
	if _, err := UserKubeconfig(spec, " ", nil, 0); err == nil || !strings.Contains(err.Error(), "--client-name") {
		t.Errorf("empty name: %v", err)
	}
	if err := os.Remove(spec.Paths.Host(KeyPath(spec.Paths, "ca"))); err != nil {
		t.Fatal(err)
	}
	if _, err := UserKubeconfig(spec, "bob", nil, 0); err == nil || !strings.Contains(err.Error(), "external") {
		t.Errorf("external CA: %v", err)
	}
}

func TestEnsureKubeletClientLink(t *testing.T) {
	p := config.DefaultPaths().WithRoot(t.TempDir())
	if changed, err := EnsureKubeletClientLink(p, time.Now()); changed || err != nil {
		t.Fatalf("no file: %v %v", changed, err)
	}
	cur := p.Host(filepath.Join(p.KubeletPKIDir(), KubeletClientCurrent))
	if err := os.MkdirAll(filepath.Dir(cur), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cur, []byte("PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	if changed, err := EnsureKubeletClientLink(p, now); !changed || err != nil {
		t.Fatalf("regular file: %v %v", changed, err)
	}
	// Relative, so that it resolves under a root directory as on the host.
	target, err := os.Readlink(cur)
	if err != nil || target != "kubelet-client-2026-12-05-12-00-00.pem" {
		t.Errorf("link %q, %v", target, err)
	}
	if b, _ := os.ReadFile(cur); string(b) != "PEM" {
		t.Errorf("the link resolves to %q", b)
	}
	if changed, err := EnsureKubeletClientLink(p, now.Add(time.Hour)); changed || err != nil {
		t.Errorf("second run: %v %v, want nothing done", changed, err)
	}
}

// A joining control-plane node's kubelet.conf points at the control-plane
// endpoint (its own API server is not up yet): EnsureKubeconfigAt writes it
// there, verifies it afterwards like any kubeconfig, and refuses a server
// the table does not accept for the file.
func TestEnsureKubeconfigAt(t *testing.T) {
	spec := newSpec(t, AlgorithmECDSAP256)
	spec.ControlPlaneEndpoint = "cp.example.com"
	if _, err := EnsureAll(spec); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureKubeconfigAt(spec, "kubelet", "https://evil.example.com:6443"); err == nil || !strings.Contains(err.Error(), "is none of") {
		t.Fatalf("a server the table does not accept: %v", err)
	}
	if _, err := EnsureKubeconfigAt(spec, "scheduler", "https://cp.example.com:6443"); err == nil {
		t.Fatal("scheduler.conf must point at the local API server only")
	}
	res, err := EnsureKubeconfigAt(spec, "kubelet", "https://cp.example.com:6443")
	if err != nil || res.Action != ActionGenerated {
		t.Fatalf("%v %s", err, res.Action)
	}
	cfg, err := clientcmd.LoadFromFile(spec.Paths.Host(spec.Paths.Kubeconfig("kubelet.conf")))
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster].Server; s != "https://cp.example.com:6443" {
		t.Errorf("server %s", s)
	}
	// The file is then accepted as it is, by either entry point.
	if res, err := EnsureKubeconfig(spec, "kubelet"); err != nil || res.Action != ActionReused {
		t.Errorf("EnsureKubeconfig after: %v %s", err, res.Action)
	}
}
