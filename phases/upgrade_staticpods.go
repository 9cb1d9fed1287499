package phases

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/components/kubelet/staticpod"
	"github.com/kubeforge/kubeforge/internal/version"
	"github.com/kubeforge/kubeforge/join/etcdmember"
	"github.com/kubeforge/kubeforge/manifests"
)

// configHashAnnotation is where the kubelet puts the hash of the static pod
// a mirror pod stands for.
const configHashAnnotation = "kubernetes.io/config.hash"

// replaceStaticPod writes a component's new manifest and waits until the
// kubelet runs it: its mirror pod carries a new config hash and the new
// image, is Ready, and the component answers its health check. If that
// does not happen within the timeout, the previous manifest goes back.
func (d *UpgradeData) replaceStaticPod(ctx context.Context, component string) error {
	const phase = "upgrade/control-plane"
	cur, want, err := d.manifestPair(component)
	if err != nil {
		return err
	}
	logical := d.Cfg.Paths.Manifest(component)
	// Its configuration files first (a manifest from this version may
	// name one that an older kubeforge did not write). They are named by
	// their content, so a rolled-back manifest still finds its own.
	if err := writeComponentFiles(d.Node, phase, component); err != nil {
		return err
	}
	if d.DryRun {
		if bytes.Equal(cur, want) {
			d.Out.Printf(phase, "%s is up to date", component)
			return nil
		}
		return d.WriteFile(phase, "static Pod manifest for "+component, logical, want, 0o600, ShowContent)
	}
	start := time.Now()
	image := podImage(want)
	oldHash := ""
	d.podsBefore = d.podUIDs(component)
	if !bytes.Equal(cur, want) {
		var oldMirror types.UID
		if pod, err := d.mirrorPod(ctx, component); err == nil {
			oldHash, oldMirror = pod.Annotations[configHashAnnotation], pod.UID
		}
		d.replaceMirror(ctx, component, logical, want, oldMirror)
		if err := d.WriteFile(phase, "static Pod manifest for "+component, logical, want, 0o600, HideContent); err != nil {
			return err
		}
	} else if d.componentRunning(ctx, component, "", image, 5*time.Second) == nil {
		d.Out.Printf(phase, "%s already runs %s", component, image)
		return nil
	}
	if err := d.componentRunning(ctx, component, oldHash, image, d.ComponentTimeout); err != nil {
		return d.rollback(ctx, component, err)
	}
	if component == manifests.Etcd {
		// As kubeadm after an etcd upgrade: the whole etcd cluster, not
		// only this member, must be available before the API server
		// restarts on it, and before the next control-plane node takes
		// its own member down.
		if err := d.waitEtcdCluster(ctx, min(d.ComponentTimeout, 2*time.Minute)); err != nil {
			return d.rollback(ctx, component, err)
		}
	}
	d.Out.Done(phase, "upgraded", logical, start, "%s runs %s and is healthy", component, image)
	return nil
}

// waitEtcdCluster waits until every etcd member, asked through this node's
// own member, has started, is a voting member and answers at its client URL
// with no error and the same leader.
func (d *UpgradeData) waitEtcdCluster(ctx context.Context, timeout time.Duration) error {
	local := manifests.EtcdLocalClientURL
	c, err := etcdmember.Client(d.Cfg.Paths, []string{local})
	if err != nil {
		return err
	}
	defer c.Close()
	start := time.Now()
	var members []etcdmember.Member
	err = d.waiter().Poll(ctx, 100*time.Millisecond, timeout, func(context.Context) (bool, error) {
		err := etcdClusterProblem(ctx, c, &members)
		return err == nil, err
	})
	if err != nil {
		return fmt.Errorf("the etcd cluster is not available within %s after this member's restart: %w", timeout, err)
	}
	if len(members) > 1 {
		d.Out.Done("upgrade/control-plane", "etcd-cluster", "", start, "The etcd cluster's %d members are started, voting and healthy", len(members))
	}
	return nil
}

// etcdClusterProblem says what keeps the etcd cluster from being available
// (nil: nothing); members gets the member list.
func etcdClusterProblem(ctx context.Context, c *clientv3.Client, members *[]etcdmember.Member) error {
	ectx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ms, err := etcdmember.List(ectx, c)
	if err != nil {
		return err
	}
	*members = ms
	var leader uint64
	for _, m := range ms {
		switch {
		case m.Name == "" || len(m.ClientURLs) == 0:
			return fmt.Errorf("member %x (%v) has not started", m.ID, m.PeerURLs)
		case m.Learner:
			return fmt.Errorf("member %s is a learner", m.Name)
		}
		st, err := c.Status(ectx, m.ClientURLs[0])
		if err != nil {
			return fmt.Errorf("member %s at %s: %w", m.Name, m.ClientURLs[0], err)
		}
		if len(st.Errors) > 0 {
			return fmt.Errorf("member %s reports %s", m.Name, strings.Join(st.Errors, "; "))
		}
		if st.Leader == 0 || leader != 0 && st.Leader != leader {
			return fmt.Errorf("member %s sees leader %x, another %x", m.Name, st.Leader, leader)
		}
		leader = st.Leader
	}
	return nil
}

// replaceMirror puts the mirror pod of the component's new manifest in
// place just before the manifest is written, while etcd and the API server
// still answer, so that the kubelet starts the new static pod without
// waiting on the API server first (see package staticpod: on one
// control-plane node that wait kept etcd down for a minute; after the
// manifest is written it is too late, the kubelet stops the old etcd at
// once). It only saves time: when it cannot, or when the kubelet reads the
// manifest otherwise, the kubelet replaces the mirror pod itself, as before.
func (d *UpgradeData) replaceMirror(ctx context.Context, component, path string, manifest []byte, old types.UID) {
	// The kubelet's hash covers the manifest's path as the kubelet sees
	// it: only the same path gives the same hash.
	if old == "" || d.Paths.Host(path) != path {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	node := d.Cfg.NodeName()
	static, err := staticpod.Pod(ctx, manifest, path, node)
	if err == nil {
		err = staticpod.ReplaceMirror(ctx, d.Client, node, static, old)
	}
	if err != nil {
		d.Out.Printf("upgrade/control-plane", "The kubelet replaces the mirror pod of %s itself: %v", component, err)
	}
}

func podImage(manifest []byte) string {
	var pod corev1.Pod
	if yaml.Unmarshal(manifest, &pod) != nil || len(pod.Spec.Containers) == 0 {
		return ""
	}
	return pod.Spec.Containers[0].Image
}

func (d *UpgradeData) mirrorPod(ctx context.Context, component string) (*corev1.Pod, error) {
	return d.Client.CoreV1().Pods(metav1.NamespaceSystem).Get(ctx, component+"-"+d.Cfg.NodeName(), metav1.GetOptions{})
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// componentRunning waits until the component's mirror pod has a config
// hash other than oldHash (when set), runs image, is Ready, and the
// component answers its health check.
func (d *UpgradeData) componentRunning(ctx context.Context, component, oldHash, image string, timeout time.Duration) error {
	checks, err := d.healthChecks()
	if err != nil {
		return err
	}
	var h health
	for _, c := range checks {
		if c.name == component {
			h = c
		}
	}
	w := d.waiter()
	last := errors.New("not checked yet")
	err = w.Poll(ctx, 300*time.Millisecond, timeout, func(wctx context.Context) (bool, error) {
		pod, err := d.mirrorPod(wctx, component)
		switch {
		case err != nil && component == manifests.Etcd && d.newLocalPod(component):
			// While etcd restarts, the API server may be unavailable for
			// a while (on one node it depends on this very etcd): the
			// kubelet's own record (a new pod directory) and etcd's
			// health then say the new etcd runs.
			hctx, hcancel := context.WithTimeout(wctx, 3*time.Second)
			err := w.Healthy(hctx, h)
			hcancel()
			if err == nil {
				return true, nil
			}
			last = fmt.Errorf("its health check: %w (the API server does not answer for its mirror pod either)", err)
		case err != nil:
			last = fmt.Errorf("its mirror pod: %w", err)
		case oldHash != "" && pod.Annotations[configHashAnnotation] == oldHash:
			last = errors.New("the kubelet has not picked up the new manifest yet (the mirror pod has the old config hash)")
		case pod.Spec.Containers[0].Image != image:
			last = fmt.Errorf("its mirror pod runs %s, not %s yet", pod.Spec.Containers[0].Image, image)
		case !podReady(pod):
			last = fmt.Errorf("its pod is not Ready%s", containerState(pod))
		default:
			hctx, hcancel := context.WithTimeout(wctx, 3*time.Second)
			err := w.Healthy(hctx, h)
			hcancel()
			if err == nil {
				return true, nil
			}
			last = fmt.Errorf("its health check: %w", err)
		}
		return false, nil
	})
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return fmt.Errorf("not running and healthy within %s: %w", timeout, last)
}

func containerState(p *corev1.Pod) string {
	for _, s := range p.Status.ContainerStatuses {
		if w := s.State.Waiting; w != nil {
			return fmt.Sprintf(" (container %s: %s, %d restarts)", s.Name, w.Reason, s.RestartCount)
		}
		if s.RestartCount > 0 {
			return fmt.Sprintf(" (container %s: %d restarts)", s.Name, s.RestartCount)
		}
	}
	return ""
}

// rollback puts a component's previous manifest back after its new one
// failed, waits for it to be healthy again, and returns the error that
// stops the upgrade: the component, why, and the end of its log.
func (d *UpgradeData) rollback(ctx context.Context, component string, cause error) error {
	const phase = "upgrade/control-plane"
	checks, _ := d.healthChecks()
	var diag string
	for _, h := range checks {
		if h.name == component {
			diag = d.diagnose(h, cause)
		}
	}
	fail := fmt.Errorf("%s did not come up with kubeforge %s's manifest: %w\n%s", component, version.Version, cause, diag)
	backup := filepath.Join(d.state.BackupDir, "manifests", filepath.Base(d.Cfg.Paths.Manifest(component)))
	old, err := os.ReadFile(d.Paths.Host(backup))
	if d.state.BackupDir == "" || err != nil {
		return fmt.Errorf("%w\nNo backup of its previous manifest to roll back to (%s); its new manifest stays in place", fail, backup)
	}
	failedHash := ""
	if pod, err := d.mirrorPod(ctx, component); err == nil {
		failedHash = pod.Annotations[configHashAnnotation]
	}
	logical := d.Cfg.Paths.Manifest(component)
	// The old etcd's health alone tells it is back when the API is down:
	// the failed one does not answer it.
	d.podsBefore = map[string]bool{}
	if err := d.WriteFile(phase, "previous static Pod manifest for "+component, logical, old, 0o600, HideContent); err != nil {
		return fmt.Errorf("%w\nRolling back failed: %v; restore %s from %s by hand", fail, err, logical, backup)
	}
	if ctx.Err() != nil {
		// Interrupted (Ctrl-C, SIGTERM): the previous manifest is back,
		// which the kubelet runs on its own; no waiting, and never an
		// etcd data restore for a component that was only restarting.
		d.Out.Warnf(phase, "interrupted: restored %s's previous manifest from %s", component, backup)
		return fmt.Errorf("%w\nInterrupted: %s's previous manifest is back in place; run the same upgrade command again to continue", fail, component)
	}
	d.Out.Warnf(phase, "%s did not come up: restored its previous manifest from %s", component, backup)
	err = d.componentRunning(ctx, component, failedHash, podImage(old), d.ComponentTimeout)
	if err != nil && ctx.Err() != nil {
		// Interrupted while the previous one came back: it is in place,
		// and restoring data is not for an interrupted wait to decide.
		return fmt.Errorf("%w\nInterrupted while %s came back on its previous manifest (in place); check it, then run the same upgrade command again to continue", fail, component)
	}
	if err != nil && component == manifests.Etcd {
		snap := filepath.Join(d.state.BackupDir, "etcd-snapshot.db")
		if d.RestoreEtcd == nil {
			return fmt.Errorf("%w\nThe previous etcd did not come back either (%v): restore its data from the snapshot %s (`kubeforge etcd snapshot restore %s`)", fail, err, snap, snap)
		}
		d.Out.Warnf(phase, "the previous etcd does not come back on its data (%v): restoring the data directory from %s", err, snap)
		if rerr := d.RestoreEtcd(ctx, d.Cfg, snap); rerr != nil {
			return fmt.Errorf("%w\nRestoring etcd's data from %s failed too: %v", fail, snap, rerr)
		}
		err = d.componentRunning(ctx, component, "", podImage(old), d.ComponentTimeout)
	}
	if err != nil {
		return fmt.Errorf("%w\nIts previous manifest is back in place, but it is not healthy yet either: %v", fail, err)
	}
	d.Out.Printf(phase, "%s is back on its previous manifest and healthy", component)
	return fmt.Errorf("%w\nRolled back: %s runs its previous manifest again and is healthy; the upgrade stopped here (fix the cause, then run it again)", fail, component)
}

// podUIDs are the UIDs of the component's pods whose logs the kubelet
// keeps (a static pod's UID is its manifest's hash).
func (d *UpgradeData) podUIDs(component string) map[string]bool {
	prefix := metav1.NamespaceSystem + "_" + component + "-" + d.Cfg.NodeName() + "_"
	dirs, _ := filepath.Glob(d.Paths.Host(filepath.Join(d.Cfg.Paths.PodLogDir, prefix+"*")))
	out := map[string]bool{}
	for _, dir := range dirs {
		out[strings.TrimPrefix(filepath.Base(dir), prefix)] = true
	}
	return out
}

// newLocalPod reports whether the kubelet has started a pod of the
// component that was not there before its manifest was written (the
// kubelet starts a static pod's new version only once the old one has
// stopped).
func (d *UpgradeData) newLocalPod(component string) bool {
	if d.podsBefore == nil {
		return false
	}
	for uid := range d.podUIDs(component) {
		if !d.podsBefore[uid] {
			return true
		}
	}
	return false
}

// staticPodsSettled waits, after the node service restarted on this binary,
// until every control-plane static pod of this node runs as this binary's
// kubelet has it: its mirror pod carries the config hash this kubelet
// computes for the manifest (staticpod.Hash), is Ready, and the component
// answers its health check. A kubelet of another minor than the one that
// started the pods may compute other hashes (its defaults differ): it then
// replaces every static pod once more, some seconds after its start, and
// the API server is down meanwhile. With the same kubelet the hashes match
// and this returns at once. It warns, and does not fail, when the pods do
// not settle within timeout.
func (d *UpgradeData) staticPodsSettled(ctx context.Context, timeout time.Duration) {
	const phase = "upgrade/node-service"
	checks, err := d.healthChecks()
	if err != nil {
		return
	}
	start := time.Now()
	node := d.Cfg.NodeName()
	var waited []string
	for _, component := range manifests.ControlPlaneComponents {
		logical := d.Cfg.Paths.Manifest(component)
		if d.Paths.Host(logical) != logical {
			return // the kubelet sees another path than this process: no hash to compare
		}
		manifest, err := os.ReadFile(logical)
		if err != nil {
			continue // not on this node
		}
		want, err := staticpod.Hash(manifest, logical, node)
		if err != nil {
			return
		}
		var h health
		for _, c := range checks {
			if c.name == component {
				h = c
			}
		}
		var last string
		w := d.waiter()
		err = w.Poll(ctx, 100*time.Millisecond, max(timeout-time.Since(start), time.Second), func(context.Context) (bool, error) {
			pod, err := d.mirrorPod(ctx, component)
			switch {
			case err != nil:
				last = fmt.Sprintf("its mirror pod: %v", err)
			case pod.Annotations[configHashAnnotation] != want:
				last = "the kubelet has not started it from the manifest yet (the mirror pod has another config hash)"
			case !podReady(pod):
				last = "its pod is not Ready" + containerState(pod)
			case h.url != "":
				hctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				defer cancel()
				if err := w.Healthy(hctx, h); err != nil {
					last = fmt.Sprintf("its health check: %v", err)
					return false, nil
				}
				return true, nil
			default:
				return true, nil
			}
			return false, nil
		})
		if err != nil {
			d.Out.Printf(phase, "Warning: %s did not settle under the restarted kubelet within %s (%s): check `kubectl -n kube-system get pods` before you upgrade the next node", component, timeout, last)
			return
		}
		waited = append(waited, component)
	}
	if len(waited) > 0 {
		d.Out.Done(phase, "static-pods", "", start, "The restarted kubelet runs %s", strings.Join(waited, ", "))
	}
}
