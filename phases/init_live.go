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
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/cluster-bootstrap/token/jws"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"
	bootstraptokenv1 "k8s.io/kubernetes/cmd/kubeadm/app/apis/bootstraptoken/v1"

	"github.com/kubeforge/kubeforge/components/node"
	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/progress"
	"github.com/kubeforge/kubeforge/join/uploadcerts"
	"github.com/kubeforge/kubeforge/manifests"
	"github.com/kubeforge/kubeforge/pki"
)

// liveState is what the live init phases share at run time.
type liveState struct {
	clientOnce sync.Once
	client     kubernetes.Interface
	dynamic    dynamic.Interface
	clientErr  error
}

// livePhases are the init phases that need the node running.
func livePhases() []Phase[*InitData] {
	return []Phase[*InitData]{
		{Name: "kubelet-start", Short: "Start the node service (containerd and the kubelet), which starts the control plane", Run: runKubeletStart},
		{Name: "wait-control-plane", Short: "Wait for the kubelet and every control-plane component to be healthy", Run: runWaitControlPlane},
		{Name: "upload-config", Short: "Upload the kubeadm and kubelet configurations to ConfigMaps", Phases: []Phase[*InitData]{
			{Name: "kubeadm", Short: "Upload the ClusterConfiguration to the kubeadm-config ConfigMap", Run: runUploadKubeadmConfig},
			{Name: "kubelet", Short: "Upload the KubeletConfiguration to the kubelet-config ConfigMap", Run: runUploadKubeletConfig},
		}},
		{Name: "upload-certs", Short: "Upload the control-plane certificates to the kubeadm-certs Secret", Run: runUploadCerts,
			Flags: []string{"upload-certs", "certificate-key"}},
		{Name: "mark-control-plane", Short: "Label and taint the node as a control-plane node", Run: runMarkControlPlane,
			Flags: []string{"single-node"}},
		{Name: "bootstrap-token", Short: "Create bootstrap tokens, the cluster-info ConfigMap and the RBAC rules for joining nodes", Run: runBootstrapToken,
			Flags: []string{"skip-token-print"}},
		{Name: "kubelet-finalize", Short: "Check the kubelet uses its rotating client certificate and got a serving certificate", Run: runKubeletFinalize},
		addonPhase(),
		{Name: "show-join-command", Short: "Show how to use the cluster and how to join nodes", Run: runShowJoinCommand,
			Flags: []string{"skip-token-print"}},
	}
}

func runKubeletStart(ctx context.Context, d *InitData) error {
	const phase = "kubelet-start"
	if err := useRotatingKubeletCert(d.Node, phase); err != nil {
		return err
	}
	if d.DryRun {
		d.Out.Printf(phase, "Would start the node service (containerd, then the kubelet with %s)", d.Cfg.Paths.KubeletConfigFile())
		return nil
	}
	if err := d.requireHost(); err != nil {
		return err
	}
	start := time.Now()
	if err := d.WaitNodeService(ctx); err != nil {
		return err
	}
	d.Out.Done(phase, "started", "", start, "The node service is running; the kubelet starts the control plane from %s", d.Cfg.Paths.ManifestsDir)
	return nil
}

// useRotatingKubeletCert moves kubelet.conf's embedded client certificate
// to /var/lib/kubelet/pki/kubelet-client-current.pem and points kubelet.conf
// at it, before the kubelet first starts: the kubelet then rotates the file
// itself, and, unlike kubeadm's kubelet-finalize, no kubelet restart is
// needed.
func useRotatingKubeletCert(n *Node, phase string) error {
	logical := n.Cfg.Paths.Kubeconfig("kubelet.conf")
	kc, err := clientcmd.LoadFromFile(n.Paths.Host(logical))
	if err != nil {
		return fmt.Errorf("read %s: %w (run the kubeconfig phase first)", logical, err)
	}
	ctx := kc.Contexts[kc.CurrentContext]
	if ctx == nil || kc.AuthInfos[ctx.AuthInfo] == nil {
		return fmt.Errorf("%s has no current context/user", logical)
	}
	auth := kc.AuthInfos[ctx.AuthInfo]
	pem := filepath.Join(n.Cfg.Paths.KubeletPKIDir(), pki.KubeletClientCurrent)
	if len(auth.ClientCertificateData) == 0 {
		// Already done; a node made before the symlink layout gets it now.
		_, err := pki.EnsureKubeletClientLink(n.Paths, time.Now())
		return err
	}
	if err := n.WriteFile(phase, "kubelet client certificate", pem,
		append(append([]byte{}, auth.ClientCertificateData...), auth.ClientKeyData...), 0o600, HideContent); err != nil {
		return err
	}
	// The kubelet rotates the certificate only when this is a symlink.
	if _, err := pki.EnsureKubeletClientLink(n.Paths, time.Now()); err != nil {
		return fmt.Errorf("kubelet client certificate: %w", err)
	}
	auth.ClientCertificateData, auth.ClientKeyData = nil, nil
	auth.ClientCertificate, auth.ClientKey = pem, pem
	b, err := clientcmd.Write(*kc)
	if err != nil {
		return err
	}
	return n.WriteFile(phase, "kubeconfig using the kubelet's rotating certificate", logical, b, 0o600, HideContent)
}

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

// errNotHost refuses live work when file I/O is redirected under a root
// directory (tests): the files do not describe this host, so nothing may
// be started or contacted.
func (n *Node) requireHost() error {
	if n.Paths.Root != "" && n.Paths.Root != "/" && !n.DryRun {
		return fmt.Errorf("this phase runs the node and talks to its API server, which needs the real host: not possible with --root-dir %s (skip it)", n.Paths.Root)
	}
	return nil
}

// clients returns the admin clients (built once from admin.conf).
func (d *InitData) clients() (kubernetes.Interface, dynamic.Interface, error) {
	if err := d.requireHost(); err != nil {
		return nil, nil, err
	}
	d.live.clientOnce.Do(func() {
		cfg, err := restConfig(d.Paths, d.Cfg.Paths.Kubeconfig("admin.conf"))
		if err != nil {
			d.live.clientErr = err
			return
		}
		if d.live.client, err = kubernetes.NewForConfig(cfg); err != nil {
			d.live.clientErr = err
			return
		}
		d.live.dynamic, d.live.clientErr = dynamic.NewForConfig(cfg)
	})
	return d.live.client, d.live.dynamic, d.live.clientErr
}

func restConfig(p config.Paths, logical string) (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", p.Host(logical))
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", logical, err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	cfg.UserAgent = "kubeforge"
	return cfg, nil
}

// applier applies objects with admin.conf, or prints them in a dry run.
func (d *InitData) applier() (Applier, error) {
	if d.DryRun {
		return &PrintingApplier{Out: d.Out}, nil
	}
	_, dyn, err := d.clients()
	if err != nil {
		return nil, err
	}
	return &ServerApplier{Client: dyn, Out: d.Out}, nil
}

// ensureAdminBinding gives admin.conf's group cluster-admin, using
// super-admin.conf (admin.conf can do nothing before it exists).
func (d *InitData) ensureAdminBinding(ctx context.Context, phase string) error {
	if err := d.requireHost(); err != nil {
		return err
	}
	if d.DryRun {
		return (&PrintingApplier{Out: d.Out}).Apply(ctx, phase, manifests.ClusterAdminsBindingObject())
	}
	cfg, err := restConfig(d.Paths, d.Cfg.Paths.Kubeconfig("super-admin.conf"))
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	if err := (&ServerApplier{Client: dyn, Out: d.Out}).Apply(ctx, phase, manifests.ClusterAdminsBindingObject()); err != nil {
		return err
	}
	// The API server's RBAC authorizer learns of the new binding through
	// its informer, a moment later: until then admin.conf's requests are
	// forbidden. Wait until admin.conf may write in kube-system.
	client, _, err := d.clients()
	if err != nil {
		return err
	}
	review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: metav1.NamespaceSystem, Verb: "patch", Resource: "configmaps"}}}
	err = pollUntil(ctx, 30*time.Second, func() (bool, error) {
		r, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		return err == nil && r.Status.Allowed, err
	})
	if err != nil {
		return fmt.Errorf("admin.conf is not authorized yet after binding its group to cluster-admin: %w", err)
	}
	return nil
}

func runUploadKubeadmConfig(ctx context.Context, d *InitData) error {
	const phase = "upload-config"
	if err := d.ensureAdminBinding(ctx, phase); err != nil {
		return err
	}
	objs, err := manifests.UploadConfigObjects(d.Cfg)
	if err != nil {
		return err
	}
	a, err := d.applier()
	if err != nil {
		return err
	}
	return a.Apply(ctx, phase, objs[:3]...)
}

func runUploadKubeletConfig(ctx context.Context, d *InitData) error {
	objs, err := manifests.UploadConfigObjects(d.Cfg)
	if err != nil {
		return err
	}
	a, err := d.applier()
	if err != nil {
		return err
	}
	return a.Apply(ctx, "upload-config", objs[3:]...)
}

func runUploadCerts(ctx context.Context, d *InitData) error {
	const phase = "upload-certs"
	if !d.UploadCerts {
		d.Out.Printf(phase, "Skipping phase: pass --upload-certs to share the control-plane certificates with joining control-plane nodes")
		return nil
	}
	if d.CertificateKey == "" {
		k, err := uploadcerts.NewKey()
		if err != nil {
			return err
		}
		d.CertificateKey = k
	}
	key, err := uploadcerts.ParseKey(d.CertificateKey)
	if err != nil {
		return fmt.Errorf("--certificate-key: %w", err)
	}
	if d.DryRun {
		d.Out.Printf(phase, "Would encrypt the shared certificates into the kube-system/%s Secret (2-hour lifetime) with the certificate key", uploadcerts.SecretName)
		return nil
	}
	client, _, err := d.clients()
	if err != nil {
		return err
	}
	start := time.Now()
	if err := uploadcerts.Upload(ctx, client, d.Paths, key); err != nil {
		return err
	}
	d.Out.Done(phase, "uploaded", "", start, "Stored the control plane's shared certificates in the kube-system/%s Secret, valid for 2 hours", uploadcerts.SecretName)
	d.Out.Emit(progress.Event{Phase: phase, Action: "certificate-key", Message: "Using certificate key: " + d.CertificateKey})
	return nil
}

func runMarkControlPlane(ctx context.Context, d *InitData) error {
	if d.DryRun {
		d.Out.Printf("mark-control-plane", "Would mark node %s as control-plane: taints %v", d.Cfg.NodeName(), taintStrings(d.Cfg.ControlPlaneTaints()))
		return nil
	}
	client, _, err := d.clients()
	if err != nil {
		return err
	}
	return markControlPlane(ctx, d.Out, client, d.Cfg.NodeName(), d.Cfg.ControlPlaneTaints(),
		config.Timeout(d.Cfg.Timeouts().KubernetesAPICall, time.Minute))
}

func taintStrings(ts []corev1.Taint) []string {
	out := []string{}
	for _, t := range ts {
		out = append(out, t.ToString())
	}
	return out
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

func runBootstrapToken(ctx context.Context, d *InitData) error {
	const phase = "bootstrap-token"
	a, err := d.applier()
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(d.Paths.Host(d.Cfg.Paths.Cert("ca.crt")))
	if err != nil {
		return fmt.Errorf("read the cluster CA: %w", err)
	}
	kubeconfig, err := manifests.ClusterInfoKubeconfig(caPEM, d.Cfg.ControlPlaneEndpoint())
	if err != nil {
		return err
	}
	var objs []runtime.Object
	signatures := map[string]string{}
	for i := range d.Cfg.Init.BootstrapTokens {
		t := &d.Cfg.Init.BootstrapTokens[i]
		if t.Token == nil {
			s, err := bootstraputil.GenerateBootstrapToken()
			if err != nil {
				return err
			}
			if t.Token, err = bootstraptokenv1.NewBootstrapTokenString(s); err != nil {
				return err
			}
		}
		if !d.SkipTokenPrint {
			d.Out.Printf(phase, "Using token: %s", t.Token)
		}
		secret := bootstraptokenv1.BootstrapTokenToSecret(t)
		secret.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}
		objs = append(objs, secret)
		if slices.Contains(t.Usages, "signing") {
			// Sign cluster-info now instead of waiting ~6 s for the
			// controller-manager's bootstrap signer: a node can join at once.
			sig, err := jws.ComputeDetachedSignature(string(kubeconfig), t.Token.ID, t.Token.Secret)
			if err != nil {
				return fmt.Errorf("sign cluster-info: %w", err)
			}
			signatures[t.Token.ID] = sig
		}
	}
	objs = append(objs, manifests.BootstrapRBAC()...)
	ci, err := manifests.ClusterInfo(caPEM, d.Cfg.ControlPlaneEndpoint(), signatures)
	if err != nil {
		return err
	}
	objs = append(objs, ci)
	return a.Apply(ctx, phase, objs...)
}

func runKubeletFinalize(ctx context.Context, d *InitData) error {
	const phase = "kubelet-finalize"
	kc, err := clientcmd.LoadFromFile(d.Paths.Host(d.Cfg.Paths.Kubeconfig("kubelet.conf")))
	if err != nil {
		return err
	}
	for _, a := range kc.AuthInfos {
		if len(a.ClientCertificateData) > 0 {
			d.Out.Warnf(phase, "kubelet.conf embeds its client certificate: run `kubeforge init phase kubelet-start` so the kubelet rotates it")
			return nil
		}
	}
	d.Out.Printf(phase, "The kubelet uses its rotating client certificate %s", filepath.Join(d.Cfg.Paths.KubeletPKIDir(), "kubelet-client-current.pem"))
	return nil
}

func runShowJoinCommand(_ context.Context, d *InitData) error {
	caCert, err := pki.LoadCert(d.Paths, "ca")
	if err != nil {
		return err
	}
	token := "<token>"
	if len(d.Cfg.Init.BootstrapTokens) > 0 && d.Cfg.Init.BootstrapTokens[0].Token != nil && !d.SkipTokenPrint {
		token = d.Cfg.Init.BootstrapTokens[0].Token.String()
	}
	endpoint := strings.TrimPrefix(d.Cfg.ControlPlaneEndpoint(), "https://")
	join := fmt.Sprintf("kubeforge join %s --token %s \\\n\t--discovery-token-ca-cert-hash %s", endpoint, token, pki.CAHash(caCert))
	cpJoin := ""
	if d.UploadCerts && d.CertificateKey != "" {
		cpJoin = fmt.Sprintf("\nJoin control-plane nodes (within 2 hours; `kubeforge init phase upload-certs --upload-certs` makes a new key) by running on each:\n\n  %s \\\n\t--control-plane --certificate-key %s\n", join, d.CertificateKey)
	}
	admin := d.Cfg.Paths.Kubeconfig("admin.conf")
	msg := fmt.Sprintf(`Your Kubernetes control plane is up.

To use it as root:

  export KUBECONFIG=%s
  kubectl get nodes

or as a regular user:

  mkdir -p $HOME/.kube
  sudo cp -i %s $HOME/.kube/config
  sudo chown $(id -u):$(id -g) $HOME/.kube/config

Join worker nodes by running on each, as root:

  %s
%s`, admin, admin, join, cpJoin)
	if d.Out.JSON() {
		d.Out.Emit(progress.Event{Phase: "show-join-command", Action: "join-command", Message: strings.ReplaceAll(join, "\\\n\t", "")})
		return nil
	}
	d.Out.Emit(progress.Event{Phase: "", Message: "\n" + strings.TrimRight(msg, "\n")})
	return nil
}
