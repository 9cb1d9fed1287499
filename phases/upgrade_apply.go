package phases

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.etcd.io/etcd/client/v3/snapshot"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/version"
	"github.com/kubeforge/kubeforge/join/etcdmember"
	"github.com/kubeforge/kubeforge/manifests"
	"github.com/kubeforge/kubeforge/pki"
)

func runUpgradePreflight(ctx context.Context, d *UpgradeData) error {
	const phase = "upgrade/preflight"
	start := time.Now()
	if d.Workflow == "apply" && !d.ControlPlane {
		return errors.New("this node runs no control plane (no kube-apiserver manifest): run `kubeforge upgrade apply` on a control-plane node, and `kubeforge upgrade node` here")
	}
	// A busy etcd fails one /readyz now and then: the API server must be
	// ready within a minute, not at the first try. A dry run checks too
	// (a live waiter: this is a check more than a wait).
	var body []byte
	err := (&liveWaiter{out: d.Out}).Poll(ctx, time.Second, time.Minute, func(context.Context) (bool, error) {
		var err error
		body, err = d.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil, err
	})
	if err != nil {
		return fmt.Errorf("the API server has not been ready for a minute (/readyz: %v %s): fix it before upgrading", err, strings.TrimSpace(string(body)))
	}
	var plan *Plan
	if d.Workflow == "apply" {
		if plan, err = d.GatherPlan(ctx); err != nil {
			return err
		}
	} else {
		sv, err := d.Client.Discovery().ServerVersion()
		if err != nil {
			return fmt.Errorf("ask the API server its version: %w", err)
		}
		plan = &Plan{Target: TargetVersions(), ClusterKube: sv.GitVersion, Changes: d.localChanges()}
		plan.Issues = CheckSkew(SkewInput{ControlPlane: sv.GitVersion, Target: version.Kubernetes, ControlPlaneFirst: true})
		plan.UpToDate = len(plan.Changes) == 0
	}
	d.Plan = plan
	for _, i := range plan.Issues {
		if i.Forcible && d.Force {
			d.Out.Warnf(phase, "forced past the version-skew policy: %s", i.Message)
		}
	}
	if blocking := Blocking(plan.Issues, d.Force); len(blocking) > 0 {
		var msgs []string
		forcible := false
		for _, i := range blocking {
			msgs = append(msgs, "  - "+i.Message)
			forcible = forcible || i.Forcible
		}
		hint := ""
		if forcible {
			hint = "\n(--force overrides the rules kubeadm lets you force; the others cannot be overridden)"
		}
		return fmt.Errorf("the upgrade to Kubernetes %s (kubeforge %s) breaks the version-skew policy:\n%s%s", version.Kubernetes, version.Version, strings.Join(msgs, "\n"), hint)
	}
	d.LocalUpToDate = len(plan.Changes) == 0 && !d.inProgress()
	if d.LocalUpToDate {
		d.Out.Printf(phase, "This node already runs kubeforge %s: nothing to change here", version.Version)
		return nil
	}
	if d.ControlPlane {
		if err := d.checkControlPlaneNodes(ctx); err != nil {
			return err
		}
		dbSize, err := d.checkEtcd(ctx)
		if err != nil {
			return err
		}
		if err := d.checkDiskSpace(dbSize); err != nil {
			return err
		}
	}
	if d.inProgress() {
		d.Out.Printf(phase, "Continuing the upgrade to %s started %s (backup in %s)", d.state.Target, d.state.Started.Format(time.RFC3339), d.state.BackupDir)
	} else if !d.DryRun {
		d.state = upgradeState{Workflow: d.Workflow, Target: version.Version, Status: StateInProgress, Started: time.Now().UTC()}
		if err := d.saveState(); err != nil {
			return err
		}
	}
	d.Out.Done(phase, "checked", "", start, "Pre-flight checks passed: upgrading this node to kubeforge %s (Kubernetes %s) from %s", version.Version, version.Kubernetes, plan.ClusterKube)
	return nil
}

// checkControlPlaneNodes requires every control-plane node to be Ready.
func (d *UpgradeData) checkControlPlaneNodes(ctx context.Context) error {
	nodes, err := d.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "node-role.kubernetes.io/control-plane"})
	if err != nil {
		return fmt.Errorf("list the control-plane nodes: %w", err)
	}
	var notReady []string
	for i := range nodes.Items {
		if !nodeReady(&nodes.Items[i]) {
			notReady = append(notReady, nodes.Items[i].Name)
		}
	}
	if len(notReady) > 0 {
		return fmt.Errorf("control-plane node(s) %s are not Ready: fix them (or remove them from the cluster) before upgrading", strings.Join(notReady, ", "))
	}
	return nil
}

// checkEtcd requires every etcd member to be started, voting and healthy,
// and returns the largest database size (for the backup's disk space).
func (d *UpgradeData) checkEtcd(ctx context.Context) (int64, error) {
	endpoints, err := etcdEndpoints(ctx, d.Client, "", "")
	if err != nil {
		return 0, err
	}
	// The real host's certificates, also in a dry run.
	c, err := etcdmember.Client(d.Cfg.Paths, endpoints)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	ectx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	members, err := etcdmember.List(ectx, c)
	if err != nil {
		return 0, err
	}
	var problems []string
	for _, m := range members {
		switch {
		case m.Name == "":
			problems = append(problems, fmt.Sprintf("member %x (%v) has not started", m.ID, m.PeerURLs))
		case m.Learner:
			problems = append(problems, fmt.Sprintf("member %s is a learner, not yet promoted", m.Name))
		}
	}
	var dbSize int64
	for _, ep := range endpoints {
		st, err := c.Status(ectx, ep)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s does not answer: %v", ep, err))
			continue
		}
		if len(st.Errors) > 0 {
			problems = append(problems, fmt.Sprintf("%s reports %s", ep, strings.Join(st.Errors, "; ")))
		}
		dbSize = max(dbSize, st.DbSize)
	}
	if len(problems) > 0 {
		return 0, fmt.Errorf("etcd is not healthy: %s; fix it before upgrading (see `kubectl -n kube-system logs -l component=etcd`)", strings.Join(problems, "; "))
	}
	return dbSize, nil
}

// checkDiskSpace requires room for a snapshot (the database's size) and the
// manifests under the state directory, with a margin.
func (d *UpgradeData) checkDiskSpace(dbSize int64) error {
	dir := d.Cfg.Paths.StateDir
	var st unix.Statfs_t
	if err := unix.Statfs(d.Cfg.Paths.Host(dir), &st); err != nil {
		return fmt.Errorf("check the free space in %s: %w", dir, err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	need := dbSize + 64<<20
	if free < need {
		return fmt.Errorf("%s has %d MiB free; the backup (etcd snapshot of %d MiB plus the manifests) needs %d MiB: free some space", dir, free>>20, dbSize>>20, need>>20)
	}
	return nil
}

// backupDir is where this upgrade keeps its backup.
func (d *UpgradeData) backupDir() string {
	if d.state.BackupDir == "" {
		d.state.BackupDir = filepath.Join(d.Cfg.Paths.StateDir, "upgrade-backups", time.Now().UTC().Format("20060102T150405Z"))
	}
	return d.state.BackupDir
}

// backupFiles copies each of files (logical paths) that exists into dir,
// made 0700, under its base name, and returns how many it copied.
func (d *UpgradeData) backupFiles(phase, dir string, files []string) (int, error) {
	if err := d.MkdirAll(phase, dir, 0o700); err != nil {
		return 0, err
	}
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(d.Paths.Host(f))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("back up %s: %w", f, err)
		}
		if err := d.WriteFile(phase, "backup of "+filepath.Base(f), filepath.Join(dir, filepath.Base(f)), b, 0o600, HideContent); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func runUpgradeBackup(ctx context.Context, d *UpgradeData) error {
	const phase = "upgrade/backup"
	if d.stepDone("backup") {
		d.Out.Printf(phase, "Using this upgrade's backup in %q", d.state.BackupDir)
		return nil
	}
	start := time.Now()
	dir := d.backupDir()
	n, err := d.backupFiles(phase, filepath.Join(dir, "manifests"), manifestFiles(d.Cfg.Paths))
	if err != nil {
		return err
	}
	file := filepath.Join(dir, "etcd-snapshot.db")
	endpoint := manifests.EtcdLocalClientURL
	if d.DryRun {
		d.Out.Printf(phase, "Would save an etcd snapshot of %s to %q", endpoint, file)
		return nil
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	ver, err := d.SnapshotEtcd(sctx, d.Paths, endpoint, file)
	if err != nil {
		return fmt.Errorf("save an etcd snapshot to %s: %w", file, err)
	}
	st, _ := os.Stat(d.Paths.Host(file))
	var size int64
	if st != nil {
		size = st.Size()
	}
	d.Out.Done(phase, "saved", dir, start, "Backed up %d manifests and an etcd snapshot (etcd %s, %d KiB) to %q", n, ver, size>>10, dir)
	return d.markStep("backup")
}

// saveEtcdSnapshot saves a snapshot of the etcd member at endpoint to file
// (logical path under p) with etcd's own snapshot client, and returns the
// member's version. It is the one place the upgrade takes a snapshot.
func saveEtcdSnapshot(ctx context.Context, p config.Paths, endpoint, file string) (string, error) {
	cfg, err := etcdmember.ClientConfig(p, []string{endpoint})
	if err != nil {
		return "", err
	}
	return snapshot.SaveWithVersion(ctx, zap.NewNop(), cfg, p.Host(file))
}

func runUpgradeCerts(_ context.Context, d *UpgradeData) error {
	const phase = "upgrade/certs"
	if !d.CertificateRenewal {
		d.Out.Printf(phase, "Skipping certificate renewal (--certificate-renewal=false)")
		return nil
	}
	if d.stepDone("certs") {
		d.Out.Printf(phase, "The certificates were renewed earlier in this upgrade")
		return nil
	}
	if d.DryRun {
		d.Out.Printf(phase, "Would renew %s", strings.Join(pki.RenewNames(), ", "))
		return nil
	}
	results, err := pki.RenewAll(d.PKISpec())
	renewed := 0
	for _, r := range results {
		switch r.Action {
		case pki.ActionRenewed:
			renewed++
		case pki.ActionSkipped:
			d.Out.Printf(phase, "Not renewed %q: %s", r.Name, r.Note)
		}
	}
	if err != nil {
		return fmt.Errorf("renew the certificates: %w (pass --certificate-renewal=false to upgrade without renewing them)", err)
	}
	d.Out.Printf(phase, "Renewed %d certificates and kubeconfig files; the control-plane components pick them up as they restart", renewed)
	return d.markStep("certs")
}

func runUpgradeUploadConfig(ctx context.Context, d *UpgradeData) error {
	const phase = "upgrade/upload-config"
	objs, err := manifests.UploadConfigObjects(d.Cfg)
	if err != nil {
		return err
	}
	return d.applier().Apply(ctx, phase, objs...)
}

func (d *UpgradeData) applier() Applier {
	if d.DryRun {
		return &PrintingApplier{Out: d.Out}
	}
	return &ServerApplier{Client: d.Dynamic, Out: d.Out}
}

func runUpgradeKubeletConfig(_ context.Context, d *UpgradeData) error {
	const phase = "upgrade/kubelet-config"
	cur, want, err := d.kubeletConfigPair()
	if err != nil {
		return fmt.Errorf("render the kubelet configuration: %w", err)
	}
	// Every node (a worker has no backup phase) keeps the configuration it
	// had, once per upgrade: a rerun must not save the new one over it.
	if !d.DryRun && cur != nil && !bytes.Equal(cur, want) && !d.stepDone("kubelet-backup") {
		files := []string{d.Cfg.Paths.KubeletConfigFile(), d.Cfg.Paths.KubeletFlagsFile()}
		if _, err := d.backupFiles(phase, filepath.Join(d.backupDir(), "kubelet"), files); err != nil {
			return err
		}
		if err := d.markStep("kubelet-backup"); err != nil {
			return err
		}
	}
	// The kubelet reads it when the node service restarts it.
	return d.WriteFile(phase, "kubelet configuration", d.Cfg.Paths.KubeletConfigFile(), want, 0o600, ShowContent)
}
