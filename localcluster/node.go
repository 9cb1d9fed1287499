package localcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Node is one node of a bed: a network namespace, a mount namespace and a
// kubelet cgroup root of its own (see the package documentation).
type Node struct {
	bed *Bed

	// Name is the node's name (and its Kubernetes node name).
	Name string
	// IP is the node's address on the testbed's bridge (eth0 in the node).
	IP netip.Addr
	// NetNS is the network namespace (/run/netns/NetNS).
	NetNS string
	// HostVeth is the host end of the node's veth pair.
	HostVeth string
	// CgroupRoot is the kubelet's cgroupRoot (its pods go below
	// CgroupRoot/kubepods in every cgroup hierarchy).
	CgroupRoot string
	// Dir is the node's directory on the host: the node's /var/lib and
	// /var/log ("var-lib", "var-log"), its /etc overlay, its config file.
	Dir string
	// Binary is the kubeforge executable as the node sees it: a hard link
	// of the testbed's copy inside the node's /var/lib, so that, as on a
	// host where the binary and /var/lib share a filesystem mount, the
	// self-image's layer links the same file and every node process and
	// container shares its pages (a link across the bind mount fails with
	// EXDEV, and a copied layer would count the binary twice in memory).
	Binary string

	holderCmd *exec.Cmd
	holderPID int
	holder    procID
	netnsID   string // net:[inode]
	mountNSID string // mnt:[inode]
	base      map[string]int
	cgroups   []string // cgroup directories the testbed made
}

// binaryDirOf is where, in the node's /var/lib, the node finds the binary.
func binaryDirOf(prefix string) string { return "/var/lib/" + prefix + "-bin" }

// basePaths are where the testbed mounts the node's own filesystems.
var basePaths = []string{"/etc", "/var/lib", "/var/log", "/run"}

// stdPath is the PATH of commands run in a node.
const stdPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func (n *Node) create() error {
	for _, d := range []string{"var-lib", "var-log", "etc.upper/cni", "etc.work", "home", "kubecache"} {
		if err := os.MkdirAll(filepath.Join(n.Dir, d), 0o755); err != nil {
			return err
		}
	}
	_ = os.Chmod(n.bed.Dir, 0o755)
	n.Binary = filepath.Join(binaryDirOf(n.bed.Prefix), "kubeforge")
	if err := linkOrCopy(n.bed.Binary, filepath.Join(n.Dir, "var-lib", strings.TrimPrefix(n.Binary, "/var/lib/"))); err != nil {
		return fmt.Errorf("the kubeforge binary in the node: %w", err)
	}
	for _, d := range []string{n.Dir, filepath.Dir(n.Dir), filepath.Join(n.Dir, "etc.upper")} {
		if err := os.Chmod(d, 0o755); err != nil {
			return err
		}
	}
	// In the node's /etc, /etc/kubernetes and /etc/cni/net.d are opaque
	// directories of the overlay's upper layer: empty, whatever the host has.
	for _, d := range []string{"etc.upper/kubernetes", "etc.upper/cni/net.d"} {
		p := filepath.Join(n.Dir, d)
		if err := os.Mkdir(p, 0o755); err != nil {
			return err
		}
		if err := syscall.Setxattr(p, "trusted.overlay.opaque", []byte("y"), 0); err != nil {
			return fmt.Errorf("mark %s opaque for overlayfs: %w", p, err)
		}
	}

	// Network: netns, veth into the bridge, address, no default route.
	if err := runHost("ip", "netns", "add", n.NetNS); err != nil {
		return err
	}
	var st syscall.Stat_t
	if err := syscall.Stat("/run/netns/"+n.NetNS, &st); err != nil {
		return err
	}
	n.netnsID = fmt.Sprintf("net:[%d]", st.Ino)
	prefix := fmt.Sprintf("%s/%d", n.IP, n.bed.Subnet.Bits())
	for _, args := range [][]string{
		{"link", "add", n.HostVeth, "type", "veth", "peer", "name", "eth0", "netns", n.NetNS},
		{"link", "set", n.HostVeth, "master", n.bed.Bridge, "up"},
		{"-n", n.NetNS, "addr", "add", prefix, "dev", "eth0"},
		{"-n", n.NetNS, "link", "set", "eth0", "up"},
		{"-n", n.NetNS, "link", "set", "lo", "up"},
	} {
		if err := runHost("ip", args...); err != nil {
			return err
		}
	}
	sysctl := exec.Command("nsenter", "--net=/run/netns/"+n.NetNS, "--", "sh", "-ec",
		`echo 1 > /proc/sys/net/ipv4/ip_forward
		if [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables; fi`)
	if out, err := sysctl.CombinedOutput(); err != nil {
		return fmt.Errorf("sysctls in %s: %v: %s", n.NetNS, err, out)
	}

	// The mount namespace's holder.
	if err := n.startHolder(); err != nil {
		return err
	}
	n.bed.updateNode(n)
	if err := n.setupMounts(); err != nil {
		return err
	}
	if err := n.makeCgroupRoot(); err != nil {
		return err
	}
	return nil
}

func (b *Bed) updateNode(n *Node) {
	b.mu.Lock()
	for i := range b.rec.Nodes {
		if b.rec.Nodes[i].NetNS == n.NetNS {
			b.rec.Nodes[i] = n.record()
		}
	}
	b.mu.Unlock()
	b.saveRecord()
}

// findHolder looks for the node's namespace holder from its network
// namespace, for a record that lost it (a crash between starting the holder
// and saving the record): the holder is the `sleep` that leads its own
// session in that network namespace, in a mount namespace of its own. It
// sets the holder and the namespaces' IDs and reports whether it found one.
func (n *Node) findHolder() bool {
	netnsID := n.netnsFileID()
	if netnsID == "" {
		return false
	}
	if n.netnsID != "" && n.netnsID != netnsID {
		n.netnsID = ""
		return false // the name is another namespace's now
	}
	n.netnsID = netnsID // its processes are the node's, holder or not
	hostMNT, _ := os.Readlink("/proc/self/ns/mnt")
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); ns != netnsID {
			continue
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		mnt, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
		if strings.TrimSpace(string(comm)) != "sleep" || mnt == "" || mnt == hostMNT || (n.mountNSID != "" && mnt != n.mountNSID) {
			continue
		}
		if sid, err := unix.Getsid(pid); err != nil || sid != pid {
			continue
		}
		n.netnsID, n.mountNSID, n.holderPID, n.holder = netnsID, mnt, pid, procOf(pid)
		return n.holder.alive()
	}
	return false
}

// netnsFileID is the number of the network namespace that the node's netns
// file pins ("net:[inode]"), or "" without the file.
func (n *Node) netnsFileID() string {
	var st syscall.Stat_t
	if n.NetNS == "" || syscall.Stat("/run/netns/"+n.NetNS, &st) != nil {
		return ""
	}
	return fmt.Sprintf("net:[%d]", st.Ino)
}

func (n *Node) record() NodeRecord {
	return NodeRecord{Name: n.Name, IP: n.IP.String(), Dir: n.Dir, NetNS: n.NetNS, HostVeth: n.HostVeth, CgroupRoot: n.CgroupRoot,
		Holder: n.holder, NetNSID: n.netnsID, MountNSID: n.mountNSID}
}

// fileText reads a small file for an error message.
type fileText string

func (f fileText) String() string {
	b, _ := os.ReadFile(string(f))
	return strings.TrimSpace(string(b))
}

func (n *Node) startHolder() error {
	cmd := exec.Command("nsenter", "--net=/run/netns/"+n.NetNS, "--",
		"unshare", "--mount", "--propagation", "private", "--", "sleep", "infinity")
	// A session of its own: the holder outlives the process that made it
	// (a cluster outlives `kubeforge cluster create`). Its stderr is a file
	// in the node's directory, not a pipe that would close with its maker.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = "/"
	errFile, err := os.Create(filepath.Join(n.Dir, "holder.log"))
	if err != nil {
		return err
	}
	defer errFile.Close()
	cmd.Stderr = errFile
	stderr := fileText(errFile.Name())
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the mount namespace holder: %w", err)
	}
	n.holderCmd, n.holderPID = cmd, cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	hostMNT, _ := os.Readlink("/proc/self/ns/mnt")
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-exited:
			n.holderCmd, n.holderPID = nil, 0
			return fmt.Errorf("the mount namespace holder exited: %v: %s", err, stderr.String())
		default:
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", n.holderPID))
		mnt, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", n.holderPID))
		if strings.TrimSpace(string(comm)) == "sleep" && mnt != "" && mnt != hostMNT {
			n.mountNSID = mnt
			n.holder = procOf(n.holderPID)
			// Reap it when it is killed at cleanup.
			go func() { <-exited }()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the mount namespace holder (pid %d) did not get its namespace: %s", n.holderPID, stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// setupMounts gives the node its own /var/lib, /var/log, /run and /etc.
func (n *Node) setupMounts() error {
	mounts, err := n.Mounts()
	if err != nil {
		return err
	}
	var script strings.Builder
	script.WriteString("set -e\n")
	// Drop the copies of the host's mounts below those paths (another
	// cluster's volumes, pod netns, overlays): the node must not pin them.
	for i := len(mounts) - 1; i >= 0; i-- {
		if m := mounts[i].Point; underAny(m, basePaths) && !slices.Contains(basePaths, m) {
			fmt.Fprintf(&script, "umount -l %s 2>/dev/null || true\n", shellQuote(m))
		}
	}
	q := func(rel string) string { return shellQuote(filepath.Join(n.Dir, rel)) }
	fmt.Fprintf(&script, "mount --bind %s /var/lib\n", q("var-lib"))
	script.WriteString("mount --make-rshared /var/lib\n")
	fmt.Fprintf(&script, "mount --bind %s /var/log\n", q("var-log"))
	fmt.Fprintf(&script, "mount -t tmpfs -o mode=0755,nosuid,nodev %s-run /run\nmkdir -p /run/lock\n", n.bed.Prefix)
	fmt.Fprintf(&script, "mount -t overlay -o lowerdir=/etc,upperdir=%s,workdir=%s %s-etc /etc\n", q("etc.upper"), q("etc.work"), n.bed.Prefix)
	if out, err := n.Run(context.Background(), "sh", "-c", script.String()); err != nil {
		return fmt.Errorf("mounts: %w\n%s", err, out)
	}
	return n.recordBaseMounts()
}

func (n *Node) recordBaseMounts() error {
	mounts, err := n.Mounts()
	if err != nil {
		return err
	}
	n.base = map[string]int{}
	for _, m := range mounts {
		if slices.Contains(basePaths, m.Point) {
			n.base[m.Point] = m.ID // the last one is on top
		}
	}
	if len(n.base) != len(basePaths) {
		return fmt.Errorf("the node's mounts are not all there: %v", n.base)
	}
	return nil
}

// mountsIntact reports whether the node's own filesystems are still
// mounted where the testbed put them.
func (n *Node) mountsIntact() bool {
	if n.base == nil || !n.holder.alive() {
		return false
	}
	mounts, err := n.Mounts()
	if err != nil {
		return false
	}
	found := 0
	for _, m := range mounts {
		if id, ok := n.base[m.Point]; ok && id == m.ID {
			found++
		}
	}
	return found == len(n.base)
}

// makeCgroupRoot creates CgroupRoot in every cgroup hierarchy (the kubelet
// wants its cgroupRoot to exist).
func (n *Node) makeCgroupRoot() error {
	hierarchies, err := cgroupHierarchies()
	if err != nil {
		return err
	}
	for _, h := range hierarchies {
		dir := filepath.Join(h.point, n.CgroupRoot)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return fmt.Errorf("cgroup root: %w", err)
		}
		n.cgroups = append(n.cgroups, dir)
		if h.cpuset {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				b, err := os.ReadFile(filepath.Join(h.point, f))
				if err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
					return fmt.Errorf("cgroup root %s: %w", dir, err)
				}
			}
		}
	}
	return nil
}

type hierarchy struct {
	point  string
	cpuset bool
}

// cgroupHierarchies lists the host's cgroup mounts (v1 hierarchies and the
// v2 tree).
func cgroupHierarchies() ([]hierarchy, error) {
	mounts, err := readMountinfo("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []hierarchy
	seen := map[string]bool{}
	for _, m := range mounts {
		if (m.FSType == "cgroup" || m.FSType == "cgroup2") && !seen[m.Point] {
			seen[m.Point] = true
			out = append(out, hierarchy{point: m.Point, cpuset: m.FSType == "cgroup" && slices.Contains(strings.Split(m.SuperOptions, ","), "cpuset")})
		}
	}
	return out, nil
}

// cgroupDirs lists the directories of the node's cgroup root in every
// hierarchy, deepest first.
func (n *Node) cgroupDirs() []string {
	var dirs []string
	hierarchies, _ := cgroupHierarchies()
	for _, h := range hierarchies {
		root := filepath.Join(h.point, n.CgroupRoot)
		filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	slices.SortFunc(dirs, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return dirs
}

// Command returns a command that runs name with args in the node's network
// and mount namespaces (nsenter), with PATH and HOME (the node's own) set,
// and the start-up profiling variables (components.ProfileStartup) passed on
// from this process when they are set.
func (n *Node) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	a := append([]string{"--net=/run/netns/" + n.NetNS, fmt.Sprintf("--mount=/proc/%d/ns/mnt", n.holderPID), "--", name}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", a...)
	cmd.Env = []string{"PATH=" + stdPath, "HOME=" + filepath.Join(n.Dir, "home"), "LANG=C.UTF-8"}
	for _, k := range []string{"KUBEFORGE_CPUPROFILE", "KUBEFORGE_CPUPROFILE_SECONDS", "KUBEFORGE_CPUPROFILE_DELAY"} {
		if v := os.Getenv(k); v != "" {
			if k == "KUBEFORGE_CPUPROFILE" {
				// The node's commands run in /; a directory under the
				// node's own /etc, /var/lib, /var/log or /run is the
				// node's, not the host's.
				v, _ = filepath.Abs(v)
			}
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	cmd.Dir = "/"
	// A daemon started by the command may keep its output open.
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Run runs a command in the node and returns its combined output. The
// error says which command failed on which node, with its output.
func (n *Node) Run(ctx context.Context, name string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := n.Command(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), &RunError{Node: n.Name, Args: append([]string{name}, args...), Err: err, Output: out.String()}
	}
	return out.String(), nil
}

// RunError is a command that failed in a node.
type RunError struct {
	Node   string
	Args   []string
	Err    error
	Output string
}

func (e *RunError) Error() string {
	out := strings.TrimSpace(e.Output)
	if len(out) > 4000 {
		out = "…" + out[len(out)-4000:]
	}
	return fmt.Sprintf("node %s: %s: %v\n%s", e.Node, strings.Join(e.Args, " "), e.Err, out)
}

// ExitCode is the command's exit code (-1 when it did not exit normally).
func (e *RunError) ExitCode() int {
	var ee *exec.ExitError
	if errors.As(e.Err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

func (e *RunError) Unwrap() error { return e.Err }

// Kubeforge runs the kubeforge binary under test in the node.
func (n *Node) Kubeforge(ctx context.Context, args ...string) (string, error) {
	return n.Run(ctx, n.Binary, args...)
}

// Kubectl runs kubectl in the node with the node's admin.conf and returns
// its standard output (standard error goes into the error). It gives up
// after a minute, or 30 s after the command's own --timeout.
func (n *Node) Kubectl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), kubectlBound(args))
	defer cancel()
	return n.KubectlContext(ctx, args...)
}

// kubectlBound is how long Kubectl lets kubectl run: a minute, or 30 s
// more than the command's own --timeout (rollout status, wait) when that
// is longer.
func kubectlBound(args []string) time.Duration {
	bound := time.Minute
	for i, a := range args {
		v, ok := strings.CutPrefix(a, "--timeout=")
		if !ok && a == "--timeout" && i+1 < len(args) {
			v, ok = args[i+1], true
		}
		if d, err := time.ParseDuration(v); ok && err == nil && d+30*time.Second > bound {
			bound = d + 30*time.Second
		}
	}
	return bound
}

// KubectlContext is Kubectl with a context.
func (n *Node) KubectlContext(ctx context.Context, args ...string) (string, error) {
	a := append([]string{"--kubeconfig=/etc/kubernetes/admin.conf", "--cache-dir=" + filepath.Join(n.Dir, "kubecache")}, args...)
	cmd := n.Command(ctx, "/usr/bin/kubectl", a...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &RunError{Node: n.Name, Args: append([]string{"kubectl"}, args...), Err: err, Output: stderr.String()}
	}
	return stdout.String(), nil
}

// Path is the host path of the node's path p (through the holder's root,
// so it works for the node's private mounts too).
func (n *Node) Path(p string) string {
	return fmt.Sprintf("/proc/%d/root%s", n.holderPID, filepath.Join("/", p))
}

// ReadFile reads a file of the node.
func (n *Node) ReadFile(p string) ([]byte, error) { return os.ReadFile(n.Path(p)) }

// WriteFile writes a file of the node.
func (n *Node) WriteFile(p string, data []byte, mode os.FileMode) error {
	return os.WriteFile(n.Path(p), data, mode)
}

// HolderPID is the pid of the process that holds the node's mount namespace.
func (n *Node) HolderPID() int { return n.holderPID }

// Alive reports whether the node's namespace holder still runs.
func (n *Node) Alive() bool { return n.holder.alive() }

// NetNSID and MountNSID are the node's namespaces as /proc/PID/ns links
// show them (net:[inode], mnt:[inode]).
func (n *Node) NetNSID() string   { return n.netnsID }
func (n *Node) MountNSID() string { return n.mountNSID }

// KubeletConfigYAML is the KubeletConfiguration document the node needs:
// its own cgroup root, and the testbed's resolv.conf (ResolvConf) as
// resolvConf, so that CoreDNS, which forwards what is not the cluster's to
// the nameservers the kubelet gives it, sends nothing beyond the test
// network. Disk eviction is off, as kind has it: every node of every bed
// sees the host's one disk, whose free share says nothing about the node
// (the kubelet's default, imagefs.available<15%, evicted every pod on a
// 252 GB disk with 37 GB free).
func (n *Node) KubeletConfigYAML() string {
	return "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupRoot: " + n.CgroupRoot +
		"\nresolvConf: " + n.bed.ResolvConf + "\nevictionHard:\n" + evictionYAML()
}

// noDiskEviction is the nodes' evictionHard: the kubelet's memory threshold
// kept, the disk ones off (a map given replaces the kubelet's whole
// default).
var noDiskEviction = map[string]string{
	"memory.available":  "100Mi",
	"nodefs.available":  "0%",
	"nodefs.inodesFree": "0%",
	"imagefs.available": "0%",
}

func evictionYAML() string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(noDiskEviction)) {
		fmt.Fprintf(&b, "  %s: %q\n", k, noDiskEviction[k])
	}
	return b.String()
}

// InitConfigYAML is the node's `kubeforge init --config` document:
// InitConfiguration with the node's address and name, ClusterConfiguration,
// KubeletConfiguration with its cgroup root and resolv.conf.
func (n *Node) InitConfigYAML() string {
	return fmt.Sprintf(`apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: %s
nodeRegistration:
  name: %s
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
---
%s`, n.IP, n.Name, n.KubeletConfigYAML())
}

// JoinConfigYAML is the node-local part of a join: the node's name and, as
// kubeletExtraArgs (kubeadm's way to give one node a kubelet flag), the
// kubelet cgroup root of its own that every node needs (the
// KubeletConfiguration comes from the cluster). Discovery comes from the
// join command's flags.
func (n *Node) JoinConfigYAML() string {
	return fmt.Sprintf(`apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
nodeRegistration:
  name: %s
  kubeletExtraArgs:
  - name: cgroup-root
    value: %s
`, n.Name, n.CgroupRoot)
}

// WriteConfigFile writes a config file into the node's directory (visible
// in the node at the same path) and returns its path.
func (n *Node) WriteConfigFile(name, content string) (string, error) {
	p := filepath.Join(n.Dir, name)
	return p, os.WriteFile(p, []byte(content), 0o600)
}
