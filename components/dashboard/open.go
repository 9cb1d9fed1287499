package dashboard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// The addon's names, as manifests declares them (kept equal by a test;
// this package does not import manifests).
const (
	addonNamespace = "kube-system"
	addonService   = "kubeforge-dashboard"
	adminSA        = "kubeforge-dashboard-admin"
)

// OpenOptions are `kubeforge dashboard`'s.
type OpenOptions struct {
	// Config is the REST config of the kubeconfig (the admin's).
	Config *rest.Config
	// LocalPort is the port on 127.0.0.1 (0: any free port).
	LocalPort int
	// ServiceAccount ("NAMESPACE/NAME") gets a short-lived token for the
	// sign-in link.
	ServiceAccount string
	// Admin creates the kubeforge-dashboard-admin ServiceAccount bound to
	// cluster-admin if it is missing, and signs in as it.
	Admin bool
	// TokenTTL is the sign-in token's lifetime (the API server's minimum
	// is 10 minutes).
	TokenTTL time.Duration
	// Out receives the URL and progress.
	Out io.Writer
	// Ready, if set, is called with the dashboard's URL (and the sign-in
	// link, if any) once the port-forward listens.
	Ready func(url, signIn string)
}

// Open port-forwards 127.0.0.1:LocalPort to the dashboard's pod through
// the API server and prints the URL (with a sign-in link when a service
// account was named), until ctx ends.
func Open(ctx context.Context, o OpenOptions) error {
	cs, err := kubernetes.NewForConfig(o.Config)
	if err != nil {
		return err
	}
	svc, err := cs.CoreV1().Services(addonNamespace).Get(ctx, addonService, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("the dashboard is not installed (no Service %s/%s): run `kubeforge init phase addon dashboard` on a control-plane node, and check that KubeforgeConfiguration addons.dashboard.enabled is not false", addonNamespace, addonService)
	}
	if err != nil {
		return fmt.Errorf("find the dashboard's Service %s/%s: %w", addonNamespace, addonService, err)
	}
	pod, port, err := dashboardPod(ctx, cs, svc)
	if err != nil {
		return err
	}

	var token string
	var expires time.Time
	sa := o.ServiceAccount
	if o.Admin {
		if sa != "" {
			return errors.New("--admin and --service-account exclude each other: --admin signs in as " + addonNamespace + "/" + adminSA)
		}
		if err := ensureAdmin(ctx, cs, o.Out); err != nil {
			return err
		}
		sa = addonNamespace + "/" + adminSA
	}
	if sa != "" {
		token, expires, err = serviceAccountToken(ctx, cs, sa, o.TokenTTL)
		if err != nil {
			return err
		}
	}

	fwURL := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).SubResource("portforward").URL()
	dialer, err := portForwardDialer(o.Config, fwURL)
	if err != nil {
		return err
	}
	ready := make(chan struct{})
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("%d:%d", o.LocalPort, port)},
		ctx.Done(), ready, io.Discard, o.Out)
	if err != nil {
		return fmt.Errorf("port-forward to pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	errc := make(chan error, 1)
	go func() { errc <- fw.ForwardPorts() }()
	select {
	case err := <-errc:
		return fmt.Errorf("port-forward to pod %s/%s: %w", pod.Namespace, pod.Name, err)
	case <-ready:
	}
	ports, err := fw.GetPorts()
	if err != nil || len(ports) == 0 {
		return fmt.Errorf("port-forward to pod %s/%s: no local port: %v", pod.Namespace, pod.Name, err)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d/", ports[0].Local)
	fmt.Fprintf(o.Out, "Dashboard (pod %s/%s) at %s\n", pod.Namespace, pod.Name, base)
	signIn := ""
	if token != "" {
		// The token goes in the fragment: browsers never send it to a
		// server, and the page moves it out of the address bar.
		signIn = base + "login#token=" + url.QueryEscape(token)
		fmt.Fprintf(o.Out, "Sign in as %s (the token expires %s):\n  %s\n", sa, expires.Local().Format(time.RFC1123), signIn)
	} else {
		fmt.Fprintf(o.Out, "Sign in with a bearer token (or rerun with --service-account NAMESPACE/NAME for a short-lived one).\n")
	}
	fmt.Fprintf(o.Out, "Press Ctrl-C to stop the port-forward.\n")
	if o.Ready != nil {
		o.Ready(base, signIn)
	}
	select {
	case err := <-errc:
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("port-forward to pod %s/%s ended: %w", pod.Namespace, pod.Name, err)
	case <-ctx.Done():
		<-errc
		return nil
	}
}

// dashboardPod picks a running, ready pod of the Service and the
// container port its first port targets.
func dashboardPod(ctx context.Context, cs kubernetes.Interface, svc *corev1.Service) (*corev1.Pod, int, error) {
	if len(svc.Spec.Selector) == 0 || len(svc.Spec.Ports) == 0 {
		return nil, 0, fmt.Errorf("Service %s/%s has no selector or no port", svc.Namespace, svc.Name)
	}
	pods, err := cs.CoreV1().Pods(svc.Namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(svc.Spec.Selector).String()})
	if err != nil {
		return nil, 0, fmt.Errorf("list the dashboard's pods: %w", err)
	}
	target := svc.Spec.Ports[0].TargetPort
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil || !podReady(p) {
			continue
		}
		if target.IntValue() != 0 {
			return p, target.IntValue(), nil
		}
		for _, c := range p.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == target.String() {
					return p, int(cp.ContainerPort), nil
				}
			}
		}
	}
	return nil, 0, fmt.Errorf("no ready dashboard pod in %s (label %s): see `kubectl -n %s get pods -l %s`",
		svc.Namespace, labels.SelectorFromSet(svc.Spec.Selector), svc.Namespace, labels.SelectorFromSet(svc.Spec.Selector))
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// portForwardDialer is kubectl's: WebSocket first, SPDY when the server
// does not upgrade.
func portForwardDialer(cfg *rest.Config, u *url.URL) (httpstream.Dialer, error) {
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return nil, err
	}
	spdyDialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	ws, err := portforward.NewSPDYOverWebsocketDialer(u, cfg)
	if err != nil {
		return nil, err
	}
	return portforward.NewFallbackDialer(ws, spdyDialer, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	}), nil
}

// serviceAccountToken asks the API server for a token of sa
// ("NAMESPACE/NAME") that expires after ttl (TokenRequest; nothing is
// stored in the cluster).
func serviceAccountToken(ctx context.Context, cs kubernetes.Interface, sa string, ttl time.Duration) (string, time.Time, error) {
	ns, name, ok := strings.Cut(sa, "/")
	if !ok || ns == "" || name == "" {
		return "", time.Time{}, fmt.Errorf("--service-account %q: want NAMESPACE/NAME", sa)
	}
	secs := int64(ttl.Seconds())
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if apierrors.IsNotFound(err) {
		return "", time.Time{}, fmt.Errorf("no ServiceAccount %s: create it and bind it a role (kubectl create serviceaccount -n %s %s), or use --admin", sa, ns, name)
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("a token for ServiceAccount %s: %w", sa, err)
	}
	return tr.Status.Token, tr.Status.ExpirationTimestamp.Time, nil
}

// ensureAdmin creates kube-system/kubeforge-dashboard-admin and its
// binding to cluster-admin when they are missing (only on --admin).
func ensureAdmin(ctx context.Context, cs kubernetes.Interface, out io.Writer) error {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: adminSA, Namespace: addonNamespace,
		Labels: map[string]string{"app.kubernetes.io/managed-by": "kubeforge"}}}
	if _, err := cs.CoreV1().ServiceAccounts(addonNamespace).Create(ctx, sa, metav1.CreateOptions{}); err == nil {
		fmt.Fprintf(out, "Created ServiceAccount %s/%s (cluster-admin; delete it with `kubectl -n %s delete serviceaccount %s` and `kubectl delete clusterrolebinding %s`)\n",
			addonNamespace, adminSA, addonNamespace, adminSA, adminSA)
	} else if !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create ServiceAccount %s/%s: %w", addonNamespace, adminSA, err)
	}
	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: adminSA, Labels: sa.Labels},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: adminSA, Namespace: addonNamespace}}}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err == nil {
		fmt.Fprintf(out, "Created ClusterRoleBinding %s (cluster-admin)\n", adminSA)
	} else if !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create ClusterRoleBinding %s: %w", adminSA, err)
	}
	return nil
}
