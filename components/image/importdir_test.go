package image

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/config"
)

// TestImportFromDirSkips: archives recorded with their size and mtime are
// not imported again (no containerd is asked: the socket does not exist),
// files that are not archives are ignored, and a removed archive leaves
// the record.
func TestImportFromDirSkips(t *testing.T) {
	p := config.DefaultPaths().WithRoot(t.TempDir())
	dir := p.Host(ImportDir(p))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// No directory content: nothing to do.
	res, err := ImportFromDir(context.Background(), p, "/nonexistent.sock", nil)
	if err != nil || res.Imported+res.Skipped != 0 {
		t.Fatalf("empty dir: %+v %v", res, err)
	}
	mtime := time.Unix(1700000000, 0)
	rec := map[string]importRecord{"gone.tar": {Size: 1, ModTime: 1}}
	for _, name := range []string{"app.tar", "db.tar.gz", "notes.txt"} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte("content of "+name), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		st, _ := os.Stat(path)
		rec[name] = importRecord{Size: st.Size(), ModTime: st.ModTime().UnixNano()}
	}
	b, _ := json.Marshal(rec)
	if err := os.WriteFile(p.Host(importRecordFile(p)), b, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err = ImportFromDir(context.Background(), p, "/nonexistent.sock", nil)
	if err != nil {
		t.Fatalf("everything recorded, yet: %v", err)
	}
	if res.Skipped != 2 || res.Imported != 0 || len(res.Failed) != 0 {
		t.Errorf("result %+v, want 2 skipped", res)
	}
	got := map[string]importRecord{}
	b, _ = os.ReadFile(p.Host(importRecordFile(p)))
	_ = json.Unmarshal(b, &got)
	if _, ok := got["gone.tar"]; ok {
		t.Error("a removed archive stays in the record")
	}
	// A changed archive is imported again: here containerd is not there.
	if err := os.WriteFile(filepath.Join(dir, "app.tar"), []byte("new content"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ImportFromDir(context.Background(), p, "/nonexistent.sock", nil); err == nil {
		t.Error("a changed archive was not imported again (no attempt to reach containerd)")
	}
}

func TestHasArchiveExt(t *testing.T) {
	for name, want := range map[string]bool{
		"a.tar": true, "a.TAR.GZ": true, "a.tgz": true, "a.tar.zst": true, "a.oci": true,
		"a.txt": false, "a.tar.part": false, ".imported": false,
	} {
		if got := hasArchiveExt(name); got != want {
			t.Errorf("hasArchiveExt(%q) = %v", name, got)
		}
	}
}
