package phases

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubeforge/kubeforge/components/node"
	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/fsutil"
	"github.com/kubeforge/kubeforge/internal/progress"
	"github.com/kubeforge/kubeforge/manifests"
	"github.com/kubeforge/kubeforge/pki"
)

// Node is what every workflow's data carries: the configuration, where files
// go, and where progress goes.
type Node struct {
	Cfg *config.Config
	// Paths is where I/O happens: Cfg.Paths, or under a scratch root in a
	// dry run (the logical paths stay the same).
	Paths  config.Paths
	Out    *progress.Reporter
	DryRun bool
	// Host is the facts defaults and checks were computed from.
	Host config.HostFacts
	// Executable is the kubeforge binary the node service runs (default:
	// the running one).
	Executable string
	// Wait replaces the waiter (tests); nil: a live one, or a no-op one in
	// a dry run (see waiter).
	Wait Waiter
	// EtcdInitialCluster, when set, is the --initial-cluster of this
	// node's etcd member joining an existing cluster: found by the join's
	// etcd phase (the member list), kept by an upgrade from the manifest.
	EtcdInitialCluster string

	nodeOnce sync.Once
	nodeDone chan struct{}
	nodeErr  error
}

// StartNodeEarly starts the node service in the background, so containerd
// and the image import overlap the certificate work; kubelet-start then
// only waits for it (WaitNodeService).
func (n *Node) StartNodeEarly(ctx context.Context) {
	if n.DryRun || n.requireHost() != nil {
		return
	}
	n.nodeOnce.Do(func() {
		n.nodeDone = make(chan struct{})
		go func() {
			defer close(n.nodeDone)
			o := node.StartOptions{Progress: n.Out, Executable: n.Executable}
			if n.Cfg.ExternalCRI() {
				o.CRISocket = n.Cfg.CRIEndpoint()
			}
			n.nodeErr = node.Start(ctx, n.Cfg.Paths, o)
		}()
	})
}

// WaitNodeService starts the node service if that has not happened yet and
// waits until its container runtime is ready.
func (n *Node) WaitNodeService(ctx context.Context) error {
	n.StartNodeEarly(ctx)
	select {
	case <-n.nodeDone:
	case <-ctx.Done():
		return ctx.Err()
	}
	if n.nodeErr != nil {
		return fmt.Errorf("start the node service: %w", n.nodeErr)
	}
	return nil
}

// NewNode prepares the shared data. In a dry run the paths are redirected
// under a new scratch directory; call Close to remove it.
func NewNode(cfg *config.Config, out *progress.Reporter, dryRun bool, host config.HostFacts) (*Node, error) {
	n := &Node{Cfg: cfg, Paths: cfg.Paths, Out: out, DryRun: dryRun, Host: host}
	if dryRun {
		dir, err := os.MkdirTemp("", "kubeforge-dryrun-")
		if err != nil {
			return nil, fmt.Errorf("dry run: create scratch directory: %w", err)
		}
		n.Paths = n.Paths.WithRoot(dir)
	}
	return n, nil
}

// Close removes a dry run's scratch directory.
func (n *Node) Close() error {
	if n.DryRun && n.Paths.Root != "" && n.Paths.Root != "/" {
		return os.RemoveAll(n.Paths.Root)
	}
	return nil
}

// PKISpec is the certificate spec of this node, derived from the configuration.
func (n *Node) PKISpec() pki.Spec { return pki.ForConfig(n.Cfg, n.Paths) }

// Content kinds for WriteFile: whether a dry run shows the content.
const (
	ShowContent = true
	HideContent = false
)

// WriteFile writes one file through fsutil and reports it: "Wrote",
// "Updated", or "Using existing" when it already had these bytes. In a dry
// run it says "Would write" with the path, mode and (when show) content.
func (n *Node) WriteFile(phase, what, logical string, data []byte, mode fs.FileMode, show bool) error {
	start := time.Now()
	res, err := fsutil.WriteFile(n.Paths.Host(logical), data, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", what, err)
	}
	e := progress.Event{Phase: phase, Path: logical, Action: res.String(), Seconds: progress.Seconds(time.Since(start))}
	switch {
	case n.DryRun && res != fsutil.Unchanged:
		e.Action = "would-write"
		e.Message = fmt.Sprintf("Would write %s to %q (mode %04o)", what, logical, mode.Perm())
		if show {
			e.Detail = string(data)
		}
	case res == fsutil.Unchanged:
		e.Message = fmt.Sprintf("Using existing %s %q", what, logical)
	case res == fsutil.Updated:
		e.Message = fmt.Sprintf("Updated %s %q", what, logical)
	default:
		e.Message = fmt.Sprintf("Wrote %s %q", what, logical)
	}
	n.Out.Emit(e)
	return nil
}

// MkdirAll creates a directory (and parents) with mode, reporting it only
// when it was missing.
func (n *Node) MkdirAll(phase, logical string, mode fs.FileMode) error {
	host := n.Paths.Host(logical)
	if st, err := os.Stat(host); err == nil {
		if !st.IsDir() {
			return fmt.Errorf("%s exists and is not a directory: remove it", logical)
		}
		return nil
	}
	if err := os.MkdirAll(host, mode); err != nil {
		return fmt.Errorf("create directory %s: %w", logical, err)
	}
	if n.DryRun {
		n.Out.Printf(phase, "Would create directory %q (mode %04o)", logical, mode.Perm())
	} else {
		n.Out.Printf(phase, "Created directory %q", logical)
	}
	return nil
}

// renderStaticPod renders a control-plane component's static pod for this
// node. The controller-manager's signers depend on which CA keys are on
// disk (external CA mode), read from the certificate dir now; a joining
// etcd member's initial cluster is what the etcd phase found.
func (n *Node) renderStaticPod(component string) (*corev1.Pod, error) {
	return manifests.StaticPod(n.Cfg, component, manifests.Derived{
		EtcdInitialCluster: n.EtcdInitialCluster,
		ExternalCAs:        pki.ExternalCAs(n.Paths),
	})
}
