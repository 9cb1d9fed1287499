package config

import (
	"net"
	"strings"
	"testing"

	"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"
)

// The control plane runs as static pods unless the configuration (or
// --control-plane-runtime) says Processes; another value is refused
// naming the field and the choices.
func TestControlPlaneRuntimeConfig(t *testing.T) {
	head := "apiVersion: kubeforge.io/v1alpha1\nkind: KubeforgeConfiguration\n"
	for _, c := range []struct {
		doc, runtime, wantErr string
	}{
		{doc: head, runtime: ControlPlaneStaticPods},
		{doc: head + "controlPlane:\n  runtime: Processes\n", runtime: ControlPlaneProcesses},
		{doc: head + "controlPlane:\n  runtime: StaticPods\n", runtime: ControlPlaneStaticPods},
		{doc: head + "controlPlane:\n  runtime: processes\n",
			wantErr: `KubeforgeConfiguration.controlPlane.runtime: "processes" is not a control-plane runtime: write StaticPods`},
	} {
		cfg, err := decodeKubeforge(c.doc)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%q: error %v, want one containing %q", c.doc, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", c.doc, err)
		}
		if got := cfg.Kubeforge.ControlPlane.Runtime; got != c.runtime {
			t.Errorf("%q: runtime %q, want %q", c.doc, got, c.runtime)
		}
	}
}

// The flag sets the field and is named in its errors; a component's extra
// volume mounted elsewhere than its host path cannot run as a process.
func TestControlPlaneRuntimeFlagAndVolumes(t *testing.T) {
	facts := HostFacts{Hostname: "n1", CgroupV1: true, DefaultAddress: func() (net.IP, error) { return net.ParseIP("10.0.0.2"), nil }}
	changed := func(name string) bool { return name == "control-plane-runtime" }
	c, err := LoadInit(InitFlags{ControlPlaneRuntime: "Processes"}, changed, facts)
	if err != nil || !c.Kubeforge.ControlPlane.Processes() {
		t.Fatalf("--control-plane-runtime=Processes: %v, runtime %q", err, c.Kubeforge.ControlPlane.Runtime)
	}
	if _, err := LoadInit(InitFlags{ControlPlaneRuntime: "pods"}, changed, facts); err == nil || !strings.Contains(err.Error(), "controlPlane.runtime") {
		t.Errorf("--control-plane-runtime=pods: %v, want the field named", err)
	}

	c = New()
	c.Kubeforge.ControlPlane.Runtime = ControlPlaneProcesses
	c.Cluster.APIServer.ExtraVolumes = []v1beta4.HostPathMount{{Name: "x", HostPath: "/srv/x", MountPath: "/x"}}
	err = c.Complete(facts)
	if err == nil || !strings.Contains(err.Error(), `ClusterConfiguration.apiServer.extraVolumes[0].mountPath: "/x"`) || !strings.Contains(err.Error(), `set mountPath to "/srv/x"`) {
		t.Errorf("an extra volume mounted elsewhere: %v", err)
	}
	c.Kubeforge.ControlPlane.Runtime = ControlPlaneStaticPods
	if err := c.Complete(facts); err != nil {
		t.Errorf("the same volume with static pods: %v", err)
	}
}

// A joining control-plane node may run its control plane as processes; a
// worker runs none: the flag is refused there, and the same setting from a
// file shared by every node leaves the worker's kubelet as it is.
func TestControlPlaneRuntimeJoin(t *testing.T) {
	facts := HostFacts{Hostname: "w1", CgroupV1: true, DefaultAddress: func() (net.IP, error) { return net.ParseIP("10.0.0.3"), nil }}
	flags := JoinFlags{Token: "abcdef.0123456789abcdef", UnsafeSkipCAVerification: true, NodeIP: "10.0.0.3", ControlPlaneRuntime: ControlPlaneProcesses}
	changed := func(name string) bool {
		return name == "control-plane-runtime" || name == "token" || name == "node-ip" || name == "discovery-token-unsafe-skip-ca-verification"
	}
	_, err := LoadJoin(flags, []string{"10.0.0.1:6443"}, changed, facts)
	if err == nil || !strings.Contains(err.Error(), "--control-plane-runtime: Processes: a worker runs no control plane") {
		t.Errorf("a worker with --control-plane-runtime=Processes: %v", err)
	}
	cp := flags
	cp.ControlPlane = true
	cpChanged := func(name string) bool { return changed(name) || name == "control-plane" }
	c, err := LoadJoin(cp, []string{"10.0.0.1:6443"}, cpChanged, facts)
	if err != nil || !c.Kubeforge.ControlPlane.Processes() {
		t.Errorf("a control-plane join with --control-plane-runtime=Processes: %v", err)
	}
	c = New()
	c.Kubeforge.ControlPlane.Runtime = ControlPlaneProcesses
	if err := c.CompleteJoin(facts, "10.0.0.3"); err != nil || c.Kubeforge.ControlPlane.Processes() {
		t.Errorf("a worker whose file says Processes: %v, runtime %q (want StaticPods)", err, c.Kubeforge.ControlPlane.Runtime)
	}
}
