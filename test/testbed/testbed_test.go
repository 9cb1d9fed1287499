package testbed

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/localcluster"
)

func runHost(name string, args ...string) error {
	_, err := outputHost(name, args...)
	return err
}

func outputHost(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// leftovers lists what of the given testbed still exists on the host.
func leftovers(id string, netns []string, cgroupRoots []string, dir string) []string {
	var left []string
	out, _ := outputHost("ip", "-o", "link", "show")
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "kftb"+id) {
			left = append(left, "link: "+line)
		}
	}
	for _, ns := range netns {
		if _, err := os.Lstat("/run/netns/" + ns); err == nil {
			left = append(left, "netns "+ns)
		}
	}
	hs, _ := localcluster.CgroupMounts()
	for _, h := range hs {
		for _, r := range cgroupRoots {
			if _, err := os.Stat(filepath.Join(h, r)); err == nil {
				left = append(left, "cgroup "+filepath.Join(h, r))
			}
		}
	}
	if _, err := os.Stat(dir); err == nil {
		left = append(left, "dir "+dir)
	}
	if _, err := os.Stat(filepath.Join(localcluster.RegistryDir, id+".json")); err == nil {
		left = append(left, "record "+id)
	}
	mounts, _ := localcluster.ReadMountinfo("/proc/self/mountinfo")
	for _, m := range mounts {
		if strings.Contains(m.Point, "kftb-"+id) || strings.Contains(m.Source, "kftb-"+id) || dir != "" && strings.HasPrefix(m.Point, dir) {
			left = append(left, "host mount "+m.Point)
		}
	}
	return left
}

// nodeNamespaces is what identifies a node's processes after it is gone.
type nodeNamespaces struct{ net, mnt, cgroup string }

func processesIn(ids []nodeNamespaces) []string {
	var left []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		net, _ := os.Readlink("/proc/" + e.Name() + "/ns/net")
		mnt, _ := os.Readlink("/proc/" + e.Name() + "/ns/mnt")
		for _, id := range ids {
			var pid int
			fmt.Sscan(e.Name(), &pid)
			if net == id.net || mnt == id.mnt || pid > 0 && localcluster.InCgroup(pid, id.cgroup) {
				cmd, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
				left = append(left, e.Name()+" "+strings.ReplaceAll(string(cmd), "\x00", " "))
			}
		}
	}
	return left
}

func TestTwoNodes(t *testing.T) {
	RequireHost(t)
	var (
		id         string
		dir        string
		netns      []string
		roots      []string
		namespaces []nodeNamespaces
	)
	// A shared mount of the host under /run: a node drops its copies of the
	// host's mounts there, which must not unmount the host's own.
	probe := fmt.Sprintf("/run/kftb-probe-%d", os.Getpid())
	if err := os.Mkdir(probe, 0o700); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(probe)
	if err := runHost("mount", "-t", "tmpfs", "kftb-probe", probe); err != nil {
		t.Fatal(err)
	}
	defer runHost("umount", probe)
	if err := runHost("mount", "--make-shared", probe); err != nil {
		t.Fatal(err)
	}
	// An unmount propagates through its parent's peer group: the inner mount
	// is what a node that shared the host's mounts would take away.
	inner := probe + "/inner"
	if err := os.Mkdir(inner, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := runHost("mount", "-t", "tmpfs", "kftb-probe-inner", inner); err != nil {
		t.Fatal(err)
	}
	defer runHost("umount", inner)
	ok := t.Run("bed", func(t *testing.T) {
		tb := New(t, WithBinary("/bin/true")) // no kubeforge needed here
		a, b := tb.AddNode("a"), tb.AddNode("b")
		if m, _ := localcluster.ReadMountinfo("/proc/self/mountinfo"); !containsMount(m, inner) {
			t.Fatalf("making a node unmounted the host's %s", inner)
		}
		if m, _ := a.Mounts(); containsMount(m, probe) {
			t.Errorf("the node sees the host's %s", probe)
		}
		id, dir = tb.ID, tb.Dir
		for _, n := range []*Node{a, b} {
			netns = append(netns, n.NetNS)
			roots = append(roots, n.CgroupRoot)
			namespaces = append(namespaces, nodeNamespaces{n.NetNSID(), n.MountNSID(), n.CgroupRoot})
		}
		ctx := context.Background()
		must := func(n *Node, args ...string) string {
			t.Helper()
			out, err := n.Run(ctx, args[0], args[1:]...)
			if err != nil {
				t.Fatal(err)
			}
			return out
		}

		// Network: own address, no default route, the others reachable.
		if out := must(a, "ip", "-4", "-o", "addr", "show", "eth0"); !strings.Contains(out, a.IP.String()+"/24") {
			t.Errorf("eth0 of a: %s", out)
		}
		if out := must(a, "ip", "route", "show", "default"); strings.TrimSpace(out) != "" {
			t.Errorf("a has a default route: %s", out)
		}
		if out := must(a, "ip", "-o", "link", "show", "lo"); !strings.Contains(out, "UP") {
			t.Errorf("lo of a is down: %s", out)
		}
		for _, ip := range []string{b.IP.String(), tb.Gateway.String()} {
			must(a, "busybox", "ping", "-c", "1", "-W", "2", ip)
		}
		if out := must(b, "cat", "/proc/sys/net/ipv4/ip_forward"); strings.TrimSpace(out) != "1" {
			t.Errorf("ip_forward in b: %s", out)
		}
		if _, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables"); err == nil {
			if out := must(b, "cat", "/proc/sys/net/bridge/bridge-nf-call-iptables"); strings.TrimSpace(out) != "1" {
				t.Errorf("bridge-nf-call-iptables in b: %s", out)
			}
		}
		// /sys is the host's (cgroups visible), not remounted.
		must(a, "test", "-d", "/sys/fs/cgroup/memory"+a.CgroupRoot)

		// Files: the kubeforge directories start empty, are private to each
		// node, and are ordinary directories that can be removed.
		for _, d := range []string{"/etc/kubernetes", "/etc/cni/net.d", "/var/lib", "/var/log", "/run"} {
			out := must(a, "ls", "-A", d)
			if d == "/var/lib" {
				out = strings.Replace(out, "kftb-bin", "", 1) // the node's link to the binary
			}
			if strings.TrimSpace(out) != "" && d != "/run" {
				t.Errorf("%s in a is not empty: %s", d, out)
			}
		}
		must(a, "sh", "-ec", `mkdir -p /etc/kubernetes/manifests /var/lib/kubelet /var/lib/etcd /var/log/kubeforge /run/kubeforge
			echo a > /etc/kubernetes/manifests/kftb-probe.yaml; echo a > /var/lib/etcd/probe; echo a > /run/kubeforge/probe`)
		must(b, "sh", "-ec", `! test -e /etc/kubernetes/manifests/kftb-probe.yaml; ! test -e /var/lib/etcd/probe; ! test -e /run/kubeforge/probe`)
		for _, p := range []string{"/etc/kubernetes/manifests/kftb-probe.yaml", "/var/lib/etcd/probe", "/run/kubeforge/probe"} {
			if _, err := os.Stat(p); err == nil {
				t.Errorf("%s of node a is on the host", p)
			}
		}
		if got, err := a.ReadFile("/run/kubeforge/probe"); err != nil || string(got) != "a\n" {
			t.Errorf("ReadFile: %q %v", got, err)
		}
		must(a, "sh", "-ec", "rm -r /etc/kubernetes /var/lib/etcd; mkdir /etc/kubernetes; rmdir /etc/kubernetes")
		must(a, "test", "-s", "/etc/hostname") // the rest of /etc is the host's

		// Mount propagation under /var/lib/kubelet: a mount made there after
		// a container (rslave bind) was set up shows up in the container,
		// and never on the host.
		must(a, "sh", "-ec", `mkdir -p /var/lib/kubelet/pods/v /run/ctr
			mount --rbind /var/lib/kubelet/pods /run/ctr
			mount --make-rslave /run/ctr
			mount -t tmpfs kftb-volume /var/lib/kubelet/pods/v
			grep -q ' /run/ctr/v ' /proc/self/mountinfo`)
		if out := must(a, "findmnt", "-n", "-o", "PROPAGATION", "--target", "/var/lib/kubelet"); !strings.Contains(out, "shared") {
			t.Errorf("/var/lib/kubelet propagation: %s", out)
		}
		if m, _ := localcluster.ReadMountinfo("/proc/self/mountinfo"); containsMount(m, "/var/lib/kubelet/pods/v") {
			t.Error("a node's mount propagated to the host")
		}
		if m, _ := b.Mounts(); containsMount(m, "/var/lib/kubelet/pods/v") {
			t.Error("a node's mount propagated to another node")
		}
		if left, _ := a.MountsUnder("/var/lib/kubelet"); len(left) != 1 {
			t.Errorf("MountsUnder /var/lib/kubelet: %v", left)
		}

		// Processes: found by namespace and cgroup, killed by KillAll.
		bg := a.Command(ctx, "sh", "-c", "sleep 1000 & sleep 1000 & wait")
		bg.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := bg.Start(); err != nil {
			t.Fatal(err)
		}
		go bg.Wait()
		inCg := exec.Command("sleep", "1000") // only in the cgroup root
		if err := inCg.Start(); err != nil {
			t.Fatal(err)
		}
		go inCg.Wait()
		for _, f := range []string{"cgroup.procs"} {
			p := filepath.Join("/sys/fs/cgroup/pids", a.CgroupRoot, f)
			if err := os.WriteFile(p, []byte(fmt.Sprint(inCg.Process.Pid)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, 5*time.Second, func() bool { return len(a.Processes()) >= 4 }, func() string { return fmt.Sprint(a.Processes()) })
		for _, p := range b.Processes() {
			t.Errorf("b has a process it should not: %v", p)
		}
		if err := a.KillAll(5 * time.Second); err != nil {
			t.Fatal(err)
		}

		// Crash: the node's own mounts go, /run is empty, the disk stays.
		must(a, "sh", "-ec", "mkdir -p /run/kubeforge /var/lib/kubeforge && echo x > /run/kubeforge/pid && echo y > /var/lib/kubeforge/state")
		if err := a.Crash(ctx); err != nil {
			t.Fatal(err)
		}
		must(a, "sh", "-ec", "! test -e /run/kubeforge; test -s /var/lib/kubeforge/state; ! grep -q ' /run/ctr' /proc/self/mountinfo")
		must(a, "sh", "-ec", "echo z > /run/kubeforge-after-crash")
	})
	if !ok {
		return
	}
	if left := leftovers(id, netns, roots, dir); len(left) > 0 {
		t.Errorf("left behind:\n%s", strings.Join(left, "\n"))
	}
	if left := processesIn(namespaces); len(left) > 0 {
		t.Errorf("processes left behind:\n%s", strings.Join(left, "\n"))
	}
}

func containsMount(ms []Mount, point string) bool {
	for _, m := range ms {
		if m.Point == point {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, timeout time.Duration, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out; %s", what())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSweep: a test process that dies without cleanup leaves its testbed
// behind; the next testbed removes it.
func TestSweep(t *testing.T) {
	if os.Getenv("KFTB_HELPER") != "" {
		return // run as the helper below, not as a test
	}
	RequireHost(t)
	killedHelperSwept(t, "TestSweepHelper", "KFTB_HELPER=1")
}

// TestSweepGuard: the clusters a test makes with `kubeforge cluster create
// --state-dir DIR` under a guard (localcluster.GuardStateDir) are removed
// by the next Sweep when the test dies without deleting them.
func TestSweepGuard(t *testing.T) {
	if os.Getenv("KFTB_HELPER") != "" {
		return
	}
	RequireHost(t)
	dir := t.TempDir()
	bedDir := killedHelperSwept(t, "TestSweepGuardHelper", "KFTB_HELPER=guard", "KFTB_STATE_DIR="+dir)
	if _, err := os.Stat(bedDir); !os.IsNotExist(err) {
		t.Errorf("the cluster's directory %s is still there (%v)", bedDir, err)
	}
	guards, _ := filepath.Glob(filepath.Join(localcluster.RegistryDir, "guard-*.json"))
	for _, g := range guards {
		if b, _ := os.ReadFile(g); strings.Contains(string(b), dir) {
			t.Errorf("the guard %s is still registered", g)
		}
	}
}

// killedHelperSwept runs this test binary's helper test (which makes a bed
// with one node running a process, prints "KFTB-READY id dir netns
// cgroup-root netns-id mntns-id" and waits), kills it, checks that it left
// its bed behind and that Sweep removes all of it. It returns the bed's
// directory.
func killedHelperSwept(t *testing.T, helper string, env ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+helper+"$", "-test.v")
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var id, dir, netns, root, net, mnt string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 7 && f[0] == "KFTB-READY" {
			id, dir, netns, root, net, mnt = f[1], f[2], f[3], f[4], f[5], f[6]
			break
		}
	}
	// The helper's node runs a process of its own, like a node service would.
	cmd.Process.Kill()
	cmd.Wait()
	if id == "" {
		t.Fatalf("%s did not make its bed", helper)
	}
	if left := leftovers(id, []string{netns}, []string{root}, dir); len(left) == 0 {
		t.Fatal("a killed helper left nothing behind: the test cannot tell whether Sweep works")
	}
	// Two sweeps at once (as two tests starting together): one removes
	// the bed, the other waits for it; after either returns, nothing of
	// the bed is left.
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			Sweep(t.Logf)
			if left := leftovers(id, []string{netns}, []string{root}, dir); len(left) > 0 {
				t.Errorf("left behind after Sweep:\n%s", strings.Join(left, "\n"))
			}
		}()
	}
	wg.Wait()
	if left := processesIn([]nodeNamespaces{{net, mnt, root}}); len(left) > 0 {
		t.Errorf("processes left behind after Sweep:\n%s", strings.Join(left, "\n"))
	}
	return dir
}

// TestSweepGuardHelper makes a guarded cluster as `kubeforge cluster
// create` does (a state file naming its bed) and waits to be killed.
func TestSweepGuardHelper(t *testing.T) {
	if os.Getenv("KFTB_HELPER") != "guard" {
		t.Skip("helper of TestSweepGuard")
	}
	dir := os.Getenv("KFTB_STATE_DIR")
	if _, err := localcluster.GuardStateDir(dir); err != nil {
		t.Fatal(err)
	}
	cdir := filepath.Join(dir, "orphan")
	if err := os.MkdirAll(cdir, 0o755); err != nil {
		t.Fatal(err)
	}
	save := func(rec localcluster.Record) error {
		b, err := json.Marshal(localcluster.State{Name: "orphan", Ready: true, Bed: rec})
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(cdir, "cluster.json"), b, 0o600)
	}
	bed, err := localcluster.NewBed(localcluster.BedOptions{Prefix: "kftb", Dir: cdir, Binary: "/bin/true", Range: localcluster.TestRange, Random: true, Save: save})
	if err != nil {
		t.Fatal(err)
	}
	n, err := bed.AddNode("orphan")
	if err != nil {
		t.Fatal(err)
	}
	bg := n.Command(context.Background(), "sleep", "1000")
	bg.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := bg.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool {
		for _, p := range n.Processes() {
			if strings.Join(p.Cmdline, " ") == "sleep 1000" {
				return true
			}
		}
		return false
	}, func() string { return fmt.Sprint(n.Processes()) })
	fmt.Printf("KFTB-READY %s %s %s %s %s %s\n", bed.ID, cdir, n.NetNS, n.CgroupRoot, n.NetNSID(), n.MountNSID())
	time.Sleep(time.Minute) // killed by TestSweepGuard
}

func TestSweepHelper(t *testing.T) {
	if os.Getenv("KFTB_HELPER") != "1" {
		t.Skip("helper of TestSweep")
	}
	tb := New(t, WithBinary("/bin/true"))
	n := tb.AddNode("orphan")
	bg := n.Command(context.Background(), "sleep", "1000")
	bg.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := bg.Start(); err != nil {
		t.Fatal(err)
	}
	// nsenter is in the namespaces once its sleep is.
	waitFor(t, 5*time.Second, func() bool {
		for _, p := range n.Processes() {
			if strings.Join(p.Cmdline, " ") == "sleep 1000" {
				return true
			}
		}
		return false
	}, func() string { return fmt.Sprint(n.Processes()) })
	fmt.Printf("KFTB-READY %s %s %s %s %s %s x\n", tb.ID, tb.Dir, n.NetNS, n.CgroupRoot, n.NetNSID(), n.MountNSID())
	time.Sleep(time.Minute) // killed by TestSweep
}
