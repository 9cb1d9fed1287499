package node

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/config"
)

// TestCheckConfigRefusesBrokenRegistries: no registries.yaml is fine; a
// broken one is refused by file and field, and Restart refuses it before
// it stops anything (the end-to-end test shows a running node stays up).
func TestCheckConfigRefusesBrokenRegistries(t *testing.T) {
	root := t.TempDir()
	p := config.DefaultPaths().WithRoot(root)
	if err := CheckConfig(p); err != nil {
		t.Fatalf("no registries.yaml: %v", err)
	}
	file := filepath.Join(root, "etc/kubeforge/registries.yaml")
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte("mirrors:\n  docker.io:\n    endpoint: [\"https://m\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CheckConfig(p); err != nil {
		t.Fatalf("a good registries.yaml: %v", err)
	}
	if err := os.WriteFile(file, []byte("mirrors:\n  docker.io:\n    endpoint: [\"mirror:5000\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"CheckConfig": CheckConfig(p),
		"Restart":     Restart(context.Background(), p, StartOptions{Executable: "/nonexistent"}),
		"Start":       Start(context.Background(), p, StartOptions{Executable: "/nonexistent"}),
	} {
		if err == nil {
			t.Errorf("%s accepted a broken registries.yaml", name)
			continue
		}
		for _, want := range []string{"/etc/kubeforge/registries.yaml", `mirrors["docker.io"].endpoint[0]`, "left as it was"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %q does not say %q", name, err, want)
			}
		}
	}
}
