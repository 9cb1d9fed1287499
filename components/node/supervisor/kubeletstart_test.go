package supervisor

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kubeforge/kubeforge/components/node"
	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/fsutil"
)

// TestKubeletWithoutPodsYet: the node service starts the kubelet before
// the images are in only on a worker or while the kubelet bootstraps its
// certificate; a control-plane node's kubelet (static pods at once) and a
// node with no record wait for them.
func TestKubeletWithoutPodsYet(t *testing.T) {
	for _, tc := range []struct {
		name                       string
		info                       *node.Info
		bootstrapConf, kubeletConf bool
		want                       bool
	}{
		{"worker", &node.Info{NodeName: "w1", Worker: true}, false, true, true},
		{"control plane", &node.Info{NodeName: "cp1"}, false, true, false},
		{"control plane joining, signed", &node.Info{NodeName: "cp2"}, true, true, false},
		{"bootstrapping", &node.Info{NodeName: "w1"}, true, false, true},
		{"no record", nil, false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := config.DefaultPaths().WithRoot(t.TempDir())
			write := func(logical string, data []byte) { writeUnder(t, p, logical, data) }
			if tc.info != nil {
				write(node.InfoFile(p), node.MarshalInfo(*tc.info))
			}
			if tc.bootstrapConf {
				write(p.Kubeconfig("bootstrap-kubelet.conf"), []byte("x"))
			}
			if tc.kubeletConf {
				write(p.Kubeconfig("kubelet.conf"), []byte("x"))
			}
			s := &supervisor{p: p}
			if got := s.kubeletWithoutPodsYet(); got != tc.want {
				t.Errorf("kubeletWithoutPodsYet = %v, want %v", got, tc.want)
			}
		})
	}
}

// writeUnder writes the node file at logical path under p's root.
func writeUnder(t *testing.T, p config.Paths, logical string, data []byte) {
	t.Helper()
	if _, err := fsutil.WriteFile(p.Host(logical), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestHasStaticPods: the kubelet of a control-plane node starts before the
// images are in only while its static pod directory holds no manifest
// (init writes them once the images are in); a hidden file (an editor's,
// or fsutil's temporary one) is not a manifest, and an unreadable
// directory counts as holding some.
func TestHasStaticPods(t *testing.T) {
	p := config.DefaultPaths().WithRoot(t.TempDir())
	s := &supervisor{p: p}
	if s.hasStaticPods() {
		t.Error("no static pod directory: hasStaticPods = true")
	}
	if err := os.MkdirAll(p.Host(p.ManifestsDir), 0o700); err != nil {
		t.Fatal(err)
	}
	writeUnder(t, p, filepath.Join(p.ManifestsDir, ".etcd.yaml.tmp-1"), []byte("x"))
	if err := os.Mkdir(filepath.Join(p.Host(p.ManifestsDir), "old"), 0o700); err != nil {
		t.Fatal(err)
	}
	if s.hasStaticPods() {
		t.Error("only a hidden file and a directory: hasStaticPods = true")
	}
	writeUnder(t, p, filepath.Join(p.ManifestsDir, "etcd.yaml"), []byte("x"))
	if !s.hasStaticPods() {
		t.Error("etcd.yaml: hasStaticPods = false")
	}
	if err := os.RemoveAll(p.Host(p.ManifestsDir)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.Host(p.ManifestsDir), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !s.hasStaticPods() {
		t.Error("an unreadable static pod directory (a file): hasStaticPods = false")
	}
}
