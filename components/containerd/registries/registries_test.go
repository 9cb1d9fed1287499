package registries

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	hostsconfig "github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/pelletier/go-toml/v2"
)

// writePKI writes a CA certificate and a client certificate with its key
// under dir and returns their paths.
func writePKI(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(k)
	ca, cert, key = filepath.Join(dir, "ca.crt"), filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	for path, b := range map[string][]byte{
		ca: certPEM, cert: certPEM,
		key: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
	} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return ca, cert, key
}

func TestParse(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := writePKI(t, dir)
	notPEM := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		yaml string
		// wantErr: substrings of the error, all of them; none means valid.
		wantErr []string
	}{
		{name: "empty file", yaml: ""},
		{name: "mirror of docker.io", yaml: `
mirrors:
  docker.io:
    endpoint: ["https://mirror.example.com:5000", "http://10.0.0.5:5000/v2"]
`},
		{name: "everything", yaml: `
mirrors:
  "*":
    endpoint: ["https://cache.example.com"]
  registry.example.com:5000:
    endpoint: ["http://registry.example.com:5000"]
configs:
  cache.example.com:
    auth: {username: u, password: p}
    tls: {ca_file: ` + ca + `, cert_file: ` + cert + `, key_file: ` + key + `}
  token.example.com:
    auth: {identity_token: abc}
  base64.example.com:
    auth: {auth: dTpw}
  "[fd00::1]:5000":
    tls: {insecure_skip_verify: true}
`},
		{name: "unknown top-level field", yaml: "mirror:\n  docker.io: {}\n",
			wantErr: []string{"registries.yaml", `unknown field "mirror"`, "mirrors and configs"}},
		{name: "unknown auth field", yaml: "configs:\n  r.io:\n    auth: {user: u}\n",
			wantErr: []string{`unknown field "configs.r.io.auth.user"`}},
		{name: "wrong type", yaml: "mirrors:\n  docker.io:\n    endpoint: https://x\n",
			wantErr: []string{"registries.yaml", "endpoint"}},
		{name: "mirror key with scheme", yaml: "mirrors:\n  https://docker.io: {}\n",
			wantErr: []string{`mirrors["https://docker.io"]`, "has a scheme", "fix:"}},
		{name: "mirror key with path", yaml: "mirrors:\n  docker.io/library: {}\n",
			wantErr: []string{`mirrors["docker.io/library"]`, "not a host[:port]"}},
		{name: "reserved mirror", yaml: "mirrors:\n  kubeforge.local:\n    endpoint: [\"https://x\"]\n",
			wantErr: []string{`mirrors["kubeforge.local"]`, "never pulled"}},
		{name: "reserved config", yaml: "configs:\n  kubeforge.local:\n    tls: {insecure_skip_verify: true}\n",
			wantErr: []string{`configs["kubeforge.local"]`}},
		{name: "rewrite", yaml: "mirrors:\n  docker.io:\n    rewrite: {\"^a\": b}\n",
			wantErr: []string{`mirrors["docker.io"].rewrite`, "not supported"}},
		{name: "endpoint without scheme", yaml: "mirrors:\n  docker.io:\n    endpoint: [mirror:5000]\n",
			wantErr: []string{`mirrors["docker.io"].endpoint[0]`, "http or https", "fix: write scheme://host"}},
		{name: "endpoint ftp", yaml: "mirrors:\n  docker.io:\n    endpoint: [\"ftp://m\"]\n",
			wantErr: []string{"endpoint[0]", "http or https"}},
		{name: "endpoint with path", yaml: "mirrors:\n  docker.io:\n    endpoint: [\"https://m/prefix\"]\n",
			wantErr: []string{"endpoint[0]", "has a path"}},
		{name: "endpoint with credentials", yaml: "mirrors:\n  docker.io:\n    endpoint: [\"https://u:p@m\"]\n",
			wantErr: []string{"endpoint[0]", "credentials", `configs["m"].auth`}},
		{name: "endpoint twice", yaml: "mirrors:\n  docker.io:\n    endpoint: [\"https://m\", \"https://m/\"]\n",
			wantErr: []string{"endpoint[1]", "twice"}},
		{name: "config key with scheme", yaml: "configs:\n  https://r.io:\n    auth: {username: u, password: p}\n",
			wantErr: []string{`configs["https://r.io"]`, "has a scheme", "without scheme"}},
		{name: "config wildcard", yaml: "configs:\n  \"*\":\n    auth: {username: u, password: p}\n",
			wantErr: []string{`configs["*"]`, "not a host[:port]"}},
		{name: "username without password", yaml: "configs:\n  r.io:\n    auth: {username: u}\n",
			wantErr: []string{`configs["r.io"].auth`, "username and password go together"}},
		{name: "no credentials", yaml: "configs:\n  r.io:\n    auth: {}\n",
			wantErr: []string{`configs["r.io"].auth`, "no credentials"}},
		{name: "two kinds of credentials", yaml: "configs:\n  r.io:\n    auth: {username: u, password: p, identity_token: t}\n",
			wantErr: []string{"more than one kind"}},
		{name: "bad base64 auth", yaml: "configs:\n  r.io:\n    auth: {auth: \"!!\"}\n",
			wantErr: []string{`configs["r.io"].auth.auth`, "base64"}},
		{name: "missing CA file", yaml: "configs:\n  r.io:\n    tls: {ca_file: /nonexistent/ca.crt}\n",
			wantErr: []string{`configs["r.io"].tls.ca_file`, "/nonexistent/ca.crt", "no such file", "fix: point ca_file"}},
		{name: "CA file without certificate", yaml: "configs:\n  r.io:\n    tls: {ca_file: " + notPEM + "}\n",
			wantErr: []string{"tls.ca_file", "no PEM certificate"}},
		{name: "relative CA file", yaml: "configs:\n  r.io:\n    tls: {ca_file: ca.crt}\n",
			wantErr: []string{"tls.ca_file", "relative"}},
		{name: "cert without key", yaml: "configs:\n  r.io:\n    tls: {cert_file: " + cert + "}\n",
			wantErr: []string{`configs["r.io"].tls`, "cert_file and key_file go together"}},
		{name: "cert with wrong key", yaml: "configs:\n  r.io:\n    tls: {cert_file: " + cert + ", key_file: " + ca + "}\n",
			wantErr: []string{"tls.cert_file", "private key"}},
		{name: "several errors at once", yaml: "mirrors:\n  docker.io:\n    endpoint: [x]\nconfigs:\n  r.io:\n    auth: {}\n",
			wantErr: []string{"endpoint[0]", "no credentials"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("/etc/kubeforge/registries.yaml", []byte(tc.yaml), nil)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if c == nil {
					t.Fatal("Parse returned no config")
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse accepted:\n%s", tc.yaml)
			}
			for _, w := range append(tc.wantErr, "/etc/kubeforge/registries.yaml") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	c, err := Load(DefaultFile, filepath.Join(t.TempDir(), "registries.yaml"), nil)
	if c != nil || err != nil {
		t.Fatalf("Load of a missing file = %v, %v; want no configuration", c, err)
	}
}

// resolve reads the rendered tree the way containerd's CRI does and
// returns the hosts tried for a registry, in order.
func resolve(t *testing.T, root, registry string) []docker.RegistryHost {
	t.Helper()
	hosts, err := hostsconfig.ConfigureHosts(context.Background(), hostsconfig.HostOptions{
		HostDir: hostsconfig.HostDirFromRoot(root),
	})(registry)
	if err != nil {
		t.Fatalf("containerd cannot read the hosts of %s: %v", registry, err)
	}
	return hosts
}

func writeTree(t *testing.T, r Rendered) string {
	t.Helper()
	root := t.TempDir()
	for _, f := range r.Hosts {
		var doc map[string]any
		if err := toml.Unmarshal(f.Data, &doc); err != nil {
			t.Fatalf("%s/hosts.toml is not TOML: %v\n%s", f.Dir, err, f.Data)
		}
		if err := os.MkdirAll(filepath.Join(root, f.Dir), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, f.Dir, "hosts.toml"), f.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

type hostWant struct {
	url  string // scheme://host/path
	pull bool
	push bool
	ca   bool // a custom root CA pool
	skip bool // InsecureSkipVerify
	cert bool // a client certificate
}

func describe(h docker.RegistryHost) hostWant {
	w := hostWant{url: h.Scheme + "://" + h.Host + h.Path,
		pull: h.Capabilities.Has(docker.HostCapabilityPull), push: h.Capabilities.Has(docker.HostCapabilityPush)}
	if tr, ok := h.Client.Transport.(*http.Transport); ok && tr.TLSClientConfig != nil {
		w.ca = tr.TLSClientConfig.RootCAs != nil
		w.skip = tr.TLSClientConfig.InsecureSkipVerify
		w.cert = len(tr.TLSClientConfig.Certificates) > 0
	}
	return w
}

func TestRender(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := writePKI(t, dir)
	cfgYAML := `
mirrors:
  docker.io:
    endpoint: ["https://mirror.example.com:5000", "http://cache.local:8080"]
  registry.example.com:5000:
    endpoint: ["http://registry.example.com:5000"]
  "*":
    endpoint: ["https://pull-through.example.com"]
configs:
  mirror.example.com:5000:
    auth: {username: user, password: "p\"w"}
    tls: {ca_file: ` + ca + `}
  private.example.com:
    auth: {identity_token: tok}
    tls: {ca_file: ` + ca + `, cert_file: ` + cert + `, key_file: ` + key + `}
  selfsigned.example.com:
    tls: {insecure_skip_verify: true}
`
	c, err := Parse("registries.yaml", []byte(cfgYAML), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := Render(c, false, "/etc/kubeforge/registries.yaml")
	var dirs []string
	for _, f := range r.Hosts {
		dirs = append(dirs, f.Dir)
	}
	if got, want := strings.Join(dirs, " "), "_default docker.io kubeforge.local mirror.example.com:5000 private.example.com registry.example.com:5000 selfsigned.example.com"; got != want {
		t.Errorf("host dirs %q, want %q", got, want)
	}
	root := writeTree(t, r)
	cases := []struct {
		registry string
		want     []hostWant
	}{
		// A mirror first, then the next, then the registry itself.
		{"docker.io", []hostWant{
			{url: "https://mirror.example.com:5000/v2", pull: true, ca: true},
			{url: "http://cache.local:8080/v2", pull: true},
			{url: "https://registry-1.docker.io/v2", pull: true, push: true},
		}},
		// Plain HTTP for this named host only.
		{"registry.example.com:5000", []hostWant{{url: "http://registry.example.com:5000/v2", pull: true, push: true}}},
		// A custom CA and a client certificate, no mirror.
		{"private.example.com", []hostWant{{url: "https://private.example.com/v2", pull: true, push: true, ca: true, cert: true}}},
		{"selfsigned.example.com", []hostWant{{url: "https://selfsigned.example.com/v2", pull: true, push: true, skip: true}}},
		// The mirror pulled from directly trusts its CA too.
		{"mirror.example.com:5000", []hostWant{{url: "https://mirror.example.com:5000/v2", pull: true, push: true, ca: true}}},
		// Every other registry: the wildcard mirror, then itself over HTTPS.
		{"quay.io", []hostWant{
			{url: "https://pull-through.example.com/v2", pull: true},
			{url: "https://quay.io/v2", pull: true, push: true},
		}},
		// Never pulled.
		{"kubeforge.local", []hostWant{{url: "http://127.0.0.1:1/v2", pull: true, push: true}}},
	}
	for _, tc := range cases {
		hosts := resolve(t, root, tc.registry)
		var got []hostWant
		for _, h := range hosts {
			got = append(got, describe(h))
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s: hosts %+v, want %+v", tc.registry, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%s: host %d is %+v, want %+v", tc.registry, i, got[i], tc.want[i])
			}
		}
	}

	// Credentials go to the CRI config, keyed by host.
	if len(r.Auth) != 2 || r.Auth["mirror.example.com:5000"].Password != `p"w` || r.Auth["private.example.com"].IdentityToken != "tok" {
		t.Errorf("auth %+v", r.Auth)
	}
	auth := r.AuthTOML(`plugins."io.containerd.cri.v1.images"`)
	var doc map[string]any
	if err := toml.Unmarshal([]byte(auth), &doc); err != nil {
		t.Fatalf("auth tables are not TOML: %v\n%s", err, auth)
	}
	got := doc["plugins"].(map[string]any)["io.containerd.cri.v1.images"].(map[string]any)["registry"].(map[string]any)["configs"].(map[string]any)
	if a := got["mirror.example.com:5000"].(map[string]any)["auth"].(map[string]any); a["username"] != "user" || a["password"] != `p"w` {
		t.Errorf("mirror auth %v", a)
	}
	if a := got["private.example.com"].(map[string]any)["auth"].(map[string]any); a["identitytoken"] != "tok" {
		t.Errorf("private auth %v", a)
	}
	// No secret in the hosts tree.
	for _, f := range r.Hosts {
		if strings.Contains(string(f.Data), "tok") || strings.Contains(string(f.Data), `p\"w`) {
			t.Errorf("%s/hosts.toml holds a secret:\n%s", f.Dir, f.Data)
		}
	}
}

func TestRenderAirGapped(t *testing.T) {
	c, err := Parse("registries.yaml", []byte("mirrors:\n  docker.io:\n    endpoint: [\"https://m\"]\nconfigs:\n  m:\n    auth: {username: u, password: p}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []*Config{nil, c} {
		r := Render(cfg, true, DefaultFile)
		if len(r.Auth) != 0 || len(r.Hosts) != 2 {
			t.Fatalf("air-gapped render %+v", r)
		}
		root := writeTree(t, r)
		for _, reg := range []string{"docker.io", "quay.io", "m", "kubeforge.local", "10.1.2.3:5000"} {
			hosts := resolve(t, root, reg)
			if len(hosts) != 1 || hosts[0].Host != "127.0.0.1:1" || hosts[0].Scheme != "http" {
				t.Errorf("air-gapped: %s resolves to %+v, want only %s", reg, hosts, Blackhole)
			}
		}
	}
}

func TestRenderDefault(t *testing.T) {
	// No file: only kubeforge.local is blocked, everything else is pulled
	// from the registry itself.
	r := Render(nil, false, DefaultFile)
	if len(r.Hosts) != 1 || r.Hosts[0].Dir != Reserved {
		t.Fatalf("default render %+v", r)
	}
	root := writeTree(t, r)
	if h := resolve(t, root, "docker.io"); len(h) != 1 || h[0].Host != "registry-1.docker.io" || h[0].Scheme != "https" {
		t.Errorf("docker.io resolves to %+v", h)
	}
	if h := resolve(t, root, "kubeforge.local"); len(h) != 1 || h[0].Host != "127.0.0.1:1" {
		t.Errorf("kubeforge.local resolves to %+v", h)
	}
}
