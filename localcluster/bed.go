// Package localcluster makes Kubernetes nodes on this machine without
// Docker or virtual machines, and removes them again: a node is a network
// namespace and a mount namespace with a kubelet cgroup root of its own, on
// a host bridge that is the nodes' only link to the host. It is what
// `kubeforge cluster` builds its clusters from, and what the project's own
// tests and bench build their beds from (test/testbed is a thin layer over
// it that ties a bed to a test).
//
//	bed, err := localcluster.NewBed(localcluster.BedOptions{Prefix: "kfc", Dir: dir, Binary: exe})
//	n, err := bed.AddNode("dev-control-plane") // a node at 10.x.y.2
//	out, err := n.Kubeforge(ctx, "init", "--config", cfg)
//	errs := bed.Destroy(true)                  // the host as before
//
// Each node has
//
//   - its own network namespace PREFIX-<id>-<name>, joined by a veth pair
//     (eth0 inside) to the bed's bridge PREFIX<id> on the host. The bridge
//     has 10.x.y.1/24, the nodes 10.x.y.2, .3, …; the nodes have no default
//     route, so nothing they send can leave the bed's network. ip_forward
//     and bridge-nf-call-iptables are on inside.
//   - its own mount namespace, held by a process the bed starts (`unshare
//     --mount --propagation private sleep infinity` in the node's network
//     namespace, in a session of its own so that it outlives the process
//     that made it). In it /var/lib and /var/log are bind mounts of the
//     node's own directories (its "disk"; /var/lib is rshared so that the
//     kubelet's volume mounts propagate into containers), /run is a tmpfs,
//     and /etc is an overlay of the host's /etc in which /etc/kubernetes and
//     /etc/cni/net.d start empty. Every path kubeforge writes (/etc/kubernetes,
//     /etc/cni/net.d, /var/lib/{kubelet,etcd,kubeforge,cni,kube-proxy},
//     /var/log/{pods,containers,kubeforge}, /run/{kubeforge,containerd}) is
//     thus private to the node, yet an ordinary directory that `kubeforge
//     reset` can delete. (Mounting on those paths themselves would make them
//     undeletable, and a mount on a host directory that something on the host
//     deletes is silently detached.) /sys, /proc, /dev and /tmp are the host's;
//     so is the bed's directory, which must therefore not lie below /etc,
//     /var/lib, /var/log or /run.
//   - its own kubelet cgroup root, /PREFIX-<id>-<name>, set by the
//     KubeletConfiguration in the node's config (InitConfigYAML), so that
//     two kubelets never share /kubepods. The same document sets resolvConf
//     to the bed's resolv.conf, whose only nameserver is the bridge's
//     address (which serves no DNS): CoreDNS's upstream stays in the bed's
//     network.
//
// Commands run in a node with nsenter into both namespaces (never `ip netns
// exec`, which remounts /sys and hides the cgroups).
//
// Destroy, per node: `kubeforge reset --force` in the node, SIGKILL for
// every process still in the node's network or mount namespace or cgroup
// root, unmount, stop the holder, delete the netns and veth; then the
// bridge, the cgroup directories and the bed's directory. What a bed made is
// in its Record (saved through BedOptions.Save after every change), so that
// another process can find the bed again (OpenBed) and remove it.
package localcluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// Bed is a set of nodes on one host bridge.
type Bed struct {
	// ID is the bed's random id: it is part of every name it creates.
	ID string
	// Prefix starts every name the bed creates (links, netns, cgroup roots).
	Prefix string
	// Bridge is the host bridge the nodes' veths are attached to.
	Bridge string
	// Subnet is the nodes' network (a /24); Gateway, the bridge's address in it.
	Subnet  netip.Prefix
	Gateway netip.Addr
	// Binary is the kubeforge executable the nodes run (in Dir).
	Binary string
	// Dir is the bed's directory on the host (visible in the nodes too, at
	// the same path).
	Dir string
	// ResolvConf is the nodes' resolv.conf for their pods (in Dir; the
	// kubelet's resolvConf): its only nameserver is Gateway, an address of
	// the bed's network where nothing serves DNS.
	ResolvConf string

	logf func(format string, args ...any)
	save func(Record) error
	// saveMu makes each save write the record as it is when the save
	// runs: nodes are made at once, and a save of an older copy after a
	// newer one would lose a node's namespaces.
	saveMu sync.Mutex

	mu    sync.Mutex
	nodes []*Node
	rec   Record
}

// BedOptions shape NewBed.
type BedOptions struct {
	// Prefix starts every name the bed creates: 2-5 lower case letters
	// (the test beds use "kftb", `kubeforge cluster` "kfc").
	Prefix string
	// Dir is the bed's directory; it must exist and be empty, and must not
	// lie below /etc, /var/lib, /var/log or /run (the nodes see it at the
	// same path).
	Dir string
	// Binary is the kubeforge executable; it is copied (or hard-linked,
	// with LinkBinary) into Dir, and the nodes run that.
	Binary     string
	LinkBinary bool
	// Subnet, when valid, is the bed's network (a /24 that must not overlap
	// an address or route of the host); otherwise one is picked in Range.
	Subnet netip.Prefix
	// Range is where a free /24 is looked for (the test beds: 10.160.0.0/11
	// at random; clusters: 10.200.0.0/13, the lowest free one first).
	Range  netip.Prefix
	Random bool
	// Owner, when set, is recorded as the bed's owner: a bed whose owner is
	// gone is removed by the next Sweep.
	Owner bool
	// Save stores the bed's record after every change (nil: the registry
	// of owned beds, /run/kftb).
	Save func(Record) error
	// Logf receives progress and what cleanup could not do (nil: discarded).
	Logf func(format string, args ...any)
}

// Test beds and clusters take subnets from different ranges, both clear of
// the default Service (10.96.0.0/12) and pod (10.244.0.0/16) networks.
var (
	TestRange    = netip.MustParsePrefix("10.160.0.0/11") // 10.160–10.191
	ClusterRange = netip.MustParsePrefix("10.200.0.0/13") // 10.200–10.207
)

var prefixRE = regexp.MustCompile(`^[a-z]{2,5}$`)

// NewBed makes an empty bed: its bridge on the host, its resolv.conf and
// the binary in Dir. On an error, what it made is removed again.
func NewBed(o BedOptions) (*Bed, error) {
	if !prefixRE.MatchString(o.Prefix) {
		return nil, fmt.Errorf("bed prefix %q: want 2-5 lower case letters", o.Prefix)
	}
	if o.Dir == "" || !filepath.IsAbs(o.Dir) || underAny(o.Dir, basePaths) {
		return nil, fmt.Errorf("bed directory %q: want an absolute path outside %s (the nodes mount their own there)", o.Dir, strings.Join(basePaths, ", "))
	}
	if o.Range == (netip.Prefix{}) {
		o.Range = TestRange
	}
	b := &Bed{ID: randomID(), Prefix: o.Prefix, Dir: o.Dir, logf: o.Logf, save: o.Save}
	if b.logf == nil {
		b.logf = func(string, ...any) {}
	}
	if b.save == nil {
		b.save = func(rec Record) error { return withRegistry(func(r *registry) error { return r.save(rec) }) }
	}
	b.Bridge = b.Prefix + b.ID
	b.rec = Record{ID: b.ID, Prefix: b.Prefix, Bridge: b.Bridge, Dir: b.Dir, BootID: bootID()}
	if o.Owner {
		b.rec.Owner = self()
	}

	// Pick a subnet nobody uses and claim it (the record and the bridge
	// with its address) under the registry lock, so two beds never pick
	// the same: a cluster has no registry record, only its bridge's
	// address tells another bed that its subnet is taken.
	err := withRegistry(func(r *registry) error {
		for attempt := 0; linkExists(b.Bridge) || slices.ContainsFunc(r.records(), func(rec Record) bool { return rec.ID == b.ID }); attempt++ {
			if attempt == 10 {
				return fmt.Errorf("no free bed ID")
			}
			b.ID = randomID()
			b.Bridge = b.Prefix + b.ID
			b.rec.ID, b.rec.Bridge = b.ID, b.Bridge
		}
		used, err := r.usedSubnets()
		if err != nil {
			return err
		}
		prefix := o.Subnet
		if prefix.IsValid() {
			if clash := Overlapping(prefix, used); clash.IsValid() {
				return fmt.Errorf("subnet %s overlaps %s, an address or route of this host or another bed: choose another (or leave it out to get a free one)", prefix, clash)
			}
		} else if prefix, err = FreeSubnet(o.Range, used, o.Random); err != nil {
			return err
		}
		b.Subnet = prefix
		b.Gateway = prefix.Addr().Next()
		b.rec.Subnet = prefix.String()
		if o.Save == nil {
			if err := r.save(b.rec); err != nil {
				return err
			}
		} else if err := o.Save(b.rec); err != nil {
			return err
		}
		for _, args := range [][]string{
			{"link", "add", b.Bridge, "type", "bridge"},
			{"addr", "add", fmt.Sprintf("%s/%d", b.Gateway, b.Subnet.Bits()), "dev", b.Bridge},
			{"link", "set", b.Bridge, "up"},
		} {
			if err := runHost("ip", args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Destroy(false)
		return nil, fmt.Errorf("bridge %s: %w", b.Bridge, err)
	}
	fail := func(err error) (*Bed, error) {
		b.Destroy(false)
		return nil, err
	}
	b.ResolvConf = filepath.Join(b.Dir, "resolv.conf")
	if err := os.WriteFile(b.ResolvConf, []byte("nameserver "+b.Gateway.String()+"\n"), 0o644); err != nil {
		return fail(err)
	}
	b.Binary = filepath.Join(b.Dir, "bin", "kubeforge")
	copyBin := CopyFile
	if o.LinkBinary {
		copyBin = func(src, dst string, _ os.FileMode) error { return linkOrCopy(src, dst) }
	}
	if err := copyBin(o.Binary, b.Binary, 0o755); err != nil {
		return fail(fmt.Errorf("copy the kubeforge binary %s: %w", o.Binary, err))
	}
	return b, nil
}

// OpenBed finds a bed again from its record (another process made it).
// Its nodes' mounts are looked up afresh.
func OpenBed(rec Record, save func(Record) error, logf func(format string, args ...any)) *Bed {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	b := &Bed{ID: rec.ID, Prefix: rec.Prefix, Bridge: rec.Bridge, Dir: rec.Dir, logf: logf, save: save, rec: rec}
	b.rec.Nodes = slices.Clone(rec.Nodes) // not the caller's to change
	if b.Prefix == "" {
		b.Prefix = "kftb"
	}
	if p, err := netip.ParsePrefix(rec.Subnet); err == nil {
		b.Subnet, b.Gateway = p, p.Addr().Next()
	}
	b.ResolvConf = filepath.Join(b.Dir, "resolv.conf")
	b.Binary = filepath.Join(b.Dir, "bin", "kubeforge")
	// A record from before this boot: none of its processes runs, and
	// its pids and namespace numbers are other processes' now.
	sameBoot := rec.BootID == "" || rec.BootID == bootID()
	found := false
	for i, nr := range rec.Nodes {
		n := nr.node(b, sameBoot)
		if !n.holder.alive() && n.findHolder() {
			logf("bed %s: node %s: its record had no live namespace holder; found it by its network namespace: pid %d", b.ID, n.Name, n.holderPID)
			n.Binary = filepath.Join(binaryDirOf(b.Prefix), "kubeforge")
			b.rec.Nodes[i], found = n.record(), true
		}
		if n.holder.alive() {
			_ = n.recordBaseMounts()
		}
		b.nodes = append(b.nodes, n)
	}
	if found && save != nil {
		b.saveRecord()
	}
	return b
}

// Record is what a bed made, enough to find it and remove it again.
func (b *Bed) Record() Record {
	b.mu.Lock()
	defer b.mu.Unlock()
	rec := b.rec
	rec.Nodes = append([]NodeRecord(nil), b.rec.Nodes...)
	return rec
}

// NodeNameRE is what a node's name must match: its Kubernetes name and
// part of its namespace's name.
var NodeNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// AddNode makes a node: its network namespace, veth, mount namespace and
// cgroup root. name is also its Kubernetes node name. On an error, what it
// made of the node is removed again.
func (b *Bed) AddNode(name string) (*Node, error) {
	n, err := b.reserve(name)
	if err != nil {
		return nil, err
	}
	return n, b.create(n)
}

// AddNodes makes several nodes at once; their addresses follow the order
// of names. On an error the bed holds what was made (Destroy removes it).
func (b *Bed) AddNodes(names []string) ([]*Node, error) {
	nodes := make([]*Node, len(names))
	for i, name := range names {
		n, err := b.reserve(name)
		if err != nil {
			return nil, err
		}
		nodes[i] = n
	}
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = b.create(n) }()
	}
	wg.Wait()
	return nodes, errors.Join(errs...)
}

// reserve names a node and gives it the next address.
func (b *Bed) reserve(name string) (*Node, error) {
	if !NodeNameRE.MatchString(name) {
		return nil, fmt.Errorf("node name %q: want 1-63 lower case letters, digits or '-', starting and ending with a letter or digit", name)
	}
	b.mu.Lock()
	defer b.saveRecord()
	defer b.mu.Unlock()
	idx := len(b.nodes)
	for _, n := range b.nodes {
		if n.Name == name {
			return nil, fmt.Errorf("node %s exists", name)
		}
	}
	ip := b.Subnet.Addr()
	for i := 0; i < idx+2; i++ {
		ip = ip.Next()
	}
	if !b.Subnet.Contains(ip.Next()) { // keep .255 out
		return nil, fmt.Errorf("no address left in %s", b.Subnet)
	}
	n := &Node{
		bed:        b,
		Name:       name,
		IP:         ip,
		NetNS:      b.Prefix + "-" + b.ID + "-" + name,
		HostVeth:   fmt.Sprintf("%s%sv%d", b.Prefix, b.ID, idx),
		CgroupRoot: "/" + b.Prefix + "-" + b.ID + "-" + name,
		Dir:        filepath.Join(b.Dir, "nodes", name),
	}
	b.nodes = append(b.nodes, n)
	b.rec.Nodes = append(b.rec.Nodes, n.record())
	return n, nil
}

func (b *Bed) create(n *Node) error {
	start := time.Now()
	if err := n.create(); err != nil {
		for _, e := range n.destroy(false) {
			b.logf("node %s: cleanup after a failed create: %v", n.Name, e)
		}
		b.mu.Lock()
		b.nodes = slices.DeleteFunc(b.nodes, func(x *Node) bool { return x == n })
		b.rec.Nodes = slices.DeleteFunc(b.rec.Nodes, func(x NodeRecord) bool { return x.NetNS == n.NetNS })
		b.mu.Unlock()
		b.saveRecord()
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	b.logf("bed %s: node %s at %s (netns %s, holder pid %d, cgroup root %s) in %v",
		b.ID, n.Name, n.IP, n.NetNS, n.holderPID, n.CgroupRoot, time.Since(start).Round(time.Millisecond))
	return nil
}

// Nodes returns the bed's nodes in the order they were added.
func (b *Bed) Nodes() []*Node {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*Node(nil), b.nodes...)
}

// Node returns the node called name, or nil.
func (b *Bed) Node(name string) *Node {
	for _, n := range b.Nodes() {
		if n.Name == name {
			return n
		}
	}
	return nil
}

func (b *Bed) saveRecord() {
	b.saveMu.Lock()
	defer b.saveMu.Unlock()
	if b.save == nil {
		return // opened read-only
	}
	if err := b.save(b.Record()); err != nil {
		b.logf("bed %s: record: %v", b.ID, err)
	}
}

// Destroy removes the nodes (last first), with `kubeforge reset --force`
// in each first when reset is set, then the bridge and the bed's
// directory. It returns what it could not remove. The record is the
// caller's to remove (RemoveRecord for owned beds).
func (b *Bed) Destroy(reset bool) []error { return b.destroy(reset, false) }

// DestroyParallel is Destroy with the nodes reset and removed all at once
// (a cluster that is deleted as a whole: nobody waits for a node to leave).
func (b *Bed) DestroyParallel(reset bool) []error { return b.destroy(reset, true) }

func (b *Bed) destroy(reset, parallel bool) []error {
	var errs []error
	nodes := b.Nodes()
	nodeErrs := make([][]error, len(nodes))
	var wg sync.WaitGroup
	for i := len(nodes) - 1; i >= 0; i-- {
		if !parallel {
			nodeErrs[i] = nodes[i].destroy(reset)
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); nodeErrs[i] = nodes[i].destroy(reset) }()
	}
	wg.Wait()
	for i := len(nodes) - 1; i >= 0; i-- {
		for _, err := range nodeErrs[i] {
			errs = append(errs, fmt.Errorf("node %s: %w", nodes[i].Name, err))
		}
	}
	if b.Bridge != "" && linkExists(b.Bridge) {
		if err := runHost("ip", "link", "delete", b.Bridge); err != nil {
			errs = append(errs, err)
		}
	}
	// A node that could not be removed keeps the directory, and with it
	// a cluster's state file: a second delete tries again.
	if b.Dir != "" && len(errs) == 0 {
		if err := removeAll(b.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// RemoveRecord removes the bed's record from the registry of owned beds.
func (b *Bed) RemoveRecord() error {
	return withRegistry(func(r *registry) error { return r.remove(b.ID) })
}

// Leftovers lists what of the bed is still on the host: links, network
// namespaces, cgroup directories, the directory, mounts, processes of its
// nodes. Empty after a complete Destroy. removalStart is when the bed's
// removal began (zero: not removed): the kernel gives the inode number of
// a freed namespace to the next one made, so after the removal a process
// that started later than it, in a namespace with one of the bed's
// numbers, is in another bed's new namespace, not a leftover (every
// process of the bed's own that started during the removal was killed
// while the holder still pinned its namespaces).
func (b *Bed) Leftovers(removalStart time.Time) []string {
	var left []string
	out, _ := outputHost("ip", "-o", "link", "show")
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, b.Prefix+b.ID) {
			left = append(left, "link: "+line)
		}
	}
	nsNames, _ := os.ReadDir("/run/netns")
	for _, e := range nsNames {
		if strings.HasPrefix(e.Name(), b.Prefix+"-"+b.ID+"-") {
			left = append(left, "netns "+e.Name())
		}
	}
	hs, _ := cgroupHierarchies()
	for _, h := range hs {
		entries, _ := os.ReadDir(h.point)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), b.Prefix+"-"+b.ID+"-") {
				left = append(left, "cgroup "+filepath.Join(h.point, e.Name()))
			}
		}
	}
	if b.Dir != "" {
		if _, err := os.Stat(b.Dir); err == nil {
			left = append(left, "dir "+b.Dir)
		}
	}
	mounts, _ := ReadMountinfo("/proc/self/mountinfo")
	for _, m := range mounts {
		if b.Dir != "" && underAny(m.Point, []string{b.Dir}) {
			left = append(left, "host mount "+m.Point)
		}
	}
	for _, n := range b.Nodes() {
		for _, p := range n.Processes() {
			if !removalStart.IsZero() && startedAfter(p.PID, removalStart) {
				continue
			}
			left = append(left, "process "+p.String())
		}
		if n.holder.alive() {
			left = append(left, fmt.Sprintf("namespace holder pid %d", n.holder.PID))
		}
	}
	return left
}

func randomID() string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// runHost runs a command on the host and returns its error with output.
func runHost(name string, args ...string) error {
	_, err := outputHost(name, args...)
	return err
}

func outputHost(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func linkExists(name string) bool {
	_, err := os.Lstat("/sys/class/net/" + name)
	return err == nil
}

// linkOrCopy hard-links src at dst, or copies it where it cannot.
func linkOrCopy(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	return CopyFile(src, dst, 0o755)
}

// CopyFile copies src to a new file dst (its directory made as needed).
func CopyFile(src, dst string, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// removeAll removes a tree, retrying for a while: mounts of a namespace
// that just died may take a moment to go.
func removeAll(dir string) error {
	var err error
	for i := 0; i < 50; i++ {
		if err = os.RemoveAll(dir); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("remove %s: %w", dir, err)
}

var errNoSubnet = errors.New("no free /24")
