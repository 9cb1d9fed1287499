// The wait-control-plane phase of init: health checks of the static pods,
// their mirror pods, and the diagnosis of a component that does not come up.

package phases

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubeforge/kubeforge/components/node"
	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/fsutil"
	"github.com/kubeforge/kubeforge/manifests"
)

// healthChecks are the endpoints of this node's kubelet and control-plane
// components: the kubelet's from its configuration, each component's
// read from its manifest as written (manifests.HealthEndpoint: its flags
// after the user's extraArgs), or rendered when there is none yet.
func (d *Node) healthChecks() ([]health, error) {
	c := d.Cfg
	caPEM, err := os.ReadFile(d.Paths.Host(c.Paths.Cert("ca.crt")))
	if err != nil {
		return nil, fmt.Errorf("read the cluster CA: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	insecure := &tls.Config{InsecureSkipVerify: true} // self-signed serving certs on loopback
	out := []health{d.kubeletHealth()}
	for _, comp := range manifests.ControlPlane {
		pod, err := readManifest(d.Paths, c.Paths.Manifest(comp.Name))
		if errors.Is(err, fs.ErrNotExist) {
			pod, err = d.renderStaticPod(comp.Name)
		}
		if err != nil {
			return nil, err
		}
		e, err := manifests.HealthEndpoint(pod)
		if err != nil {
			return nil, err
		}
		h := health{name: comp.Name, url: e.URL()}
		switch {
		case e.Scheme != "https":
		case e.ClusterCA:
			h.tls = &tls.Config{RootCAs: pool}
		default:
			h.tls = insecure
		}
		out = append(out, h)
	}
	return out, nil
}

// kubeletHealth is the kubelet's health endpoint, from its configuration.
func (d *Node) kubeletHealth() health {
	k := d.Cfg.Kubelet
	host, port := "127.0.0.1", config.DefaultKubeletHealthzPort
	if k.HealthzBindAddress != "" && !net.ParseIP(k.HealthzBindAddress).IsUnspecified() {
		host = k.HealthzBindAddress
	}
	if k.HealthzPort != nil && *k.HealthzPort > 0 {
		port = int(*k.HealthzPort)
	}
	return health{name: "kubelet", url: "http://" + net.JoinHostPort(host, strconv.Itoa(port)) + "/healthz"}
}

func runWaitControlPlane(ctx context.Context, d *InitData) error {
	if d.Cfg.Kubeforge.ControlPlane.Processes() && !d.DryRun && d.requireHost() == nil {
		// kubelet-start did not wait for the node service then.
		if err := d.WaitNodeService(ctx); err != nil {
			return err
		}
	}
	if err := d.waitControlPlane(ctx, "wait-control-plane"); err != nil {
		return err
	}
	if d.DryRun || d.Cfg.Kubeforge.ControlPlane.Processes() {
		return nil // processes have no mirror pods
	}
	return d.ensureMirrorPods(ctx, "wait-control-plane")
}

// waitControlPlane waits for the kubelet and this node's control-plane
// components to answer their health checks; on timeout it says which are
// unhealthy and shows the end of their logs.
func (d *Node) waitControlPlane(ctx context.Context, phase string) error {
	if err := d.requireHost(); err != nil {
		return err
	}
	checks, err := d.healthChecks()
	if err != nil {
		return err
	}
	timeout := config.Timeout(d.Cfg.Timeouts().ControlPlaneComponentHealthCheck, 4*time.Minute)
	start := time.Now()
	w := healthWait{phase: phase, checks: checks, timeout: timeout, ready: "All control-plane components are healthy",
		waiting: fmt.Sprintf("Waiting for the kubelet to start the control plane from %q (timeout %s)", d.Cfg.Paths.ManifestsDir, timeout)}
	if d.Cfg.Kubeforge.ControlPlane.Processes() {
		w.waiting = fmt.Sprintf("Waiting for the node service to run the control plane from %q as processes (timeout %s)", d.Cfg.Paths.ManifestsDir, timeout)
	}
	// An external runtime's errors end the wait at once (runtimeWatch).
	if d.Cfg.ExternalCRI() {
		w.watch = func(ctx context.Context) error { return d.runtimeWatch(ctx, start.Add(-30*time.Second)) }
	}
	errs, runtimeErr := d.waiter().Endpoints(ctx, w)
	if runtimeErr != nil {
		return runtimeErr
	}
	var failed []string
	for i, err := range errs {
		if err != nil {
			failed = append(failed, d.diagnose(checks[i], err))
		}
	}
	if len(failed) > 0 {
		sort.Strings(failed)
		return fmt.Errorf("the control plane did not become healthy within %s:\n%s", timeout, strings.Join(failed, "\n"))
	}
	return nil
}

// ensureMirrorPods makes sure the API shows the control-plane static pods.
// The kubelet creates their mirror pods once, right after it registers the
// node, which can happen a moment before the API server has created the
// system-node-critical PriorityClass the pods name; the kubelet then retries
// only at its next periodic sync, up to a minute later. So once the class
// exists, init creates a missing mirror pod itself, exactly as the kubelet
// would: the static pod, bound to this node, owned by the Node, annotated
// with the static pod's hash (the UID the kubelet gave it, visible in its
// log directory). The kubelet adopts it; should it ever disagree, it deletes
// and recreates it. If that is not possible the kubelet is restarted instead.
func (d *InitData) ensureMirrorPods(ctx context.Context, phase string) error {
	// admin.conf has no rights before upload-config binds its group.
	cfg, err := restConfig(d.Paths, d.Cfg.Paths.Kubeconfig("super-admin.conf"))
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	start := time.Now()
	missing := func() []string {
		var out []string
		for _, c := range manifests.ControlPlaneComponents {
			if _, err := client.CoreV1().Pods(metav1.NamespaceSystem).Get(ctx, c+"-"+d.Cfg.NodeName(), metav1.GetOptions{}); err != nil {
				out = append(out, c)
			}
		}
		return out
	}
	w := d.waiter()
	_ = w.Poll(ctx, 100*time.Millisecond, 30*time.Second, func(context.Context) (bool, error) {
		_, err := client.SchedulingV1().PriorityClasses().Get(ctx, "system-node-critical", metav1.GetOptions{})
		return err == nil, nil
	})
	var gone []string
	_ = w.Poll(ctx, 100*time.Millisecond, 300*time.Millisecond, func(context.Context) (bool, error) {
		gone = missing()
		return len(gone) == 0, nil
	})
	if len(gone) == 0 {
		return nil
	}
	n, err := client.CoreV1().Nodes().Get(ctx, d.Cfg.NodeName(), metav1.GetOptions{})
	if err == nil {
		for _, c := range gone {
			if err = d.createMirrorPod(ctx, client, n, c); err != nil {
				break
			}
		}
	}
	if err == nil {
		d.Out.Done(phase, "mirror-pods", "", start, "Registered the mirror pods of %v (the kubelet tried before the API server had its priority classes)", gone)
		return nil
	}
	d.Out.Warnf(phase, "could not register the mirror pods of %v (%v); restarting the kubelet so it does", gone, err)
	if err := node.RestartKubelet(d.Cfg.Paths); err != nil {
		d.Out.Warnf(phase, "the kubelet could not be restarted: %v; the mirror pods appear within a minute", err)
	}
	return nil
}

// createMirrorPod creates the mirror pod of a control-plane static pod.
func (d *InitData) createMirrorPod(ctx context.Context, client kubernetes.Interface, n *corev1.Node, component string) error {
	name := component + "-" + d.Cfg.NodeName()
	dirs, _ := filepath.Glob(d.Paths.Host(filepath.Join(d.Cfg.Paths.PodLogDir, metav1.NamespaceSystem+"_"+name+"_*")))
	if len(dirs) != 1 {
		return fmt.Errorf("cannot tell the kubelet's UID of static pod %s (%d log directories)", name, len(dirs))
	}
	hash := strings.TrimPrefix(filepath.Base(dirs[0]), metav1.NamespaceSystem+"_"+name+"_")
	pod, err := d.renderStaticPod(component)
	if err != nil {
		return err
	}
	pod.Name = name
	pod.Spec.NodeName = n.Name
	pod.Annotations = mergeMaps(pod.Annotations, map[string]string{
		"kubernetes.io/config.hash":   hash,
		"kubernetes.io/config.mirror": hash,
		"kubernetes.io/config.source": "file",
	})
	pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: n.Name, UID: n.UID, Controller: ptrTo(true)}}
	pod.Spec.Tolerations = append(pod.Spec.Tolerations, corev1.Toleration{Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute})
	_, err = client.CoreV1().Pods(metav1.NamespaceSystem).Create(ctx, pod, metav1.CreateOptions{FieldManager: "kubelet"})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

func mergeMaps(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func ptrTo[T any](v T) *T { return &v }

// diagnose says why a component is unhealthy: its last error and the end
// of its log (the container's, or the node service's for the kubelet).
func (d *Node) diagnose(h health, err error) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  - %s is not healthy: %v\n", h.name, err)
	var logFile string
	switch {
	case h.name == "kubelet":
		logFile = node.KubeletLogFile(d.Cfg.Paths)
	case d.Cfg.Kubeforge.ControlPlane.Processes():
		logFile = node.ControlPlaneLogFile(d.Cfg.Paths, h.name)
		if !fsutil.Exists(d.Paths.Host(logFile)) {
			fmt.Fprintf(&b, "    %s has not started; the node service's log (%s) and `kubeforge node status` say why\n", h.name, d.Cfg.Paths.NodeLogFile())
			logFile = d.Cfg.Paths.NodeLogFile()
		}
	default:
		logFile = latestPodLog(d.Paths, h.name)
		if logFile == "" {
			fmt.Fprintf(&b, "    no %s container has started yet; the kubelet's log (%s) says why:\n", h.name, node.KubeletLogFile(d.Cfg.Paths))
			logFile = node.KubeletLogFile(d.Cfg.Paths)
		}
	}
	lines := tail(d.Paths.Host(logFile), 12)
	if len(lines) > 0 {
		fmt.Fprintf(&b, "    last lines of %s:\n", logFile)
		for _, l := range lines {
			fmt.Fprintf(&b, "      %s\n", l)
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

// latestPodLog finds the newest log file of a control-plane container under
// /var/log/pods (logical path), or "".
func latestPodLog(p config.Paths, component string) string {
	matches, _ := filepath.Glob(p.Host(filepath.Join(p.PodLogDir, "kube-system_"+component+"-*", component, "*.log")))
	var newest string
	var newestTime time.Time
	for _, m := range matches {
		// The newest log with something in it (a container that failed to
		// start leaves an empty one).
		if st, err := os.Stat(m); err == nil && st.Size() > 0 && st.ModTime().After(newestTime) {
			newest, newestTime = m, st.ModTime()
		}
	}
	if newest == "" {
		return ""
	}
	if p.Root != "" && p.Root != "/" {
		rel, _ := filepath.Rel(p.Root, newest)
		return "/" + rel
	}
	return newest
}

func tail(path string, n int) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}
