// Package containerd runs the containerd v2 daemon compiled into kubeforge
// (CRI plugin included), serves as its runc v2 shim from the same
// executable, and renders the daemon's config.toml.
package containerd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"text/template"

	"github.com/containerd/containerd/v2/plugins/snapshots/overlay/overlayutils"
	"github.com/containerd/platforms"

	"github.com/kubeforge/kubeforge/components/containerd/registries"
	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/fsutil"
	"github.com/kubeforge/kubeforge/internal/version"
)

// Snapshotter names understood by Options.Snapshotter.
const (
	SnapshotterOverlay = "overlayfs"
	SnapshotterNative  = "native"
)

// Options are the settings of the generated containerd config that differ
// between hosts; everything else is fixed by kubeforge.
type Options struct {
	// SandboxImage is the pod sandbox (pause) image, pinned in the CRI.
	SandboxImage string
	// CNIBinDirs are searched for CNI plugin binaries, in order.
	CNIBinDirs []string
	// CNIConfDir holds the CNI network configuration.
	CNIConfDir string
	// ShimPath is the runc v2 shim, normally the link EnsureShimLink makes.
	ShimPath string
	// Snapshotter is the CRI snapshotter: "overlayfs" or "native". Empty
	// means overlayfs when the containerd root supports it, else native.
	Snapshotter string
	// AllowRegistryPulls lets the CRI pull images of other registries from
	// the network. When false (the zero value: the node service sets it
	// unless the node is air-gapped) every registry, and always
	// kubeforge.local, resolves to a dead loopback port: user images come
	// from `kubeforge images import`.
	AllowRegistryPulls bool
	// Registries is the node's registry configuration (registries.yaml,
	// already checked), nil for none: mirrors, TLS and credentials.
	Registries *registries.Config
	// RegistriesSource names the file Registries came from, for comments.
	RegistriesSource string
}

// DefaultCNIBinDirs are Debian's (containernetworking-plugins) and the
// upstream default.
var DefaultCNIBinDirs = []string{"/usr/lib/cni", "/opt/cni/bin"}

// DefaultOptions returns the options of a standard node: the kubeforge pause
// image, the default CNI dirs, the shim link under p.StateDir and the
// snapshotter the containerd root supports.
func DefaultOptions(p config.Paths) Options { return defaultOptions(p, overlayutils.Supported) }

// defaultOptions is DefaultOptions with the overlay probe given.
func defaultOptions(p config.Paths, overlaySupported func(dir string) error) Options {
	return Options{
		SandboxImage: version.PauseImage(),
		CNIBinDirs:   append([]string(nil), DefaultCNIBinDirs...),
		CNIConfDir:   p.CNIConfDir,
		ShimPath:     ShimLinkPath(p),
		Snapshotter:  detectSnapshotter(p.Host(p.ContainerdRoot()), overlaySupported),
	}
}

// DetectSnapshotter returns "overlayfs" when overlay mounts work on the
// filesystem holding root (the same check containerd's overlayfs plugin
// makes), else "native". root need not exist yet.
func DetectSnapshotter(root string) string {
	return detectSnapshotter(root, overlayutils.Supported)
}

// detectSnapshotter is DetectSnapshotter with the overlay probe given: it
// is asked about root's nearest existing directory.
func detectSnapshotter(root string, overlaySupported func(dir string) error) string {
	dir := root
	for {
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return SnapshotterNative
		}
		dir = parent
	}
	if err := overlaySupported(dir); err != nil {
		return SnapshotterNative
	}
	return SnapshotterOverlay
}

// DisabledPlugins are plugins the node does not need. Most are not even
// compiled in (see builtins_linux.go); they are listed so that the config
// stays right should a build add them back.
var DisabledPlugins = []string{
	"io.containerd.snapshotter.v1.aufs",
	"io.containerd.snapshotter.v1.btrfs",
	"io.containerd.snapshotter.v1.zfs",
	"io.containerd.snapshotter.v1.devmapper",
	"io.containerd.snapshotter.v1.blockfile",
	"io.containerd.snapshotter.v1.erofs",
	"io.containerd.differ.v1.erofs",
	"io.containerd.tracing.processor.v1.otlp",
	"io.containerd.internal.v1.tracing",
	"io.containerd.ttrpc.v1.otelttrpc",
	"io.containerd.nri.v1.nri",
	"io.containerd.internal.v1.opt",
	"io.containerd.monitor.container.v1.restart",
}

// RequiredPlugins make containerd exit when the CRI fails to load, instead
// of serving without it.
var RequiredPlugins = []string{
	"io.containerd.grpc.v1.cri",
}

// WriteConfig renders the containerd config for p and o and writes it to
// p.ContainerdConfig() (under p.Root), together with the registry host
// configuration it points at. It returns the config's logical path.
func WriteConfig(p config.Paths, o Options) (string, error) {
	cfg, err := RenderConfig(p, o)
	if err != nil {
		return "", err
	}
	// 0600: the config may hold registry credentials.
	if _, err := fsutil.WriteFile(p.Host(p.ContainerdConfig()), cfg, 0o600); err != nil {
		return "", fmt.Errorf("write containerd config: %w", err)
	}
	if err := WriteRegistryHosts(p, o); err != nil {
		return "", err
	}
	return p.ContainerdConfig(), nil
}

// WriteRegistryHosts writes the registry hosts tree of o (RegistryHostsDir)
// and removes the directories of registries no longer configured. A running
// containerd's CRI reads the tree on every pull: a change takes effect at
// the next pull, without a restart (credentials, in the config, do not).
func WriteRegistryHosts(p config.Paths, o Options) error {
	hostsDir := p.Host(RegistryHostsDir(p))
	keep := map[string]bool{}
	for _, h := range o.renderRegistries().Hosts {
		if _, err := fsutil.WriteFile(filepath.Join(hostsDir, h.Dir, "hosts.toml"), h.Data, 0o644); err != nil {
			return fmt.Errorf("write containerd registry hosts: %w", err)
		}
		keep[h.Dir] = true
	}
	entries, err := os.ReadDir(hostsDir)
	if err != nil {
		return fmt.Errorf("read the registry hosts dir: %w", err)
	}
	for _, e := range entries {
		if !keep[e.Name()] {
			if err := os.RemoveAll(filepath.Join(hostsDir, e.Name())); err != nil {
				return fmt.Errorf("remove stale registry hosts %s: %w", e.Name(), err)
			}
		}
	}
	return nil
}

// RegistryHostsDir is the CRI's registry config_path: one hosts.toml per
// registry (see package registries). containerd reads it on every pull.
func RegistryHostsDir(p config.Paths) string {
	return filepath.Join(p.StateDir, "containerd-hosts.d")
}

// renderRegistries renders the registry configuration. Our own registry
// (version.ImageRepository) never exists: its images are written locally.
func (o Options) renderRegistries() registries.Rendered {
	src := o.RegistriesSource
	if src == "" {
		src = registries.DefaultFile
	}
	return registries.Render(o.Registries, !o.AllowRegistryPulls, src)
}

// RenderConfig returns the containerd config.toml for p and o. It is config
// version 4, containerd v2.4's own: server addresses live in the
// io.containerd.server.v1.* plugin sections (version 3's [grpc] and [ttrpc]
// tables would be migrated on every start).
func RenderConfig(p config.Paths, o Options) ([]byte, error) {
	if o.SandboxImage == "" {
		return nil, fmt.Errorf("containerd config: no sandbox image")
	}
	if o.ShimPath == "" {
		return nil, fmt.Errorf("containerd config: no runc shim path")
	}
	if len(o.CNIBinDirs) == 0 {
		o.CNIBinDirs = DefaultCNIBinDirs
	}
	if o.CNIConfDir == "" {
		o.CNIConfDir = "/etc/cni/net.d"
	}
	switch o.Snapshotter {
	case "":
		o.Snapshotter = SnapshotterOverlay
	case SnapshotterOverlay, SnapshotterNative:
	default:
		return nil, fmt.Errorf("containerd config: unsupported snapshotter %q (want %s or %s)",
			o.Snapshotter, SnapshotterOverlay, SnapshotterNative)
	}
	socketDir := filepath.Join(p.ContainerdState(), "s")
	if len(socketDir) > maxShimSocketDirLen {
		socketDir = "" // containerd's default, /run/containerd/s
	}
	data := struct {
		Root, State, Socket, TTRPCSocket string
		RuncRoot                         string
		SocketDir, HostsDir              string
		RegistryAuth                     string
		Platform                         string
		Disabled, Required               []string
		Opts                             Options
	}{
		Root:         p.ContainerdRoot(),
		RuncRoot:     p.RuncRoot(),
		State:        p.ContainerdState(),
		Socket:       p.ContainerdSocket(),
		TTRPCSocket:  p.ContainerdSocket() + ".ttrpc",
		SocketDir:    socketDir,
		HostsDir:     RegistryHostsDir(p),
		RegistryAuth: o.renderRegistries().AuthTOML(`plugins."io.containerd.cri.v1.images"`),
		Platform:     platforms.DefaultString(),
		Disabled:     DisabledPlugins,
		Required:     RequiredPlugins,
		Opts:         o,
	}
	var buf bytes.Buffer
	if err := configTemplate.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("render containerd config: %w", err)
	}
	return buf.Bytes(), nil
}

// maxShimSocketDirLen is containerd's limit on shim socket_dir (Linux).
const maxShimSocketDirLen = 42

// tomlString quotes s as a TOML basic string (JSON string escapes are a
// subset of TOML's).
func tomlString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func tomlStrings(ss []string) string {
	b, _ := json.Marshal(ss)
	if ss == nil {
		return "[]"
	}
	return string(b)
}

var configTemplate = template.Must(template.New("config.toml").Funcs(template.FuncMap{
	"q": tomlString, "qs": tomlStrings,
}).Parse(`# Generated by kubeforge: the bundled containerd's configuration.
# Regenerated when the node service starts; edits are overwritten.
version = 4
root = {{q .Root}}
state = {{q .State}}
disabled_plugins = {{qs .Disabled}}
required_plugins = {{qs .Required}}
# The daemon's own OOM score is left alone: negative values need CAP_SYS_RESOURCE.
oom_score = 0

[plugins]
  [plugins."io.containerd.server.v1.grpc"]
    address = {{q .Socket}}
  [plugins."io.containerd.server.v1.ttrpc"]
    address = {{q .TTRPCSocket}}

  [plugins."io.containerd.cri.v1.images"]
    snapshotter = {{q .Opts.Snapshotter}}
    disable_snapshot_annotations = true
    [plugins."io.containerd.cri.v1.images".pinned_images]
      sandbox = {{q .Opts.SandboxImage}}
    [plugins."io.containerd.cri.v1.images".registry]
      config_path = {{q .HostsDir}}
{{- if .RegistryAuth}}
    # Credentials of the registries in registries.yaml (hosts.toml has none).
{{.RegistryAuth}}
{{- end}}

  [plugins."io.containerd.cri.v1.runtime"]
    # Without CAP_SYS_RESOURCE a negative oom_score_adj cannot be set and
    # every sandbox would fail to start.
    restrict_oom_score_adj = true
    # Pod network namespaces live under this containerd's state dir, so
    # several nodes on one host do not share /run/netns.
    netns_mounts_under_state_dir = true
    enable_selinux = false
    [plugins."io.containerd.cri.v1.runtime".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        # A pod annotated io.containerd.runc.v2.group shares the shim of
        # that group (kubeforge's own pods: one shim for all of them).
        pod_annotations = ["io.containerd.runc.v2.group"]
        # The v2 shim is served by the kubeforge executable itself.
        runtime_path = {{q .Opts.ShimPath}}
        snapshotter = {{q .Opts.Snapshotter}}
        [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
          SystemdCgroup = false
          # runc's state for this containerd only (the default, /run/containerd/runc, is host-wide).
          Root = {{q .RuncRoot}}
    [plugins."io.containerd.cri.v1.runtime".cni]
      bin_dirs = {{qs .Opts.CNIBinDirs}}
      conf_dir = {{q .Opts.CNIConfDir}}

  [plugins."io.containerd.grpc.v1.cri"]
    disable_tcp_service = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
{{- if .SocketDir}}

  [plugins."io.containerd.shim.v1.manager"]
    # Shim sockets of this containerd only (the default is the host-wide /run/containerd/s).
    socket_dir = {{q .SocketDir}}
{{- end}}

  [plugins."io.containerd.transfer.v1.local"]
    [[plugins."io.containerd.transfer.v1.local".unpack_config]]
      platform = {{q .Platform}}
      snapshotter = {{q .Opts.Snapshotter}}
`))
