// Package testbed makes isolated Kubernetes nodes on this machine for
// end-to-end tests, and removes them again when the test ends (also when
// it fails midway or a step hangs until its context expires). It is a thin
// layer over localcluster, the same machinery `kubeforge cluster` uses: it
// ties a bed to a test (t.Fatal on errors, cleanup at the end, diagnostics
// of a failed test) and records it as owned by the test process, so that a
// later bed sweeps what a killed test left.
//
//	tb := testbed.New(t)     // one host bridge, one subnet 10.x.y.0/24
//	n := tb.AddNode("cp1")   // a node at 10.x.y.2
//	out, err := n.Kubeforge(ctx, "init", "--config", n.InitConfigFile(), "--single-node")
//	pods, err := n.Kubectl("get", "pods", "-A")
//
// See localcluster's documentation for what a node is made of. Names start
// with "kftb"; the kubeforge binary under test is copied into the testbed
// first (the original may be rebuilt while the test runs). Testbeds are
// recorded in /run/kftb so that a later testbed removes those of a test
// process that died without cleaning up.
package testbed

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"sync"
	"testing"

	"github.com/kubeforge/kubeforge/internal/testutil"
	"github.com/kubeforge/kubeforge/localcluster"
)

// Testbed is a set of nodes on one host bridge (a localcluster.Bed tied to
// a test).
type Testbed struct {
	*localcluster.Bed
	t testing.TB

	mu    sync.Mutex
	nodes []*Node
}

// Node is one node of a testbed.
type Node struct {
	*localcluster.Node
	tb *Testbed
}

// Types of localcluster that tests use by these names.
type (
	Mount    = localcluster.Mount
	Process  = localcluster.Process
	RunError = localcluster.RunError
)

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

// Sweep removes the testbeds whose owning process is gone: a test binary
// that was killed (timeout, signal) ran no cleanup. New calls it.
func Sweep(logf func(format string, args ...any)) { localcluster.Sweep(logf) }

// CopyFile copies src to a new file dst (its directory made as needed).
func CopyFile(src, dst string, mode os.FileMode) error { return localcluster.CopyFile(src, dst, mode) }

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

	src := o.binary
	if src == "" {
		src = testutil.Binary(t)
	}
	dir, err := os.MkdirTemp("", "kftb-")
	if err != nil {
		t.Fatal(err)
	}
	bed, err := localcluster.NewBed(localcluster.BedOptions{
		Prefix: "kftb", Dir: dir, Binary: src, Range: localcluster.TestRange, Random: true, Owner: true, Logf: t.Logf,
	})
	if err != nil {
		os.RemoveAll(dir)
		t.Fatalf("testbed: %v", err)
	}
	tb := &Testbed{Bed: bed, t: t}
	t.Cleanup(tb.cleanup)
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
	ln, err := tb.Bed.AddNode(name)
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	n := &Node{Node: ln, tb: tb}
	tb.mu.Lock()
	tb.nodes = append(tb.nodes, n)
	tb.mu.Unlock()
	return n
}

// Nodes returns the testbed's nodes in the order they were added.
func (tb *Testbed) Nodes() []*Node {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]*Node(nil), tb.nodes...)
}

// cleanup removes the nodes (last first), then the bridge and files.
func (tb *Testbed) cleanup() {
	t := tb.t
	if t.Failed() {
		nodes := tb.Nodes()
		for i := len(nodes) - 1; i >= 0; i-- {
			if n := nodes[i]; n.HolderPID() != 0 {
				t.Logf("node %s diagnostics:\n%s", n.Name, n.Diagnostics(context.Background()))
			}
		}
	}
	if errs := tb.Destroy(true); len(errs) > 0 {
		// The record stays: once this process has ended, the next
		// Sweep tries again.
		for _, err := range errs {
			t.Errorf("testbed: cleanup: %v", err)
		}
		return
	}
	if err := tb.RemoveRecord(); err != nil {
		t.Errorf("testbed: %v", err)
	}
}

// InitConfigFile writes InitConfigYAML and returns its path, which is the
// same in the node.
func (n *Node) InitConfigFile() string {
	return n.WriteConfigFile("init.yaml", n.InitConfigYAML())
}

// JoinConfigFile writes the node-local part of a join (JoinConfigYAML) and
// returns its path: the node's name and, as kubeletExtraArgs, the kubelet
// cgroup root of its own that every testbed node needs. Discovery comes
// from the join command's flags.
func (n *Node) JoinConfigFile() string {
	return n.WriteConfigFile("join.yaml", n.JoinConfigYAML())
}

// WriteConfigFile writes a config file into the node's directory (visible
// in the node at the same path) and returns its path.
func (n *Node) WriteConfigFile(name, content string) string {
	p, err := n.Node.WriteConfigFile(name, content)
	if err != nil {
		n.tb.t.Fatalf("testbed: %v", err)
	}
	return p
}
