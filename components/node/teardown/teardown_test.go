package teardown

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// mkfiles creates files (and their directories) under root.
func mkfiles(t *testing.T, root string, files ...string) {
	t.Helper()
	for _, f := range files {
		p := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// tree lists the files and directories under root, relative, sorted.
func tree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != root {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func TestUnmountTargets(t *testing.T) {
	mounts := []string{"/", "/var/lib/kubelet", "/var/lib/kubelet/pods/u1/volumes/v", "/var/lib/kubeletx/m",
		"/run/kubeforge/containerd/t/rootfs", "/var/lib/kubeforge/etcd", "/var/lib/kubeforge/etcd/member/snap",
		"/var/lib/kubelet/pods/u1/volumes/v", "/var/lib/etcd", "/var/log/kubeforge/x"}
	below := []string{"/var/lib/kubelet", "/run/kubeforge", "/var/lib/kubeforge", "/var/lib/etcd"}
	keep := []string{"/var/lib/kubelet", "/var/lib/kubeforge/etcd", "/var/lib/etcd", "/var/log/kubeforge"}
	got := UnmountTargets(mounts, below, keep)
	// Longest (so a mount before its parent) first, ties in mountinfo
	// order; twice a point mounted over twice.
	want := []string{
		"/var/lib/kubeforge/etcd/member/snap",
		"/var/lib/kubelet/pods/u1/volumes/v",
		"/run/kubeforge/containerd/t/rootfs",
		"/var/lib/kubelet/pods/u1/volumes/v",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("unmount\n  %q\nwant\n  %q", got, want)
	}
}

// RemoveTree deletes around mount points, never into them, and keeps a
// directory it is told to keep (a mount point itself).
func TestRemoveTreeKeepsMountPoints(t *testing.T) {
	for _, tc := range []struct {
		name     string
		keepDir  bool
		mounts   []string // relative to the directory
		wantKept []string
		wantLeft []string // what is left of the directory; nil: it is gone
	}{
		{name: "no mounts", wantLeft: nil},
		{name: "mount point itself", keepDir: true, mounts: []string{""}, wantLeft: []string{}},
		{name: "mount below", mounts: []string{"pods/u1/volumes/v"}, wantKept: []string{"pods/u1/volumes/v"},
			wantLeft: []string{"pods", "pods/u1", "pods/u1/volumes", "pods/u1/volumes/v", "pods/u1/volumes/v/data"}},
		{name: "mount point with a mount below", keepDir: true, mounts: []string{"", "pods/u1/volumes/v"}, wantKept: []string{"pods/u1/volumes/v"},
			wantLeft: []string{"pods", "pods/u1", "pods/u1/volumes", "pods/u1/volumes/v", "pods/u1/volumes/v/data"}},
		{name: "bind-mounted file", mounts: []string{"pods/u1/etc-hosts"}, wantKept: []string{"pods/u1/etc-hosts"},
			wantLeft: []string{"pods", "pods/u1", "pods/u1/etc-hosts"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "kubelet")
			mkfiles(t, dir, "config.yaml", "pki/kubelet.key", "pods/u1/volumes/v/data", "pods/u1/etc-hosts", "pods/u2/x")
			// A symlink goes, not what it points to.
			outside := t.TempDir()
			mkfiles(t, outside, "keep")
			if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
				t.Fatal(err)
			}
			var mounts []string
			for _, m := range tc.mounts {
				mounts = append(mounts, filepath.Join(dir, m))
			}
			kept, err := RemoveTree(dir, tc.keepDir, NewMountSet(mounts))
			if err != nil {
				t.Fatal(err)
			}
			for i := range kept {
				kept[i], _ = filepath.Rel(dir, kept[i])
			}
			if !slices.Equal(kept, tc.wantKept) {
				t.Errorf("kept %q, want %q", kept, tc.wantKept)
			}
			_, statErr := os.Lstat(dir)
			switch {
			case tc.wantLeft == nil && statErr == nil:
				t.Errorf("%s is left: %q", dir, tree(t, dir))
			case tc.wantLeft != nil && statErr != nil:
				t.Errorf("%s is gone: %v", dir, statErr)
			case tc.wantLeft != nil:
				if left := tree(t, dir); !slices.Equal(left, tc.wantLeft) {
					t.Errorf("left %q, want %q", left, tc.wantLeft)
				}
			}
			if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
				t.Errorf("removed through a symlink: %v", err)
			}
		})
	}
}

// OutermostBelow names the mount points below a directory that are not
// below another one, and Below says whether there is any.
func TestMountSet(t *testing.T) {
	m := NewMountSet([]string{"/", "/var/lib/kubelet", "/var/lib/kubelet/pods/a/v", "/var/lib/kubelet/pods/b/v", "/var/lib/kubelet/pods/b/v/sub", "/var/lib/kubeletx"})
	if got, want := m.OutermostBelow("/var/lib/kubelet"), []string{"/var/lib/kubelet/pods/a/v", "/var/lib/kubelet/pods/b/v"}; !slices.Equal(got, want) {
		t.Errorf("OutermostBelow %q, want %q", got, want)
	}
	if !m.Below("/var/lib/kubelet/pods") || m.Below("/var/lib/kubeletx") || m.Below("/var/lib/kubelet/pods/b/v/sub") {
		t.Error("Below is wrong")
	}
}

// The filter drops KUBE-* and CNI-* chains, the rules in them and the
// jumps to them, and keeps everything else byte for byte.
func TestFilterIptablesRules(t *testing.T) {
	save := strings.Join([]string{
		"# Generated by iptables-save",
		"*nat",
		":PREROUTING ACCEPT [0:0]",
		":KUBE-SERVICES - [0:0]",
		":CNI-abc - [0:0]",
		":DOCKER - [0:0]",
		"-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
		"-A PREROUTING -j DOCKER",
		"-A KUBE-SERVICES -d 10.96.0.1/32 -j KUBE-SVC-X",
		"-A POSTROUTING -s 10.244.0.0/24 -g CNI-abc",
		"-A POSTROUTING -j MASQUERADE",
		"COMMIT",
		"",
	}, "\n")
	got, removed := FilterIptablesRules(save)
	want := strings.Join([]string{
		"# Generated by iptables-save",
		"*nat",
		":PREROUTING ACCEPT [0:0]",
		":DOCKER - [0:0]",
		"-A PREROUTING -j DOCKER",
		"-A POSTROUTING -j MASQUERADE",
		"COMMIT",
		"",
	}, "\n")
	if got != want || removed != 5 {
		t.Errorf("removed %d, got\n%s\nwant\n%s", removed, got, want)
	}
	if got, removed := FilterIptablesRules(want); got != want || removed != 0 {
		t.Errorf("a second pass removed %d:\n%s", removed, got)
	}
}

// The kubelet's cgroup root: the flag, else the configuration's, else /.
func TestCgroupRoot(t *testing.T) {
	conf := []byte("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupRoot: \"/kf-n1\"\ncgroupDriver: cgroupfs\n")
	for _, tc := range []struct {
		config []byte
		flag   string
		want   string
	}{
		{conf, "", "/kf-n1"},
		{conf, "/own", "/own"},
		{[]byte("kind: KubeletConfiguration\n"), "", "/"},
		{nil, "", "/"},
	} {
		if got, err := CgroupRoot(tc.config, tc.flag); err != nil || got != tc.want {
			t.Errorf("CgroupRoot(%q, %q) = %q, %v; want %q", tc.config, tc.flag, got, err, tc.want)
		}
	}
	if _, err := CgroupRoot([]byte("cgroupRoot: [not, a, string]\n"), ""); err == nil {
		t.Error("a configuration that does not decode gave a root")
	}
}

func TestIsShim(t *testing.T) {
	sock := "/run/kubeforge/containerd/containerd.sock"
	if !isShim([]string{"/usr/bin/containerd-shim-runc-v2", "-namespace", "k8s.io", "-id", "x", "-address", sock}, sock) {
		t.Error("the node's shim not recognised")
	}
	if isShim([]string{"/usr/bin/containerd-shim-runc-v2", "-namespace", "k8s.io", "-address", "/run/containerd/containerd.sock"}, sock) ||
		isShim([]string{"containerd", "-address", sock}, sock) {
		t.Error("another containerd's shim, or containerd itself, taken for the node's shim")
	}
}
