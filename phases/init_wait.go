// The wait-control-plane phase of init: health checks of the static pods,
// their mirror pods, and the diagnosis of a component that does not come up.

package phases

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
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
	"github.com/kubeforge/kubeforge/manifests"
)

// health is one endpoint wait-control-plane polls.
type health struct {
	name, url string
	tls       *tls.Config
}

func (d *Node) healthChecks() ([]health, error) {
	c := d.Cfg
	caPEM, err := os.ReadFile(d.Paths.Host(c.Paths.Cert("ca.crt")))
	if err != nil {
		return nil, fmt.Errorf("read the cluster CA: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	insecure := &tls.Config{InsecureSkipVerify: true} // self-signed serving certs on loopback
	return []health{
		{"kubelet", "http://127.0.0.1:10248/healthz", nil},
		{manifests.Etcd, "http://127.0.0.1:" + strconv.Itoa(manifests.EtcdMetricsPort) + "/readyz", nil},
		{manifests.KubeAPIServer, "https://" + net.JoinHostPort(c.AdvertiseAddress(), strconv.Itoa(int(c.BindPort()))) + "/readyz", &tls.Config{RootCAs: pool}},
		{manifests.KubeControllerMgr, "https://127.0.0.1:" + strconv.Itoa(manifests.ControllerManagerPort) + "/healthz", insecure},
		{manifests.KubeScheduler, "https://127.0.0.1:" + strconv.Itoa(manifests.SchedulerPort) + "/livez", insecure},
	}, nil
}

func runWaitControlPlane(ctx context.Context, d *InitData) error {
	if err := d.waitControlPlane(ctx, "wait-control-plane"); err != nil {
		return err
	}
	if d.DryRun {
		return nil
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
	if d.DryRun {
		for _, h := range checks {
			d.Out.Printf(phase, "Would wait for %s to answer ok at %s", h.name, h.url)
		}
		return nil
	}
	timeout := config.Timeout(d.Cfg.Timeouts().ControlPlaneComponentHealthCheck, 4*time.Minute)
	d.Out.Printf(phase, "Waiting for the kubelet to start the control plane from %q (timeout %s)", d.Cfg.Paths.ManifestsDir, timeout)
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	type result struct {
		h   health
		err error
	}
	results := make(chan result, len(checks))
	// An external runtime's errors end the wait at once (runtimeWatch).
	var runtimeErr error
	watchDone := make(chan struct{})
	if d.Cfg.ExternalCRI() {
		go func() {
			defer close(watchDone)
			if err := d.runtimeWatch(wctx, start.Add(-30*time.Second)); err != nil {
				runtimeErr = err
				cancel()
			}
		}()
	} else {
		close(watchDone)
	}
	for _, h := range checks {
		go func() {
			err := pollHealthy(wctx, h)
			if err == nil {
				d.Out.Done(phase, "healthy", "", start, "%s is healthy", h.name)
			}
			results <- result{h, err}
		}()
	}
	var failed []string
	for range checks {
		r := <-results
		if r.err != nil {
			failed = append(failed, d.diagnose(r.h, r.err))
		}
	}
	cancel()
	<-watchDone
	if runtimeErr != nil {
		return runtimeErr
	}
	if len(failed) > 0 {
		sort.Strings(failed)
		return fmt.Errorf("the control plane did not become healthy within %s:\n%s", timeout, strings.Join(failed, "\n"))
	}
	d.Out.Done(phase, "ready", "", start, "All control-plane components are healthy")
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
	_ = pollUntil(ctx, 30*time.Second, func() (bool, error) {
		_, err := client.SchedulingV1().PriorityClasses().Get(ctx, "system-node-critical", metav1.GetOptions{})
		return err == nil, nil
	})
	var gone []string
	_ = pollUntil(ctx, 300*time.Millisecond, func() (bool, error) {
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

// pollHealthy polls h every 100 ms until it answers 200 or ctx ends; the
// error is the last failure seen. The connection is kept between polls: a
// new TLS handshake every 100 ms to each component cost a starting API
// server and etcd an RSA signature each time.
func pollHealthy(ctx context.Context, h health) error {
	tr := &http.Transport{TLSClientConfig: h.tls, MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	client := &http.Client{Timeout: 2 * time.Second, Transport: tr}
	last := errors.New("not checked yet")
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so the connection is reused
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("%s answered %s", h.url, resp.Status)
		} else if ctx.Err() == nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return last
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// diagnose says why a component is unhealthy: its last error and the end
// of its log (the container's, or the node service's for the kubelet).
func (d *Node) diagnose(h health, err error) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  - %s is not healthy: %v\n", h.name, err)
	var logFile string
	if h.name == "kubelet" {
		logFile = node.KubeletLogFile(d.Cfg.Paths)
	} else {
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

func pollUntil(ctx context.Context, timeout time.Duration, f func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		ok, err := f()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return last
			}
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
