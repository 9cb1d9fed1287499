package phases

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/progress"
	"github.com/kubeforge/kubeforge/manifests"
)

// TestRollbackWhenInterrupted: an upgrade interrupted (SIGINT, SIGTERM)
// while a component runs its new manifest puts the previous manifest back
// at once and stops, saying how to continue: no wait on the cancelled
// context, and no etcd data restore for an etcd that was only restarting.
func TestRollbackWhenInterrupted(t *testing.T) {
	cfg := config.New()
	cfg.Paths = cfg.Paths.WithRoot(t.TempDir())
	backup := "/var/lib/kubeforge/upgrade-backups/test" // logical, as recorded in upgrade-state.json
	manifest := cfg.Paths.Host(cfg.Paths.Manifest(manifests.Etcd))
	for path, data := range map[string]string{manifest: "new manifest\n", cfg.Paths.Host(filepath.Join(backup, "manifests", "etcd.yaml")): "old manifest\n"} {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	d := &UpgradeData{Node: &Node{Cfg: cfg, Paths: cfg.Paths, Out: progress.New(&out, false)}, Client: fake.NewClientset(),
		state: upgradeState{BackupDir: backup}}
	d.RestoreEtcd = func(context.Context, *config.Config, string) error {
		t.Error("an interrupted upgrade restored etcd's data")
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := d.rollback(ctx, manifests.Etcd, errors.New("context canceled"))
	if err == nil || !strings.Contains(err.Error(), "Interrupted") || !strings.Contains(err.Error(), "run the same upgrade command again") {
		t.Errorf("rollback on an interrupted upgrade: %v", err)
	}
	if b, _ := os.ReadFile(manifest); string(b) != "old manifest\n" {
		t.Errorf("etcd's manifest after the interrupted upgrade: %q, want the previous one", b)
	}
}
