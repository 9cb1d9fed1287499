package phases

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubeforge/kubeforge/components/node"
	"github.com/kubeforge/kubeforge/internal/cri"
	"github.com/kubeforge/kubeforge/internal/version"
	"github.com/kubeforge/kubeforge/preflight"
)

// runtimeCheck is the preflight check of an external container runtime,
// or nil when the node runs the bundled containerd.
func (n *Node) runtimeCheck() *preflight.ContainerRuntimeCheck {
	if !n.Cfg.ExternalCRI() {
		return nil
	}
	endpoint := n.Cfg.CRIEndpoint()
	host := ""
	if sock, err := cri.SocketPath(endpoint); err == nil {
		host = n.Cfg.Paths.Host(sock)
	}
	// A joining node learns the cluster's kubelet config after preflight;
	// its cgroup driver is then the one this host gets (config/join.go).
	driver := n.Cfg.Kubelet.CgroupDriver
	if driver == "" {
		driver = cri.CgroupFS
		if n.Host.SystemdInit {
			driver = cri.Systemd
		}
	}
	return &preflight.ContainerRuntimeCheck{
		Endpoint:     endpoint,
		Host:         host,
		CgroupDriver: driver,
		OwnPause:     version.PauseImage(),
		AllowPulls:   !n.Cfg.Kubeforge.AirGapped && !n.DryRun, // a dry run changes nothing, in the runtime neither
		CNIBinDir:    node.ExternalCNIBinDir(n.Cfg.Paths),
	}
}

// runtimeWatch reads, while wait-control-plane waits, what the external
// container runtime told the kubelet (the CRI errors in the kubelet's log)
// and the containers it could not start (CRI ListContainers), and returns
// an error as soon as the runtime keeps failing: the runtime's own
// message and the fix, within seconds instead of after the timeout. It
// returns nil when ctx ends first. Only for an external runtime: the
// bundled containerd's configuration is kubeforge's own.
func (n *Node) runtimeWatch(ctx context.Context, since time.Time) error {
	endpoint := n.Cfg.CRIEndpoint()
	logFile := n.Paths.Host(node.KubeletLogFile(n.Cfg.Paths))
	var rt *cri.Runtime
	defer func() {
		if rt != nil {
			rt.Close()
		}
	}()
	var failed error
	// Every 500 ms until the runtime keeps failing (done) or ctx ends.
	_ = wait.PollUntilContextCancel(ctx, 500*time.Millisecond, false, func(ctx context.Context) (bool, error) {
		var failures []cri.Failure
		if b, err := os.ReadFile(logFile); err == nil {
			failures = cri.KubeletLogFailures(strings.Split(string(b), "\n"), since, time.Now())
		}
		if rt == nil {
			if sock, err := cri.SocketPath(endpoint); err == nil {
				rt, _ = cri.Dial(ctx, endpoint, n.Cfg.Paths.Host(sock))
			}
		}
		if rt != nil {
			if fs, err := rt.ContainerFailures(ctx, "kube-system"); err == nil {
				for _, f := range fs {
					if !f.At.Before(since) {
						failures = append(failures, f)
					}
				}
			}
		}
		if f := cri.Persistent(failures); f != nil {
			failed = fmt.Errorf("the container runtime at %s keeps failing the control plane's pods (%d CRI errors in %s and the runtime since the kubelet started); the runtime says: %s\nFix: %s",
				endpoint, len(failures), node.KubeletLogFile(n.Cfg.Paths), f, cri.Fix(*f, endpoint, version.PauseImage()))
			return true, nil
		}
		return false, nil
	})
	return failed
}

// cleanupRuntime removes, from a container runtime kubeforge did not start
// (the one cri.Owned records, or --cri-socket), what kubeforge made there:
// the kubelet's pods with their containers, and the images it imported or
// stored under the runtime's sandbox image name. Everything else in the
// runtime (other namespaces, other images) is left alone.
func (d *ResetData) cleanupRuntime(ctx context.Context, phase string) error {
	owned, err := cri.ReadOwned(d.Cfg.Paths)
	if err != nil {
		d.Out.Warnf(phase, "cannot read what kubeforge put into the container runtime: %v", err)
	}
	endpoint := owned.Endpoint
	if endpoint == "" && d.Cfg.ExternalCRI() {
		endpoint = d.Cfg.CRIEndpoint()
	}
	if endpoint == "" {
		return nil
	}
	what := fmt.Sprintf("remove the kubelet's pods and kubeforge's images (%s) from the container runtime at %s", strings.Join(owned.Images, ", "), endpoint)
	return d.action(phase, what, func() error {
		sock, err := cri.SocketPath(endpoint)
		if err != nil {
			return err
		}
		rt, err := cri.Dial(ctx, endpoint, d.Cfg.Paths.Host(sock))
		if err != nil {
			// Nothing more reset can do there: the rest goes on.
			d.Out.Warnf(phase, "%v: the kubelet's pods and kubeforge's images [%s] stay in that runtime; remove them once it runs "+
				"(`crictl --runtime-endpoint %s rmp -fa`, `crictl rmi IMAGE`, or for containerd `ctr -n k8s.io images rm IMAGE`)",
				err, strings.Join(owned.Images, " "), endpoint)
			return nil
		}
		defer rt.Close()
		n, perr := rt.RemovePods(ctx)
		removed, ierr := rt.RemoveImages(ctx, owned.Images)
		d.Out.Printf(phase, "Removed %d pods and the images [%s] from %s", n, strings.Join(removed, ", "), endpoint)
		return errors.Join(perr, ierr)
	})
}
