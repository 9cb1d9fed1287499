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

// TestUpgradeBacksUpTheKubeletConfiguration: every node (a worker has no
// backup phase) keeps its kubelet configuration and flags before the
// upgrade rewrites them, once: a rerun does not save the new ones over
// them.
func TestUpgradeBacksUpTheKubeletConfiguration(t *testing.T) {
	cfg := config.New()
	cfg.Paths = cfg.Paths.WithRoot(t.TempDir())
	p := cfg.Paths
	for f, data := range map[string]string{p.KubeletConfigFile(): "old config\n", p.KubeletFlagsFile(): "KUBELET_KUBEADM_ARGS=\"--old\"\n"} {
		if err := os.MkdirAll(filepath.Dir(p.Host(f)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p.Host(f), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	d := &UpgradeData{Node: &Node{Cfg: cfg, Paths: p, Out: progress.New(&out, false)},
		state: upgradeState{Workflow: "node", Status: StateInProgress}}
	for run := 1; run <= 2; run++ {
		if err := runUpgradeKubeletConfig(context.Background(), d); err != nil {
			t.Fatal(err)
		}
		dir := p.Host(filepath.Join(d.state.BackupDir, "kubelet"))
		if b, _ := os.ReadFile(filepath.Join(dir, "config.yaml")); string(b) != "old config\n" {
			t.Errorf("run %d: backed-up kubelet configuration %q", run, b)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "kubeadm-flags.env")); !strings.Contains(string(b), "--old") {
			t.Errorf("run %d: backed-up kubelet flags %q", run, b)
		}
		if b, _ := os.ReadFile(p.Host(p.KubeletConfigFile())); string(b) == "old config\n" {
			t.Errorf("run %d: the kubelet configuration was not rewritten", run)
		}
		// Before the rerun, the file differs from what the upgrade writes
		// again: the backup must still be the one from before the upgrade.
		if err := os.WriteFile(p.Host(p.KubeletConfigFile()), []byte("changed since\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if st, err := os.ReadFile(p.Host(d.stateFile())); err != nil || !strings.Contains(string(st), "kubelet-backup") {
		t.Errorf("upgrade state %s (%v): the backup is not recorded", st, err)
	}
}
