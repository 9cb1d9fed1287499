// Package registries reads a node's registry configuration, k3s's
// registries.yaml format (mirrors, and per-registry auth and tls), and
// renders it into what the bundled containerd reads: a hosts.toml tree
// (the CRI's registry config_path) and the CRI's per-registry credentials.
//
// The package is light (YAML and crypto only), so the CLI can check a file
// before it stops a running node service.
package registries

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"

	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// DefaultFile is where a node's registry configuration lives (k3s keeps
// the same file at /etc/rancher/k3s/registries.yaml).
const DefaultFile = "/etc/kubeforge/registries.yaml"

// Wildcard is the mirror key that applies to every registry without a
// section of its own (containerd's _default host directory).
const Wildcard = "*"

// Reserved is the registry that never serves kubeforge's own images: the
// self-image and the pause image are written locally on every node.
const Reserved = "kubeforge.local"

// Config is the content of registries.yaml.
type Config struct {
	// Mirrors maps a registry (host[:port] as written in image names, or
	// "*") to the endpoints tried before it.
	Mirrors map[string]Mirror `json:"mirrors,omitempty"`
	// Configs maps a registry host[:port] (an upstream or a mirror
	// endpoint's host) to its credentials and TLS settings.
	Configs map[string]RegistryConfig `json:"configs,omitempty"`
}

// Mirror lists the endpoints of one registry, in order. The registry itself
// is tried last, unless one endpoint is the registry's own host (then that
// endpoint, with its scheme, is the registry: "http://host:5000" makes that
// registry plain HTTP).
type Mirror struct {
	Endpoints []string `json:"endpoint,omitempty"`
	// Rewrite is k3s's repository rewriting; containerd's hosts.toml has
	// no equivalent, so it is refused.
	Rewrite map[string]string `json:"rewrite,omitempty"`
}

// RegistryConfig is one registry host's credentials and TLS settings.
type RegistryConfig struct {
	Auth *Auth `json:"auth,omitempty"`
	TLS  *TLS  `json:"tls,omitempty"`
}

// Auth is one registry's credentials: username and password, or auth
// (base64 of "username:password"), or identity_token (a registry refresh
// token, as `docker login` stores for token-based registries).
type Auth struct {
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	Auth          string `json:"auth,omitempty"`
	IdentityToken string `json:"identity_token,omitempty"`
}

// TLS is one registry's TLS settings: a CA bundle to trust, a client
// certificate, or no verification at all.
type TLS struct {
	CAFile             string `json:"ca_file,omitempty"`
	CertFile           string `json:"cert_file,omitempty"`
	KeyFile            string `json:"key_file,omitempty"`
	InsecureSkipVerify bool   `json:"insecure_skip_verify,omitempty"`
}

// Load reads and checks the registry configuration in path (a logical path
// for messages; open is the path to read, usually the same or the logical
// path under a test root). A missing file is no configuration: (nil, nil).
// Files named in it (ca_file, cert_file, key_file) are read through hostPath.
func Load(path, open string, hostPath func(string) string) (*Config, error) {
	data, err := os.ReadFile(open)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the registry configuration %s: %w", path, err)
	}
	return Parse(path, data, hostPath)
}

// Parse decodes registries.yaml content strictly and checks every field;
// errors name the file, the field and the fix. hostPath maps a path named
// in the file to the one to open (nil: the same).
func Parse(path string, data []byte, hostPath func(string) string) (*Config, error) {
	if hostPath == nil {
		hostPath = func(s string) string { return s }
	}
	var c Config
	if err := decodeStrict(data, &c); err != nil {
		return nil, fmt.Errorf("%s: %v (the file is k3s's registries.yaml format: top-level mirrors and configs only)", path, err)
	}
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %s", path, field, fmt.Sprintf(format, args...)))
	}
	for _, name := range slices.Sorted(maps.Keys(c.Mirrors)) {
		m := c.Mirrors[name]
		field := fmt.Sprintf("mirrors[%q]", name)
		if name != Wildcard {
			if err := checkHost(name); err != nil {
				add(field, "%v; fix: key the mirror by the registry's host[:port] as image names spell it (docker.io, registry.example.com:5000) or \"*\" for every registry", err)
				continue
			}
		}
		if name == Reserved {
			add(field, "%s holds kubeforge's own images, which are never pulled; fix: remove this mirror", Reserved)
			continue
		}
		if len(m.Rewrite) > 0 {
			add(field+".rewrite", "repository rewrites are not supported by containerd's registry hosts; fix: remove rewrite and push the images under the same repository names to the mirror")
		}
		seen := map[string]bool{}
		for i, e := range m.Endpoints {
			ef := fmt.Sprintf("%s.endpoint[%d]", field, i)
			u, err := parseEndpoint(e)
			if err != nil {
				add(ef, "%v", err)
				continue
			}
			if seen[u.String()] {
				add(ef, "%q is listed twice; fix: list each endpoint once", e)
			}
			seen[u.String()] = true
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Configs)) {
		rc := c.Configs[name]
		field := fmt.Sprintf("configs[%q]", name)
		if err := checkHost(name); err != nil {
			add(field, "%v; fix: key configs by the registry's or mirror's host[:port], without scheme or path", err)
			continue
		}
		if name == Reserved {
			add(field, "%s holds kubeforge's own images, which are never pulled; fix: remove this entry", Reserved)
			continue
		}
		if a := rc.Auth; a != nil {
			checkAuth(field+".auth", *a, add)
		}
		if t := rc.TLS; t != nil {
			checkTLS(field+".tls", *t, hostPath, add)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &c, nil
}

func checkAuth(field string, a Auth, add func(string, string, ...any)) {
	kinds := 0
	if a.Username != "" || a.Password != "" {
		kinds++
		if a.Username == "" || a.Password == "" {
			add(field, "username and password go together; fix: set both (or use auth or identity_token instead)")
		}
	}
	if a.Auth != "" {
		kinds++
		b, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil || !strings.Contains(string(b), ":") {
			add(field+".auth", "not base64 of \"username:password\"; fix: set it to the output of `printf '%%s' user:password | base64 -w0`, or use username and password")
		}
	}
	if a.IdentityToken != "" {
		kinds++
	}
	switch {
	case kinds == 0:
		add(field, "no credentials; fix: set username and password, auth, or identity_token (or remove auth)")
	case kinds > 1:
		add(field, "more than one kind of credentials; fix: keep exactly one of username+password, auth and identity_token")
	}
}

func checkTLS(field string, t TLS, hostPath func(string) string, add func(string, string, ...any)) {
	if t.CAFile != "" {
		if err := checkCAFile(hostPath(t.CAFile)); err != nil {
			add(field+".ca_file", "%s: %v; fix: point ca_file at a PEM file holding the registry's CA certificate(s)", t.CAFile, err)
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		add(field, "cert_file and key_file go together; fix: set both for a client certificate, or neither")
	} else if t.CertFile != "" {
		if _, err := tls.LoadX509KeyPair(hostPath(t.CertFile), hostPath(t.KeyFile)); err != nil {
			add(field+".cert_file", "%s with key %s: %v; fix: give a PEM client certificate and its private key", t.CertFile, t.KeyFile, err)
		}
	}
	for _, f := range []struct{ name, path string }{{"ca_file", t.CAFile}, {"cert_file", t.CertFile}, {"key_file", t.KeyFile}} {
		if f.path != "" && !strings.HasPrefix(f.path, "/") {
			add(field+"."+f.name, "%q is relative; fix: give an absolute path (containerd reads it from its own working directory)", f.path)
		}
	}
}

// checkCAFile requires at least one certificate and nothing unparseable.
func checkCAFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	n := 0
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
			return fmt.Errorf("certificate %d: %w", n+1, err)
		}
		n++
	}
	if n == 0 {
		return errors.New("no PEM certificate in it")
	}
	return nil
}

// checkHost accepts host[:port] (a name, an IPv4 address, or a bracketed
// IPv6 address), nothing else.
func checkHost(s string) error {
	if s == "" {
		return errors.New("empty registry name")
	}
	if strings.Contains(s, "://") {
		return fmt.Errorf("%q has a scheme", s)
	}
	if strings.ContainsAny(s, "/?#@*, \t") {
		return fmt.Errorf("%q is not a host[:port]", s)
	}
	u, err := url.Parse("//" + s)
	if err != nil || u.Host != s || u.Hostname() == "" {
		return fmt.Errorf("%q is not a host[:port]", s)
	}
	return nil
}

// parseEndpoint checks a mirror endpoint: http or https, a host, no path
// beyond "/" or "/v2", no credentials or query.
func parseEndpoint(e string) (*url.URL, error) {
	fix := "fix: write scheme://host[:port], for example https://mirror.example.com:5000"
	u, err := url.Parse(e)
	if err != nil {
		return nil, fmt.Errorf("%q: %v; %s", e, err, fix)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%q: the scheme must be http or https; %s", e, fix)
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("%q has no host; %s", e, fix)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%q carries credentials; fix: drop them from the URL and set them under configs[%q].auth", e, u.Host)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%q has a query or fragment; %s", e, fix)
	}
	switch strings.TrimSuffix(u.Path, "/") {
	case "", "/v2":
	default:
		return nil, fmt.Errorf("%q has a path; %s (containerd adds /v2 itself)", e, fix)
	}
	if _, port, err := net.SplitHostPort(u.Host); err == nil && port == "" {
		return nil, fmt.Errorf("%q has an empty port; %s", e, fix)
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}

// decodeStrict decodes YAML into v, refusing unknown and duplicate fields
// and naming each by its path.
func decodeStrict(data []byte, v any) error {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return fmt.Errorf("not valid YAML: %w", err)
	}
	if len(strings.TrimSpace(string(js))) == 0 || string(js) == "null" {
		return nil
	}
	strict, err := kjson.UnmarshalStrict(js, v)
	if err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "json: "))
	}
	var errs []error
	for _, e := range strict {
		errs = append(errs, errors.New(strings.TrimPrefix(e.Error(), "json: ")))
	}
	return errors.Join(errs...)
}
