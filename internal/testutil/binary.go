// Package testutil has helpers shared by tests that run the kubeforge binary.
package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// Binary returns the path of a kubeforge binary: $KUBEFORGE_BINARY when set
// (the test script builds it once for every package), else one built once
// per test process into a temporary directory.
func Binary(t testing.TB) string {
	t.Helper()
	if b := os.Getenv("KUBEFORGE_BINARY"); b != "" {
		return b
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kubeforge-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "kubeforge")
		cmd := exec.Command("go", "build", "-o", binary, "github.com/kubeforge/kubeforge/cmd/kubeforge")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Dir = RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = &buildError{err: err, out: string(out)}
		}
	})
	if buildErr != nil {
		t.Fatalf("build kubeforge: %v", buildErr)
	}
	return binary
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// RequireRoot skips the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}
