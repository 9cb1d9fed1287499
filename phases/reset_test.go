package phases

import (
	"os"
	"path/filepath"
	"testing"

	"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"

	"github.com/kubeforge/kubeforge/components/node"
	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/manifests"
)

func TestRegisteredNodeName(t *testing.T) {
	p := config.DefaultPaths().WithRoot(t.TempDir())
	if got := RegisteredNodeName(p); got != "" {
		t.Fatalf("no files: %q", got)
	}
	c := config.New()
	c.ThisNode.Name = "worker-7"
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
	c.ThisNode.KubeletExtraArgs = []v1beta4.Arg{{Name: "cgroup-root", Value: "/node-7"}}
	if err := os.WriteFile(flags, manifests.KubeletFlags(c, "10.0.0.7"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := kubeletFlag(p, "cgroup-root"); got != "/node-7" {
		t.Fatalf("cgroup-root: %q", got)
	}
	// A hand-edited file naming the node twice: the kubelet takes the last.
	if err := os.WriteFile(flags, []byte("KUBELET_KUBEADM_ARGS=\"--hostname-override=worker-7 --cgroup-root=/a\"\n"+
		"KUBELET_EXTRA_ARGS=\"--hostname-override=worker-8 --cgroup_root=/b\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := RegisteredNodeName(p); got != "worker-8" {
		t.Fatalf("two names in the flags file: %q, want the last", got)
	}
	if got := kubeletFlag(p, "cgroup-root"); got != "/b" {
		t.Fatalf("cgroup-root twice: %q, want the last", got)
	}
	// What init or join recorded wins over the flags file.
	if err := os.MkdirAll(p.Host(p.StateDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.Host(node.InfoFile(p)), node.MarshalInfo(node.Info{NodeName: "worker-9"}), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := RegisteredNodeName(p); got != "worker-9" {
		t.Fatalf("recorded: %q", got)
	}
}
