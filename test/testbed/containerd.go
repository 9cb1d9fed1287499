package testbed

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// UnpullableSandbox is the sandbox image of ContainerdConfig: nothing
// listens on 127.0.0.1:1 in a node, so a pull fails at once and no packet
// leaves the node.
const UnpullableSandbox = "127.0.0.1:1/kftb/pause:3.6"

// ContainerdOptions shape ContainerdConfig.
type ContainerdOptions struct {
	// Name names its directories /var/lib/NAME and /run/NAME (the node's
	// own) and its socket /run/NAME/containerd.sock.
	Name string
	// SystemdCgroup sets the runc runtime's SystemdCgroup (wrong here: the
	// kubelet uses cgroupfs without systemd).
	SystemdCgroup bool
	// OOMScoreAdjAllowed leaves restrict_oom_score_adj off, which fails
	// every sandbox where root lacks CAP_SYS_RESOURCE (as here).
	OOMScoreAdjAllowed bool
	// SandboxImage replaces UnpullableSandbox (ContainerdConfig only), and
	// CNIBinDir kubeforge's CNI plugin directory for an external runtime
	// (for a node that kubeforge does not run: kubeadm's).
	SandboxImage, CNIBinDir string
}

// ContainerdConfig is a config for Debian's containerd 1.6 in a node: its
// own root, state and socket, CRI on with restrict_oom_score_adj, a
// sandbox image that cannot be pulled (UnpullableSandbox), and kubeforge's
// CNI plugin directory for an external runtime.
func ContainerdConfig(o ContainerdOptions) string {
	sandbox, cniBin := UnpullableSandbox, "/var/lib/kubeforge/cni-bin"
	if o.SandboxImage != "" {
		sandbox = o.SandboxImage
	}
	if o.CNIBinDir != "" {
		cniBin = o.CNIBinDir
	}
	return fmt.Sprintf(`version = 2
root = "/var/lib/%[1]s"
state = "/run/%[1]s"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "/run/%[1]s/containerd.sock"
[ttrpc]
  address = "/run/%[1]s/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[2]q
  restrict_oom_score_adj = %[4]t
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = %[3]t
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[5]q
    conf_dir = "/etc/cni/net.d"
`, o.Name, sandbox, o.SystemdCgroup, !o.OOMScoreAdjAllowed, cniBin)
}

// Containerd2Config is ContainerdConfig for a containerd of the v2 line
// (the upstream containerd kubeforge bundles, run as a host's own would
// be: `kubeforge component containerd --config FILE`, StartContainerd2):
// config version 3, containerd 2.0's, with the sandbox image in the CRI
// image service's pinned_images, which its CRI status does not report.
// Plugins that reach outside the node (NRI's host-wide socket, /opt) are
// off.
func Containerd2Config(o ContainerdOptions) string {
	return fmt.Sprintf(`version = 3
root = "/var/lib/%[1]s"
state = "/run/%[1]s"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.nri.v1.nri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.blockfile", "io.containerd.snapshotter.v1.erofs", "io.containerd.differ.v1.erofs"]
[grpc]
  address = "/run/%[1]s/containerd.sock"
[ttrpc]
  address = "/run/%[1]s/containerd.sock.ttrpc"
[plugins]
  [plugins."io.containerd.cri.v1.images"]
    snapshotter = "overlayfs"
    [plugins."io.containerd.cri.v1.images".pinned_images]
      sandbox = %[2]q
  [plugins."io.containerd.cri.v1.runtime"]
    restrict_oom_score_adj = %[4]t
    [plugins."io.containerd.cri.v1.runtime".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
          SystemdCgroup = %[3]t
    [plugins."io.containerd.cri.v1.runtime".cni]
      bin_dirs = ["/var/lib/kubeforge/cni-bin"]
      conf_dir = "/etc/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri"]
    disable_tcp_service = true
    stream_server_address = "127.0.0.1"
`, o.Name, UnpullableSandbox, o.SystemdCgroup, !o.OOMScoreAdjAllowed)
}

// Containerd is a containerd (Debian's package, /usr/bin/containerd, or
// the v2 one kubeforge bundles) that a test runs in a node. The testbed kills it with the node's other
// processes; Stop ends it earlier.
type Containerd struct {
	n *Node
	// Socket is its socket in the node; Endpoint the CRI endpoint.
	Socket, Endpoint string
	// Log is its log file on the host; Config its config file.
	Log, Config string
	cmd         *exec.Cmd
}

// StartContainerd starts the host's containerd in n with the config cfg
// (ContainerdConfig) and waits until it answers at /run/NAME/containerd.sock.
func (n *Node) StartContainerd(name, cfg string) (*Containerd, error) {
	if _, err := exec.LookPath("containerd"); err != nil {
		return nil, fmt.Errorf("Debian's containerd is not installed (hack/deps.sh installs it: apt-get install containerd): %w", err)
	}
	return n.startContainerd(name, cfg, "", "containerd")
}

// StartContainerd2 starts the containerd v2 of the kubeforge binary under
// test in n, as a host's own containerd: `kubeforge component containerd
// --config FILE` with the config cfg (Containerd2Config), and that binary
// as its runc shim, found as containerd-shim-runc-v2 on its PATH like a
// host's. It waits until it answers at /run/NAME/containerd.sock.
func (n *Node) StartContainerd2(name, cfg string) (*Containerd, error) {
	bin := filepath.Join(n.Dir, name+"-bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return nil, err
	}
	shim := filepath.Join(bin, "containerd-shim-runc-v2")
	if err := os.Symlink(n.Binary, shim); err != nil && !os.IsExist(err) {
		return nil, err
	}
	return n.startContainerd(name, cfg, bin, n.Binary, "component", "containerd")
}

// startContainerd runs argv with --config and cfg, pathDir first on its
// PATH when not empty.
func (n *Node) startContainerd(name, cfg, pathDir string, argv ...string) (*Containerd, error) {
	c := &Containerd{n: n, Socket: "/run/" + name + "/containerd.sock", Log: filepath.Join(n.Dir, name+".log")}
	c.Endpoint = "unix://" + c.Socket
	c.Config = filepath.Join(n.Dir, name+".toml")
	if err := os.WriteFile(c.Config, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	log, err := os.Create(c.Log)
	if err != nil {
		return nil, err
	}
	c.cmd = n.Command(context.Background(), argv[0], append(argv[1:], "--config", c.Config)...)
	if pathDir != "" {
		for i, e := range c.cmd.Env {
			if v, ok := strings.CutPrefix(e, "PATH="); ok {
				c.cmd.Env[i] = "PATH=" + pathDir + ":" + v
			}
		}
	}
	c.cmd.Stdout, c.cmd.Stderr = log, log
	if err := c.cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	go func() { _ = c.cmd.Wait(); log.Close() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := c.Ctr("version")
		if err == nil {
			return c, nil
		}
		if time.Now().After(deadline) {
			c.Stop()
			b, _ := os.ReadFile(c.Log)
			return nil, fmt.Errorf("containerd in %s did not answer at %s within 60s: %v; its log:\n%s", n.Name, c.Socket, err, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Stop kills it (its containers' shims keep running, as on a host).
func (c *Containerd) Stop() {
	if c.cmd != nil && c.cmd.Process != nil {
		_ = c.cmd.Process.Kill()
	}
}

// Ctr runs the host's ctr against it, in the node.
func (c *Containerd) Ctr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return c.n.Run(ctx, "ctr", append([]string{"--address", c.Socket}, args...)...)
}

// Images lists the image names in containerd namespace ns.
func (c *Containerd) Images(ns string) ([]string, error) {
	out, err := c.Ctr("-n", ns, "images", "ls", "-q")
	return strings.Fields(out), err
}
