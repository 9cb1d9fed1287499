package containerd

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kubeforge/kubeforge/config"
)

func TestIsShim(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
	}{
		// containerd's start and delete calls, through the link.
		{[]string{"/var/lib/kubeforge/bin/containerd-shim-runc-v2", "-namespace", "k8s.io", "-address", "/run/x.sock", "-publish-binary", "/usr/bin/kubeforge", "-id", "abc", "start"}, true},
		{[]string{"containerd-shim-runc-v2", "-v"}, true},
		// The shim's own re-exec of the resolved executable.
		{[]string{"/usr/local/bin/kubeforge", "-namespace", "k8s.io", "-id", "abc", "-address", "/run/x.sock"}, true},
		{[]string{"/usr/local/bin/kubeforge", "init"}, false},
		{[]string{"/usr/local/bin/kubeforge", "component", "containerd", "--config", "x"}, false},
		{[]string{"/usr/local/bin/kubeforge"}, false},
		{[]string{"containerd-shim-runc-v2-not"}, false},
		{nil, false},
	} {
		if got := IsShim(c.args); got != c.want {
			t.Errorf("IsShim(%q) = %v, want %v", c.args, got, c.want)
		}
	}
}

func TestEnsureShimLink(t *testing.T) {
	root := t.TempDir()
	p := config.DefaultPaths().WithRoot(root)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	self, _ = filepath.EvalSymlinks(self)
	check := func() {
		t.Helper()
		path, err := EnsureShimLink(p)
		if err != nil {
			t.Fatal(err)
		}
		if path != "/var/lib/kubeforge/bin/containerd-shim-runc-v2" {
			t.Fatalf("EnsureShimLink returned %s", path)
		}
		target, err := os.Readlink(p.Host(path))
		if err != nil || target != self {
			t.Fatalf("link points at %q (%v), want %s", target, err, self)
		}
	}
	check() // created
	check() // unchanged
	link := p.Host(ShimLinkPath(p))
	// A stale link (an older executable) is replaced.
	os.Remove(link)
	if err := os.Symlink("/old/kubeforge", link); err != nil {
		t.Fatal(err)
	}
	check()
	// So is a regular file in its place.
	os.Remove(link)
	if err := os.WriteFile(link, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	check()
	entries, _ := os.ReadDir(filepath.Dir(link))
	if len(entries) != 1 {
		t.Errorf("leftovers next to the link: %v", entries)
	}
}
