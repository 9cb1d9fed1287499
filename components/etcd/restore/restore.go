// Package restore brings a control-plane node's etcd back from a snapshot
// (`kubeforge etcd snapshot restore FILE`) as a new single-member cluster,
// with etcd's own restore (go.etcd.io/etcd/etcdutl/v3/snapshot). It imports
// etcd's server packages, which is why it lives under components/ while
// saving and listing snapshots (package etcdsnapshot) stay light.
package restore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"
	etcdutl "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/components/kubelet/staticpod"
	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/encryption"
	"github.com/kubeforge/kubeforge/etcdsnapshot"
	"github.com/kubeforge/kubeforge/internal/fsutil"
	"github.com/kubeforge/kubeforge/internal/progress"
	"github.com/kubeforge/kubeforge/manifests"
)

const phase = "etcd-restore"

// RevisionBump is added to the snapshot's revision, and the restored
// revisions marked compacted, as etcd advises for Kubernetes: the API
// server's watch caches and every client's informers then see a compaction
// and list again, instead of waiting for revisions they already saw.
const RevisionBump = 1_000_000_000

// RestoredAnnotation on the etcd static pod says when and from which
// snapshot (the start of its sha256) etcd was last restored.
const RestoredAnnotation = "kubeforge.io/etcd-restored"

// Options configure Restore.
type Options struct {
	Paths config.Paths
	// File is the snapshot (a path, or a name in the node's store).
	File string
	// Timeout bounds each wait (etcd stopping, etcd and the API server
	// coming back); 3 minutes by default.
	Timeout time.Duration
	Out     *progress.Reporter
	// Now is the clock (time.Now by default).
	Now func() time.Time
	// IgnoreMissingKeys restores a snapshot whose Secrets are encrypted
	// with keys this node does not have (checkSecretKeys), losing them.
	IgnoreMissingKeys bool
}

// Result says where things went.
type Result struct {
	Snapshot etcdsnapshot.Meta
	// OldData is where the member's previous data directory was kept.
	OldData string
	// OldManifest is the etcd manifest as it was.
	OldManifest string
}

// Status is etcd's own check of a snapshot file (etcdutl snapshot status):
// bolt's consistency check of every page, the revision and the key count.
func Status(path string) (etcdutl.Status, error) {
	return etcdutl.NewV3(zap.NewNop()).Status(path)
}

// Verify checks a snapshot file before anything is touched: etcd's
// integrity hash, the metadata's sha256 when the store has it, and
// etcdutl's status check.
func Verify(path string, m *etcdsnapshot.Meta) (etcdsnapshot.Meta, error) {
	got, err := etcdsnapshot.Check(path, m)
	if err != nil {
		return got, err
	}
	st, err := Status(path)
	if err != nil {
		return got, fmt.Errorf("%s: etcd's snapshot check failed: %w", path, err)
	}
	got.Revision = st.Revision
	return got, nil
}

// Restore restores o.File into this node's etcd member as a single-member
// cluster: it verifies the file, restores it into a new directory beside
// the data (the running etcd is not touched until that worked), stops
// etcd (its manifest moved aside, the kubelet removes the pod), keeps the
// old data, puts the restored data in place, rewrites the manifest for a
// single member and waits for etcd and the API server.
func Restore(ctx context.Context, o Options) (res Result, err error) {
	p, out := o.Paths, o.Out
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	if o.Timeout <= 0 {
		o.Timeout = 3 * time.Minute
	}
	stamp := now().UTC().Format("20060102T150405Z")
	manifest := p.Host(p.Manifest(manifests.Etcd))
	workDir := p.Host(filepath.Join(p.StateDir, "etcd-restore"))
	aside := filepath.Join(workDir, "etcd.yaml") // the manifest while etcd is stopped

	// The member, from its manifest (or, after an interrupted restore,
	// from the copy moved aside).
	mem, err := etcdsnapshot.ReadMember(p)
	if errors.Is(err, etcdsnapshot.ErrNoEtcd) && fsutil.Exists(aside) {
		data, rerr := os.ReadFile(aside)
		if rerr != nil {
			return res, rerr
		}
		mem, err = etcdsnapshot.ParseMember(aside, data)
		out.Warnf(phase, "Found the etcd manifest moved aside by an interrupted restore (%s); continuing from it", aside)
	}
	if err != nil {
		return res, err
	}

	// 1. Verify, before anything is touched.
	store := etcdsnapshot.NewStore(p)
	file, meta := store.Resolve(o.File)
	start := time.Now()
	got, err := Verify(file, meta)
	if err != nil {
		return res, fmt.Errorf("refusing to restore: %w (nothing was changed)", err)
	}
	keys, kerr := checkSecretKeys(p, file)
	switch {
	case kerr != nil && !o.IgnoreMissingKeys:
		return res, fmt.Errorf("refusing to restore: %w (nothing was changed)", kerr)
	case kerr != nil:
		out.Warnf(phase, "Restoring anyway (--ignore-missing-encryption-keys): %v", kerr)
	case keys.Warning != "":
		out.Warnf(phase, "%s", keys.Warning)
	case len(keys.Add) > 0:
		out.Printf(phase, "The snapshot's Secrets are encrypted with the retired key(s) %s, which this node kept in %s: they go back into %s once the API server has stopped",
			keys.names(), encryption.RetiredKeysFile(keys.ConfigFile), keys.ConfigFile)
	}
	got.Name = filepath.Base(file)
	res.Snapshot = got
	out.Done(phase, "verified", file, start, "Snapshot %s is sound: %d bytes, revision %d, sha256 %s", file, got.Size, got.Revision, got.SHA256)

	// 2. Restore into a new directory inside the data directory (the same
	// file system, which may be a mount point), with the running etcd
	// untouched.
	dataDir := p.Host(mem.DataDir)
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return res, err
	}
	tmp := filepath.Join(dataDir, "restore-"+stamp)
	_ = os.RemoveAll(tmp)
	start = time.Now()
	err = etcdutl.NewV3(zap.NewNop()).Restore(etcdutl.RestoreConfig{
		SnapshotPath:        file,
		Name:                mem.Name,
		OutputDataDir:       tmp,
		PeerURLs:            []string{mem.PeerURL},
		InitialCluster:      mem.Name + "=" + mem.PeerURL,
		InitialClusterToken: restoredClusterToken(mem, stamp),
		RevisionBump:        RevisionBump,
		MarkCompacted:       true,
	})
	if err != nil {
		_ = os.RemoveAll(tmp)
		return res, fmt.Errorf("restore %s with etcd's restore into %s: %w (the running etcd was not touched)", file, tmp, err)
	}
	defer os.RemoveAll(tmp) // left over only when a later step failed
	out.Done(phase, "restored", tmp, start, "Restored the snapshot into %s as member %s (%s), revision bumped by %d", tmp, mem.Name, mem.PeerURL, RevisionBump)

	// 3. Stop the API server, the controller manager and the scheduler,
	// then etcd: move their manifests aside; the kubelet stops the pods.
	if err := os.MkdirAll(workDir, 0o700); err != nil {
		return res, err
	}
	keptManifest := filepath.Join(workDir, "etcd.yaml."+stamp)
	if _, err := fsutil.WriteFile(keptManifest, mem.ManifestBytes, 0o600); err != nil {
		return res, fmt.Errorf("keep a copy of the etcd manifest: %w", err)
	}
	res.OldManifest = keptManifest
	comps := companionsOf(p, workDir)
	defer func() {
		// On failure, the others run again (etcd as the error says).
		if err != nil {
			for _, c := range comps {
				if started, perr := c.start(); perr != nil {
					out.Warnf(phase, "%v", perr)
				} else if started {
					out.Printf(phase, "Put the %s manifest back in %s", c.name, c.manifest)
				}
			}
		}
	}()
	start = time.Now()
	var stopped []string
	for _, c := range comps {
		moved, err := c.stop()
		if err != nil {
			return res, err
		}
		if moved || fsutil.Exists(c.aside) {
			stopped = append(stopped, c.name)
		}
	}
	// The API server goes first, while etcd still answers: its requests
	// in flight end and it exits at once, and so do the kubelet's calls
	// to delete the stopped pods' mirror pods. With etcd gone first, those
	// calls hung in the API server (and the kubelet's housekeeping with
	// them, 28 s) until the kubelet killed it after its 30 s grace period.
	if addr := comps[0].apiServerAddr(); addr != "" {
		out.Printf(phase, "Moved the manifests of %s to %s; waiting for the kubelet to stop the API server", strings.Join(stopped, ", "), workDir)
		if err := waitClosed(ctx, addr, o.Timeout); err != nil {
			return res, fmt.Errorf("the API server did not stop: %w", err)
		}
		out.Done(phase, "stopped", "", start, "The API server has stopped")
		start = time.Now()
	}
	if fsutil.Exists(manifest) {
		// A copy, then the removal: the state directory may be on
		// another file system than the manifests.
		if _, err := fsutil.WriteFile(aside, mem.ManifestBytes, 0o600); err != nil {
			return res, fmt.Errorf("move the etcd manifest aside to stop etcd: %w", err)
		}
		if err := os.Remove(manifest); err != nil {
			return res, fmt.Errorf("move the etcd manifest aside to stop etcd: %w", err)
		}
	}
	out.Printf(phase, "Moved the etcd manifest to %s; waiting for the kubelet to stop etcd", aside)
	member := filepath.Join(dataDir, "member")
	if err := waitStopped(ctx, member, o.Timeout); err != nil {
		return res, fmt.Errorf("%w; the manifest is at %s: move it back to %s to start the old etcd again", err, aside, manifest)
	}
	out.Done(phase, "stopped", "", start, "etcd has stopped")

	// 4. Keep the old data, put the restored data in place.
	if fsutil.Exists(member) {
		old, err := keepOld(dataDir, member, stamp)
		if err != nil {
			return res, fmt.Errorf("move the old etcd data aside: %w; the manifest is at %s", err, aside)
		}
		res.OldData = old
		out.Printf(phase, "Kept the old etcd data in %s (delete it once the restored cluster is fine)", old)
	}
	if err := os.Rename(filepath.Join(tmp, "member"), member); err != nil {
		return res, fmt.Errorf("put the restored data in place: %w; the manifest is at %s", err, aside)
	}
	_ = os.RemoveAll(tmp)

	// 5. The manifest, for a single member, back in place, once the
	// kubelet has let go of the old pod: the new one has the same name,
	// and a static pod that finds another of its name still there waits
	// 10-15 s before the kubelet looks at it again.
	start = time.Now()
	if waited, err := waitPodReleased(ctx, cgroupFS, kubeletCgroupRoot(p), podUID(mem.ManifestBytes, p.Manifest(manifests.Etcd), mem.Name), "the old etcd pod", 15*time.Second); err != nil {
		out.Warnf(phase, "%v; starting etcd anyway", err)
	} else if waited {
		out.Done(phase, "released", "", start, "The kubelet has let go of the old etcd pod")
	}
	pod, changed, err := mem.SingleMemberPod()
	if err != nil {
		return res, fmt.Errorf("rewrite the etcd manifest: %w; the manifest is at %s", err, aside)
	}
	// A new annotation makes it a new static pod for the kubelet (a pod's
	// UID is its manifest's hash), never the old one coming back.
	etcdsnapshot.Annotate(pod, RestoredAnnotation, stamp+" "+got.SHA256[:12])
	fixed, err := manifests.MarshalPod(pod)
	if err != nil {
		return res, fmt.Errorf("write the etcd manifest: %w; the manifest is at %s", err, aside)
	}
	if changed {
		out.Printf(phase, "The etcd manifest now names %s as the only member (was: %s)", mem.Name, flagOr(mem, "initial-cluster"))
	}
	if _, err := fsutil.WriteFile(manifest, fixed, 0o600); err != nil {
		return res, fmt.Errorf("write the etcd manifest: %w", err)
	}
	_ = os.Remove(aside)

	// The API server is stopped, so the node service's sync of the
	// encryption configuration cannot write over the keys put back: the
	// API server starts with them, reads the restored rotation state, and
	// the sync then writes that state's configuration (the snapshot's).
	if err := keys.addKeys(p); err != nil {
		return res, fmt.Errorf("put the retired encryption key(s) %s back into %s: %w; the manifest is at %s", keys.names(), keys.ConfigFile, err, aside)
	}
	if len(keys.Add) > 0 {
		out.Printf(phase, "Put the retired encryption key(s) %s back into %s", keys.names(), keys.ConfigFile)
	}

	// 6. Wait for etcd, then the API server.
	start = time.Now()
	if err := waitHTTP(ctx, "http://127.0.0.1:2381/readyz", o.Timeout); err != nil {
		return res, fmt.Errorf("etcd did not become ready after the restore: %w (see kubectl/crictl logs of etcd; the old data is in %s, the old manifest in %s)", err, res.OldData, keptManifest)
	}
	out.Done(phase, "etcd", "", start, "etcd is ready")

	// 7. The API server on the restored data, and the controllers. All
	// are back before the API server serves: the kubelet then finds the
	// restored data's mirror pods of its static pods (the same
	// manifests) and keeps them. A static pod put back later found its
	// mirror pod deleted as an orphan meanwhile, and the kubelet made a
	// new one only at its next periodic sync, a minute or more later.
	// Each manifest put back is the pod that was stopped (the same bytes,
	// so the same UID), and a kubelet that has not forgotten the stopped
	// pod yet ignores it: on a loaded machine the API server then never
	// came back (connection refused for 3 minutes). So each waits, as
	// etcd's did, until the kubelet has let go of the old pod.
	start = time.Now()
	root := kubeletCgroupRoot(p)
	var started []string
	for _, c := range comps {
		data, _ := os.ReadFile(c.aside) // none: start reports it
		if _, err := waitPodReleased(ctx, cgroupFS, root, podUID(data, p.Manifest(c.name), mem.Name), "the old "+c.name+" pod", 30*time.Second); err != nil {
			out.Warnf(phase, "%v; putting it back anyway", err)
		}
		if ok, err := c.start(); err != nil {
			return res, err
		} else if ok {
			started = append(started, c.name)
		}
	}
	if len(started) > 0 {
		out.Printf(phase, "Put the manifests of %s back", strings.Join(started, ", "))
	}
	if err := waitAPIServer(ctx, p, o.Timeout, out); err != nil {
		return res, err
	}
	out.Done(phase, "apiserver", "", start, "The API server is ready")
	return res, nil
}

// companions are the control-plane components a restore stops before etcd
// and starts again after it, the API server first. Kubernetes' own restore
// procedure stops every API server while etcd is replaced and restarts
// the scheduler and the controller manager after it, so that none of them
// serves or acts on what it read from the replaced data. It also makes
// the restore fast: an API server left running without etcd holds every
// call the kubelet makes to it (seen: its housekeeping stuck 28 s on
// mirror-pod deletions), and the restore waited 52 s for etcd and 76 s
// more for the API server that way; with the API server gone those calls
// fail at once, and a new API server starts on the new etcd.
// They are every control-plane component but etcd, in manifests'
// start order, which puts the API server first (apiServerAddr reads it).
var companions = companionNames()

func companionNames() []string {
	var out []string
	for _, c := range manifests.ControlPlane {
		if c.Name != manifests.Etcd {
			out = append(out, c.Name)
		}
	}
	return out
}

// companion is one of them: its manifest, and where a restore keeps it
// while the component is stopped.
type companion struct {
	name, manifest, aside string
}

func companionsOf(p config.Paths, workDir string) []companion {
	var cs []companion
	for _, n := range companions {
		cs = append(cs, companion{name: n, manifest: p.Host(p.Manifest(n)), aside: filepath.Join(workDir, n+".yaml")})
	}
	return cs
}

// stop moves the manifest aside (a copy, then the removal: the state
// directory may be on another file system). It reports whether it did;
// a manifest already aside (an interrupted restore) stays there.
func (c companion) stop() (bool, error) {
	data, err := os.ReadFile(c.manifest)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err == nil {
		_, err = fsutil.WriteFile(c.aside, data, 0o600)
	}
	if err == nil {
		err = os.Remove(c.manifest)
	}
	if err != nil {
		return false, fmt.Errorf("move the %s manifest aside to stop it during the restore: %w", c.name, err)
	}
	return true, nil
}

// start puts the manifest moved aside back; a manifest put back by hand
// meanwhile wins. It reports whether it wrote the manifest.
func (c companion) start() (bool, error) {
	data, err := os.ReadFile(c.aside)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read the %s manifest kept during the restore: %w; copy %s to %s", c.name, err, c.aside, c.manifest)
	}
	wrote := false
	if !fsutil.Exists(c.manifest) {
		if _, err := fsutil.WriteFile(c.manifest, data, 0o600); err != nil {
			return false, fmt.Errorf("put the %s manifest back: %w; copy %s to %s", c.name, err, c.aside, c.manifest)
		}
		wrote = true
	}
	return wrote, os.Remove(c.aside)
}

// apiServerAddr is where the API server of the manifest kept aside
// listens (its --advertise-address and --secure-port), or "" when that
// manifest is not there.
func (c companion) apiServerAddr() string {
	data, err := os.ReadFile(c.aside)
	if err != nil {
		return ""
	}
	flags := manifestFlags(data)
	host := flags["advertise-address"]
	if b := flags["bind-address"]; b != "" && b != "0.0.0.0" && b != "::" {
		host = b
	}
	if host == "" {
		host = "127.0.0.1"
	}
	port := flags["secure-port"]
	if port == "" {
		port = strconv.Itoa(config.DefaultBindPort)
	}
	return net.JoinHostPort(host, port)
}

// manifestFlags are the --name=value flags of a static pod's first
// container.
func manifestFlags(data []byte) map[string]string {
	pod, err := manifests.UnmarshalPod(data)
	if err != nil {
		return map[string]string{}
	}
	return manifests.PodFlags(pod)
}

// waitClosed waits until nothing accepts connections at addr.
func waitClosed(ctx context.Context, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	for {
		dctx, dcancel := context.WithTimeout(ctx, time.Second)
		c, err := d.DialContext(dctx, "tcp", addr)
		dcancel()
		if err != nil && ctx.Err() == nil {
			return nil
		}
		if c != nil {
			c.Close()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s still accepts connections after %s", addr, timeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func flagOr(m etcdsnapshot.Member, name string) string {
	if v := m.Flags[name]; v != "" {
		return v
	}
	return "unset"
}

// restoredClusterToken is the restored cluster's token: a new one, so that
// the restored member and cluster get new IDs. With the old token a member
// restored on the node that made the cluster has the very IDs the cluster
// had at its start, and the other control-plane nodes, still running the
// old cluster until they are reset, send it raft messages it accepts and
// cannot place: etcd then stops on an out-of-range commit index, again at
// every restart (seen in TestMultiNodeHA). etcd's restore documentation
// asks for a new token for this reason.
func restoredClusterToken(m etcdsnapshot.Member, stamp string) string {
	return initialClusterToken(m) + "-restored-" + strings.ToLower(stamp)
}

// initialClusterToken is the manifest's, or etcd's default.
func initialClusterToken(m etcdsnapshot.Member) string {
	if v := m.Flags["initial-cluster-token"]; v != "" {
		return v
	}
	return "etcd-cluster"
}

// keepOld moves the member directory next to the data directory, or,
// when the data directory is a mount point, inside it.
func keepOld(dataDir, member, stamp string) (string, error) {
	old := filepath.Clean(dataDir) + ".before-restore-" + stamp
	if err := os.MkdirAll(old, 0o700); err == nil {
		if err := os.Rename(member, filepath.Join(old, "member")); err == nil {
			return old, nil
		}
		_ = os.Remove(old)
	}
	old = filepath.Join(dataDir, "member.before-restore-"+stamp)
	return old, os.Rename(member, old)
}

// waitStopped waits until no process holds etcd's WAL files locked (etcd
// locks each while it runs) and its metrics port stops answering.
func waitStopped(ctx context.Context, member string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if !answers(ctx, "http://127.0.0.1:2381/readyz") && !walLocked(filepath.Join(member, "wal")) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcd did not stop within %s", timeout)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func walLocked(dir string) bool {
	names, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
	for _, n := range names {
		l, err := fileutil.TryLockFile(n, os.O_RDWR, fileutil.PrivateFileMode)
		if err != nil {
			return true
		}
		_ = l.Close()
	}
	return false
}

func answers(ctx context.Context, url string) bool {
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

func waitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				rcancel()
				return nil
			}
			err = fmt.Errorf("%s: %s", url, resp.Status)
		}
		rcancel()
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready within %s: %v", timeout, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// waitAPIServer waits for the API server's /readyz with admin.conf.
func waitAPIServer(ctx context.Context, p config.Paths, timeout time.Duration, out *progress.Reporter) error {
	logical := p.Kubeconfig("admin.conf")
	cfg, err := clientcmd.BuildConfigFromFlags("", p.Host(logical))
	if err != nil {
		return fmt.Errorf("load %s: %w", logical, err)
	}
	cfg.Timeout = 5 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	said := start
	var last error
	for {
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").Param("verbose", "true").DoRaw(ctx)
		if err == nil {
			return nil
		}
		last = err
		if failed := notReady(body); failed != "" {
			last = errors.New(failed) // the server's own message repeats the whole list
		}
		// A wait of minutes says every 30 s what it waits for.
		if time.Since(said) >= 30*time.Second {
			said = time.Now()
			out.Printf(phase, "Still waiting for the API server after %s: %v", time.Since(start).Round(time.Second), last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the API server did not become ready within %s after the restore: %v", timeout, last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// notReady names the failed checks of a verbose /readyz answer (its
// "[-]name failed" lines), or is "" when there are none.
func notReady(body []byte) string {
	var failed []string
	for _, l := range strings.Split(string(body), "\n") {
		if name, ok := strings.CutPrefix(strings.TrimSpace(l), "[-]"); ok {
			name, _, _ = strings.Cut(name, " ")
			failed = append(failed, name)
		}
	}
	if len(failed) == 0 {
		return ""
	}
	return "not ready: " + strings.Join(failed, ", ")
}

// cgroupFS is where the node's cgroups are mounted.
const cgroupFS = "/sys/fs/cgroup"

// podUID is the UID the kubelet gave the static pod of manifest at path
// on node (its hash of the manifest, the node's name and the path), or ""
// when that cannot be known.
func podUID(manifest []byte, path, node string) string {
	if len(manifest) == 0 {
		return ""
	}
	uid, err := staticpod.Hash(manifest, path, node)
	if err != nil {
		return ""
	}
	return uid
}

// kubeletCgroupRoot is the kubelet's cgroupRoot with the cgroupfs driver
// (its pods' cgroups are below it), or "" (the whole hierarchy).
func kubeletCgroupRoot(p config.Paths) string {
	data, err := os.ReadFile(p.Host(p.KubeletConfigFile()))
	if err != nil {
		return ""
	}
	var kc struct {
		CgroupRoot   string `json:"cgroupRoot"`
		CgroupDriver string `json:"cgroupDriver"`
	}
	if yaml.Unmarshal(data, &kc) != nil || kc.CgroupDriver == "systemd" {
		return ""
	}
	return kc.CgroupRoot
}

// waitPodReleased waits, at most max, until the kubelet has removed the
// cgroup of the stopped pod uid: the last thing it does for a pod before
// it forgets it and lets another static pod of the same name start. It
// reports whether there was such a cgroup to wait for; a UID it cannot
// find (a runtime without pod cgroups) costs nothing.
func waitPodReleased(ctx context.Context, fs, root, uid, what string, max time.Duration) (bool, error) {
	if uid == "" {
		return false, nil
	}
	base := filepath.Join(fs, root)
	if _, err := os.Stat(filepath.Join(fs, "cgroup.controllers")); err != nil {
		base = filepath.Join(fs, "memory", root) // cgroup v1: one hierarchy is enough
	}
	deadline := time.Now().Add(max)
	for waited := false; ; waited = true {
		if !podCgroupExists(base, uid) {
			return waited, nil
		}
		if time.Now().After(deadline) {
			return waited, fmt.Errorf("the kubelet still had the cgroup of %s (UID %s) after %s", what, uid, max)
		}
		select {
		case <-ctx.Done():
			return waited, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// podCgroupExists reports whether a directory below base (4 levels at
// most: kubepods, QoS class, pod) is the cgroup of pod uid, as the
// kubelet names it with the cgroupfs driver (pod<uid>) or the systemd one
// (kubepods-<qos>-pod<uid>.slice, dashes as underscores).
func podCgroupExists(base, uid string) bool {
	names := []string{"pod" + uid, "pod" + strings.ReplaceAll(uid, "-", "_") + ".slice"}
	found := false
	_ = filepath.WalkDir(base, func(path string, d os.DirEntry, err error) error {
		if err != nil || found {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			return nil
		}
		n := d.Name()
		for _, want := range names {
			if n == want || strings.HasSuffix(n, "-"+want) {
				found = true
				return filepath.SkipAll
			}
		}
		if rel, _ := filepath.Rel(base, path); rel != "." && strings.Count(rel, string(filepath.Separator)) >= 3 {
			return filepath.SkipDir
		}
		return nil
	})
	return found
}
