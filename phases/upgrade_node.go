package phases

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubeforge/kubeforge/components/node"
	"github.com/kubeforge/kubeforge/internal/version"
)

// executable is the new kubeforge binary: the one running the upgrade.
func (d *UpgradeData) executable() string {
	if d.Executable != "" {
		return d.Executable
	}
	exe, err := os.Executable()
	if err != nil {
		return "kubeforge"
	}
	return exe
}

// nodeServiceRunsThisBinary reports whether the running node service's
// executable is this file (same inode: a binary replaced by a new file at
// the same path is another one).
func (d *UpgradeData) nodeServiceRunsThisBinary() (bool, error) {
	pid, ok := node.Running(d.Cfg.Paths)
	if !ok || pid == 0 {
		return false, errors.New("the node service is not running")
	}
	running, err := os.Stat(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return false, fmt.Errorf("the node service's executable: %w", err)
	}
	self, err := os.Stat(d.executable())
	if err != nil {
		return false, err
	}
	return os.SameFile(running, self), nil
}

// runUpgradeNodeService restarts the node service on this binary: the
// supervisor, containerd and the kubelet stop and start again from it
// (with systemd, the unit's ExecStart is rewritten to it); containers and
// their shims keep running, and the kubelet adopts them again.
func runUpgradeNodeService(ctx context.Context, d *UpgradeData) error {
	const phase = "upgrade/node-service"
	p := d.Cfg.Paths
	exe := d.executable()
	same, err := d.nodeServiceRunsThisBinary()
	switch {
	case err == nil && same:
		d.Out.Printf(phase, "The node service already runs %s", exe)
	case d.DryRun:
		d.Out.Printf(phase, "Would restart the node service on %s (containers keep running)", exe)
		return nil
	default:
		start := time.Now()
		o := node.StartOptions{Executable: exe, Progress: d.Out}
		if st, err := node.ReadState(p); err == nil && st.ExternalRuntime {
			o.CRISocket = st.CRISocket
		}
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := node.Stop(sctx, p)
		cancel()
		if err != nil {
			return fmt.Errorf("stop the node service: %w", err)
		}
		if err := node.Start(ctx, p, o); err != nil {
			return fmt.Errorf("start the node service on %s: %w (containers kept running; `kubeforge node start` with the old binary goes back)", exe, err)
		}
		d.Out.Done(phase, "restarted", "", start, "Restarted the node service on %s", exe)
	}
	kubelet := d.kubeletHealth()
	start := time.Now()
	w := d.waiter()
	hctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := w.Healthy(hctx, kubelet); err != nil {
		msg := fmt.Sprintf("the kubelet is not healthy after the node service restarted: %s", d.diagnose(kubelet, err))
		if d.stepDone("kubelet-backup") {
			msg += fmt.Sprintf("\nThe previous kubelet configuration is in %s", filepath.Join(d.state.BackupDir, "kubelet"))
		}
		return errors.New(msg)
	}
	var n *corev1.Node
	err = w.Poll(ctx, 100*time.Millisecond, 2*time.Minute, func(context.Context) (bool, error) {
		var err error
		n, err = d.Client.CoreV1().Nodes().Get(ctx, d.Cfg.NodeName(), metav1.GetOptions{})
		return err == nil && nodeReady(n), err
	})
	if err != nil {
		return fmt.Errorf("node %s is not Ready after the node service restarted: %w", d.Cfg.NodeName(), err)
	}
	if d.DryRun {
		// The dry run's waiter waited for nothing (n is not read); a dry
		// run records nothing on the Node.
		return nil
	}
	if n.Annotations[NodeVersionAnnotation] != version.Version {
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{NodeVersionAnnotation: version.Version}}})
		if _, err := d.Client.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return fmt.Errorf("record the node's kubeforge version (annotation %s): %w", NodeVersionAnnotation, err)
		}
	}
	d.Out.Done(phase, "ready", "", start, "Node %s is Ready on kubeforge %s", n.Name, version.Version)
	if d.ControlPlane {
		d.staticPodsSettled(ctx, 3*time.Minute)
	}
	return nil
}
