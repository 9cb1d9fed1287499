package phases

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	certutil "k8s.io/client-go/util/cert"

	"github.com/kubeforge/kubeforge/components/node"
	"github.com/kubeforge/kubeforge/components/node/proc"
	"github.com/kubeforge/kubeforge/config"
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
	manifest := d.Paths.Host(d.Cfg.Paths.Manifest(manifests.Etcd))
	name, endpoints := etcdManifestMember(manifest)
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

// etcdManifestMember reads --name and the client URLs from the etcd manifest.
func etcdManifestMember(manifest string) (name string, endpoints []string) {
	b, err := os.ReadFile(manifest)
	if err != nil {
		return "", nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "- --name="); ok {
			name = v
		}
		if v, ok := strings.CutPrefix(line, "- --advertise-client-urls="); ok {
			endpoints = append([]string{"https://127.0.0.1:2379"}, strings.Split(v, ",")...)
		}
	}
	return name, endpoints
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
			return node.Stop(sctx, p)
		}))
	}
	try(d.cleanupRuntime(ctx, phase))
	try(d.stopContainers(phase))
	remove := d.resetPaths()
	try(d.unmountAll(phase, remove))
	try(d.removeKubeconfigCopy(phase))
	// Read the mounts again: unmountAll took those below the kubelet's,
	// containerd's and etcd's directories away.
	list, err := mountPoints()
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("read the mount table: %w; no file was removed", err))...)
	}
	mounts := newMountSet(list)
	if d.DryRun {
		// What a real run would have unmounted by now.
		if _, targets, err := d.unmountPlan(remove); err == nil {
			for _, t := range targets {
				delete(mounts, t)
			}
		}
	}
	d.listVolumes(phase)
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
		p.ManifestsDir, p.CertDir, filepath.Dir(p.AuthnConfigFile()),
		p.Kubeconfig("admin.conf"), p.Kubeconfig("super-admin.conf"), p.Kubeconfig("kubelet.conf"),
		p.Kubeconfig("bootstrap-kubelet.conf"), p.Kubeconfig("controller-manager.conf"), p.Kubeconfig("scheduler.conf"),
		p.KubeletDir, dataDir, d.localPathRoot(), p.StateDir, p.RunDir, p.LogDir,
		filepath.Join(p.CNIConfDir, manifests.CNIConfigName),
		filepath.Join(p.CNIStateDir, "networks", "kubeforge"),
		p.PodLogDir, p.ContainerLogDir, "/var/lib/kube-proxy",
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
	b, err := os.ReadFile(io.Host(manifest))
	if err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "- --data-dir="); ok {
				return v, manifest + ": --data-dir"
			}
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
func (d *ResetData) removePath(phase, path string, mounts mountSet, own map[string]bool) error {
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
	if below := mounts.outermostBelow(dir); len(below) > 0 {
		for i, b := range below {
			below[i] = path + strings.TrimPrefix(b, dir)
		}
		what += ", except what is mounted below it at " + strings.Join(below, ", ")
	}
	var kept []string
	err = d.action(phase, what, func() error {
		var err error
		kept, err = removeTree(dir, keepDir, mounts)
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

// removeTree removes path, a file or a directory tree, except the mount
// points in it (from mountinfo: a directory of another filesystem, or a
// bind-mounted file) and the directories leading to them, which it
// returns. With keepDir, a directory path itself stays (emptied).
func removeTree(path string, keepDir bool, mounts mountSet) (kept []string, err error) {
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !st.IsDir() || !keepDir && !mounts.below(path) {
		if mounts[path] {
			return []string{path}, nil
		}
		return nil, os.RemoveAll(path)
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, e := range entries {
		child := filepath.Join(path, e.Name())
		if mounts[child] {
			kept = append(kept, child)
			continue
		}
		k, err := removeTree(child, false, mounts)
		kept = append(kept, k...)
		errs = append(errs, err)
	}
	if len(kept) == 0 && !keepDir {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return kept, errors.Join(errs...)
}

// mountSet holds the mount points of this mount namespace.
type mountSet map[string]bool

func newMountSet(points []string) mountSet {
	m := mountSet{}
	for _, p := range points {
		m[p] = true
	}
	return m
}

// below reports whether anything is mounted strictly below dir.
func (m mountSet) below(dir string) bool {
	for p := range m {
		if strings.HasPrefix(p, dir+"/") {
			return true
		}
	}
	return false
}

// outermostBelow lists, sorted, the mount points strictly below dir that
// are not below another of them.
func (m mountSet) outermostBelow(dir string) []string {
	var out []string
	for p := range m {
		if !strings.HasPrefix(p, dir+"/") {
			continue
		}
		outer := true
		for q := filepath.Dir(p); q != dir && len(q) > len(dir); q = filepath.Dir(q) {
			if m[q] {
				outer = false
				break
			}
		}
		if outer {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
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
	root := d.Paths.Host(d.Cfg.Paths.RuncRoot())
	var ids []string
	namespaces, _ := os.ReadDir(root)
	for _, ns := range namespaces {
		entries, _ := os.ReadDir(filepath.Join(root, ns.Name()))
		for _, e := range entries {
			ids = append(ids, ns.Name()+"/"+e.Name())
		}
	}
	shims := d.shimPIDs()
	cgroups := d.kubeletCgroups()
	if len(ids) == 0 && len(shims) == 0 && len(cgroups) == 0 {
		return nil
	}
	return d.action(phase, fmt.Sprintf("stop %d containers and %d runtime shims, remove %d pod cgroups", len(ids), len(shims), len(cgroups)), func() error {
		var errs []error
		if len(ids) > 0 {
			runc, err := exec.LookPath("runc")
			if err != nil {
				errs = append(errs, fmt.Errorf("runc is not installed to delete the containers' state: %w", err))
			}
			for _, id := range ids {
				if runc == "" {
					break
				}
				ns, cid, _ := strings.Cut(id, "/")
				nsRoot := filepath.Join(root, ns)
				_ = exec.Command(runc, "--root", nsRoot, "kill", "--all", cid, "KILL").Run()
				_ = exec.Command(runc, "--root", nsRoot, "delete", "--force", cid).Run()
			}
		}
		for _, pid := range d.shimPIDs() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			proc.WaitGone(context.Background(), pid, nil, 5*time.Second)
		}
		errs = append(errs, removeCgroups(cgroups))
		return errors.Join(errs...)
	})
}

// shimPIDs lists the runc shims serving this node's containerd (their
// command line names its socket after -address). Only shims in this
// process's mount namespace count: another node on the same machine (its
// own mount namespace, the same socket path) has shims of its own.
func (d *ResetData) shimPIDs() []int {
	socket := d.Cfg.Paths.ContainerdSocket()
	mountNS, _ := os.Readlink("/proc/self/ns/mnt")
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ns, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "mnt")); err != nil || ns != mountNS {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if i := slices.Index(args, "-address"); i > 0 && i+1 < len(args) && args[i+1] == socket && slices.Contains(args, "-namespace") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// kubeletCgroups lists the kubelet's pod cgroup trees (<cgroupRoot>/kubepods
// in every mounted hierarchy). Only for the real host: a test root has none.
func (d *ResetData) kubeletCgroups() []string {
	if d.Paths.Root != "" && d.Paths.Root != "/" {
		return nil
	}
	// Without the kubelet's configuration (a second reset, or no kubelet
	// ever configured here) this node's cgroup root is unknown: the default
	// could be another kubelet's on the same machine, so leave them all.
	if !fsutil.Exists(d.Paths.Host(d.Cfg.Paths.KubeletConfigFile())) && !fsutil.Exists(d.Paths.Host(d.Cfg.Paths.KubeletFlagsFile())) {
		return nil
	}
	root := "/"
	if b, err := os.ReadFile(d.Cfg.Paths.KubeletConfigFile()); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "cgroupRoot:"); ok && strings.TrimSpace(v) != "" {
				root = strings.Trim(strings.TrimSpace(v), `"'`)
			}
		}
	}
	// The flag wins in the kubelet: a joined node's config.yaml may carry
	// the first node's cgroupRoot (from the cluster's kubelet-config) while
	// kubeletExtraArgs gave this node its own.
	if v := kubeletFlag(d.Cfg.Paths, "cgroup-root"); v != "" {
		root = v
	}
	var out []string
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*")
	hierarchies = append(hierarchies, "/sys/fs/cgroup")
	for _, h := range hierarchies {
		dir := filepath.Join(h, root, "kubepods")
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			out = append(out, dir)
		}
	}
	return out
}

// removeCgroups kills whatever still runs in the trees, then removes them
// bottom-up, retrying while the kernel finishes tearing processes down.
func removeCgroups(trees []string) error {
	var dirs []string
	for _, t := range trees {
		filepath.WalkDir(t, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	for _, dir := range dirs {
		if b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil {
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	}
	slices.SortFunc(dirs, func(a, b string) int { return len(b) - len(a) })
	var last error
	for attempt := 0; attempt < 50; attempt++ {
		last = nil
		for _, dir := range dirs {
			if err := syscall.Rmdir(dir); err != nil && !errors.Is(err, syscall.ENOENT) {
				last = fmt.Errorf("remove cgroup %s: %w", dir, err)
			}
		}
		if last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return last
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
		var errs []error
		for _, t := range targets {
			if err := syscall.Unmount(t, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("unmount %s: %w", t, err))
			}
		}
		return errors.Join(errs...)
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
	mounts, err := mountPoints()
	if err != nil {
		return nil, nil, err
	}
	return dirs, unmountTargets(mounts, below, kept), nil
}

// unmountTargets picks, from the mount points (in mountinfo order), those
// strictly below one of the directories below and not on keep, deepest
// first. A point mounted over twice is listed twice: each unmount takes one.
func unmountTargets(mounts, below, keep []string) []string {
	var targets []string
	for _, m := range mounts {
		if slices.Contains(keep, m) {
			continue
		}
		if slices.ContainsFunc(below, func(dir string) bool { return strings.HasPrefix(m, dir+"/") }) {
			targets = append(targets, m)
		}
	}
	slices.SortStableFunc(targets, func(a, b string) int { return len(b) - len(a) })
	return targets
}

// mountPoints lists this mount namespace's mount points (octal escapes decoded).
func mountPoints() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 {
			out = append(out, fsutil.UnescapeMountinfo(fields[4]))
		}
	}
	return out, s.Err()
}

// cleanupNetwork removes the pod bridge, the VXLAN device, the pod network
// agent's masquerading table and the iptables/nftables rules
// kube-proxy, the kubelet and the CNI plugins created (chains named KUBE-*
// and CNI-*, nftables tables kube-proxy) and the network policy
// controller's nftables tables.
func (d *ResetData) cleanupNetwork(phase string) error {
	var errs []error
	// Ask the kernel (netlink), not /sys/class/net: a node started with
	// `nsenter --net` keeps the host's /sys, which lists the host's links.
	if _, err := net.InterfaceByName(manifests.BridgeName); err == nil {
		errs = append(errs, d.action(phase, "delete the pod network bridge "+manifests.BridgeName, func() error {
			return run("ip", "link", "delete", manifests.BridgeName)
		}))
	}
	// The pod network's VXLAN device (its routes, neighbour and FDB
	// entries go with it).
	if _, err := net.InterfaceByName(manifests.VXLANName); err == nil {
		errs = append(errs, d.action(phase, "delete the pod network's VXLAN device "+manifests.VXLANName, func() error {
			return run("ip", "link", "delete", manifests.VXLANName)
		}))
	}
	// Routes the pod network agent made to other nodes' pods (protocol 75).
	for _, fam := range []string{"-4", "-6"} {
		if out, err := exec.Command("ip", fam, "route", "show", "proto", "75").Output(); err == nil && len(bytes.TrimSpace(out)) > 0 {
			errs = append(errs, d.action(phase, "remove the routes to other nodes' pods ("+fam+")", func() error {
				return run("ip", fam, "route", "flush", "proto", "75")
			}))
		}
	}
	for _, family := range []string{"ip", "ip6"} {
		if _, err := exec.LookPath("nft"); err != nil {
			break
		}
		// The pod network agent's masquerading.
		if exec.Command("nft", "list", "table", family, manifests.PodNetworkTable).Run() == nil {
			errs = append(errs, d.action(phase, "delete the nftables table "+family+" "+manifests.PodNetworkTable, func() error {
				return run("nft", "delete", "table", family, manifests.PodNetworkTable)
			}))
		}
		if exec.Command("nft", "list", "table", family, "kube-proxy").Run() == nil {
			errs = append(errs, d.action(phase, "delete the nftables table "+family+" kube-proxy", func() error {
				return run("nft", "delete", "table", family, "kube-proxy")
			}))
		}
	}
	// The network policy controller's tables (it removes them when it
	// stops; a killed one leaves them, holding new connections of the pods
	// a policy selects in a queue nobody reads).
	for _, table := range manifests.NetworkPolicyTables {
		if _, err := exec.LookPath("nft"); err != nil {
			break
		}
		if exec.Command("nft", "list", "table", "inet", table).Run() == nil {
			errs = append(errs, d.action(phase, "delete the nftables table inet "+table, func() error {
				return run("nft", "delete", "table", "inet", table)
			}))
		}
	}
	for _, tool := range []string{"iptables", "ip6tables"} {
		errs = append(errs, d.cleanupIptables(phase, tool))
	}
	return errors.Join(errs...)
}

func (d *ResetData) cleanupIptables(phase, tool string) error {
	save, err := exec.LookPath(tool + "-save")
	if err != nil {
		return nil
	}
	out, err := exec.Command(save).Output()
	if err != nil {
		return nil // no such table family (e.g. IPv6 disabled)
	}
	filtered, removed := FilterIptablesRules(string(out))
	if removed == 0 {
		return nil
	}
	return d.action(phase, fmt.Sprintf("remove %d %s rules and chains of kube-proxy, the kubelet and CNI", removed, tool), func() error {
		cmd := exec.Command(tool+"-restore", "-w", "5")
		cmd.Stdin = strings.NewReader(filtered)
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s-restore: %v: %s", tool, err, bytes.TrimSpace(b))
		}
		return nil
	})
}

// FilterIptablesRules drops, from iptables-save output, the chains named
// KUBE-* or CNI-* and every rule in them or jumping to them, and reports
// how many lines it dropped.
func FilterIptablesRules(save string) (string, int) {
	ours := func(s string) bool { return strings.HasPrefix(s, "KUBE-") || strings.HasPrefix(s, "CNI-") }
	var b strings.Builder
	removed := 0
	for _, line := range strings.Split(save, "\n") {
		f := strings.Fields(line)
		drop := false
		switch {
		case strings.HasPrefix(line, ":") && len(f) > 0:
			drop = ours(strings.TrimPrefix(f[0], ":"))
		case strings.HasPrefix(line, "-A ") && len(f) > 1:
			drop = ours(f[1])
			for i := 2; i+1 < len(f) && !drop; i++ {
				if (f[i] == "-j" || f[i] == "-g") && ours(f[i+1]) {
					drop = true
				}
			}
		}
		if drop {
			removed++
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return strings.TrimSuffix(b.String(), "\n") + "\n", removed
}

func run(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
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
	verb := "Deleting"
	if d.DryRun {
		verb = "Would delete"
	}
	if len(names) == 0 {
		d.Out.Printf(phase, "No local-path volumes in %s", root)
		return
	}
	d.Out.Printf(phase, "%s %d local-path volume(s) and their data: %s", verb, len(names), strings.Join(names, ", "))
}
