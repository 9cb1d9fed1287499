package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeforge/kubeforge/test/testbed"
)

// snapshotMeta is a row of `kubeforge etcd snapshot list -o json`.
type snapshotMeta struct {
	Name      string
	File      string
	Size      int64
	Revision  int64
	SHA256    string
	CreatedAt time.Time
	Node      string
	Scheduled bool
}

const snapshotInterval = 20 * time.Second

// etcdDiskSize is the size of the tmpfs TestEtcdSnapshot gives etcd's data
// directory: room for its 64 MiB WAL segments, the database and the copy a
// restore keeps, small enough to fill quickly.
const etcdDiskSize = "400m"

// TestEtcdSnapshot, on one single-node cluster: objects are created, a
// snapshot saved, the objects deleted and the snapshot restored: the
// objects are back and the cluster works (node Ready, a new pod runs). A
// truncated or corrupt file is refused before anything changes. Scheduled
// snapshots (every 20 s, 2 kept, from a KubeforgeConfiguration document in
// the init config) appear on time and are pruned; the manual one stays.
// etcd's data directory is a tmpfs of its own (a disk), which the restore
// keeps; at the end it fills up under writes (disk-full).
func TestEtcdSnapshot(t *testing.T) {
	testbed.RequireHost(t)
	if err := testbed.RequireStaticBusybox(); err != nil {
		t.Fatal(err)
	}
	tb := testbed.New(t)
	n := tb.AddNode("snap1")
	c := &cluster{t: t, n: n}
	cfg := n.WriteConfigFile("init-snapshots.yaml", n.InitConfigYAML()+`---
apiVersion: kubeforge.io/v1alpha1
kind: KubeforgeConfiguration
etcdSnapshots:
  interval: 20s
  retention: 2
`)
	step := func(name string, f func(t *testing.T)) {
		start := time.Now()
		ok := t.Run(name, func(t *testing.T) { c.t = t; f(t) })
		c.t = t
		t.Logf("step %s: %v", name, time.Since(start).Round(100*time.Millisecond))
		if !ok {
			t.FailNow()
		}
	}
	list := func(t *testing.T) []snapshotMeta {
		t.Helper()
		var l []snapshotMeta
		out := c.kubeforge(30*time.Second, "etcd", "snapshot", "list", "-o", "json")
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			t.Fatalf("snapshot list -o json: %v\n%s", err, out)
		}
		return l
	}
	scheduled := func(l []snapshotMeta) []snapshotMeta {
		var s []snapshotMeta
		for _, m := range l {
			if m.Scheduled {
				s = append(s, m)
			}
		}
		return s
	}
	run := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		return n.Kubeforge(ctx, args...)
	}

	var initStart time.Time
	step("init", func(t *testing.T) {
		// etcd's data directory on a filesystem of its own (a disk on a
		// real server; a small tmpfs here): restore must keep the mount
		// point, and disk-full below fills it.
		for _, args := range [][]string{{"mkdir", "-p", "/var/lib/etcd"}, {"mount", "-t", "tmpfs", "-o", "size=" + etcdDiskSize + ",mode=0700", "kf-etcd-disk", "/var/lib/etcd"}} {
			if out, err := n.Run(context.Background(), args[0], args[1:]...); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
		}
		initStart = time.Now()
		c.kubeforge(4*time.Minute, "init", "--config", cfg, "--advertise-address", n.IP.String(), "--node-name", n.Name, "--single-node")
		poll(t, 90*time.Second, "node Ready and control plane Running", func() string {
			if s := c.nodeReady(time.Time{}); s != "" {
				return s
			}
			return c.controlPlaneReady()
		})
		tarball := filepath.Join(n.Dir, "busybox.tar")
		if _, err := testbed.WriteBusyboxImage(tarball, busyboxRef); err != nil {
			t.Fatal(err)
		}
		c.kubeforge(2*time.Minute, "images", "import", tarball)
	})

	step("objects-and-save", func(t *testing.T) {
		c.kubectl("create", "namespace", "snap")
		for _, cm := range []string{"cm-1", "cm-2", "cm-3"} {
			c.kubectl("create", "configmap", cm, "-n", "snap", "--from-literal=k="+cm)
		}
		out := c.kubeforge(2*time.Minute, "etcd", "snapshot", "save", "before")
		if !strings.Contains(out, "Saved snapshot before") {
			t.Errorf("save output:\n%s", out)
		}
		var before *snapshotMeta
		for _, m := range list(t) {
			if m.Name == "before" {
				before = &m
			}
		}
		if before == nil {
			t.Fatal("snapshot list lacks before")
		}
		fi, err := os.Stat(n.Path("/var/lib/kubeforge/etcd-snapshots/before.db"))
		if err != nil || fi.Size() != before.Size || before.Revision <= 0 || !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(before.SHA256) ||
			before.Node != n.Name || before.Scheduled {
			t.Errorf("snapshot before: %+v (file: %v)", *before, err)
		}
		table := c.kubeforge(30*time.Second, "etcd", "snapshot", "list")
		if !strings.Contains(table, "before") || !strings.Contains(table, before.SHA256) {
			t.Errorf("snapshot list table:\n%s", table)
		}
		if out, err := run("etcd", "snapshot", "save", "before"); err == nil {
			t.Errorf("a second snapshot named before was accepted:\n%s", out)
		}
		if out, err := run("etcd", "snapshot", "save", "../escape"); err == nil {
			t.Errorf("a snapshot name with a path was accepted:\n%s", out)
		}
		// Changes after the snapshot, which the restore must undo.
		c.kubectl("delete", "configmap", "-n", "snap", "cm-1", "cm-2", "cm-3")
		c.kubectl("create", "configmap", "after-snapshot", "-n", "default", "--from-literal=k=v")
		if out, err := n.Kubectl("get", "configmap", "-n", "snap", "cm-1"); err == nil {
			t.Fatalf("cm-1 still there after it was deleted:\n%s", out)
		}
	})

	step("scheduled-on-time", func(t *testing.T) {
		var s []snapshotMeta
		poll(t, 3*snapshotInterval+30*time.Second, "two scheduled snapshots", func() string {
			if s = scheduled(list(t)); len(s) < 2 {
				return fmt.Sprintf("%d so far", len(s))
			}
			return ""
		})
		// They come every 20 s (the older ones pruned to 2): the newest is
		// recent, and two in a row are an interval apart.
		if age := time.Since(s[len(s)-1].CreatedAt); age > snapshotInterval+20*time.Second {
			t.Errorf("the newest scheduled snapshot %s is %v old; want at most about %v", s[len(s)-1].Name, age, snapshotInterval)
		}
		if gap := s[1].CreatedAt.Sub(s[0].CreatedAt); gap < snapshotInterval-time.Second || gap > snapshotInterval+10*time.Second {
			t.Errorf("scheduled snapshots %s and %s are %v apart, want %v", s[0].Name, s[1].Name, gap, snapshotInterval)
		}
		// The first came 20 s after the node service started its duties,
		// or as soon as etcd answered after that.
		if log, err := n.ReadFile("/var/log/kubeforge/node.log"); err == nil {
			if first := logTime(string(log), "saved a scheduled etcd snapshot"); first.IsZero() || first.Sub(initStart) > snapshotInterval+60*time.Second {
				t.Errorf("the first scheduled snapshot was saved at %v, init began at %v", first, initStart)
			}
		}
		for _, m := range s {
			if !strings.HasPrefix(m.Name, "etcd-snapshot-"+n.Name+"-") || m.Size <= 0 || len(m.SHA256) != 64 {
				t.Errorf("scheduled snapshot: %+v", m)
			}
		}
		st := c.kubeforge(30*time.Second, "node", "status")
		if !strings.Contains(st, "etcd-snapshots") || !strings.Contains(st, "next snapshot at") {
			t.Errorf("node status does not show the snapshot duty's health:\n%s", st)
		}
	})

	// inNode is a path as the node's processes see it (its own mounts).
	inNode := func(p string) string { return filepath.Join(fmt.Sprintf("/proc/%d/root", n.HolderPID()), p) }
	etcdFiles := func() string {
		var names []string
		for _, d := range []string{"/var/lib/etcd", "/var/lib"} {
			entries, _ := os.ReadDir(inNode(d))
			for _, e := range entries {
				names = append(names, d+"/"+e.Name())
			}
		}
		sort.Strings(names)
		return strings.Join(names, "\n")
	}
	step("corrupt-refused", func(t *testing.T) {
		data, err := os.ReadFile(n.Path("/var/lib/kubeforge/etcd-snapshots/before.db"))
		if err != nil {
			t.Fatal(err)
		}
		truncated := filepath.Join(n.Dir, "truncated.db")
		corrupt := filepath.Join(n.Dir, "corrupt.db")
		if err := os.WriteFile(truncated, data[:len(data)/2], 0o600); err != nil {
			t.Fatal(err)
		}
		bad := append([]byte{}, data...)
		bad[len(bad)/3] ^= 0xff
		if err := os.WriteFile(corrupt, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		manifest, _ := n.ReadFile("/etc/kubernetes/manifests/etcd.yaml")
		files := etcdFiles()
		etcdBefore := c.component("etcd")
		for _, f := range []string{truncated, corrupt} {
			out, err := run("etcd", "snapshot", "restore", f)
			if err == nil || !strings.Contains(out, "refusing to restore") {
				t.Errorf("restore %s: err %v, want a refusal\n%s", f, err, out)
			}
		}
		after, _ := n.ReadFile("/etc/kubernetes/manifests/etcd.yaml")
		if string(after) != string(manifest) {
			t.Errorf("the etcd manifest changed on a refused restore")
		}
		if f := etcdFiles(); f != files {
			t.Errorf("files changed on a refused restore:\nbefore:\n%s\nafter:\n%s", files, f)
		}
		if s := c.readyz(); s != "" {
			t.Error(s)
		}
		if etcdAfter := c.component("etcd"); len(etcdAfter) != 1 || len(etcdBefore) != 1 || etcdAfter[0].PID != etcdBefore[0].PID {
			t.Errorf("etcd was restarted by a refused restore: %v → %v", etcdBefore, etcdAfter)
		}
		c.kubectl("get", "configmap", "-n", "default", "after-snapshot")
	})

	var restoredAt time.Time
	step("restore", func(t *testing.T) {
		start := time.Now()
		out := c.kubeforge(5*time.Minute, "etcd", "snapshot", "restore", "before")
		restoredAt = time.Now()
		t.Logf("restore took %v:\n%s", time.Since(start).Round(100*time.Millisecond), out)
		defer keepLogs(t, n)
		if !strings.Contains(out, "Kept the old etcd data in") || !strings.Contains(out, "reset") {
			t.Errorf("restore output does not say where the old data is and what the other nodes do:\n%s", out)
		}
		if !strings.Contains(etcdFiles(), "before-restore-") {
			t.Errorf("the old etcd data was not kept:\n%s", etcdFiles())
		}
		poll(t, 90*time.Second, "the snapshot's objects back", func() string {
			out, err := n.Kubectl("get", "configmap", "-n", "snap", "-o", "name")
			if err != nil {
				return err.Error()
			}
			for _, cm := range []string{"cm-1", "cm-2", "cm-3"} {
				if !strings.Contains(out, "configmap/"+cm) {
					return "missing " + cm + " in " + out
				}
			}
			return ""
		})
		if out, err := n.Kubectl("get", "configmap", "-n", "default", "after-snapshot"); err == nil {
			t.Errorf("a configmap made after the snapshot survived the restore:\n%s", out)
		}
		poll(t, 90*time.Second, "node Ready and control plane Running after the restore", func() string {
			if s := c.readyz(); s != "" {
				return s
			}
			if s := c.nodeReady(start); s != "" {
				return s
			}
			return c.controlPlaneReady()
		})
		c.kubectl("run", "after-restore", "--image="+busyboxRef, "--image-pull-policy=Never", "--restart=Never", "--", "busybox", "sleep", "3600")
		poll(t, 90*time.Second, "a new pod runs after the restore", func() string {
			out, err := n.Kubectl("get", "pod", "after-restore", "-o", "jsonpath={.status.phase}")
			if err != nil {
				return err.Error()
			}
			if out != "Running" {
				return "phase " + out
			}
			return ""
		})
		members := c.kubeforge(30*time.Second, "etcd", "member", "list")
		if strings.Count(strings.TrimSpace(members), "\n") != 1 || !strings.Contains(members, n.Name) {
			t.Errorf("etcd member list after the restore, want this node alone:\n%s", members)
		}
		if out, err := run("etcd", "member", "remove", n.Name); err == nil || !strings.Contains(out, "kubeforge reset") {
			t.Errorf("removing this node's own member: %v\n%s", err, out)
		}
		if out, err := run("etcd", "member", "remove", "no-such-node"); err == nil {
			t.Errorf("removing a member that does not exist succeeded:\n%s", out)
		}
	})

	step("retention", func(t *testing.T) {
		// By now (a few minutes after init, snapshots every 20 s) more than
		// two scheduled snapshots were taken; two are kept, and the manual
		// one. The schedule goes on after the restore: wait for its first
		// snapshot taken after it (at most an interval and some slack).
		var l []snapshotMeta
		poll(t, snapshotInterval+30*time.Second, "a scheduled snapshot taken after the restore", func() string {
			l = list(t)
			s := scheduled(l)
			if len(s) == 0 || s[len(s)-1].CreatedAt.Before(restoredAt) {
				return fmt.Sprintf("%d scheduled snapshots, none after %v", len(s), restoredAt.Format(time.TimeOnly))
			}
			return ""
		})
		if s := scheduled(l); len(s) != 2 {
			t.Errorf("%d scheduled snapshots kept, want 2: %+v", len(s), s)
		}
		var manual bool
		for _, m := range l {
			manual = manual || m.Name == "before"
		}
		if !manual {
			t.Error("the manual snapshot was pruned")
		}
		c.kubeforge(30*time.Second, "etcd", "snapshot", "delete", "before")
		if out, err := run("etcd", "snapshot", "delete", "before"); err == nil {
			t.Errorf("deleting a deleted snapshot succeeded:\n%s", out)
		}
	})

	// etcd's disk fills up while a client writes: the API server reports
	// etcd as failing, no acknowledged write is lost, nothing is corrupted,
	// and the node recovers by itself once space comes back.
	step("disk-full", func(t *testing.T) {
		api := apiClient(t, n, "")
		ns := "default"
		value := strings.Repeat("x", 256<<10)
		var acked []string
		write := func(i int) error {
			name := fmt.Sprintf("full-%d", i) // a new name per attempt: a timed-out create may have landed
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := api.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name},
				Data: map[string]string{"v": value}}, metav1.CreateOptions{})
			if err == nil {
				acked = append(acked, name)
			}
			return err
		}
		i := 0
		for ; i < 5; i++ {
			if err := write(i); err != nil {
				t.Fatalf("a write before the disk filled up: %v", err)
			}
		}
		// Fill the disk: dd stops at ENOSPC.
		fill := "/var/lib/etcd/filler"
		out, _ := n.Run(context.Background(), "dd", "if=/dev/zero", "of="+fill, "bs=1M")
		df, _ := n.Run(context.Background(), "df", "-k", "/var/lib/etcd")
		t.Logf("filled etcd's disk: %s\n%s", lastLine(out), df)
		filled := time.Now()
		var firstErr error
		var reported string
		deadline := filled.Add(3 * time.Minute)
		for time.Now().Before(deadline) && reported == "" {
			if err := write(i); err != nil && firstErr == nil {
				firstErr = err
				t.Logf("first write refused %v after the disk filled up (after %d acknowledged): %v", time.Since(filled).Round(100*time.Millisecond), len(acked), err)
			}
			i++
			if firstErr != nil {
				if s := c.readyz(); strings.Contains(s, "etcd") {
					reported = s
				}
			}
		}
		if firstErr == nil {
			t.Fatalf("%d writes of 256 KiB were acknowledged on a full disk in 3 min: the test did not fill etcd's disk", len(acked))
		}
		if reported == "" {
			t.Errorf("the API server's /readyz never reported etcd while its disk was full (last: %s)", c.readyz())
		} else {
			t.Logf("/readyz %v after the disk filled up: %s", time.Since(filled).Round(100*time.Millisecond), lastLine(reported))
		}
		if log, err := n.Run(context.Background(), "sh", "-c", "tail -n 400 /var/log/pods/kube-system_etcd-*/etcd/*.log"); err == nil && !strings.Contains(log, "no space left on device") {
			t.Logf("etcd's log does not name the full disk:\n%s", log)
		}

		// Space comes back: the node recovers by itself.
		if out, err := n.Run(context.Background(), "rm", "-f", fill); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		took := poll(t, 5*time.Minute, "/readyz ok and writes acknowledged again after space came back", func() string {
			if s := c.readyz(); s != "" {
				return s
			}
			if err := write(i); err != nil {
				i++
				return err.Error()
			}
			i++
			return ""
		})
		t.Logf("recovered %v after space came back", took.Round(100*time.Millisecond))

		// Every acknowledged write is there, whole.
		list, err := api.CoreV1().ConfigMaps(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, cm := range list.Items {
			have[cm.Name] = cm.Data["v"] == value
		}
		var lost []string
		for _, name := range acked {
			if !have[name] {
				lost = append(lost, name)
			}
		}
		t.Logf("%d writes acknowledged around the full disk", len(acked))
		if len(lost) > 0 {
			t.Errorf("%d acknowledged writes lost or changed: %v", len(lost), lost)
		}
		// Not corrupted: etcd's own check of its database (a snapshot
		// verifies the hash of what it reads) and its key space.
		out = c.kubeforge(2*time.Minute, "etcd", "snapshot", "save", "after-disk-full")
		if !strings.Contains(out, "Saved snapshot after-disk-full") {
			t.Errorf("snapshot after the disk was full:\n%s", out)
		}
		for _, name := range acked {
			_ = api.CoreV1().ConfigMaps(ns).Delete(context.Background(), name, metav1.DeleteOptions{})
		}
	})
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// logTime is the time= of the first slog line of log that contains msg.
func logTime(log, msg string) time.Time {
	for _, l := range strings.Split(log, "\n") {
		if !strings.Contains(l, msg) {
			continue
		}
		if v, ok := strings.CutPrefix(l, "time="); ok {
			v, _, _ = strings.Cut(v, " ")
			if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
				return t
			}
		}
	}
	return time.Time{}
}

// keepLogs copies the node's /var/log (the kubelet's, the node service's
// and the pods' logs) to $KUBEFORGE_E2E_LOGS/NODE, when that is set, for
// looking at timings after the test has torn the node down.
func keepLogs(t *testing.T, n *testbed.Node) {
	dir := os.Getenv("KUBEFORGE_E2E_LOGS")
	if dir == "" {
		return
	}
	dst := filepath.Join(dir, n.Name)
	_ = os.RemoveAll(dst)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Logf("keep logs: %v", err)
		return
	}
	if out, err := exec.Command("cp", "-r", n.Path("/var/log")+"/.", dst).CombinedOutput(); err != nil {
		t.Logf("keep logs in %s: %v %s", dst, err, out)
		return
	}
	t.Logf("kept node %s's /var/log in %s", n.Name, dst)
}
