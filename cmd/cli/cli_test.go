package cli_test

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/kubeforge/kubeforge/cmd/cli"
	"github.com/kubeforge/kubeforge/internal/testutil"
)

// run runs a kubeforge command in-process (cli.Run, what the binary's main
// runs after its component roles) and returns its combined output and exit
// code. TestBinaryMain runs the built binary itself.
func run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	// Multicall gives the CLI an empty process-wide pflag set (the
	// components' packages register flags there, which cobra would merge).
	pflag.CommandLine = pflag.NewFlagSet("kubeforge", pflag.ContinueOnError)
	var out bytes.Buffer
	code := cli.Run(args, strings.NewReader(""), &out, &out)
	return out.String(), code
}

// runBinary executes the kubeforge binary (built once for the package by
// testutil.Binary unless KUBEFORGE_BINARY names one).
func runBinary(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(testutil.Binary(t), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return out.String(), code
}

// TestBinaryMain runs the built binary: main's wiring of the CLI, its exit
// code, and a component role (busybox style and `component NAME`), which
// the in-process runs do not reach.
func TestBinaryMain(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the kubeforge binary")
	}
	if out, code := runBinary(t, "version"); code != 0 || !strings.Contains(out, "Kubernetes v1.37.2") {
		t.Errorf("kubeforge version: exit %d\n%s", code, out)
	}
	// `make build` (KUBEFORGE_BINARY in make test) stamps hack/patches' IDs
	// in; a plain `go build` has none.
	if os.Getenv("KUBEFORGE_BINARY") != "" {
		out, _ := runBinary(t, "version", "-o", "json")
		var v map[string]string
		if err := json.Unmarshal([]byte(out), &v); err != nil || !strings.Contains(v["patches"], "etcd-") {
			t.Errorf("version -o json of a make build binary: patches %q (%v); want hack/patches' IDs\n%s", v["patches"], err, out)
		}
	}
	if out, code := runBinary(t, "certs", "renew", "nope", "--root-dir", t.TempDir()); code == 0 || !strings.HasPrefix(out, "error: ") {
		t.Errorf("a failing command: exit %d\n%s", code, out)
	}
	out, code := runBinary(t, "component", "etcd", "--version")
	if code != 0 || !strings.Contains(out, "etcd Version:") {
		t.Errorf("kubeforge component etcd --version: exit %d\n%s", code, out)
	}
	if os.Getenv("KUBEFORGE_BINARY") != "" && !strings.Contains(out, "patches to upstream code: etcd-") {
		t.Errorf("component etcd --version of a make build binary does not name its patches:\n%s", out)
	}
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, code := run(t, args...)
	if code != 0 {
		t.Fatalf("kubeforge %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// offline are the flags of an offline init against a temporary root.
func offline(root string, extra ...string) []string {
	// A loopback address: offline phases only (a live phase is refused under --root-dir).
	return append([]string{"--root-dir", root, "--advertise-address", "127.0.0.5", "--node-name", "n1"}, extra...)
}

var wantFiles = map[string]os.FileMode{
	"etc/kubernetes/pki/ca.crt": 0o644, "etc/kubernetes/pki/ca.key": 0o600,
	"etc/kubernetes/pki/apiserver.crt": 0o644, "etc/kubernetes/pki/apiserver.key": 0o600,
	"etc/kubernetes/pki/apiserver-kubelet-client.crt": 0o644, "etc/kubernetes/pki/apiserver-kubelet-client.key": 0o600,
	"etc/kubernetes/pki/kubelet-serving-ca.crt": 0o644, "etc/kubernetes/pki/kubelet-serving-ca.key": 0o600,
	"etc/kubernetes/pki/front-proxy-ca.crt": 0o644, "etc/kubernetes/pki/front-proxy-ca.key": 0o600,
	"etc/kubernetes/pki/front-proxy-client.crt": 0o644, "etc/kubernetes/pki/front-proxy-client.key": 0o600,
	"etc/kubernetes/pki/etcd/ca.crt": 0o644, "etc/kubernetes/pki/etcd/ca.key": 0o600,
	"etc/kubernetes/pki/etcd/server.crt": 0o644, "etc/kubernetes/pki/etcd/server.key": 0o600,
	"etc/kubernetes/pki/etcd/peer.crt": 0o644, "etc/kubernetes/pki/etcd/peer.key": 0o600,
	"etc/kubernetes/pki/etcd/healthcheck-client.crt": 0o644, "etc/kubernetes/pki/etcd/healthcheck-client.key": 0o600,
	"etc/kubernetes/pki/apiserver-etcd-client.crt": 0o644, "etc/kubernetes/pki/apiserver-etcd-client.key": 0o600,
	"etc/kubernetes/pki/sa.key": 0o600, "etc/kubernetes/pki/sa.pub": 0o644,
	"etc/kubernetes/pki/encryption-config.yaml":             0o600,
	"etc/kubernetes/admin.conf":                             0o600,
	"etc/kubernetes/super-admin.conf":                       0o600,
	"etc/kubernetes/kubelet.conf":                           0o600,
	"etc/kubernetes/controller-manager.conf":                0o600,
	"etc/kubernetes/scheduler.conf":                         0o600,
	"etc/kubernetes/manifests/etcd.yaml":                    0o600,
	"etc/kubernetes/manifests/kube-apiserver.yaml":          0o600,
	"etc/kubernetes/manifests/kube-controller-manager.yaml": 0o600,
	"etc/kubernetes/manifests/kube-scheduler.yaml":          0o600,
	"etc/kubernetes/apiserver/authentication-config.yaml":   0o600,
	"etc/kubernetes/apiserver/audit-policy.yaml":            0o600,
	"etc/kubernetes/apiserver/admission-config.yaml":        0o600,
	"var/lib/kubelet/config.yaml":                           0o600,
	"var/lib/kubelet/kubeadm-flags.env":                     0o600,
	"var/lib/kubeforge/node.json":                           0o600,
	"etc/cni/net.d/10-kubeforge.conflist":                   0o600,
}

// offlinePhases are run one by one, as a user would with `init phase`.
var offlinePhases = [][]string{
	{"certs", "all"}, {"kubeconfig", "all"}, {"etcd", "local"}, {"control-plane", "all"}, {"pod-network"}, {"kubelet-config"},
}

type fileState struct {
	data  []byte
	mtime time.Time
}

func snapshot(t *testing.T, root string) map[string]fileState {
	t.Helper()
	s := map[string]fileState{}
	filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			s[p] = fileState{b, info.ModTime()}
		}
		return nil
	})
	return s
}

func TestInitPhasesProduceEveryFileIdempotently(t *testing.T) {
	root := t.TempDir()
	for _, ph := range offlinePhases {
		mustRun(t, append(append([]string{"init", "phase"}, ph...), offline(root)...)...)
	}
	for rel, mode := range wantFiles {
		st, err := os.Stat(filepath.Join(root, rel))
		if err != nil {
			t.Errorf("missing %s", rel)
			continue
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s has mode %04o, want %04o", rel, st.Mode().Perm(), mode)
		}
	}
	verifyCerts(t, filepath.Join(root, "etc/kubernetes/pki"))
	// The scheduler's configuration, named by its content's hash.
	if m, _ := filepath.Glob(filepath.Join(root, "etc/kubernetes/scheduler/config-*.yaml")); len(m) != 1 {
		t.Errorf("scheduler configuration files: %v, want one", m)
	} else if st, err := os.Stat(m[0]); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("%s: %v %v, want mode 0600", m[0], st, err)
	}

	before := snapshot(t, root)
	time.Sleep(20 * time.Millisecond)
	var outputs strings.Builder
	for _, ph := range offlinePhases {
		outputs.WriteString(mustRun(t, append(append([]string{"init", "phase"}, ph...), offline(root)...)...))
	}
	after := snapshot(t, root)
	if len(before) != len(after) {
		t.Fatalf("second run changed the file set: %d → %d files", len(before), len(after))
	}
	for p, b := range before {
		a := after[p]
		if !bytes.Equal(a.data, b.data) || !a.mtime.Equal(b.mtime) {
			t.Errorf("second run changed %s", p)
		}
	}
	if strings.Contains(outputs.String(), "Generated") || strings.Contains(outputs.String(), "Wrote") ||
		!strings.Contains(outputs.String(), "Using existing") {
		t.Errorf("second run should only reuse:\n%s", outputs.String())
	}
}

func TestInitWithSkipPhases(t *testing.T) {
	root := t.TempDir()
	skip := "preflight,kubelet-start,wait-control-plane,upload-config,upload-certs,mark-control-plane,bootstrap-token,kubelet-finalize,addon,show-join-command"
	out := mustRun(t, append([]string{"init", "--skip-phases", skip}, offline(root)...)...)
	for rel := range wantFiles {
		if _, err := os.Stat(filepath.Join(root, rel)); err != nil {
			t.Errorf("missing %s", rel)
		}
	}
	// Every action line carries its duration.
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(line, "[certs] Generated") && !strings.HasSuffix(line, "s)") {
			t.Errorf("no duration: %q", line)
		}
	}
	// --output json: one event per line, with the phase.
	root2 := t.TempDir()
	out = mustRun(t, append([]string{"init", "--skip-phases", skip, "-o", "json"}, offline(root2)...)...)
	phases := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var e struct {
			Phase, Action, Message string
			Seconds                float64
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("not a JSON line: %q", sc.Text())
		}
		phases[strings.SplitN(e.Phase, "/", 2)[0]] = true
	}
	for _, p := range []string{"certs", "kubeconfig", "etcd", "control-plane", "pod-network", "kubelet-config"} {
		if !phases[p] {
			t.Errorf("no JSON events for phase %s", p)
		}
	}
}

func verifyCerts(t *testing.T, dir string) {
	t.Helper()
	load := func(name string) *x509.Certificate {
		b, err := os.ReadFile(filepath.Join(dir, name+".crt"))
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tc := range []struct {
		name, ca, cn string
		usage        x509.ExtKeyUsage
		sans         []string
	}{
		{"apiserver", "ca", "kube-apiserver", x509.ExtKeyUsageServerAuth,
			[]string{"n1", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "10.96.0.1", "127.0.0.5"}},
		{"apiserver-kubelet-client", "ca", "kube-apiserver-kubelet-client", x509.ExtKeyUsageClientAuth, nil},
		{"front-proxy-client", "front-proxy-ca", "front-proxy-client", x509.ExtKeyUsageClientAuth, nil},
		{"etcd/server", "etcd/ca", "n1", x509.ExtKeyUsageServerAuth, []string{"n1", "localhost", "127.0.0.1", "::1", "127.0.0.5"}},
		{"etcd/peer", "etcd/ca", "n1", x509.ExtKeyUsageClientAuth, []string{"n1", "localhost", "127.0.0.1", "::1", "127.0.0.5"}},
		{"etcd/healthcheck-client", "etcd/ca", "kube-etcd-healthcheck-client", x509.ExtKeyUsageClientAuth, nil},
		{"apiserver-etcd-client", "etcd/ca", "kube-apiserver-etcd-client", x509.ExtKeyUsageClientAuth, nil},
	} {
		c, ca := load(tc.name), load(tc.ca)
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{tc.usage}}); err != nil {
			t.Errorf("%s does not verify against %s: %v", tc.name, tc.ca, err)
		}
		if c.Subject.CommonName != tc.cn {
			t.Errorf("%s CN %q, want %q", tc.name, c.Subject.CommonName, tc.cn)
		}
		have := map[string]bool{}
		for _, d := range c.DNSNames {
			have[d] = true
		}
		for _, ip := range c.IPAddresses {
			have[ip.String()] = true
		}
		for _, s := range tc.sans {
			if !have[s] {
				t.Errorf("%s lacks SAN %s (has %v %v)", tc.name, s, c.DNSNames, c.IPAddresses)
			}
		}
	}
	ca := load("ca")
	if !ca.IsCA || ca.NotAfter.Sub(ca.NotBefore) < 9*365*24*time.Hour {
		t.Errorf("ca: IsCA %v, validity %v", ca.IsCA, ca.NotAfter.Sub(ca.NotBefore))
	}
	if d := load("apiserver").NotAfter.Sub(time.Now()); d < 364*24*time.Hour || d > 366*24*time.Hour {
		t.Errorf("apiserver validity %v, want a year", d)
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	watched := []string{"/etc/kubernetes", "/var/lib/kubelet", "/var/lib/etcd", "/var/lib/kubeforge", "/run/kubeforge", "/etc/cni/net.d/10-kubeforge.conflist"}
	before := map[string]bool{}
	for _, p := range watched {
		_, err := os.Stat(p)
		before[p] = err == nil
	}
	out := mustRun(t, "init", "--dry-run", "--advertise-address", "127.0.0.1", "--node-name", "n1")
	for _, p := range watched {
		if _, err := os.Stat(p); (err == nil) != before[p] {
			t.Errorf("dry run changed %s", p)
		}
	}
	for _, want := range []string{"[preflight]", "[certs]", "[kubeconfig]", "[etcd]", "[control-plane]", "[pod-network]", "[kubelet-config]",
		"[kubelet-start]", "[wait-control-plane]", "[upload-config]", "[mark-control-plane]", "[bootstrap-token]",
		"/etc/kubernetes/manifests/kube-apiserver.yaml", "/etc/kubernetes/manifests/etcd.yaml", "/etc/kubernetes/admin.conf",
		"/var/lib/kubelet/config.yaml", `"apiserver"`, "not after", "(mode 0600)", "- --advertise-address=127.0.0.1",
		"Would apply ConfigMap kube-system/kubeadm-config", "kubeforge join"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry-run output lacks %q", want)
		}
	}
	if strings.Contains(out, "BEGIN RSA PRIVATE KEY") || strings.Contains(out, "BEGIN EC PRIVATE KEY") || strings.Contains(out, "client-key-data") {
		t.Error("dry run printed a private key")
	}
}

func TestBadInputWritesNothing(t *testing.T) {
	badConfig := filepath.Join(t.TempDir(), "kubeadm.yaml")
	os.WriteFile(badConfig, []byte("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nnetworking:\n  podSubnet: 10.244.0.0/33\n"), 0o600)
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"bad config", []string{"init", "--config", badConfig}, []string{badConfig, "networking.podSubnet", "10.244.0.0/33"}},
		{"bad flag", []string{"init", "--pod-network-cidr", "10.244.0.0/33"}, []string{"--pod-network-cidr", "10.244.0.0/33"}},
		{"bad address", []string{"init", "--advertise-address", "10.0.0.300"}, []string{"--advertise-address", "10.0.0.300"}},
		{"unknown skip", []string{"init", "--skip-phases", "certs/nope"}, []string{"certs/nope"}},
		{"bad output", []string{"init", "phase", "certs", "all", "-o", "yaml"}, []string{"--output"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			args := append(tc.args, "--root-dir", root, "--node-name", "n1")
			if !strings.Contains(strings.Join(args, " "), "--advertise-address") {
				args = append(args, "--advertise-address", "127.0.0.5")
			}
			out, code := run(t, args...)
			if code == 0 {
				t.Fatalf("accepted:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("message lacks %q:\n%s", w, out)
				}
			}
			if n := len(snapshot(t, root)); n != 0 {
				t.Errorf("%d files written", n)
			}
		})
	}
}

// TestUpgradeRefusesAShortComponentTimeout: a wait too short to see a
// component restart would roll back a healthy upgrade; it is refused
// before upgrade reads or writes anything.
func TestUpgradeRefusesAShortComponentTimeout(t *testing.T) {
	for _, wf := range []string{"apply", "node"} {
		for _, v := range []string{"0s", "-1m", "5s"} {
			out, code := run(t, "upgrade", wf, "--component-timeout", v)
			if code == 0 || !strings.Contains(out, "--component-timeout "+strings.TrimSuffix(v, "0s")) || !strings.Contains(out, "at least 30s") {
				t.Errorf("upgrade %s --component-timeout %s: exit %d\n%s", wf, v, code, out)
			}
		}
		// A phase run on its own takes the flag too.
		if out, code := run(t, "upgrade", wf, "phase", "preflight", "--component-timeout", "1s"); code == 0 || !strings.Contains(out, "at least 30s") {
			t.Errorf("upgrade %s phase preflight --component-timeout 1s: exit %d\n%s", wf, code, out)
		}
	}
	// plan and diff replace nothing and have no such flag: not refused
	// for it (they fail here for want of a cluster, naming something else).
	for _, args := range [][]string{{"upgrade", "plan"}, {"upgrade", "diff"}} {
		if out, _ := run(t, args...); strings.Contains(out, "component-timeout") {
			t.Errorf("%v refused for a flag it does not have:\n%s", args, out)
		}
	}
}

func TestExternalCAMissingLeaf(t *testing.T) {
	// Make a CA, then drop its key: kubeforge must not sign, and must name
	// the first leaf it would need.
	src := t.TempDir()
	mustRun(t, append([]string{"init", "phase", "certs", "ca"}, offline(src)...)...)
	root := t.TempDir()
	pki := filepath.Join(root, "etc/kubernetes/pki")
	os.MkdirAll(pki, 0o700)
	b, _ := os.ReadFile(filepath.Join(src, "etc/kubernetes/pki/ca.crt"))
	os.WriteFile(filepath.Join(pki, "ca.crt"), b, 0o644)
	before := snapshot(t, root)
	out, code := run(t, append([]string{"init", "phase", "certs", "apiserver"}, offline(root)...)...)
	if code == 0 || !strings.Contains(out, "apiserver.crt") || !strings.Contains(out, "external") {
		t.Fatalf("want a refusal naming apiserver.crt and the external CA, got exit %d:\n%s", code, out)
	}
	if len(snapshot(t, root)) != len(before) {
		t.Error("files were written in external-CA mode")
	}
}

func TestHelpListsPhases(t *testing.T) {
	out := mustRun(t, "init", "--help")
	for _, p := range []string{"preflight", "certs", "/apiserver-etcd-client", "/sa", "kubeconfig", "/super-admin", "etcd", "/local",
		"control-plane", "/controller-manager", "pod-network", "kubelet-config", "kubelet-start", "wait-control-plane", "bootstrap-token", "show-join-command"} {
		if !strings.Contains(out, p) {
			t.Errorf("init --help lacks %s", p)
		}
	}
	out = mustRun(t, "init", "phase", "certs", "--help")
	if !strings.Contains(out, "etcd-server") || !strings.Contains(out, "all") {
		t.Errorf("certs phase help lacks its sub-phases:\n%s", out)
	}
}

func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh"} {
		if out := mustRun(t, "completion", shell); !strings.Contains(out, "kubeforge") || len(out) < 1000 {
			t.Errorf("completion %s: %.200s", shell, out)
		}
	}
	// Phase names complete after `init phase`.
	if out := mustRun(t, "__complete", "init", "phase", ""); !strings.Contains(out, "certs") || !strings.Contains(out, "kubelet-start") {
		t.Errorf("init phase completions: %s", out)
	}
}

func TestVersionAndConfig(t *testing.T) {
	if out := mustRun(t, "version"); !strings.Contains(out, "Kubernetes v1.37.2") ||
		!strings.Contains(out, "patched upstream code (") && !strings.Contains(out, "upstream code as released") {
		t.Errorf("version: %s", out)
	}
	// The field is there even without patches (TestBinaryMain checks
	// that a `make build` binary lists them).
	var v map[string]string
	if err := json.Unmarshal([]byte(mustRun(t, "version", "-o", "json")), &v); err != nil {
		t.Fatal(err)
	}
	if _, ok := v["patches"]; !ok {
		t.Errorf("version -o json has no patches field: %v", v)
	}
	defaults := mustRun(t, "config", "print", "init-defaults")
	f := filepath.Join(t.TempDir(), "defaults.yaml")
	os.WriteFile(f, []byte(defaults), 0o600)
	if out := mustRun(t, "config", "validate", "--config", f); !strings.Contains(out, "ok") {
		t.Errorf("validate: %s", out)
	}
	os.WriteFile(f, []byte(defaults+"\nbogusField: 1\n"), 0o600)
	if out, code := run(t, "config", "validate", "--config", f); code == 0 || !strings.Contains(out, "bogusField") {
		t.Errorf("validate accepted an unknown field: %s", out)
	}
}

func TestCertsCheckExpirationAndRenew(t *testing.T) {
	root := t.TempDir()
	mustRun(t, append([]string{"init", "phase", "certs", "all"}, offline(root)...)...)
	mustRun(t, append([]string{"init", "phase", "kubeconfig", "all"}, offline(root)...)...)
	out := mustRun(t, "certs", "check-expiration", "--root-dir", root)
	for _, w := range []string{"apiserver", "admin.conf", "etcd-ca", "CERTIFICATE AUTHORITY"} {
		if !strings.Contains(out, w) {
			t.Errorf("check-expiration lacks %s:\n%s", w, out)
		}
	}
	var report struct {
		Certificates []struct {
			Name         string `json:"name"`
			ResidualTime int64  `json:"residualTime"`
		} `json:"certificates"`
	}
	js := mustRun(t, "certs", "check-expiration", "--root-dir", root, "-o", "json")
	if err := json.Unmarshal([]byte(js), &report); err != nil || len(report.Certificates) < 8 {
		t.Fatalf("json: %v\n%s", err, js)
	}
	crt := filepath.Join(root, "etc/kubernetes/pki/apiserver.crt")
	old, _ := os.ReadFile(crt)
	mustRun(t, "certs", "renew", "apiserver", "--root-dir", root)
	renewed, _ := os.ReadFile(crt)
	if bytes.Equal(old, renewed) {
		t.Error("renew did not change apiserver.crt")
	}
	verifyCerts(t, filepath.Join(root, "etc/kubernetes/pki"))
	if out, code := run(t, "certs", "renew", "nope", "--root-dir", root); code == 0 || !strings.Contains(out, "apiserver") {
		t.Errorf("unknown name accepted: %s", out)
	}
}

func TestKubeconfigUserAndRenewalReport(t *testing.T) {
	root := t.TempDir()
	mustRun(t, append([]string{"init", "phase", "certs", "all"}, offline(root)...)...)
	mustRun(t, append([]string{"init", "phase", "kubeconfig", "all"}, offline(root)...)...)
	out := mustRun(t, "kubeconfig", "user", "--client-name", "alice", "--org", "devs", "--validity-period", "2h", "--root-dir", root)
	for _, w := range []string{"alice@kubernetes", "client-certificate-data", "server: https://127.0.0.5:6443"} {
		if !strings.Contains(out, w) {
			t.Errorf("kubeconfig user lacks %s:\n%s", w, out)
		}
	}
	if out, code := run(t, "kubeconfig", "user", "--root-dir", root); code == 0 || !strings.Contains(out, "client-name") {
		t.Errorf("no --client-name accepted: %s", out)
	}
	// Not a control-plane node (no manifests): renewal is reported off.
	out = mustRun(t, "certs", "check-expiration", "--root-dir", root)
	for _, w := range []string{"Automatic renewal: off (not a control-plane node)", "never automatically (CA)", "kubeforge certs renew admin.conf"} {
		if !strings.Contains(out, w) {
			t.Errorf("check-expiration lacks %q:\n%s", w, out)
		}
	}
}

func TestLivePhasesRefusedUnderRootDir(t *testing.T) {
	root := t.TempDir()
	for _, ph := range offlinePhases {
		mustRun(t, append(append([]string{"init", "phase"}, ph...), offline(root)...)...)
	}
	for _, ph := range [][]string{{"kubelet-start"}, {"wait-control-plane"}, {"upload-config", "all"}, {"bootstrap-token"}, {"addon", "all"}} {
		out, code := run(t, append(append([]string{"init", "phase"}, ph...), offline(root)...)...)
		if code == 0 || !strings.Contains(out, "needs the real host") {
			t.Errorf("%v under --root-dir: exit %d, want a refusal:\n%s", ph, code, out)
		}
	}
}
