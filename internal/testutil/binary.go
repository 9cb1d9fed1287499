// Package testutil has helpers shared by tests that run the kubeforge binary.
package testutil

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binary    string
	buildErr  error

	tempMu   sync.Mutex
	tempDirs []string // the directories this process built binaries into
)

// Main runs a package's tests, then removes the binaries Binary and
// OldKubeforge built for them (~200 MiB each): a package that calls either
// has `func TestMain(m *testing.M) { os.Exit(testutil.Main(m)) }`.
func Main(m *testing.M) int {
	code := m.Run()
	tempMu.Lock()
	defer tempMu.Unlock()
	for _, d := range tempDirs {
		if err := os.RemoveAll(d); err != nil {
			fmt.Fprintf(os.Stderr, "testutil: remove %s: %v\n", d, err)
		}
	}
	tempDirs = nil
	return code
}

// tempDir makes a directory for a built binary, removed by Main.
func tempDir(pattern string) (string, error) {
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		return "", err
	}
	tempMu.Lock()
	tempDirs = append(tempDirs, dir)
	tempMu.Unlock()
	return dir, nil
}

// Binary returns the path of a kubeforge binary: $KUBEFORGE_BINARY when set
// (the test script builds it once for every package), else one built once
// per test process into a temporary directory.
func Binary(t testing.TB) string {
	t.Helper()
	if b := os.Getenv("KUBEFORGE_BINARY"); b != "" {
		return b
	}
	buildOnce.Do(func() {
		dir, err := tempDir("kubeforge-bin-")
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

// RepoRoot is the repository's top directory: two up from this file's
// path, or, in a test built with -trimpath (`make unit` and hack/test.sh
// build like `make build`, whose -trimpath makes that path module-relative),
// the nearest directory holding a go.mod above the working directory, which
// is the test's package directory.
func RepoRoot() string {
	if _, file, _, _ := runtime.Caller(0); filepath.IsAbs(file) {
		return filepath.Join(filepath.Dir(file), "..", "..")
	}
	wd, err := os.Getwd()
	if err != nil {
		panic(fmt.Sprintf("testutil: the repository's root: %v", err))
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		if filepath.Dir(dir) == dir {
			panic("testutil: no go.mod above " + wd)
		}
	}
}

// RequireRoot skips the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// OldStamp is the version stamp of the "older" kubeforge that upgrade tests
// and the bench's upgrade part start from: the same source as the build
// under test, so every manifest and image tag differs between the two and
// nothing else does.
const OldStamp = "v0.0.0-e2e-old"

var (
	oldOnce    sync.Once
	oldBinary  string
	oldVersion string
	oldErr     error
)

// OldKubeforge returns an "older" kubeforge to upgrade from and its version:
// $KUBEFORGE_UPGRADE_FROM when set (a build of an older commit, or one kept
// from an earlier run), else the source under test relinked with OldStamp,
// once per test process, the way `make build` links (the warm build cache
// makes it a relink). The relink needs `make build` to have run (build/go.mod
// and the embedded shim and trampoline).
func OldKubeforge(t testing.TB) (path, version string) {
	t.Helper()
	oldOnce.Do(func() {
		if b := os.Getenv("KUBEFORGE_UPGRADE_FROM"); b != "" {
			oldBinary = b
			oldVersion, oldErr = KubeforgeVersion(b)
			if oldErr != nil {
				oldErr = fmt.Errorf("KUBEFORGE_UPGRADE_FROM=%s: %w", b, oldErr)
			}
			return
		}
		oldVersion = OldStamp
		root := RepoRoot()
		for _, f := range []string{"build/go.mod", "components/containerd/shim.bin", "components/hosttools/trampoline.bin"} {
			if _, err := os.Stat(filepath.Join(root, f)); err != nil {
				oldErr = fmt.Errorf("%s is missing: run `make build` first (%v)", f, err)
				return
			}
		}
		dir, err := tempDir("kubeforge-old-")
		if err != nil {
			oldErr = err
			return
		}
		oldBinary = filepath.Join(dir, "kubeforge")
		start := time.Now()
		cmd := exec.Command("go", "build", "-modfile", "build/go.mod", "-trimpath", "-tags", "embedshim,embedhosttools",
			"-ldflags", "-s -w -X github.com/kubeforge/kubeforge/internal/version.Version="+OldStamp, "-o", oldBinary, "./cmd/kubeforge")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			oldErr = fmt.Errorf("build the old kubeforge: %v\n%s", err, out)
			return
		}
		t.Logf("built kubeforge %s in %v (%s)", oldVersion, time.Since(start).Round(time.Second), oldBinary)
	})
	if oldErr != nil {
		t.Fatal(oldErr)
	}
	return oldBinary, oldVersion
}

// KubeforgeVersion is the kubeforge version a binary reports
// (`kubeforge version -o json`).
func KubeforgeVersion(path string) (string, error) {
	out, err := exec.Command(path, "version", "-o", "json").Output()
	if err != nil {
		return "", fmt.Errorf("%s version -o json: %w", path, err)
	}
	var v map[string]string
	if err := json.Unmarshal(out, &v); err != nil {
		return "", fmt.Errorf("%s version -o json: %w", path, err)
	}
	if v["kubeforge"] == "" {
		return "", fmt.Errorf("%s version -o json names no kubeforge version: %s", path, out)
	}
	return v["kubeforge"], nil
}
