//go:build linux

package phases

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/kubeforge/kubeforge/internal/fsutil"
	"github.com/kubeforge/kubeforge/internal/testutil"
	"github.com/kubeforge/kubeforge/manifests"
)

// mountNSRoot, set, tells the test binary that it runs in a private mount
// namespace (under unshare) and where it may mount.
const mountNSRoot = "KUBEFORGE_TEST_MOUNTNS_ROOT"

// A node directory on a filesystem of its own (a disk in /etc/fstab) stays
// a mount point, with the same mount, and is emptied; what is mounted below
// it goes. The test mounts tmpfs filesystems in a private mount namespace:
// it runs itself again under `unshare --mount --propagation private`, so
// the host's mounts are never touched, and whatever the child leaves
// mounted goes with its namespace when it exits.
func TestResetKeepsMountPoints(t *testing.T) {
	base := os.Getenv(mountNSRoot)
	if base == "" {
		if testing.Short() {
			t.Skip("mounts tmpfs filesystems in a private mount namespace; not with -short")
		}
		if os.Geteuid() != 0 {
			t.Skip("needs root to mount")
		}
		unshare, err := exec.LookPath("unshare")
		if err != nil {
			t.Skip("needs util-linux unshare")
		}
		base = t.TempDir()
		cmd := exec.Command(unshare, "--mount", "--propagation", "private",
			os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), mountNSRoot+"="+base)
		out, err := cmd.CombinedOutput()
		t.Logf("in a private mount namespace:\n%s", out)
		if err != nil {
			t.Fatalf("%v", err)
		}
		if !strings.Contains(string(out), "--- PASS: "+t.Name()+" ") {
			t.Fatal("the test did not run in the private mount namespace")
		}
		if left := mountsUnder(t, base); len(left) > 0 {
			t.Fatalf("mounts in the host's namespace: %q", left)
		}
		return
	}
	self, _ := os.Readlink("/proc/self/ns/mnt")
	host, _ := os.Readlink("/proc/1/ns/mnt")
	if self == "" || self == host {
		t.Fatalf("%s is set but this is not a private mount namespace (%q): refusing to mount", mountNSRoot, self)
	}

	for _, tc := range []struct {
		name string
		// dir is on a tmpfs of its own; nested, below it, on another.
		dir, nested string
		// etcdDataDir, when set, is the manifest's --data-dir.
		etcdDataDir string
	}{
		{name: "kubelet dir", dir: "/var/lib/kubelet", nested: "pods/u1/volumes/kubernetes.io~empty-dir/cache"},
		{name: "etcd data dir", dir: "/var/lib/etcd", nested: "member/snap"},
		{name: "state dir", dir: "/var/lib/kubeforge", nested: "containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/1/fs"},
		{name: "etcd data dir below the state dir", dir: "/var/lib/kubeforge/etcd", nested: "member/wal", etcdDataDir: "/var/lib/kubeforge/etcd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, out := resetData(t)
			root := filepath.Join(base, strings.ReplaceAll(tc.name, " ", "-"))
			cleanupMounts(t, root)
			d.Cfg.Paths, d.Paths = d.Cfg.Paths.WithRoot(root), d.Paths.WithRoot(root)
			p := d.Cfg.Paths
			testutil.MkFiles(t, root, "etc/kubernetes/admin.conf", "etc/kubernetes/pki/ca.crt", "var/lib/kubelet/config.yaml",
				"var/lib/etcd/member/snap/db", "var/lib/kubeforge/pod-cidrs.json", "var/log/kubeforge/node.log")
			if tc.etcdDataDir != "" {
				manifest := p.Host(p.Manifest(manifests.Etcd))
				testutil.MkFiles(t, root, strings.TrimPrefix(p.Manifest(manifests.Etcd), "/"))
				if err := os.WriteFile(manifest, []byte("spec:\n  containers:\n  - command:\n    - etcd\n    - --data-dir="+tc.etcdDataDir+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			dir := p.Host(tc.dir)
			mountTmpfs(t, dir)
			testutil.MkFiles(t, dir, "a", "sub/b", tc.nested+"/../c")
			nested := filepath.Join(dir, tc.nested)
			mountTmpfs(t, nested)
			testutil.MkFiles(t, nested, "data")
			// Below a directory reset empties but does not unmount below: left
			// alone, contents and all.
			other := p.Host(filepath.Join(p.LogDir, "archive"))
			mountTmpfs(t, other)
			testutil.MkFiles(t, other, "keep")
			id := mountID(t, dir)

			// A dry run changes nothing, and says what a real run would do
			// (the nested mount it would have unmounted is not "left").
			d.DryRun = true
			before := testutil.Tree(t, root)
			if err := runCleanupNode(context.Background(), d); err != nil {
				t.Fatalf("dry run: %v\n%s", err, out)
			}
			if after := testutil.Tree(t, root); !slices.Equal(before, after) || mountID(t, nested) == "" {
				t.Fatalf("a dry run changed files or mounts:\n  before %q\n  after  %q", before, after)
			}
			if want := "[reset] Would empty " + tc.dir + " (a mount point: left mounted)\n"; !strings.Contains(out.String(), want) {
				t.Errorf("dry run output lacks %q:\n%s", want, out)
			}
			d.DryRun = false

			var first string
			// A second reset (the etcd manifest gone) finds nothing to delete
			// and unmounts nothing more.
			for run := 1; run <= 2; run++ {
				out.Reset()
				if err := runCleanupNode(context.Background(), d); err != nil {
					t.Fatalf("reset #%d: %v\n%s", run, err, out)
				}
				if got := mountID(t, dir); got != id {
					t.Fatalf("reset #%d: %s: mount %q, want the same mount %q as before\n%s", run, tc.dir, got, id, out)
				}
				if left := testutil.Tree(t, dir); len(left) > 0 {
					t.Errorf("reset #%d: %s is not empty: %q", run, tc.dir, left)
				}
				if got := mountID(t, nested); got != "" {
					t.Errorf("reset #%d: %s is still mounted", run, nested)
				}
				if got := mountID(t, other); got == "" {
					t.Errorf("reset #%d: %s was unmounted", run, other)
				}
				if _, err := os.Stat(filepath.Join(other, "keep")); err != nil {
					t.Errorf("reset #%d: deleted across a mount point reset does not unmount: %v", run, err)
				}
				if run == 1 {
					first = out.String()
				}
			}
			for _, gone := range []string{p.CertDir, p.Kubeconfig("admin.conf"), filepath.Join(p.LogDir, "node.log")} {
				if fsutil.Exists(p.Host(gone)) {
					t.Errorf("%s is left", gone)
				}
			}
			text := first
			for _, want := range []string{
				"[reset] Empty " + tc.dir + " (a mount point: left mounted)",
				"[reset] Remove /etc/kubernetes/pki",
				"[reset] WARNING: left /var/log/kubeforge/archive in place: mounted below /var/log/kubeforge",
			} {
				if !strings.Contains(text, want) {
					t.Errorf("output lacks %q:\n%s", want, text)
				}
			}
			if tc.etcdDataDir != "" && strings.Contains(text, "left "+tc.etcdDataDir) {
				t.Errorf("warns about the etcd data dir it emptied:\n%s", text)
			}
			t.Logf("the first reset said:\n%s\nthe second:\n%s", text, out)
		})
	}
}

func mountTmpfs(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=8m,mode=0755"); err != nil {
		t.Fatalf("mount a tmpfs on %s: %v", dir, err)
	}
}

// cleanupMounts unmounts whatever is mounted under root and removes root
// when the test ends, failed or not.
func cleanupMounts(t *testing.T, root string) {
	t.Cleanup(func() {
		mounts := mountsUnder(t, root)
		for _, m := range slices.Backward(mounts) {
			if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
				t.Errorf("unmount %s: %v", m, err)
			}
		}
		if err := os.RemoveAll(root); err != nil {
			t.Error(err)
		}
	})
}

// mountsUnder lists the mount points at or below dir, in mount order.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, m := range mountinfo(t) {
		if m[1] == dir || strings.HasPrefix(m[1], dir+"/") {
			out = append(out, m[1])
		}
	}
	return out
}

// mountID is the id of the mount on top at path, "" when none is.
func mountID(t *testing.T, path string) string {
	t.Helper()
	id := ""
	for _, m := range mountinfo(t) {
		if m[1] == path {
			id = m[0]
		}
	}
	return id
}

// mountinfo lists this namespace's mounts as (id, mount point) pairs.
func mountinfo(t *testing.T) [][2]string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][2]string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for s.Scan() {
		if f := strings.Fields(s.Text()); len(f) > 4 {
			out = append(out, [2]string{f[0], fsutil.UnescapeMountinfo(f[4])})
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
