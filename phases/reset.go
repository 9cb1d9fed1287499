package phases

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	certutil "k8s.io/client-go/util/cert"

	"github.com/kubeforge/kubeforge/components/node"
	"github.com/kubeforge/kubeforge/components/node/teardown"
	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/etcdsnapshot"
	"github.com/kubeforge/kubeforge/internal/fsutil"
	"github.com/kubeforge/kubeforge/internal/kubeletflags"
	"github.com/kubeforge/kubeforge/join/etcdmember"
	"github.com/kubeforge/kubeforge/manifests"
	"github.com/kubeforge/kubeforge/preflight"
)

// ResetData is what the reset phases share.
type ResetData struct {
	*Node
	IgnorePreflightErrors []string
}

// kubeletFlag is the value the kubelet takes for --name from
// kubeadm-flags.env: its last occurrence, read as the node service reads
// the file to start the kubelet ("" if absent or unreadable).
func kubeletFlag(p config.Paths, name string) string {
	args, err := node.FlagsFileArgs(p)
	if err != nil {
		return ""
	}
	v, _ := kubeletflags.Last(args, name)
	return v
}

// RegisteredNodeName is the name this host's kubelet registers its Node
// as: the one init or join recorded (node.NodeName, which falls back to
// the flags file's --hostname-override for nodes set up before the
// record), else the node in the kubelet's client certificate of
// kubelet.conf; "" when none says. Read it before the files go.
func RegisteredNodeName(p config.Paths) string {
	if name := node.NodeName(p); name != "" {
		return name
	}
	if kc, err := clientcmd.LoadFromFile(p.Host(p.Kubeconfig("kubelet.conf"))); err == nil {
		for _, a := range kc.AuthInfos {
			data := a.ClientCertificateData
			if len(data) == 0 && a.ClientCertificate != "" {
				data, _ = os.ReadFile(p.Host(a.ClientCertificate))
			}
			if certs, err := certutil.ParseCertsPEM(data); err == nil && len(certs) > 0 {
				if name, ok := strings.CutPrefix(certs[0].Subject.CommonName, "system:node:"); ok {
					return name
				}
			}
		}
	}
	return ""
}

// ResetWorkflow is the tree of `kubeforge reset` phases.
func ResetWorkflow() *Workflow[*ResetData] {
	return &Workflow[*ResetData]{Name: "reset", Phases: []Phase[*ResetData]{
		{Name: "preflight", Short: "Run reset pre-flight checks", Run: runResetPreflight, Flags: []string{"ignore-preflight-errors"}},
		{Name: "remove-etcd-member", Short: "Remove this node's local etcd member from the cluster", Run: runRemoveEtcdMember},
		{Name: "cleanup-node", Short: "Stop the node service and every container, unmount, and remove kubeforge's files, interfaces and rules",
			Run: runCleanupNode},
	}}
}

func runResetPreflight(_ context.Context, d *ResetData) error {
	// Before remove-etcd-member: a reset that would refuse to clean up
	// should not have taken the member out of the cluster first.
	if err := d.checkOwnedDirs(); err != nil {
		return err
	}
	warnings, err := preflight.Run(preflight.ResetChecks(preflight.HostSystem(d.Cfg.Paths)), d.IgnorePreflightErrors)
	for _, w := range warnings {
		d.Out.Warnf("preflight", "[%s]: %v", w.Check, w.Err)
	}
	return err
}

func runRemoveEtcdMember(ctx context.Context, d *ResetData) error {
	const phase = "remove-etcd-member"
	name, endpoints := etcdManifestMember(d.Paths)
	if name == "" {
		d.Out.Printf(phase, "No local etcd member (no etcd manifest); skipping")
		return nil
	}
	if d.DryRun {
		d.Out.Printf(phase, "Would remove etcd member %s from the cluster (if it has other members)", name)
		return nil
	}
	start := time.Now()
	ec, err := etcdmember.Client(d.Paths, endpoints)
	if err != nil {
		d.Out.Warnf(phase, "cannot connect to etcd to remove member %s: %v; remove it from another control-plane node with etcdctl member remove", name, err)
		return nil
	}
	defer ec.Close()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	removed, err := etcdmember.Remove(ctx, ec, name)
	switch {
	case errors.Is(err, etcdmember.ErrOnlyMember):
		d.Out.Printf(phase, "etcd member %s is the cluster's only member; its data is removed with the node", name)
	case err != nil:
		d.Out.Warnf(phase, "could not remove etcd member %s: %v; remove it from another control-plane node", name, err)
	case removed:
		d.Out.Done(phase, "removed", "", start, "Removed etcd member %s from the cluster", name)
	default:
		d.Out.Printf(phase, "etcd member %s is not in the cluster (already removed)", name)
	}
	return nil
}

// etcdManifestMember reads --name and the client URLs from the etcd
// manifest ("" when there is none, or none that decodes).
func etcdManifestMember(p config.Paths) (name string, endpoints []string) {
	pod, err := readManifest(p, p.Manifest(manifests.Etcd))
	if err != nil {
		return "", nil
	}
	flags := manifests.PodFlags(pod)
	if v, ok := flags["advertise-client-urls"]; ok {
		endpoints = append([]string{manifests.EtcdLocalClientURL}, strings.Split(v, ",")...)
	}
	return flags["name"], endpoints
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// action runs f unless this is a dry run, reporting "done" or "would do".
func (d *ResetData) action(phase, what string, f func() error) error {
	start := time.Now()
	if d.DryRun {
		d.Out.Printf(phase, "Would %s", what)
		return nil
	}
	if err := f(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	d.Out.Done(phase, "done", "", start, "%s%s", strings.ToUpper(what[:1]), what[1:])
	return nil
}

func runCleanupNode(ctx context.Context, d *ResetData) error {
	const phase = "reset"
	p := d.Cfg.Paths
	// Refuse before anything is stopped, unmounted or deleted.
	if err := d.checkOwnedDirs(); err != nil {
		return err
	}
	var errs []error
	try := func(err error) {
		if err != nil {
			errs = append(errs, err)
			d.Out.Warnf(phase, "%v", err)
		}
	}
	if _, running := node.Running(p); running || fileExists(d.Paths.Host(p.NodePIDFile())) {
		try(d.action(phase, "stop the node service (kubelet and containerd)", func() error {
			sctx, cancel := context.WithTimeout(ctx, 40*time.Second)
			defer cancel()
			return node.StopNow(sctx, p)
		}))
	}
	try(d.cleanupRuntime(ctx, phase))
	try(d.stopContainers(phase))
	remove := d.resetPaths()
	try(d.unmountAll(phase, remove))
	try(d.removeKubeconfigCopy(phase))
	// Read the mounts again: unmountAll took those below the kubelet's,
	// containerd's and etcd's directories away.
	list, err := teardown.MountPoints()
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("read the mount table: %w; no file was removed", err))...)
	}
	mounts := teardown.NewMountSet(list)
	if d.DryRun {
		// What a real run would have unmounted by now.
		if _, targets, err := d.unmountPlan(remove); err == nil {
			for _, t := range targets {
				delete(mounts, t)
			}
		}
	}
	d.listVolumes(phase)
	d.listBackups(phase)
	own := map[string]bool{}
	for _, path := range remove {
		own[realPath(d.Paths.Host(path))] = true
	}
	for _, path := range remove {
		try(d.removePath(phase, path, mounts, own))
	}
	// /etc/kubernetes itself goes when nothing else is left in it (and it
	// is not a mount point of its own).
	if k := d.Paths.Host(p.KubernetesDir); !mounts[realPath(k)] {
		if entries, err := os.ReadDir(k); err == nil && len(entries) == 0 {
			try(d.action(phase, "remove "+p.KubernetesDir, func() error { return os.Remove(k) }))
		}
	}
	if d.Paths.Root == "" || d.Paths.Root == "/" {
		try(d.cleanupNetwork(phase))
	}
	return errors.Join(errs...)
}

// resetPaths lists the logical paths reset removes: files, and directories
// that it empties (and removes unless they are mount points).
func (d *ResetData) resetPaths() []string {
	p := d.Cfg.Paths
	dataDir, _ := etcdDataDir(d.Paths, p)
	remove := []string{
		p.ManifestsDir, p.CertDir, filepath.Dir(p.AuthnConfigFile()), p.SchedulerConfigDir(),
		p.Kubeconfig("admin.conf"), p.Kubeconfig("super-admin.conf"), p.Kubeconfig("kubelet.conf"),
		p.Kubeconfig("bootstrap-kubelet.conf"),
		p.KubeletDir, dataDir, d.localPathRoot(), p.StateDir, p.RunDir, p.LogDir,
		filepath.Join(p.CNIConfDir, manifests.CNIConfigName),
		filepath.Join(p.CNIStateDir, "networks", "kubeforge"),
		p.PodLogDir, p.ContainerLogDir, "/var/lib/kube-proxy",
	}
	for _, c := range manifests.ControlPlane {
		if c.Kubeconfig != "" {
			remove = append(remove, p.Kubeconfig(c.Kubeconfig))
		}
	}
	results, _ := filepath.Glob(d.Paths.Host(filepath.Join(p.CNIStateDir, "results", "kubeforge-*")))
	for _, r := range results {
		remove = append(remove, logicalOf(d.Paths, r))
	}
	return remove
}

// checkOwnedDirs refuses, before reset deletes anything, directories that
// are configured (--cert-dir, etcd's --data-dir in its manifest) or
// kubeforge's own but are not kubeforge's to empty: "/", /etc, /var, ….
func (d *ResetData) checkOwnedDirs() error {
	p := d.Cfg.Paths
	dataDir, from := etcdDataDir(d.Paths, p)
	if from == "" {
		from = "etcd's data directory"
	}
	var errs []error
	for _, dir := range []struct{ where, path, example string }{
		{"--cert-dir", p.CertDir, config.DefaultPaths().CertDir},
		{from, dataDir, config.DefaultPaths().EtcdDataDir},
		{"the kubelet's directory", p.KubeletDir, config.DefaultPaths().KubeletDir},
		{"kubeforge's state directory", p.StateDir, config.DefaultPaths().StateDir},
		{"kubeforge's run directory", p.RunDir, config.DefaultPaths().RunDir},
		{"kubeforge's log directory", p.LogDir, config.DefaultPaths().LogDir},
		{"the static pod directory", p.ManifestsDir, config.DefaultPaths().ManifestsDir},
	} {
		if err := config.CheckOwnedDir(dir.path, dir.example); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", dir.where, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("refusing to stop the node or remove any file: %w", err)
	}
	return nil
}

// etcdDataDir reads --data-dir from the etcd manifest, or the default;
// from names the manifest's flag when the directory came from there.
func etcdDataDir(io config.Paths, p config.Paths) (dir, from string) {
	manifest := p.Manifest(manifests.Etcd)
	if pod, err := readManifest(io, manifest); err == nil {
		if v, ok := manifests.PodFlags(pod)["data-dir"]; ok {
			return v, manifest + ": --data-dir"
		}
	}
	return p.EtcdDataDir, ""
}

// removePath removes the logical path, a file or a directory tree, without
// crossing into another filesystem. A directory that is a mount point
// itself (a disk of its own, often in /etc/fstab) is emptied and left
// mounted, as kubeadm does; a symlink to a directory (the directory moved
// to a data disk) has its target emptied and keeps the link. Mount points
// below it that unmountAll did not take away are left, with the
// directories leading to them, and reported unless they are on own
// (reset's other paths, which it empties on their own).
func (d *ResetData) removePath(phase, path string, mounts teardown.MountSet, own map[string]bool) error {
	host := d.Paths.Host(path)
	st, err := os.Lstat(host)
	if err != nil {
		return nil
	}
	dir, what, keepDir := host, "remove "+path, false
	switch {
	case st.Mode()&os.ModeSymlink != 0:
		target, err := filepath.EvalSymlinks(host)
		if err != nil || !isDir(target) {
			break // a file, or dangling: remove the link
		}
		logical, inRoot := logicalIn(d.Paths, target)
		if !inRoot {
			break // outside the test or dry-run root: remove the link
		}
		if err := config.CheckOwnedDir(logical, path); err != nil {
			d.Out.Warnf(phase, "%s is a symlink to %s, which is not kubeforge's to empty (%v); removing the link only", path, logical, err)
			break
		}
		dir, keepDir = target, true
		what = fmt.Sprintf("empty %s (a symlink to %s: the link and %s are kept)", path, logical, logical)
	case st.IsDir():
		dir = realPath(host)
		if mounts[dir] {
			keepDir = true
			what = "empty " + path + " (a mount point: left mounted)"
		}
	}
	if below := mounts.OutermostBelow(dir); len(below) > 0 {
		for i, b := range below {
			below[i] = path + strings.TrimPrefix(b, dir)
		}
		what += ", except what is mounted below it at " + strings.Join(below, ", ")
	}
	var kept []string
	err = d.action(phase, what, func() error {
		var err error
		kept, err = teardown.RemoveTree(dir, keepDir, mounts)
		return err
	})
	kept = slices.DeleteFunc(kept, func(k string) bool { return own[k] })
	if len(kept) > 0 {
		for i, k := range kept {
			kept[i] = path + strings.TrimPrefix(k, dir)
		}
		d.Out.Warnf(phase, "left %s in place: mounted below %s, and reset deletes nothing on a filesystem it did not unmount; unmount it (and drop it from /etc/fstab if it is there), then delete it yourself",
			strings.Join(kept, ", "), path)
	}
	return err
}

// realPath is path with its symlinks resolved (as mountinfo names mount
// points), or path itself when that fails.
func realPath(path string) string {
	if r, err := filepath.EvalSymlinks(path); err == nil {
		return r
	}
	return path
}

func isDir(path string) bool { st, err := os.Stat(path); return err == nil && st.IsDir() }

// logicalIn turns a host path into a logical one, reporting whether it is
// under the I/O root at all.
func logicalIn(p config.Paths, host string) (string, bool) {
	if p.Root == "" || p.Root == "/" {
		return host, true
	}
	rel, err := filepath.Rel(realPath(p.Root), host)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", false
	}
	return filepath.Join("/", rel), true
}

func logicalOf(p config.Paths, host string) string {
	if p.Root == "" || p.Root == "/" {
		return host
	}
	rel, _ := filepath.Rel(p.Root, host)
	return "/" + rel
}

// removeKubeconfigCopy removes ~/.kube/config when it is a copy of this
// cluster's admin.conf, as init's instructions tell users to make.
func (d *ResetData) removeKubeconfigCopy(phase string) error {
	admin, err := os.ReadFile(d.Paths.Host(d.Cfg.Paths.Kubeconfig("admin.conf")))
	if err != nil {
		return nil
	}
	home, err := os.UserHomeDir()
	if err != nil || d.Paths.Root != "" && d.Paths.Root != "/" {
		return nil
	}
	copyPath := filepath.Join(home, ".kube", "config")
	if b, err := os.ReadFile(copyPath); err == nil && bytes.Equal(b, admin) {
		return d.action(phase, "remove "+copyPath+" (a copy of this cluster's admin.conf)", func() error { return os.Remove(copyPath) })
	}
	return nil
}

// stopContainers stops every container of this node: runc kills and
// deletes the containers in the bundled containerd's runc state, its shims
// are killed, and any process still in the kubelet's cgroups is killed;
// then those cgroups are removed.
func (d *ResetData) stopContainers(phase string) error {
	containers := teardown.Containers(d.Paths.Host(d.Cfg.Paths.RuncRoot()))
	socket := d.Cfg.Paths.ContainerdSocket()
	shims := teardown.ShimPIDs(socket)
	cgroups := d.kubeletCgroups(phase)
	if len(containers) == 0 && len(shims) == 0 && len(cgroups) == 0 {
		return nil
	}
	return d.action(phase, fmt.Sprintf("stop %d containers and %d runtime shims, remove %d pod cgroups", len(containers), len(shims), len(cgroups)), func() error {
		return teardown.StopContainers(containers, socket, cgroups)
	})
}

// kubeletCgroups lists the kubelet's pod cgroup trees (<cgroupRoot>/kubepods
// in every mounted hierarchy). Only for the real host: a test root has none.
func (d *ResetData) kubeletCgroups(phase string) []string {
	if d.Paths.Root != "" && d.Paths.Root != "/" {
		return nil
	}
	// Without the kubelet's configuration (a second reset, or no kubelet
	// ever configured here) this node's cgroup root is unknown: the default
	// could be another kubelet's on the same machine, so leave them all.
	p := d.Cfg.Paths
	if !fsutil.Exists(d.Paths.Host(p.KubeletConfigFile())) && !fsutil.Exists(d.Paths.Host(p.KubeletFlagsFile())) {
		return nil
	}
	config, _ := os.ReadFile(p.KubeletConfigFile())
	root, err := teardown.CgroupRoot(config, kubeletFlag(p, "cgroup-root"))
	if err != nil {
		// Not knowing this kubelet's root, leave every kubelet's pods alone.
		d.Out.Warnf(phase, "%s: %v; leaving the pod cgroups in place (find them below /sys/fs/cgroup/…/kubepods)", p.KubeletConfigFile(), err)
		return nil
	}
	return teardown.PodCgroups("/sys/fs/cgroup", root)
}

// unmountAll unmounts what the kubelet and containerd mounted, and
// anything mounted in etcd's data directory: everything strictly below the
// kubelet's directory, kubeforge's run directory, containerd's root and
// etcd's data directory, deepest first (pod volumes, container root
// filesystems, sandboxes' shm). A directory that is itself a mount point (a
// disk of its own) stays mounted, and so does any path on keep (the paths
// reset empties): reset empties those instead. Elsewhere in kubeforge's
// state directory nothing is mounted by kubeforge: a disk there (an etcd
// data directory below it, whose manifest a first reset removed) stays.
func (d *ResetData) unmountAll(phase string, keep []string) error {
	dirs, targets, err := d.unmountPlan(keep)
	if err != nil || len(targets) == 0 {
		return err
	}
	return d.action(phase, fmt.Sprintf("unmount %d mounts below %s", len(targets), strings.Join(dirs, ", ")), func() error {
		return teardown.Unmount(targets)
	})
}

// unmountPlan returns the (logical) directories unmountAll unmounts below
// and the mount points (host paths) it unmounts.
func (d *ResetData) unmountPlan(keep []string) (dirs, targets []string, err error) {
	p := d.Cfg.Paths
	dataDir, _ := etcdDataDir(d.Paths, p)
	dirs = []string{p.KubeletDir, p.RunDir, p.ContainerdRoot(), dataDir}
	var below, kept []string
	for _, dir := range dirs {
		below = append(below, realPath(d.Paths.Host(dir)))
	}
	for _, k := range keep {
		kept = append(kept, realPath(d.Paths.Host(k)))
	}
	mounts, err := teardown.MountPoints()
	if err != nil {
		return nil, nil, err
	}
	return dirs, teardown.UnmountTargets(mounts, below, kept), nil
}

// cleanupNetwork removes the pod bridge, the VXLAN device, the routes to
// other nodes' pods, the pod network agent's masquerading table and the
// iptables/nftables rules kube-proxy, the kubelet, the CNI plugins and the
// network policy controller created (components/node/teardown finds them).
func (d *ResetData) cleanupNetwork(phase string) error {
	var errs []error
	for _, s := range teardown.Network(manifests.BridgeName, manifests.VXLANName, manifests.PodNetworkTable, manifests.NetworkPolicyTables) {
		errs = append(errs, d.action(phase, s.What, s.Run))
	}
	return errors.Join(errs...)
}

// localPathRoot is the local-path addon's volume root on this node
// (addons.localPath.root of the node's KubeforgeConfiguration, the
// default when the file is absent or unreadable).
func (d *ResetData) localPathRoot() string {
	k, err := config.LoadKubeforge(d.Paths)
	if err != nil || k.Addons.LocalPath.Root == "" {
		return config.DefaultLocalPathRoot
	}
	return filepath.Clean(k.Addons.LocalPath.Root)
}

// Backups lists the etcd snapshots and upgrade backups on this node
// (logical paths), which reset deletes with kubeforge's state directory:
// reset names them before it asks, and again as it deletes them.
func (d *ResetData) Backups() []string {
	p := d.Cfg.Paths
	var out []string
	if snaps, err := etcdsnapshot.NewStore(d.Paths).List(); err == nil {
		for _, m := range snaps {
			out = append(out, filepath.Join(p.EtcdSnapshotDir(), m.Name+".db"))
		}
	}
	dir := filepath.Join(p.StateDir, "upgrade-backups")
	if entries, err := os.ReadDir(d.Paths.Host(dir)); err == nil {
		for _, e := range entries {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

// listBackups names the snapshots and backups reset is about to delete.
func (d *ResetData) listBackups(phase string) {
	b := d.Backups()
	if len(b) == 0 {
		return
	}
	d.Out.Printf(phase, "%s %d etcd snapshot(s) and upgrade backup(s) of this node: %s", d.deleting(), len(b), strings.Join(b, ", "))
}

// listVolumes names the local-path volume directories that reset is about
// to delete with their data.
func (d *ResetData) listVolumes(phase string) {
	root := d.localPathRoot()
	entries, err := os.ReadDir(d.Paths.Host(root))
	if err != nil {
		return // no root: no volumes
	}
	var names []string
	for _, e := range entries {
		names = append(names, filepath.Join(root, e.Name()))
	}
	if len(names) == 0 {
		d.Out.Printf(phase, "No local-path volumes in %s", root)
		return
	}
	d.Out.Printf(phase, "%s %d local-path volume(s) and their data: %s", d.deleting(), len(names), strings.Join(names, ", "))
}

// deleting is how reset's listings begin: "Deleting", or in a dry run
// "Would delete".
func (d *ResetData) deleting() string {
	if d.DryRun {
		return "Would delete"
	}
	return "Deleting"
}
