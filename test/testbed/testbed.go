// Package testbed makes isolated Kubernetes nodes on this machine for
// end-to-end tests, and removes them again when the test ends (also when
// it fails midway or a step hangs until its context expires).
//
//	tb := testbed.New(t)     // one host bridge, one subnet 10.x.y.0/24
//	n := tb.AddNode("cp1")   // a node at 10.x.y.2
//	out, err := n.Kubeforge(ctx, "init", "--config", n.InitConfigFile(), "--single-node")
//	pods, err := n.Kubectl("get", "pods", "-A")
//
// Each node has
//
//   - its own network namespace kftb-<id>-<name>, joined by a veth pair
//     (eth0 inside) to the testbed's bridge kftb<id> on the host. The bridge
//     has 10.x.y.1/24, the nodes 10.x.y.2, .3, …; the nodes have no default
//     route, so nothing they send can leave the test network. ip_forward and
//     bridge-nf-call-iptables are on inside.
//   - its own mount namespace, held by a process the testbed starts
//     (`unshare --mount --propagation private sleep infinity` in the node's
//     network namespace). In it /var/lib and /var/log are bind mounts of the
//     node's own directories (its "disk"; /var/lib is rshared so that the
//     kubelet's volume mounts propagate into containers), /run is a tmpfs,
//     and /etc is an overlay of the host's /etc in which /etc/kubernetes and
//     /etc/cni/net.d start empty. Every path kubeforge writes (/etc/kubernetes,
//     /etc/cni/net.d, /var/lib/{kubelet,etcd,kubeforge,cni,kube-proxy},
//     /var/log/{pods,containers,kubeforge}, /run/{kubeforge,containerd}) is
//     thus private to the node, yet an ordinary directory that `kubeforge
//     reset` can delete. (Mounting on those paths themselves would make them
//     undeletable, and a mount on a host directory that something on the host
//     deletes is silently detached.) /sys, /proc, /dev and /tmp are the host's.
//   - its own kubelet cgroup root, /kftb-<id>-<name>, set by the
//     KubeletConfiguration in the node's config file (InitConfigFile), so that
//     two kubelets never share /kubepods. The same document sets resolvConf
//     to the testbed's resolv.conf, whose only nameserver is the bridge's
//     address (which serves no DNS): CoreDNS's upstream stays in the test
//     network.
//
// Commands run in a node with nsenter into both namespaces (never `ip netns
// exec`, which remounts /sys and hides the cgroups). The kubeforge binary
// under test is copied into the testbed first: the original may be rebuilt
// while the test runs.
//
// Cleanup, per node: diagnostics if the test failed, `kubeforge reset
// --force` in the node, SIGKILL for every process still in the node's
// network or mount namespace or cgroup root, unmount, stop the holder,
// delete the netns and veth; then the bridge, the cgroup directories and the
// temporary files. Testbeds are recorded in /run/kftb so that a later
// testbed removes those of a test process that died without cleaning up.
package testbed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/internal/testutil"
)

// Testbed is a set of nodes on one host bridge.
type Testbed struct {
	t testing.TB

	// ID is the testbed's random id: it is part of every name it creates.
	ID string
	// Bridge is the host bridge the nodes' veths are attached to.
	Bridge string
	// Subnet is the nodes' network (a /24); Gateway, the bridge's address in it.
	Subnet  netip.Prefix
	Gateway netip.Addr
	// Binary is the kubeforge executable the nodes run (a private copy).
	Binary string
	// Dir is the testbed's temporary directory on the host (visible in the
	// nodes too, at the same path).
	Dir string
	// ResolvConf is the nodes' resolv.conf for their pods (in Dir; the
	// kubelet's resolvConf): its only nameserver is Gateway, an address of
	// the test network where nothing serves DNS.
	ResolvConf string

	mu    sync.Mutex
	nodes []*Node
	rec   record
}

// Option tunes New.
type Option func(*options)

type options struct{ binary string }

// WithBinary tests this kubeforge executable instead of $KUBEFORGE_BINARY
// (or a fresh build). It is copied; the copy is what the nodes run.
func WithBinary(path string) Option { return func(o *options) { o.binary = path } }

// RequireHost skips the test unless it can make nodes here: it needs root
// and is not run by `go test -short`.
func RequireHost(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end node test: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("end-to-end node test: needs root (network and mount namespaces, cgroups, iptables)")
	}
	for _, tool := range []string{"ip", "nsenter", "unshare", "mount", "umount", "sleep", "runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("end-to-end node test: %s is not installed (./hack/deps.sh installs what the nodes need)", tool)
		}
	}
}

// New makes an empty testbed: its bridge on the host and a copy of the
// kubeforge binary. Everything is removed when the test ends.
func New(t testing.TB, opts ...Option) *Testbed {
	t.Helper()
	RequireHost(t)
	var o options
	for _, f := range opts {
		f(&o)
	}
	Sweep(t.Logf)

	tb := &Testbed{t: t, ID: randomID()}
	tb.Bridge = "kftb" + tb.ID
	t.Cleanup(tb.cleanup)
	var err error
	if tb.Dir, err = os.MkdirTemp("", "kftb-"+tb.ID+"-"); err != nil {
		t.Fatal(err)
	}
	tb.rec = record{ID: tb.ID, Owner: self(), Bridge: tb.Bridge, Dir: tb.Dir}

	// Pick a subnet nobody uses and claim it (the record and the bridge's
	// address) under the registry lock, so two testbeds never pick the same.
	err = withRegistry(func(r *registry) error {
		prefix, err := r.freeSubnet()
		if err != nil {
			return err
		}
		tb.Subnet = prefix
		tb.Gateway = prefix.Addr().Next()
		tb.rec.Subnet = prefix.String()
		if err := r.save(tb.rec); err != nil {
			return err
		}
		return runHost("ip", "link", "add", tb.Bridge, "type", "bridge")
	})
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	for _, args := range [][]string{
		{"addr", "add", fmt.Sprintf("%s/%d", tb.Gateway, tb.Subnet.Bits()), "dev", tb.Bridge},
		{"link", "set", tb.Bridge, "up"},
	} {
		if err := runHost("ip", args...); err != nil {
			t.Fatalf("testbed: %v", err)
		}
	}

	tb.ResolvConf = filepath.Join(tb.Dir, "resolv.conf")
	if err := os.WriteFile(tb.ResolvConf, []byte("nameserver "+tb.Gateway.String()+"\n"), 0o644); err != nil {
		t.Fatalf("testbed: %v", err)
	}

	src := o.binary
	if src == "" {
		src = testutil.Binary(t)
	}
	tb.Binary = filepath.Join(tb.Dir, "bin", "kubeforge")
	if err := CopyFile(src, tb.Binary, 0o755); err != nil {
		t.Fatalf("testbed: copy the kubeforge binary: %v", err)
	}
	t.Logf("testbed %s: bridge %s %s/%d, binary %s (copy of %s)", tb.ID, tb.Bridge, tb.Gateway, tb.Subnet.Bits(), tb.Binary, src)
	return tb
}

var nodeName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?$`)

// AddNode makes a node: its network namespace, veth, mount namespace and
// cgroup root, and its config file. name is also its Kubernetes node name
// (lower case letters, digits and '-', at most 20 characters).
func (tb *Testbed) AddNode(name string) *Node {
	t := tb.t
	t.Helper()
	if !nodeName.MatchString(name) {
		t.Fatalf("testbed: node name %q: want 1-20 lower case letters, digits or '-'", name)
	}
	tb.mu.Lock()
	idx := len(tb.nodes)
	for _, n := range tb.nodes {
		if n.Name == name {
			tb.mu.Unlock()
			t.Fatalf("testbed: node %s exists", name)
		}
	}
	ip := tb.Subnet.Addr()
	for i := 0; i < idx+2; i++ {
		ip = ip.Next()
	}
	if !tb.Subnet.Contains(ip.Next()) { // keep .255 out
		tb.mu.Unlock()
		t.Fatalf("testbed: no address left in %s", tb.Subnet)
	}
	n := &Node{
		tb:         tb,
		Name:       name,
		IP:         ip,
		NetNS:      "kftb-" + tb.ID + "-" + name,
		HostVeth:   fmt.Sprintf("kftb%sv%d", tb.ID, idx),
		CgroupRoot: "/kftb-" + tb.ID + "-" + name,
		Dir:        filepath.Join(tb.Dir, "nodes", name),
	}
	tb.nodes = append(tb.nodes, n)
	tb.rec.Nodes = append(tb.rec.Nodes, nodeRecord{NetNS: n.NetNS, HostVeth: n.HostVeth, CgroupRoot: n.CgroupRoot})
	tb.mu.Unlock()
	tb.saveRecord()

	start := time.Now()
	if err := n.create(); err != nil {
		t.Fatalf("testbed: node %s: %v", name, err)
	}
	t.Logf("testbed %s: node %s at %s (netns %s, holder pid %d, cgroup root %s) in %v",
		tb.ID, name, ip, n.NetNS, n.holderPID, n.CgroupRoot, time.Since(start).Round(time.Millisecond))
	return n
}

// Nodes returns the testbed's nodes in the order they were added.
func (tb *Testbed) Nodes() []*Node {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]*Node(nil), tb.nodes...)
}

func (tb *Testbed) saveRecord() {
	tb.mu.Lock()
	rec := tb.rec
	rec.Nodes = append([]nodeRecord(nil), tb.rec.Nodes...)
	tb.mu.Unlock()
	if err := withRegistry(func(r *registry) error { return r.save(rec) }); err != nil {
		tb.t.Logf("testbed: record %s: %v", tb.ID, err)
	}
}

// cleanup removes the nodes (last first), then the bridge and files.
func (tb *Testbed) cleanup() {
	t := tb.t
	nodes := tb.Nodes()
	for i := len(nodes) - 1; i >= 0; i-- {
		n := nodes[i]
		if t.Failed() && n.holderPID != 0 {
			t.Logf("node %s diagnostics:\n%s", n.Name, n.Diagnostics(context.Background()))
		}
		for _, err := range n.destroy(true) {
			t.Errorf("testbed: cleanup of node %s: %v", n.Name, err)
		}
	}
	if linkExists(tb.Bridge) {
		if err := runHost("ip", "link", "delete", tb.Bridge); err != nil {
			t.Errorf("testbed: %v", err)
		}
	}
	if tb.Dir != "" {
		if err := removeAll(tb.Dir); err != nil {
			t.Errorf("testbed: %v", err)
		}
	}
	if err := withRegistry(func(r *registry) error { return r.remove(tb.ID) }); err != nil {
		t.Errorf("testbed: %v", err)
	}
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
