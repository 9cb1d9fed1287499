package testbed

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kubeforge/kubeforge/components/image"
	"github.com/kubeforge/kubeforge/internal/testutil"
)

// The real kubeadm on a test node, for comparisons (the CIS benchmark's
// and the bench's): kubeadm built from the module graph, its control-plane
// images made from the kubeforge executable (which runs a component when
// started through a link named like it, so an image of it with such links
// runs the same upstream code), Debian's containerd 1.6 as its runtime,
// and a systemctl stand-in that runs the kubelet as kubeadm's systemd
// drop-in does.

// KubeadmVersion is the Kubernetes version kubeadm is asked to install
// (given in its config, so that it does not ask dl.k8s.io).
const KubeadmVersion = "v1.37.2"

// BuildKubeadm builds the real kubeadm (the version of the module graph,
// KubeadmVersion) into dir (seconds from the build cache, minutes cold;
// a kubeadm of that version already in dir is kept), or returns
// $KUBEFORGE_KUBEADM when set, and how long the build took. dir must be
// visible in the test nodes (/tmp is).
func BuildKubeadm(dir string) (string, time.Duration, error) {
	if p := os.Getenv("KUBEFORGE_KUBEADM"); p != "" {
		return p, 0, nil
	}
	start := time.Now()
	path := filepath.Join(dir, "kubeadm")
	// The version a release build stamps (hack/lib/version.sh upstream),
	// from the module graph: kubeadm reports it, and its version checks
	// (kubelet, control plane) see a release, not a development build.
	list := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "k8s.io/kubernetes")
	list.Dir = testutil.RepoRoot()
	v, err := list.Output()
	if err != nil {
		return "", 0, fmt.Errorf("go list -m k8s.io/kubernetes: %w", err)
	}
	version := strings.TrimSpace(string(v))
	if out, err := exec.Command(path, "version", "-o", "short").Output(); err == nil && strings.TrimSpace(string(out)) == version {
		return path, 0, nil // built before into this directory (a cache)
	}
	var major, minor string
	if f := strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3); len(f) == 3 {
		major, minor = f[0], f[1]
	}
	const pkg = "k8s.io/component-base/version."
	ldflags := fmt.Sprintf("-X %sgitVersion=%s -X %sgitMajor=%s -X %sgitMinor=%s -X %sgitTreeState=clean", pkg, version, pkg, major, pkg, minor, pkg)
	cmd := exec.Command("go", "build", "-ldflags", ldflags, "-o", path, "k8s.io/kubernetes/cmd/kubeadm")
	cmd.Dir = testutil.RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", 0, fmt.Errorf("go build k8s.io/kubernetes/cmd/kubeadm: %v\n%s", err, out)
	}
	return path, time.Since(start), nil
}

// Paths of kubeadm's systemd drop-in for the kubelet (10-kubeadm.conf of
// kubeadm's packages) and the files it reads.
const (
	KubeadmFlagsEnv     = "/var/lib/kubelet/kubeadm-flags.env"
	KubeletDefaultsFile = "/etc/default/kubelet"
	kubeletDropInFlags  = "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf --config=/var/lib/kubelet/config.yaml"
)

// KubeletDropInFlags are the flags 10-kubeadm.conf gives the kubelet
// before $KUBELET_KUBEADM_ARGS ($KUBELET_KUBECONFIG_ARGS and
// $KUBELET_CONFIG_ARGS).
var KubeletDropInFlags = strings.Fields(kubeletDropInFlags)

var kubeadmArgsRE = regexp.MustCompile(`(?m)^KUBELET_KUBEADM_ARGS="(.*)"$`)

// KubeletArgs are the kubelet's arguments as kubeadm's systemd drop-in
// starts it: ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS
// $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS, with
// KUBELET_KUBEADM_ARGS from flagsEnv (kubeadm-flags.env, which kubeadm
// writes) and KUBELET_EXTRA_ARGS from extraArgs (/etc/default/kubelet's
// value; "" for none).
func KubeletArgs(flagsEnv []byte, extraArgs string) ([]string, error) {
	m := kubeadmArgsRE.FindSubmatch(flagsEnv)
	if m == nil {
		return nil, fmt.Errorf("kubeadm-flags.env has no KUBELET_KUBEADM_ARGS line:\n%s", flagsEnv)
	}
	args := slices.Clone(KubeletDropInFlags)
	args = append(args, strings.Fields(string(m[1]))...)
	return append(args, strings.Fields(extraArgs)...), nil
}

// SystemctlShim is a systemctl for kubeadm on a node without systemd: it
// knows the kubelet service only, and (re)starts the kubelet as
// 10-kubeadm.conf does (KubeletArgs: it reads kubeadm-flags.env and
// /etc/default/kubelet as the drop-in's EnvironmentFile lines do, and
// splits $KUBELET_KUBEADM_ARGS on whitespace as systemd splits an unbraced
// $VAR), detached, its output appended to Log and its PID in PIDFile.
type SystemctlShim struct {
	// Kubelet is the kubelet executable as the node sees it (a link named
	// kubelet to the kubeforge executable).
	Kubelet string
	// PIDFile and Log are files the node sees.
	PIDFile, Log string
	// FlagsEnv and Defaults are kubeadm-flags.env and /etc/default/kubelet
	// (KubeadmFlagsEnv, KubeletDefaultsFile; other paths in tests).
	FlagsEnv, Defaults string
}

// Script is the shim, a POSIX shell script.
func (s SystemctlShim) Script() string {
	return fmt.Sprintf(`#!/bin/sh
# systemctl for kubeadm on a test node without systemd: the kubelet service
# only, started as kubeadm's drop-in 10-kubeadm.conf starts it.
set -f
kubelet=%q pidfile=%q log=%q flags_env=%q defaults=%q
running() { [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }
stop() {
	if running; then
		pid=$(cat "$pidfile")
		kill "$pid"
		while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
	fi
	rm -f "$pidfile"
}
start() {
	running && return 0
	KUBELET_KUBEADM_ARGS= KUBELET_EXTRA_ARGS=
	[ -f "$flags_env" ] && . "$flags_env"
	[ -f "$defaults" ] && . "$defaults"
	setsid "$kubelet" %s $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS </dev/null >>"$log" 2>&1 &
	echo $! >"$pidfile"
}
unit=${2%%.service}
case "$1" in
daemon-reload) exit 0 ;;
esac
[ "$unit" = kubelet ] || { echo "systemctl (test shim): only the kubelet service exists here, not ${2:-?}" >&2; echo "Unit $2 could not be found."; exit 4; }
case "$1" in
start) start ;;
restart) stop; start ;;
stop) stop ;;
enable|disable) ;;
is-enabled) echo enabled ;;
is-active) if running; then echo active; else echo inactive; exit 3; fi ;;
status) echo "* kubelet.service - kubelet (test shim)"; echo "     Loaded: loaded"; running || exit 3 ;;
*) echo "systemctl (test shim): $1 is not supported" >&2; exit 1 ;;
esac
`, s.Kubelet, s.PIDFile, s.Log, s.FlagsEnv, s.Defaults, kubeletDropInFlags)
}

// KubeadmImageRefs asks kubeadm which images it runs
// (`kubeadm config images list`).
func KubeadmImageRefs(ctx context.Context, kubeadm string) ([]string, error) {
	cmd := exec.CommandContext(ctx, kubeadm, "config", "images", "list", "--kubernetes-version", KubeadmVersion)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		return nil, fmt.Errorf("kubeadm config images list: %v\n%s", err, stderr)
	}
	return strings.Fields(string(out)), nil
}

// kubeadmComponents maps an image repository's last element to the
// entrypoint of its image: a link to the kubeforge executable named like
// the component, where upstream's images have that program.
var kubeadmComponents = map[string]string{
	"kube-apiserver":          "/usr/local/bin/kube-apiserver",
	"kube-controller-manager": "/usr/local/bin/kube-controller-manager",
	"kube-scheduler":          "/usr/local/bin/kube-scheduler",
	"kube-proxy":              "/usr/local/bin/kube-proxy",
	"etcd":                    "/usr/local/bin/etcd",
	"coredns":                 "/coredns",
}

// kubeProxyTools are the host programs kube-proxy runs in iptables mode
// (upstream's kube-proxy image has them): links to the host's
// xtables-nft-multi, as Debian's iptables alternative is.
var kubeProxyTools = []string{"iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore"}

// WriteKubeadmImages writes one OCI archive at path with kubeadm's images
// (refs, from KubeadmImageRefs): the pause image is kubeforge's tiny pause
// program; every other image is one shared layer holding the kubeforge
// executable binary with links named like each component (the image's
// entrypoint) and the host's iptables (xtables-nft-multi with its
// libraries and extensions), which kube-proxy runs.
func WriteKubeadmImages(path, binary string, refs []string) error {
	layer := []layerFile{
		{Path: "etc/", Mode: 0o755}, {Path: "tmp/", Mode: 0o1777}, {Path: "var/", Mode: 0o755}, {Path: "run/", Mode: 0o755},
		{Path: "usr/", Mode: 0o755}, {Path: "usr/local/", Mode: 0o755}, {Path: "usr/local/bin/", Mode: 0o755},
		{Path: "usr/local/bin/kubeforge", Mode: 0o755, Source: binary},
	}
	for _, name := range slices.Sorted(maps.Keys(kubeadmComponents)) {
		p := kubeadmComponents[name]
		layer = append(layer, layerFile{Path: p[1:], Mode: 0o777, Symlink: "/usr/local/bin/kubeforge"})
	}
	tools, err := iptablesFiles()
	if err != nil {
		return fmt.Errorf("kube-proxy's iptables: %w", err)
	}
	layer = append(layer, tools...)
	pause, ok := image.PauseELF(runtime.GOARCH)
	if !ok {
		return fmt.Errorf("no pause program for %s", runtime.GOARCH)
	}
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	var imgs []image.Image
	for _, ref := range refs {
		repo := ref
		if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
			repo = repo[:i]
		}
		name := repo[strings.LastIndex(repo, "/")+1:]
		switch ep, ok := kubeadmComponents[name]; {
		case ok:
			imgs = append(imgs, image.Image{Name: ref, Config: ocispec.ImageConfig{Env: env, Entrypoint: []string{ep}, WorkingDir: "/"}, Layer: layer})
		case name == "pause":
			imgs = append(imgs, image.Image{Name: ref, Config: ocispec.ImageConfig{Entrypoint: []string{"/pause"}, User: "65535:65535", WorkingDir: "/"},
				Layer: []layerFile{{Path: "pause", Mode: 0o755, Data: pause}}})
		default:
			return fmt.Errorf("kubeadm wants the image %s, which the test bed cannot make", ref)
		}
	}
	return image.WriteArchive(path, imgs)
}

// layerFile is a file of an image layer.
type layerFile = image.File

// iptablesFiles are the host's xtables-nft-multi as the iptables tools,
// the shared libraries it loads (from ldd) and the xtables extensions.
func iptablesFiles() ([]layerFile, error) {
	multi, err := exec.LookPath("xtables-nft-multi")
	if err != nil {
		return nil, fmt.Errorf("%w (apt-get install iptables)", err)
	}
	out, err := exec.Command("ldd", multi).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", multi, err)
	}
	var files []layerFile
	dirs := map[string]bool{}
	addFile := func(dst, src string, mode int64) error {
		real, err := filepath.EvalSymlinks(src)
		if err != nil {
			return err
		}
		for d := filepath.Dir(dst); d != "/" && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
		}
		files = append(files, layerFile{Path: dst[1:], Mode: mode, Source: real})
		return nil
	}
	if err := addFile("/usr/sbin/xtables-nft-multi", multi, 0o755); err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		var lib string
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			lib = f[2]
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			lib = f[0] // the dynamic loader
		default:
			continue
		}
		if err := addFile(lib, lib, 0o755); err != nil {
			return nil, err
		}
	}
	triplet := ""
	for _, f := range files {
		if filepath.Base(f.Path) == "libc.so.6" {
			triplet = filepath.Base(filepath.Dir(f.Path)) // x86_64-linux-gnu
		}
	}
	ext := filepath.Join("/usr/lib", triplet, "xtables")
	if entries, err := os.ReadDir(ext); err == nil {
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".so") {
				if err := addFile(filepath.Join(ext, e.Name()), filepath.Join(ext, e.Name()), 0o644); err != nil {
					return nil, err
				}
			}
		}
	}
	if _, err := os.Stat("/etc/protocols"); err == nil {
		if err := addFile("/etc/protocols", "/etc/protocols", 0o644); err != nil {
			return nil, err
		}
	}
	for _, t := range kubeProxyTools {
		files = append(files, layerFile{Path: "usr/sbin/" + t, Mode: 0o777, Symlink: "xtables-nft-multi"})
	}
	var out2 []layerFile
	for _, d := range slices.Sorted(maps.Keys(dirs)) {
		if d == "/usr" || d == "/etc" {
			continue // in the layer already
		}
		out2 = append(out2, layerFile{Path: d[1:] + "/", Mode: 0o755})
	}
	return append(out2, files...), nil
}

// KubeadmCNIConfig is a pod network for a single kubeadm node, in the
// style of kubeforge's own (manifests.CNIConfig): the host's bridge and
// portmap plugins, host-local addresses from subnet (the node's pod CIDR,
// the first /24 of kubeadm's podSubnet), no masquerade.
func KubeadmCNIConfig(subnet string) string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "kubeadm-bench",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {
      "type": "portmap",
      "capabilities": {"portMappings": true}
    }
  ]
}
`, subnet)
}

// KubeadmNode is a test node made ready for `kubeadm init` (PrepareKubeadm).
type KubeadmNode struct {
	n *Node
	// Containerd is Debian's containerd 1.6 the node runs for kubeadm.
	Containerd *Containerd
	// ImportTook is how long importing kubeadm's images took.
	ImportTook time.Duration
	// Config is the kubeadm config file (KubeadmConfigYAML).
	Config string
	// BinDir comes first on kubeadm's PATH: systemctl (Shim) and kubelet.
	BinDir string
	Shim   SystemctlShim
}

// KubeadmPodSubnet is kubeadm's podSubnet on a test node, and
// KubeadmNodePodCIDR the node's share that the CNI config hands out (the
// controller-manager gives the first node the first /24).
const (
	KubeadmPodSubnet   = "10.244.0.0/16"
	KubeadmNodePodCIDR = "10.244.0.0/24"
)

// PrepareKubeadm makes node n ready for `kubeadm init`, as an
// administrator prepares a host by kubeadm's documentation, with its images
// pre-loaded: Debian's containerd 1.6 (CRI on, cgroupfs, sandbox image
// kubeadm's pause, CNI plugins the host's /usr/lib/cni), kubeadm's images
// from archive (WriteKubeadmImages) imported into it, a bridge pod network
// config (KubeadmCNIConfig), IPv4 forwarding on, the systemctl shim and a
// kubelet link to the kubeforge executable first on kubeadm's PATH, and a
// kubeadm config (KubeadmConfigYAML). refs are kubeadm's images.
func (n *Node) PrepareKubeadm(ctx context.Context, archive string, refs []string) (*KubeadmNode, error) {
	k := &KubeadmNode{n: n, BinDir: filepath.Join(n.Dir, "kubeadm-bin")}
	pause := ""
	for _, r := range refs {
		if strings.Contains(r, "/pause:") {
			pause = r
		}
	}
	if pause == "" {
		return nil, fmt.Errorf("kubeadm's images %v have no pause image", refs)
	}
	c, err := n.StartContainerd("kubeadm-containerd", ContainerdConfig(ContainerdOptions{Name: "kubeadm-containerd",
		SandboxImage: pause, CNIBinDir: "/usr/lib/cni"}))
	if err != nil {
		return nil, err
	}
	k.Containerd = c
	start := time.Now()
	if err := image.Import(ctx, n.Path(c.Socket), []string{archive}, io.Discard); err != nil {
		return nil, fmt.Errorf("import kubeadm's images into %s's containerd: %w", n.Name, err)
	}
	k.ImportTook = time.Since(start)
	have, err := c.Images("k8s.io")
	if err != nil {
		return nil, err
	}
	for _, r := range refs {
		if !slices.Contains(have, r) {
			return nil, fmt.Errorf("after the import, %s's containerd lacks %s (it has %v)", n.Name, r, have)
		}
	}
	if err := os.MkdirAll(n.Path("/etc/cni/net.d"), 0o755); err != nil {
		return nil, err
	}
	if err := n.WriteFile("/etc/cni/net.d/10-kubeadm-bench.conflist", []byte(KubeadmCNIConfig(KubeadmNodePodCIDR)), 0o644); err != nil {
		return nil, err
	}
	if _, err := n.Run(ctx, "sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(k.BinDir, 0o755); err != nil {
		return nil, err
	}
	k.Shim = SystemctlShim{Kubelet: filepath.Join(k.BinDir, "kubelet"), PIDFile: filepath.Join(n.Dir, "kubelet.pid"),
		Log: filepath.Join(n.Dir, "kubelet.log"), FlagsEnv: KubeadmFlagsEnv, Defaults: KubeletDefaultsFile}
	if err := os.Symlink(n.Binary, k.Shim.Kubelet); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(k.BinDir, "systemctl"), []byte(k.Shim.Script()), 0o755); err != nil {
		return nil, err
	}
	k.Config = n.WriteConfigFile("kubeadm.yaml", n.KubeadmConfigYAML(c.Endpoint))
	return k, nil
}

// KubeadmConfigYAML is the node's `kubeadm init --config` document: its
// address, name and CRI socket, no taints (a single node, as kubeforge's
// --single-node), KubeadmVersion, KubeadmPodSubnet, the kubelet settings
// every test node needs (KubeletConfigYAML) with the cgroupfs driver of a
// host without systemd and cgroup v1 allowed, and kube-proxy leaving the
// host-wide conntrack table size alone, as kubeforge's does.
func (n *Node) KubeadmConfigYAML(criSocket string) string {
	return fmt.Sprintf(`apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: %s
nodeRegistration:
  name: %s
  criSocket: %s
  taints: []
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: %s
networking:
  podSubnet: %s
---
%scgroupDriver: cgroupfs
failCgroupV1: false
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
conntrack:
  maxPerCore: 0
`, n.IP, n.Name, criSocket, KubeadmVersion, KubeadmPodSubnet, n.KubeletConfigYAML())
}

// Command runs kubeadm (or another program) in the node with BinDir first
// on its PATH.
func (k *KubeadmNode) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := k.n.Command(ctx, name, args...)
	for i, e := range cmd.Env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			cmd.Env[i] = "PATH=" + k.BinDir + ":" + v
		}
	}
	return cmd
}

// KubeletPID is the PID of the kubelet the shim started (0: none).
func (k *KubeadmNode) KubeletPID() int {
	b, err := os.ReadFile(k.Shim.PIDFile)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// StopKubelet ends the kubelet the shim started, by its PID, and waits up
// to 10 s for it to exit.
func (k *KubeadmNode) StopKubelet() error {
	pid := k.KubeletPID()
	if pid <= 0 {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return nil // gone already
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if syscall.Kill(pid, 0) != nil {
			return nil
		}
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	return fmt.Errorf("the kubelet (pid %d) did not exit within 10 s of SIGTERM; killed", pid)
}
