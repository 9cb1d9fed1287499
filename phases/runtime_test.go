package phases

import (
	"testing"

	"github.com/kubeforge/kubeforge/config"
)

func TestRuntimeCheck(t *testing.T) {
	for _, tc := range []struct {
		name, socket, kubeletDriver string
		systemd                     bool
		wantNil                     bool
		wantDriver, wantHost        string
	}{
		{name: "bundled containerd", socket: "", wantNil: true},
		{name: "the bundled socket named", socket: "unix://" + config.DefaultPaths().ContainerdSocket(), wantNil: true},
		{name: "init: the kubelet's driver", socket: "unix:///run/containerd/containerd.sock", kubeletDriver: "cgroupfs", wantDriver: "cgroupfs", wantHost: "/run/containerd/containerd.sock"},
		{name: "join before the cluster's kubelet config, no systemd", socket: "/run/containerd/containerd.sock", wantDriver: "cgroupfs", wantHost: "/run/containerd/containerd.sock"},
		{name: "join before the cluster's kubelet config, systemd", socket: "/run/crio/crio.sock", systemd: true, wantDriver: "systemd", wantHost: "/run/crio/crio.sock"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &config.Config{Paths: config.DefaultPaths()}
			cfg.ThisNode.CRISocket = tc.socket
			cfg.Kubelet.CgroupDriver = tc.kubeletDriver
			n := &Node{Cfg: cfg, Paths: cfg.Paths, Host: config.HostFacts{SystemdInit: tc.systemd}}
			c := n.runtimeCheck()
			if (c == nil) != tc.wantNil {
				t.Fatalf("check %+v, want nil %v", c, tc.wantNil)
			}
			if c == nil {
				return
			}
			if c.CgroupDriver != tc.wantDriver || c.Host != tc.wantHost || c.OwnPause == "" || c.CNIBinDir != "/var/lib/kubeforge/cni-bin" {
				t.Errorf("check %+v, want driver %q host %q", c, tc.wantDriver, tc.wantHost)
			}
		})
	}
}
