package phases

import (
	"os"
	"path/filepath"
	"testing"

	"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/manifests"
)

func TestRegisteredNodeName(t *testing.T) {
	p := config.DefaultPaths().WithRoot(t.TempDir())
	if got := RegisteredNodeName(p); got != "" {
		t.Fatalf("no files: %q", got)
	}
	c := config.New()
	c.Init.NodeRegistration.Name = "worker-7"
	flags := p.Host(p.KubeletFlagsFile())
	if err := os.MkdirAll(filepath.Dir(flags), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(flags, manifests.KubeletFlags(c, "10.0.0.7"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := RegisteredNodeName(p); got != "worker-7" {
		t.Fatalf("from %s: %q", flags, got)
	}
	if got := kubeletFlag(p, "cgroup-root"); got != "" {
		t.Fatalf("cgroup-root without the flag: %q", got)
	}
	c.Init.NodeRegistration.KubeletExtraArgs = []v1beta4.Arg{{Name: "cgroup-root", Value: "/node-7"}}
	if err := os.WriteFile(flags, manifests.KubeletFlags(c, "10.0.0.7"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := kubeletFlag(p, "cgroup-root"); got != "/node-7" {
		t.Fatalf("cgroup-root: %q", got)
	}
}
