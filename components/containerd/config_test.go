package containerd

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	srvconfig "github.com/containerd/containerd/v2/cmd/containerd/server/config"
	"github.com/pelletier/go-toml/v2"

	"github.com/kubeforge/kubeforge/components/containerd/registries"
	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/version"
)

// lookup walks a decoded TOML document along keys.
func lookup(t *testing.T, doc map[string]any, keys ...string) any {
	t.Helper()
	var cur any = doc
	for i, k := range keys {
		m, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("%s: not a table", strings.Join(keys[:i], "."))
		}
		if cur, ok = m[k]; !ok {
			t.Fatalf("config has no %s", strings.Join(keys[:i+1], "."))
		}
	}
	return cur
}

func TestRenderConfig(t *testing.T) {
	p := config.DefaultPaths()
	o := Options{
		SandboxImage: "kubeforge.local/pause:v9",
		CNIBinDirs:   []string{"/usr/lib/cni", "/opt/cni/bin"},
		CNIConfDir:   "/etc/cni/net.d",
		ShimPath:     "/var/lib/kubeforge/bin/containerd-shim-runc-v2",
		Snapshotter:  "overlayfs",
	}
	b, err := RenderConfig(p, o)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := toml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("rendered config is not TOML: %v\n%s", err, b)
	}
	const (
		runtime = "io.containerd.cri.v1.runtime"
		images  = "io.containerd.cri.v1.images"
	)
	runc := []string{"plugins", runtime, "containerd", "runtimes", "runc"}
	checks := []struct {
		keys []string
		want any
	}{
		{[]string{"version"}, int64(4)},
		{[]string{"root"}, "/var/lib/kubeforge/containerd"},
		{[]string{"state"}, "/run/kubeforge/containerd"},
		{[]string{"plugins", "io.containerd.server.v1.grpc", "address"}, "/run/kubeforge/containerd/containerd.sock"},
		{[]string{"plugins", "io.containerd.server.v1.ttrpc", "address"}, "/run/kubeforge/containerd/containerd.sock.ttrpc"},
		{[]string{"plugins", images, "pinned_images", "sandbox"}, "kubeforge.local/pause:v9"},
		{[]string{"plugins", images, "snapshotter"}, "overlayfs"},
		{[]string{"plugins", images, "registry", "config_path"}, "/var/lib/kubeforge/containerd-hosts.d"},
		{[]string{"plugins", runtime, "restrict_oom_score_adj"}, true},
		{[]string{"plugins", runtime, "netns_mounts_under_state_dir"}, true},
		{[]string{"plugins", runtime, "containerd", "default_runtime_name"}, "runc"},
		{append(runc, "runtime_type"), "io.containerd.runc.v2"},
		{append(runc, "runtime_path"), "/var/lib/kubeforge/bin/containerd-shim-runc-v2"},
		{append(runc, "options", "SystemdCgroup"), false},
		{[]string{"plugins", runtime, "cni", "bin_dirs"}, []any{"/usr/lib/cni", "/opt/cni/bin"}},
		{[]string{"plugins", runtime, "cni", "conf_dir"}, "/etc/cni/net.d"},
		{[]string{"plugins", "io.containerd.grpc.v1.cri", "disable_tcp_service"}, true},
		{[]string{"plugins", "io.containerd.grpc.v1.cri", "stream_server_address"}, "127.0.0.1"},
		{[]string{"plugins", "io.containerd.shim.v1.manager", "socket_dir"}, "/run/kubeforge/containerd/s"},
		{[]string{"required_plugins"}, []any{"io.containerd.grpc.v1.cri"}},
	}
	for _, c := range checks {
		if got := lookup(t, doc, c.keys...); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s = %#v, want %#v", strings.Join(c.keys, "."), got, c.want)
		}
	}
	disabled := lookup(t, doc, "disabled_plugins").([]any)
	for _, want := range []string{"btrfs", "zfs", "devmapper", "aufs", "tracing", "nri"} {
		found := false
		for _, d := range disabled {
			found = found || strings.Contains(d.(string), want)
		}
		if !found {
			t.Errorf("disabled_plugins has no %s plugin: %v", want, disabled)
		}
	}
}

func TestRenderConfigErrors(t *testing.T) {
	p := config.DefaultPaths()
	good := Options{SandboxImage: "x/pause:1", ShimPath: "/shim"}
	if _, err := RenderConfig(p, good); err != nil {
		t.Fatalf("minimal options: %v", err)
	}
	for name, o := range map[string]Options{
		"no sandbox image": {ShimPath: "/shim"},
		"no shim":          {SandboxImage: "x/pause:1"},
		"bad snapshotter":  {SandboxImage: "x/pause:1", ShimPath: "/shim", Snapshotter: "btrfs"},
	} {
		if _, err := RenderConfig(p, o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// A state dir whose shim socket dir would pass containerd's 42-character
// limit falls back to containerd's default instead of failing to start.
func TestRenderConfigLongStateDir(t *testing.T) {
	p := config.DefaultPaths()
	p.RunDir = "/run/a-very-long-directory-name-for-kubeforge-tests"
	b, err := RenderConfig(p, Options{SandboxImage: "x/pause:1", ShimPath: "/shim"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "socket_dir") {
		t.Errorf("socket_dir set although longer than containerd allows:\n%s", b)
	}
}

// WriteConfig writes under the test root, containerd itself accepts the
// file, and a second run changes nothing.
func TestWriteConfig(t *testing.T) {
	root := t.TempDir()
	p := config.DefaultPaths().WithRoot(root)
	// The snapshotter is the overlay probe's answer about the node's
	// containerd root, under p's root (not made yet: its nearest
	// existing directory, the root itself).
	var asked []string
	o := defaultOptions(p, func(dir string) error {
		asked = append(asked, dir)
		return errors.New("overlay: not supported")
	})
	if o.SandboxImage != version.PauseImage() || o.ShimPath != "/var/lib/kubeforge/bin/"+ShimName ||
		!reflect.DeepEqual(o.CNIBinDirs, []string{"/usr/lib/cni", "/opt/cni/bin"}) || o.CNIConfDir != "/etc/cni/net.d" {
		t.Errorf("DefaultOptions = %+v", o)
	}
	if o.Snapshotter != SnapshotterNative || !slices.Equal(asked, []string{root}) {
		t.Errorf("DefaultOptions snapshotter %q after probing %q, want %q after probing [%s]", o.Snapshotter, asked, SnapshotterNative, root)
	}
	path, err := WriteConfig(p, o)
	if err != nil {
		t.Fatal(err)
	}
	if path != "/var/lib/kubeforge/containerd-config.toml" {
		t.Errorf("WriteConfig returned %s", path)
	}
	var cfg srvconfig.Config
	if err := srvconfig.LoadConfig(context.Background(), p.Host(path), &cfg); err != nil {
		t.Fatalf("containerd cannot load the config: %v", err)
	}
	if cfg.Version != 4 || cfg.Root != "/var/lib/kubeforge/containerd" || cfg.State != "/run/kubeforge/containerd" {
		t.Errorf("containerd read version %d root %s state %s", cfg.Version, cfg.Root, cfg.State)
	}
	for _, h := range []string{"kubeforge.local", "_default"} {
		b, err := os.ReadFile(filepath.Join(root, "var/lib/kubeforge/containerd-hosts.d", h, "hosts.toml"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), `server = "http://127.0.0.1:1"`) {
			t.Errorf("%s hosts.toml does not send pulls to the dead loopback port:\n%s", h, b)
		}
	}
	// Idempotent: same bytes, no rewrite.
	before, _ := os.Stat(p.Host(path))
	if _, err := WriteConfig(p, o); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(p.Host(path))
	if !after.ModTime().Equal(before.ModTime()) {
		t.Error("second WriteConfig rewrote an unchanged config")
	}
	// Pulls allowed: only kubeforge.local stays blocked.
	o.AllowRegistryPulls = true
	for _, h := range o.renderRegistries().Hosts {
		if h.Dir == "_default" {
			t.Errorf("AllowRegistryPulls still writes %s", h.Dir)
		}
	}
	if registries.Reserved != version.ImageRepository {
		t.Errorf("registries.Reserved %q is not the self-image's registry %q", registries.Reserved, version.ImageRepository)
	}
}

// TestWriteConfigRegistries: registries.yaml's credentials land in the CRI
// config that containerd loads (mode 0600), its hosts in the hosts tree,
// and a registry dropped from the file (or a switch to air-gapped) leaves
// no stale host directory behind.
func TestWriteConfigRegistries(t *testing.T) {
	root := t.TempDir()
	p := config.DefaultPaths().WithRoot(root)
	reg, err := registries.Parse("/etc/kubeforge/registries.yaml", []byte(`
mirrors:
  docker.io:
    endpoint: ["https://mirror.example.com:5000"]
configs:
  mirror.example.com:5000:
    auth: {username: user, password: secret}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	o := DefaultOptions(p)
	o.AllowRegistryPulls, o.Registries = true, reg
	path, err := WriteConfig(p, o)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(p.Host(path)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("config mode: %v %v, want 0600", st, err)
	}
	var cfg srvconfig.Config
	if err := srvconfig.LoadConfig(context.Background(), p.Host(path), &cfg); err != nil {
		t.Fatalf("containerd cannot load the config: %v", err)
	}
	b, _ := os.ReadFile(p.Host(path))
	var doc map[string]any
	if err := toml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	auth := lookup(t, doc, "plugins", "io.containerd.cri.v1.images", "registry", "configs", "mirror.example.com:5000", "auth").(map[string]any)
	if auth["username"] != "user" || auth["password"] != "secret" {
		t.Errorf("auth %v", auth)
	}
	if got := lookup(t, doc, "plugins", "io.containerd.cri.v1.images", "registry", "config_path"); got != RegistryHostsDir(p) {
		t.Errorf("config_path %v", got)
	}
	hosts := p.Host(RegistryHostsDir(p))
	if _, err := os.Stat(filepath.Join(hosts, "docker.io", "hosts.toml")); err != nil {
		t.Fatal(err)
	}
	// Air-gapped now: docker.io's mirror goes, _default blocks everything.
	o.AllowRegistryPulls = false
	if _, err := WriteConfig(p, o); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(hosts)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "_default kubeforge.local" {
		t.Errorf("air-gapped hosts tree %v, want _default kubeforge.local", names)
	}
	if b, _ := os.ReadFile(p.Host(path)); strings.Contains(string(b), "secret") {
		t.Error("an air-gapped node's config still holds registry credentials")
	}
}

func TestDetectSnapshotter(t *testing.T) {
	base := t.TempDir()
	var asked []string
	probe := func(result error) func(string) error {
		return func(dir string) error { asked = append(asked, dir); return result }
	}
	// A path that does not exist yet is judged by its nearest existing
	// parent; the probe's answer decides.
	if got := detectSnapshotter(filepath.Join(base, "not", "yet"), probe(nil)); got != SnapshotterOverlay {
		t.Errorf("overlay supported: %q, want %q", got, SnapshotterOverlay)
	}
	if got := detectSnapshotter(base, probe(errors.New("overlay: not supported"))); got != SnapshotterNative {
		t.Errorf("overlay refused: %q, want %q", got, SnapshotterNative)
	}
	if want := []string{base, base}; strings.Join(asked, " ") != strings.Join(want, " ") {
		t.Errorf("probed %v, want %v (the nearest existing directory)", asked, want)
	}
	// The real probe on this machine: either answer, but no panic.
	t.Logf("snapshotter for %s: %s", base, DetectSnapshotter(base))
}
