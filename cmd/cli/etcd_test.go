package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEtcdCommandsRefuse checks what `kubeforge etcd` refuses without a
// cluster: a node without an etcd member, a bad snapshot name, a missing
// snapshot, and a truncated or corrupt snapshot file, which restore
// refuses before it touches anything.
func TestEtcdCommandsRefuse(t *testing.T) {
	empty := t.TempDir()
	for _, args := range [][]string{
		{"etcd", "member", "list"},
		{"etcd", "snapshot", "save"},
		{"etcd", "snapshot", "restore", "x.db"},
	} {
		out, code := run(t, append(args, "--root-dir", empty)...)
		if code == 0 || !strings.Contains(out, "no etcd member") || !strings.Contains(out, "/etc/kubernetes/manifests/etcd.yaml") {
			t.Errorf("%v on a node without etcd: exit %d\n%s", args, code, out)
		}
	}
	out := mustRun(t, "etcd", "snapshot", "list", "--root-dir", empty)
	if strings.TrimSpace(out) != "NAME  CREATED  SIZE  REVISION  SCHEDULED  SHA256" {
		t.Errorf("list of no snapshots:\n%s", out)
	}
	if out := mustRun(t, "etcd", "snapshot", "list", "-o", "json", "--root-dir", empty); strings.TrimSpace(out) != "[]" {
		t.Errorf("list -o json of no snapshots: %s", out)
	}
	if out, code := run(t, "etcd", "snapshot", "delete", "nope", "--root-dir", empty); code == 0 || !strings.Contains(out, "no snapshot nope") {
		t.Errorf("delete of a missing snapshot: exit %d\n%s", code, out)
	}

	// A control-plane node's files (offline), then bad snapshots.
	root := t.TempDir()
	for _, ph := range offlinePhases {
		mustRun(t, append(append([]string{"init", "phase"}, ph...), offline(root)...)...)
	}
	if out, code := run(t, "etcd", "snapshot", "save", "../escape", "--root-dir", root); code == 0 || !strings.Contains(out, "snapshot name") {
		t.Errorf("save with a path as name: exit %d\n%s", code, out)
	}
	manifest := filepath.Join(root, "etc/kubernetes/manifests/etcd.yaml")
	before, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string][]byte{
		"truncated.db": make([]byte, 4096+100),
		"garbage.db":   []byte(strings.Repeat("not a snapshot ", 1000)),
		"empty.db":     {},
	}
	for name, data := range bad {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		out, code := run(t, "etcd", "snapshot", "restore", p, "--root-dir", root)
		if code == 0 || !strings.Contains(out, "refusing to restore") || !strings.Contains(out, p) {
			t.Errorf("restore %s: exit %d\n%s", name, code, out)
		}
	}
	if out, code := run(t, "etcd", "snapshot", "restore", filepath.Join(root, "missing.db"), "--root-dir", root); code == 0 || !strings.Contains(out, "refusing to restore") {
		t.Errorf("restore of a missing file: exit %d\n%s", code, out)
	}
	after, _ := os.ReadFile(manifest)
	if string(after) != string(before) {
		t.Error("a refused restore changed the etcd manifest")
	}
	if entries, _ := os.ReadDir(filepath.Join(root, "var/lib/etcd")); len(entries) != 0 {
		t.Errorf("a refused restore wrote into the etcd data directory: %v", entries)
	}
}
