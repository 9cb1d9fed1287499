package testutil

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// RepoRoot works with and without -trimpath (`make unit` builds with it, a
// plain `go test` without).
func TestRepoRoot(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(RepoRoot(), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "module github.com/kubeforge/kubeforge\n") {
		t.Errorf("%s/go.mod is not kubeforge's:\n%.80s", RepoRoot(), b)
	}
	if !filepath.IsAbs(RepoRoot()) {
		t.Errorf("RepoRoot() = %q, not absolute", RepoRoot())
	}
}
