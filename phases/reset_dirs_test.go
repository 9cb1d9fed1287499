package phases

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/components/node/teardown"
	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/etcdsnapshot"
	"github.com/kubeforge/kubeforge/internal/progress"
	"github.com/kubeforge/kubeforge/internal/testutil"
	"github.com/kubeforge/kubeforge/manifests"
)

// resetData returns reset's data for a node under a temporary root, and
// the buffer its progress goes to.
func resetData(t *testing.T) (*ResetData, *bytes.Buffer) {
	t.Helper()
	cfg := config.New()
	cfg.Paths = cfg.Paths.WithRoot(t.TempDir())
	var out bytes.Buffer
	return &ResetData{Node: &Node{Cfg: cfg, Paths: cfg.Paths, Out: progress.New(&out, false)}}, &out
}

// removePath empties a directory that is a mount point and says so, removes
// one that is not, and empties the target of a symlinked directory.
func TestRemovePath(t *testing.T) {
	d, out := resetData(t)
	p := d.Cfg.Paths
	root := p.Root
	testutil.MkFiles(t, root, "var/lib/etcd/member/snap/db", "var/lib/kubeforge/pod-cidrs.json",
		"data/kubelet/config.yaml", "data/kubelet/pods/u/x", "etc/kubernetes/admin.conf", "srv/log/x")
	if err := os.Symlink(filepath.Join(root, "data/kubelet"), filepath.Join(root, "var/lib/kubelet")); err != nil {
		t.Fatal(err)
	}
	// A symlink to a directory that is not kubeforge's: only the link goes.
	if err := os.MkdirAll(filepath.Join(root, "var/log"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "srv"), filepath.Join(root, "var/log/kubeforge")); err != nil {
		t.Fatal(err)
	}
	mounts := teardown.NewMountSet([]string{realPath(filepath.Join(root, "var/lib/etcd"))})
	for _, path := range []string{p.EtcdDataDir, p.StateDir, p.KubeletDir, p.Kubeconfig("admin.conf"), p.LogDir, "/nonexistent"} {
		if err := d.removePath("reset", path, mounts, nil); err != nil {
			t.Fatal(err)
		}
	}
	if left := testutil.Tree(t, root); !slices.Equal(left, []string{"data", "data/kubelet", "etc", "etc/kubernetes", "srv", "srv/log", "srv/log/x",
		"var", "var/lib", "var/lib/etcd", "var/lib/kubelet", "var/log"}) {
		t.Errorf("left: %q", left)
	}
	text := out.String()
	for _, want := range []string{
		"[reset] Empty /var/lib/etcd (a mount point: left mounted)",
		"[reset] Remove /var/lib/kubeforge",
		"[reset] Empty /var/lib/kubelet (a symlink to /data/kubelet: the link and /data/kubelet are kept)",
		"[reset] Remove /etc/kubernetes/admin.conf",
		"[reset] WARNING: /var/log/kubeforge is a symlink to /srv, which is not kubeforge's to empty",
		"[reset] Remove /var/log/kubeforge",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "nonexistent") {
		t.Errorf("output names a path that did not exist:\n%s", text)
	}

	// In a dry run nothing goes, and the output says what would.
	d, out = resetData(t)
	d.DryRun = true
	testutil.MkFiles(t, d.Paths.Root, "var/lib/etcd/member/snap/db")
	mounts = teardown.NewMountSet([]string{realPath(filepath.Join(d.Paths.Root, "var/lib/etcd"))})
	if err := d.removePath("reset", "/var/lib/etcd", mounts, nil); err != nil {
		t.Fatal(err)
	}
	if want := "[reset] Would empty /var/lib/etcd (a mount point: left mounted)"; !strings.Contains(out.String(), want) {
		t.Errorf("dry run output lacks %q:\n%s", want, out)
	}
	if left := testutil.Tree(t, filepath.Join(d.Paths.Root, "var/lib/etcd")); len(left) != 3 {
		t.Errorf("a dry run removed files: %q", left)
	}
}

// Reset refuses, before it stops or deletes anything, a certificate or
// etcd data directory that is not kubeforge's to empty.
func TestResetRefusesSystemDirs(t *testing.T) {
	for _, tc := range []struct {
		name     string
		setup    func(d *ResetData)
		manifest string
		want     []string
	}{
		{name: "cert dir", setup: func(d *ResetData) { d.Cfg.Paths.CertDir = "/etc" },
			want: []string{`--cert-dir: "/etc" is a system directory`, "such as /etc/kubernetes/pki"}},
		{name: "relative cert dir", setup: func(d *ResetData) { d.Cfg.Paths.CertDir = "pki" },
			want: []string{`--cert-dir: "pki" must be an absolute path`}},
		{name: "etcd data dir from the manifest", manifest: "    - --data-dir=/var\n",
			want: []string{`/etc/kubernetes/manifests/etcd.yaml: --data-dir: "/var" is a system directory`, "such as /var/lib/etcd"}},
		{name: "etcd data dir with ..", manifest: "    - --data-dir=/var/lib/etcd/../../..\n",
			want: []string{`--data-dir: "/var/lib/etcd/../../.." must not contain ".."`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := resetData(t)
			if tc.setup != nil {
				tc.setup(d)
			}
			root := d.Paths.Root
			testutil.MkFiles(t, root, "etc/kubernetes/admin.conf", "var/lib/kubelet/config.yaml")
			if tc.manifest != "" {
				m := d.Paths.Host(d.Cfg.Paths.Manifest(manifests.Etcd))
				testutil.MkFiles(t, root, "etc/kubernetes/manifests/etcd.yaml")
				if err := os.WriteFile(m, []byte("spec:\n  containers:\n  - command:\n    - etcd\n"+tc.manifest), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			before := testutil.Tree(t, root)
			for _, run := range []func(context.Context, *ResetData) error{runResetPreflight, runCleanupNode} {
				err := run(context.Background(), d)
				if err == nil {
					t.Fatal("accepted")
				}
				for _, w := range append(tc.want, "refusing to stop the node or remove any file") {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
			}
			if after := testutil.Tree(t, root); !slices.Equal(before, after) {
				t.Errorf("files changed:\n  before %q\n  after  %q", before, after)
			}
		})
	}
	d, _ := resetData(t)
	if err := d.checkOwnedDirs(); err != nil {
		t.Fatalf("the default layout is refused: %v", err)
	}
}

// Reset names the node's etcd snapshots and upgrade backups (which go with
// its state directory) before it deletes them.
func TestResetListsBackups(t *testing.T) {
	d, out := resetData(t)
	if b := d.Backups(); len(b) != 0 {
		t.Fatalf("a fresh node: %v", b)
	}
	store := etcdsnapshot.NewStore(d.Paths)
	testutil.MkFiles(t, d.Paths.Root, filepath.Join(d.Cfg.Paths.StateDir, "upgrade-backups", "20261201T000000Z", "manifests", "etcd.yaml"))
	if err := os.MkdirAll(store.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(store.DBPath("nightly"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(store.MetaPath("nightly"), []byte(`{"name":"nightly","createdAt":"2026-12-01T00:00:00Z"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	d.listBackups("reset")
	want := "Deleting 2 etcd snapshot(s) and upgrade backup(s) of this node: /var/lib/kubeforge/etcd-snapshots/nightly.db, /var/lib/kubeforge/upgrade-backups/20261201T000000Z"
	if !strings.Contains(out.String(), want) {
		t.Errorf("listing %q, want %q", out, want)
	}
}
