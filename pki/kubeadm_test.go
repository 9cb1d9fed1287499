package pki

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The interoperability test builds the real kubeadm v1.37.2 from the module
// (k8s.io/kubernetes/cmd/kubeadm, a few minutes cold, seconds from the build
// cache; set KUBEFORGE_KUBEADM to a prebuilt binary to skip the build) and
// checks both directions:
//
//   - kubeadm reads kubeforge's PKI and kubeconfigs: `kubeadm certs
//     check-expiration` exits 0, reports nothing missing or invalid, lists
//     every certificate with the expiry kubeforge reports, and agrees on
//     external CA mode; `kubeadm certs renew all` renews them and kubeforge
//     then reuses kubeadm's renewals;
//   - kubeforge reuses a PKI and kubeconfigs made by `kubeadm init phase
//     certs all` / `kubeconfig all` without touching a byte.
//
// kubeadm reads kubeconfigs only from /etc/kubernetes. As root the test runs
// it with `--rootfs DIR` (kubeadm chroots into the test's temporary root, so
// the host's /etc/kubernetes is never read nor written); otherwise only the
// certificates are checked, through --cert-dir.

var kubeadmBuild struct {
	once sync.Once
	dir  string
	path string
	err  error
	log  []byte
}

func kubeadmBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping the kubeadm interoperability test (it builds kubeadm from the module)")
	}
	if p := os.Getenv("KUBEFORGE_KUBEADM"); p != "" {
		return p
	}
	kubeadmBuild.once.Do(func() {
		dir, err := os.MkdirTemp("", "kubeforge-kubeadm-")
		if err != nil {
			kubeadmBuild.err = err
			return
		}
		kubeadmBuild.dir = dir
		kubeadmBuild.path = filepath.Join(dir, "kubeadm")
		start := time.Now()
		cmd := exec.Command("go", "build", "-o", kubeadmBuild.path, "k8s.io/kubernetes/cmd/kubeadm")
		cmd.Dir = ".." // the module root
		kubeadmBuild.log, kubeadmBuild.err = cmd.CombinedOutput()
		t.Logf("built kubeadm v1.37.2 from the module in %v", time.Since(start).Round(time.Second))
	})
	if kubeadmBuild.err != nil {
		t.Fatalf("go build k8s.io/kubernetes/cmd/kubeadm: %v\n%s", kubeadmBuild.err, kubeadmBuild.log)
	}
	return kubeadmBuild.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if kubeadmBuild.dir != "" {
		os.RemoveAll(kubeadmBuild.dir)
	}
	os.Exit(code)
}

// kubeadmConfig writes a kubeadm v1beta4 config equivalent to spec at
// <root>/kubeadm.yaml (read by kubeadm as /kubeadm.yaml under --rootfs).
func kubeadmConfig(t *testing.T, spec Spec) string {
	t.Helper()
	list := func(s []string) string {
		if len(s) == 0 {
			return "[]"
		}
		return `["` + strings.Join(s, `","`) + `"]`
	}
	alg := spec.Algorithm
	if alg == "" {
		alg = AlgorithmRSA2048
	}
	y := fmt.Sprintf(`apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: %s
  bindPort: %d
nodeRegistration:
  name: %s
  criSocket: unix:///run/kubeforge-test-no-such.sock
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v1.37.2
certificatesDir: %s
controlPlaneEndpoint: %q
encryptionAlgorithm: %s
networking:
  serviceSubnet: %s
  dnsDomain: %s
apiServer:
  certSANs: %s
etcd:
  local:
    serverCertSANs: %s
    peerCertSANs: %s
`, spec.AdvertiseAddress, spec.BindPort, spec.NodeName, spec.Paths.CertDir, spec.ControlPlaneEndpoint, alg,
		spec.ServiceSubnet, spec.DNSDomain, list(spec.APIServerCertSANs), list(spec.EtcdServerCertSANs), list(spec.EtcdPeerCertSANs))
	path := filepath.Join(spec.Paths.Root, "kubeadm.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// runKubeadm runs kubeadm against spec's root and returns its combined output.
func runKubeadm(t *testing.T, kubeadm string, spec Spec, args ...string) string {
	t.Helper()
	kubeadmConfig(t, spec)
	if os.Geteuid() == 0 {
		args = append(args, "--rootfs", spec.Paths.Root, "--config", "/kubeadm.yaml")
	} else {
		args = append(args, "--config", filepath.Join(spec.Paths.Root, "kubeadm.yaml"), "--cert-dir", spec.Paths.Host(spec.Paths.CertDir))
	}
	if slices.Contains(args, "check-expiration") || slices.Contains(args, "renew") {
		// Never let kubeadm look for a cluster: the config comes from --config.
		args = append(args, "--kubeconfig", "/nonexistent/kubeforge-test.conf")
	}
	cmd := exec.Command(kubeadm, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG=/nonexistent/kubeforge-test.conf")
	out, err := cmd.CombinedOutput()
	t.Logf("kubeadm %s\n%s", strings.Join(args, " "), out)
	if err != nil {
		t.Fatalf("kubeadm %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

type kubeadmExpiration struct {
	Kind                   string            `json:"kind"`
	Certificates           []kubeadmCertInfo `json:"certificates"`
	CertificateAuthorities []kubeadmCertInfo `json:"certificateAuthorities"`
}

type kubeadmCertInfo struct {
	Name              string    `json:"name"`
	ExpirationDate    time.Time `json:"expirationDate"`
	ResidualTime      int64     `json:"residualTime"`
	CAName            string    `json:"caName"`
	ExternallyManaged bool      `json:"externallyManaged"`
	Missing           bool      `json:"missing"`
}

// checkExpiration runs `kubeadm certs check-expiration` (text and JSON) and
// compares it with kubeforge's own CheckExpiration.
func checkExpiration(t *testing.T, kubeadm string, spec Spec, external bool) {
	t.Helper()
	text := runKubeadm(t, kubeadm, spec, "certs", "check-expiration")
	lower := strings.ToLower(text)
	for _, bad := range []string{"error", "invalid", "missing"} {
		if strings.Contains(lower, bad) {
			t.Errorf("kubeadm check-expiration output mentions %q", bad)
		}
	}
	for _, name := range []string{"apiserver", "apiserver-etcd-client", "apiserver-kubelet-client", "etcd-server", "etcd-peer",
		"etcd-healthcheck-client", "front-proxy-client", "ca", "etcd-ca", "front-proxy-ca"} {
		if !strings.Contains(text, "\n"+name+" ") {
			t.Errorf("kubeadm did not list %s", name)
		}
	}

	var got kubeadmExpiration
	if err := json.Unmarshal([]byte(runKubeadm(t, kubeadm, spec, "certs", "check-expiration", "-o", "json")), &got); err != nil {
		t.Fatalf("kubeadm check-expiration -o json: %v", err)
	}
	ours, err := CheckExpiration(spec.Paths, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]ExpirationInfo{}
	for _, r := range ours {
		byName[r.Name] = r
	}
	root := os.Geteuid() == 0
	check := func(k kubeadmCertInfo, isCA bool) {
		if !root && strings.HasSuffix(k.Name, ".conf") {
			return // kubeadm reads kubeconfigs from the host's /etc/kubernetes only
		}
		o, ok := byName[k.Name]
		if !ok {
			t.Errorf("kubeadm lists %s, kubeforge does not", k.Name)
			return
		}
		if k.Missing || o.Missing {
			t.Errorf("%s missing (kubeadm %v, kubeforge %v)", k.Name, k.Missing, o.Missing)
			return
		}
		if !k.ExpirationDate.Equal(o.ExpirationDate) {
			t.Errorf("%s: kubeadm says it expires %v, kubeforge %v", k.Name, k.ExpirationDate, o.ExpirationDate)
		}
		lo, hi := 364*24*time.Hour, 365*24*time.Hour
		if isCA {
			lo, hi = 3649*24*time.Hour, 3650*24*time.Hour
		}
		if r := time.Duration(k.ResidualTime) * time.Second; r < lo || r > hi {
			t.Errorf("%s: kubeadm residual time %v, want within [%v, %v]", k.Name, r, lo, hi)
		}
		if k.CAName != o.CAName && !isCA {
			t.Errorf("%s: CA %q (kubeadm) vs %q (kubeforge)", k.Name, k.CAName, o.CAName)
		}
		if k.ExternallyManaged != o.ExternallyManaged {
			t.Errorf("%s: externally managed %v (kubeadm) vs %v (kubeforge)", k.Name, k.ExternallyManaged, o.ExternallyManaged)
		}
		wantExternal := external && (k.Name == "ca" || k.CAName == "ca")
		if k.ExternallyManaged != wantExternal {
			t.Errorf("%s: kubeadm says externally managed %v, want %v", k.Name, k.ExternallyManaged, wantExternal)
		}
	}
	for _, k := range got.Certificates {
		check(k, false)
	}
	for _, k := range got.CertificateAuthorities {
		check(k, true)
	}
	wantRows := 11 // 7 leaves + admin, super-admin, controller-manager, scheduler (kubeadm omits kubelet.conf)
	if len(got.Certificates) != wantRows || len(got.CertificateAuthorities) != 3 {
		t.Errorf("kubeadm listed %d certificates and %d CAs, want %d and 3", len(got.Certificates), len(got.CertificateAuthorities), wantRows)
	}
}

func interopSpec(t *testing.T, alg, endpoint string) Spec {
	spec := newSpec(t, alg)
	spec.Now = time.Now
	spec.ControlPlaneEndpoint = endpoint
	spec.EtcdServerCertSANs = []string{"etcd.example.com"}
	spec.EtcdPeerCertSANs = []string{"10.201.0.20"}
	return spec
}

func TestKubeadmInterop(t *testing.T) {
	kubeadm := kubeadmBinary(t)
	if os.Geteuid() != 0 {
		t.Log("not root: kubeadm cannot chroot into the test root, so kubeconfig files are checked by kubeforge only")
	}

	for _, tc := range []struct{ alg, endpoint string }{
		{AlgorithmRSA2048, ""},
		{AlgorithmECDSAP256, "cp.example.com:8443"},
	} {
		t.Run("kubeadm reads kubeforge's "+tc.alg, func(t *testing.T) {
			spec := interopSpec(t, tc.alg, tc.endpoint)
			if _, err := EnsureAll(spec); err != nil {
				t.Fatal(err)
			}
			if _, err := EnsureAllKubeconfigs(spec); err != nil {
				t.Fatal(err)
			}
			checkExpiration(t, kubeadm, spec, false)

			if os.Geteuid() != 0 {
				return
			}
			// kubeadm renews kubeforge's files; kubeforge then accepts kubeadm's renewals.
			before := snapshot(t, spec.Paths.Root)
			runKubeadm(t, kubeadm, spec, "certs", "renew", "all")
			after := snapshot(t, spec.Paths.Root)
			if bytes.Equal(before["/etc/kubernetes/pki/apiserver.crt"].data, after["/etc/kubernetes/pki/apiserver.crt"].data) {
				t.Error("kubeadm certs renew all did not renew apiserver.crt")
			}
			for _, f := range []func(Spec) ([]Result, error){EnsureAll, EnsureAllKubeconfigs} {
				results, err := f(spec)
				if err != nil {
					t.Fatalf("after kubeadm certs renew all: %v", err)
				}
				for _, r := range results {
					if r.Action != ActionReused {
						t.Errorf("after kubeadm certs renew all: %s %s", r.Name, r.Action)
					}
				}
			}
			sameSnapshot(t, after, snapshot(t, spec.Paths.Root))
		})
	}

	t.Run("kubeadm agrees on external CA", func(t *testing.T) {
		spec := interopSpec(t, AlgorithmECDSAP256, "")
		if _, err := EnsureAll(spec); err != nil {
			t.Fatal(err)
		}
		if _, err := EnsureAllKubeconfigs(spec); err != nil {
			t.Fatal(err)
		}
		os.Remove(spec.Paths.Host(spec.Paths.Cert("ca.key")))
		checkExpiration(t, kubeadm, spec, true)
	})

	t.Run("kubeforge reuses kubeadm's", func(t *testing.T) {
		spec := interopSpec(t, AlgorithmRSA2048, "cp.example.com")
		if os.Geteuid() == 0 {
			runKubeadm(t, kubeadm, spec, "init", "phase", "certs", "all")
			runKubeadm(t, kubeadm, spec, "init", "phase", "kubeconfig", "all")
		} else {
			runKubeadm(t, kubeadm, spec, "init", "phase", "certs", "all")
			kubeadmConfig(t, spec)
			cmd := exec.Command(kubeadm, "init", "phase", "kubeconfig", "all", "--config", filepath.Join(spec.Paths.Root, "kubeadm.yaml"),
				"--cert-dir", spec.Paths.Host(spec.Paths.CertDir), "--kubeconfig-dir", spec.Paths.Host(spec.Paths.KubernetesDir))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		}
		before := snapshot(t, spec.Paths.Root)
		certs, err := EnsureAll(spec)
		if err != nil {
			t.Fatal(err)
		}
		kcs, err := EnsureAllKubeconfigs(spec)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range append(certs, kcs...) {
			// kubeforge's own kubelet serving CA is not kubeadm's: it is
			// added; everything kubeadm made is reused.
			want := ActionReused
			if r.Name == KubeletServingCA {
				want = ActionGenerated
			}
			if r.Action != want {
				t.Errorf("%s: %s, want %s", r.Name, r.Action, want)
			}
		}
		after := snapshot(t, spec.Paths.Root)
		for _, f := range []string{"kubelet-serving-ca.crt", "kubelet-serving-ca.key"} {
			p := strings.TrimPrefix(spec.Paths.Host(spec.Paths.Cert(f)), spec.Paths.Root)
			if _, ok := after[p]; !ok {
				t.Errorf("%s was not created", p)
			}
			delete(after, p)
		}
		sameSnapshot(t, before, after)
		if n := KeysNeeded(spec); n != 0 {
			t.Errorf("KeysNeeded on kubeadm's PKI = %d", n)
		}
		// And kubeforge's refusal logic sees kubeadm's SANs the same way.
		changed := spec
		changed.APIServerCertSANs = append(slices.Clone(spec.APIServerCertSANs), "10.0.0.77")
		if _, err := Ensure(changed, "apiserver"); err == nil || !strings.Contains(err.Error(), "lacks SAN 10.0.0.77") {
			t.Errorf("Ensure with a new SAN on kubeadm's apiserver.crt = %v", err)
		}
	})
}
