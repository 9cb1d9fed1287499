package fsutil

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a", "b", "key")
	steps := []struct {
		data []byte
		mode os.FileMode
		want Result
	}{
		{[]byte("one"), 0o600, Created},
		{[]byte("one"), 0o600, Unchanged},
		{[]byte("two"), 0o600, Updated},
		{[]byte("two"), 0o644, Updated},
		{[]byte("two"), 0o644, Unchanged},
	}
	for i, s := range steps {
		var before time.Time
		if st, err := os.Stat(p); err == nil {
			before = st.ModTime()
		}
		got, err := WriteFile(p, s.data, s.mode)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got != s.want {
			t.Fatalf("step %d: got %v, want %v", i, got, s.want)
		}
		b, _ := os.ReadFile(p)
		st, _ := os.Stat(p)
		if string(b) != string(s.data) || st.Mode().Perm() != s.mode {
			t.Fatalf("step %d: file has %q %v", i, b, st.Mode())
		}
		if s.want == Unchanged && !st.ModTime().Equal(before) {
			t.Fatalf("step %d: mtime changed on an unchanged write", i)
		}
	}
	st, _ := os.Stat(filepath.Join(dir, "a"))
	if st.Mode().Perm() != 0o700 {
		t.Fatalf("private parent dir mode %v, want 0700", st.Mode().Perm())
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Fatalf("temp files left behind: %v", entries)
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		`/var/lib/kubelet`:   "/var/lib/kubelet",
		`/mnt/with\040space`: "/mnt/with space",
		`/a\011tab\134back`:  "/a\ttab\\back",
		`/not\0an\escape\`:   `/not\0an\escape\`,
	} {
		if got := UnescapeMountinfo(in); got != want {
			t.Errorf("UnescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}
