package localcluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kubeforge/kubeforge/internal/fsutil"
)

// Mount is one line of a mountinfo file.
type Mount struct {
	ID, Parent   int
	Point        string // mount point (unescaped)
	Optional     string // optional fields: shared:N, master:N, …
	FSType       string
	Source       string
	SuperOptions string
}

// Mounts lists the mounts of the node's mount namespace, in mount order.
func (n *Node) Mounts() ([]Mount, error) {
	return readMountinfo(fmt.Sprintf("/proc/%d/mountinfo", n.holderPID))
}

// MountsUnder lists the node's mounts at or below any of paths, except the
// testbed's own (the node's /etc, /var/lib, /var/log and /run): what
// kubeforge, containerd and the kubelet mounted there.
func (n *Node) MountsUnder(paths ...string) ([]Mount, error) {
	mounts, err := n.Mounts()
	if err != nil {
		return nil, err
	}
	var out []Mount
	for _, m := range mounts {
		if id, ok := n.base[m.Point]; ok && id == m.ID {
			continue
		}
		if underAny(m.Point, paths) {
			out = append(out, m)
		}
	}
	return out, nil
}

// ReadMountinfo parses a mountinfo file (/proc/PID/mountinfo).
func ReadMountinfo(path string) ([]Mount, error) { return readMountinfo(path) }

func readMountinfo(path string) ([]Mount, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Mount
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		sep := slices.Index(fields, "-")
		if sep < 6 {
			continue
		}
		m := Mount{Point: fsutil.UnescapeMountinfo(fields[4]), Optional: strings.Join(fields[6:sep], " ")}
		m.ID, _ = strconv.Atoi(fields[0])
		m.Parent, _ = strconv.Atoi(fields[1])
		if sep+1 < len(fields) {
			m.FSType = fields[sep+1]
		}
		if sep+2 < len(fields) {
			m.Source = fsutil.UnescapeMountinfo(fields[sep+2])
		}
		if sep+3 < len(fields) {
			m.SuperOptions = fields[sep+3]
		}
		out = append(out, m)
	}
	return out, s.Err()
}

func underAny(p string, dirs []string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, strings.TrimSuffix(d, "/")+"/") {
			return true
		}
	}
	return false
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Process is a process of a node.
type Process struct {
	PID     int
	Exe     string // /proc/PID/exe
	Cmdline []string
	// Why it belongs to the node: "net", "mnt" and/or "cgroup".
	In []string
}

func (p Process) String() string {
	return fmt.Sprintf("pid %d (%s) [%s] %s", p.PID, p.Exe, strings.Join(p.In, ","), strings.Join(p.Cmdline, " "))
}

// Processes lists the processes in the node's network namespace, its mount
// namespace or its cgroup root, except the namespace holder. All of them
// are the node's: nothing else runs there.
func (n *Node) Processes() []Process {
	var out []Process
	me := os.Getpid()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == me || pid == n.holderPID && n.holder.alive() {
			continue
		}
		var in []string
		if n.netnsID != "" {
			if ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); ns == n.netnsID {
				in = append(in, "net")
			}
		}
		if n.mountNSID != "" {
			if ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); ns == n.mountNSID {
				in = append(in, "mnt")
			}
		}
		if n.CgroupRoot != "" && inCgroup(pid, n.CgroupRoot) {
			in = append(in, "cgroup")
		}
		if len(in) == 0 {
			continue
		}
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if len(raw) == 0 {
			continue // exited meanwhile, or a zombie
		}
		out = append(out, Process{PID: pid, Exe: exe, Cmdline: strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00"), In: in})
	}
	return out
}

// InNetNS reports whether pid runs in the node's network namespace.
func (n *Node) InNetNS(pid int) bool {
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
	return err == nil && n.netnsID != "" && ns == n.netnsID
}

// InCgroup reports whether pid is in cgroup root (or below) in any hierarchy.
func InCgroup(pid int, root string) bool { return inCgroup(pid, root) }

func inCgroup(pid int, root string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && (parts[2] == root || strings.HasPrefix(parts[2], root+"/")) {
			return true
		}
	}
	return false
}

// KillAll kills (SIGKILL) every process of the node but the namespace
// holder, and waits until they are gone. A process that is still there
// after SIGKILL is stuck in the kernel (a thread in uninterruptible sleep,
// such as an fsync on a busy disk): after 15 s each one is logged with its
// threads' states and what they wait in, and the error at the deadline
// says the same.
func (n *Node) KillAll(timeout time.Duration) error {
	start := time.Now()
	deadline := start.Add(timeout)
	logged := false
	for {
		procs := n.Processes()
		if len(procs) == 0 {
			return nil
		}
		if !logged && time.Since(start) > 15*time.Second && time.Now().Before(deadline) {
			logged = true
			for _, p := range procs {
				n.bed.logf("node %s: pid %d has not ended %v after SIGKILL (%s); waiting up to %v", n.Name, p.PID,
					time.Since(start).Round(time.Second), stuckIn(p.PID), timeout)
			}
		}
		if time.Now().After(deadline) {
			var s []string
			for _, p := range procs {
				s = append(s, p.String()+"\n    "+stuckIn(p.PID))
			}
			return fmt.Errorf("processes of node %s still run %v after SIGKILL:\n  %s", n.Name, timeout, strings.Join(s, "\n  "))
		}
		for _, p := range procs {
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// statFields reads a /proc stat file and returns its fields from the 3rd
// (the state) on: those after the command's closing parenthesis, since a
// command may hold spaces and parentheses. nil when it cannot be read.
func statFields(path string) []string {
	stat, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
}

// startedAfter reports whether process pid started after t (to the
// kernel's 10 ms clock tick; false when it cannot tell).
func startedAfter(pid int, t time.Time) bool {
	// starttime, in clock ticks since boot, is the 22nd field.
	f := statFields(fmt.Sprintf("/proc/%d/stat", pid))
	if len(f) < 20 {
		return false
	}
	ticks, err := strconv.ParseInt(f[19], 10, 64)
	if err != nil {
		return false
	}
	up, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return false
	}
	fu := strings.Fields(string(up))
	if len(fu) == 0 {
		return false
	}
	uptime, err := strconv.ParseFloat(fu[0], 64)
	if err != nil {
		return false
	}
	// USER_HZ is 100 on every Linux architecture kubeforge builds for.
	startedAgo := time.Duration((uptime - float64(ticks)/100) * float64(time.Second))
	return time.Now().Add(-startedAgo).After(t)
}

// stuckIn says what keeps a killed process from ending: its threads by
// state and, for those in uninterruptible sleep (D), the kernel function
// they wait in and the top of their kernel stack.
func stuckIn(pid int) string {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return "gone"
	}
	states := map[string]int{}
	var waits []string
	for _, t := range tasks {
		dir := fmt.Sprintf("/proc/%d/task/%s", pid, t.Name())
		f := statFields(dir + "/stat")
		if len(f) == 0 {
			continue
		}
		states[f[0]]++
		if f[0] != "D" || len(waits) >= 3 {
			continue
		}
		w := "tid " + t.Name()
		if b, err := os.ReadFile(dir + "/wchan"); err == nil && len(b) > 0 && string(b) != "0" {
			w += " in " + string(b)
		}
		if b, err := os.ReadFile(dir + "/stack"); err == nil {
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			w += " [" + strings.Join(lines[:min(len(lines), 4)], " < ") + "]"
		}
		waits = append(waits, w)
	}
	var s []string
	for _, st := range slices.Sorted(maps.Keys(states)) {
		s = append(s, fmt.Sprintf("%d %s", states[st], st))
	}
	out := "threads " + strings.Join(s, ", ")
	if len(waits) > 0 {
		out += "; " + strings.Join(waits, "; ")
	}
	return out
}

// Crash simulates a power cut and reboot of the node: every process of the
// node is killed (SIGKILL), everything mounted below its /etc, /var/lib,
// /var/log and /run is unmounted, and /run is replaced by an empty tmpfs.
// Files on the node's disk (/etc, /var) stay.
func (n *Node) Crash(ctx context.Context) error {
	if err := n.KillAll(time.Minute); err != nil {
		return err
	}
	mounts, err := n.MountsUnder(basePaths...)
	if err != nil {
		return err
	}
	var script strings.Builder
	for i := len(mounts) - 1; i >= 0; i-- {
		fmt.Fprintf(&script, "umount -l %s 2>/dev/null || true\n", shellQuote(mounts[i].Point))
	}
	fmt.Fprintf(&script, "umount -l /run\nmount -t tmpfs -o mode=0755,nosuid,nodev %s-run /run\nmkdir -p /run/lock\n", n.bed.Prefix)
	if out, err := n.Run(ctx, "sh", "-ec", script.String()); err != nil {
		return fmt.Errorf("crash: %w\n%s", err, out)
	}
	if err := n.recordBaseMounts(); err != nil {
		return err
	}
	if left, err := n.MountsUnder(basePaths...); err != nil || len(left) > 0 {
		return fmt.Errorf("crash: mounts left after unmounting: %v %v", left, err)
	}
	return nil
}

// destroy removes the node. With reset, `kubeforge reset --force` runs in
// it first. It returns what it could not remove.
func (n *Node) destroy(reset bool) []error {
	var errs []error
	logf := n.bed.logf
	if reset && n.mountsIntact() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		start := time.Now()
		out, err := n.Kubeforge(ctx, "reset", "--force")
		cancel()
		if err != nil {
			logf("node %s: reset failed (ignored; the rest is removed anyway): %v", n.Name, err)
		} else {
			logf("node %s: reset in %v", n.Name, time.Since(start).Round(time.Millisecond))
		}
		_ = out
	} else if reset && n.holder.alive() {
		logf("node %s: its mounts are not intact; no reset", n.Name)
	} else if reset {
		logf("node %s: its namespace holder is gone (a reboot, or killed); no reset", n.Name)
	}
	if err := n.KillAll(2 * time.Minute); err != nil {
		errs = append(errs, err)
	}
	if n.holder.alive() {
		// What is left is mounted in the holder's namespace only: unmount,
		// then end the namespace with its holder.
		var script strings.Builder
		for _, p := range slices.Backward(basePaths) {
			fmt.Fprintf(&script, "umount -R -l %s 2>/dev/null || true\n", shellQuote(p))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if out, err := n.Run(ctx, "sh", "-c", script.String()); err != nil {
			errs = append(errs, fmt.Errorf("unmount: %v: %s", err, out))
		}
		cancel()
		_ = n.holder.kill(syscall.SIGKILL)
		deadline := time.Now().Add(5 * time.Second)
		for n.holder.alive() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n.holder.alive() {
			errs = append(errs, fmt.Errorf("the namespace holder (pid %d) does not exit", n.holder.PID))
		}
	}
	if n.HostVeth != "" && linkExists(n.HostVeth) {
		if err := runHost("ip", "link", "delete", n.HostVeth); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := os.Lstat("/run/netns/" + n.NetNS); err == nil {
		if err := runHost("ip", "netns", "delete", n.NetNS); err != nil {
			errs = append(errs, err)
		}
	}
	if n.CgroupRoot != "" && strings.HasPrefix(n.CgroupRoot, "/"+n.bed.Prefix+"-") {
		if err := removeCgroups(n.cgroupDirs()); err != nil {
			errs = append(errs, err)
		}
	}
	if n.Dir != "" {
		if err := removeAll(n.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// removeCgroups removes cgroup directories (deepest first), killing what
// still runs in them, retrying while the kernel finishes with exited tasks.
func removeCgroups(dirs []string) error {
	var last error
	for attempt := 0; attempt < 100; attempt++ {
		last = nil
		for _, dir := range dirs {
			if b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil {
				for _, f := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			}
			if err := syscall.Rmdir(dir); err != nil && !errors.Is(err, syscall.ENOENT) {
				last = fmt.Errorf("remove cgroup %s: %w", dir, err)
			}
		}
		if last == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return last
}

// Diagnostics collects what helps to understand a failure: nodes and pods,
// the node service's status, the ends of the node's logs, its processes.
func (n *Node) Diagnostics(ctx context.Context) string {
	var b strings.Builder
	section := func(title, body string) { fmt.Fprintf(&b, "----- %s\n%s\n", title, strings.TrimRight(body, "\n")) }
	short := func(f func(ctx context.Context) (string, error)) string {
		c, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		out, err := f(c)
		if err != nil {
			return out + "\n(" + err.Error() + ")"
		}
		return out
	}
	section("kubectl get nodes -o wide", short(func(c context.Context) (string, error) {
		return n.KubectlContext(c, "get", "nodes", "-o", "wide")
	}))
	section("kubectl get pods -A -o wide", short(func(c context.Context) (string, error) {
		return n.KubectlContext(c, "get", "pods", "-A", "-o", "wide")
	}))
	section("kubeforge node status", short(func(c context.Context) (string, error) {
		return n.Kubeforge(c, "node", "status")
	}))
	for _, f := range []string{"node.log", "kubelet.log", "containerd.log"} {
		section("tail /var/log/kubeforge/"+f, tail(n.Path("/var/log/kubeforge/"+f), 80))
	}
	var ps []string
	for _, p := range n.Processes() {
		ps = append(ps, p.String())
	}
	section("processes", strings.Join(ps, "\n"))
	return b.String()
}

// tail returns the last lines of a file (reading at most its last 64 KiB).
func tail(path string, lines int) string {
	f, err := os.Open(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	defer f.Close()
	const max = 64 << 10
	var off int64
	if st, err := f.Stat(); err == nil && st.Size() > max {
		off = st.Size() - max
	}
	buf := make([]byte, max)
	k, _ := f.ReadAt(buf, off)
	ls := strings.Split(strings.TrimRight(string(buf[:k]), "\n"), "\n")
	if off > 0 && len(ls) > 1 {
		ls = ls[1:]
	}
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// CgroupMounts lists the host's cgroup hierarchies' mount points.
func CgroupMounts() ([]string, error) {
	hs, err := cgroupHierarchies()
	var out []string
	for _, h := range hs {
		out = append(out, h.point)
	}
	return out, err
}
