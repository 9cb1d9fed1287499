package phases

import (
	"context"
	"fmt"
	"sync"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/manifests"
)

// liveState is what the live init phases share at run time.
type liveState struct {
	clientOnce sync.Once
	client     kubernetes.Interface
	dynamic    dynamic.Interface
	clientErr  error
}

// livePhases are the init phases that need the node running.
func kubeletStartPhase() Phase[*InitData] {
	return Phase[*InitData]{Name: "kubelet-start", Short: "Start the node service (containerd and the kubelet), which starts the control plane", Run: runKubeletStart}
}

func livePhases() []Phase[*InitData] {
	return []Phase[*InitData]{
		{Name: "wait-control-plane", Short: "Wait for the kubelet and every control-plane component to be healthy", Run: runWaitControlPlane},
		{Name: "upload-config", Short: "Upload the kubeadm and kubelet configurations to ConfigMaps", Phases: []Phase[*InitData]{
			{Name: "kubeadm", Short: "Upload the ClusterConfiguration to the kubeadm-config ConfigMap", Run: runUploadKubeadmConfig},
			{Name: "kubelet", Short: "Upload the KubeletConfiguration to the kubelet-config ConfigMap", Run: runUploadKubeletConfig},
		}},
		{Name: "upload-certs", Short: "Upload the control-plane certificates to the kubeadm-certs Secret", Run: runUploadCerts,
			Flags: []string{"upload-certs", "certificate-key"}},
		{Name: "mark-control-plane", Short: "Label and taint the node as a control-plane node", Run: runMarkControlPlane,
			Flags: []string{"single-node"}},
		{Name: "bootstrap-token", Short: "Create bootstrap tokens, the cluster-info ConfigMap, the RBAC rules for joining nodes and the shim group admission policy", Run: runBootstrapToken,
			Flags: []string{"skip-token-print"}},
		{Name: "kubelet-finalize", Short: "Check the kubelet uses its rotating client certificate and got a serving certificate", Run: runKubeletFinalize},
		addonPhase(),
		{Name: "show-join-command", Short: "Show how to use the cluster and how to join nodes", Run: runShowJoinCommand,
			Flags: []string{"skip-token-print"}},
	}
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

// clients returns the admin clients: Client and Dynamic when both are set,
// else built once from admin.conf.
func (d *InitData) clients() (kubernetes.Interface, dynamic.Interface, error) {
	if d.Client != nil && d.Dynamic != nil {
		// Given clients need no host: the phases then run under a root
		// directory too.
		return d.Client, d.Dynamic, nil
	}
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
	// No client-side throttling worth the name: init, join and upgrade
	// send bounded bursts of requests (init about 150 once the control
	// plane is up: each object is read, then applied), and at 50 per
	// second after a burst of 100 init's last addons waited on the
	// client's token bucket, not on the API server. The API server's
	// priority and fairness still applies to admin.conf's group; the
	// super-admin's system:masters is exempt from it, as everywhere.
	cfg.QPS, cfg.Burst = 1000, 2000
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
// super-admin.conf, or SuperAdmin when set (admin.conf can do nothing
// before the binding exists).
func (d *InitData) ensureAdminBinding(ctx context.Context, phase string) error {
	if d.DryRun {
		return (&PrintingApplier{Out: d.Out}).Apply(ctx, phase, manifests.ClusterAdminsBindingObject())
	}
	dyn := d.SuperAdmin
	if dyn == nil {
		if err := d.requireHost(); err != nil {
			return err
		}
		cfg, err := restConfig(d.Paths, d.Cfg.Paths.Kubeconfig("super-admin.conf"))
		if err != nil {
			return err
		}
		if dyn, err = dynamic.NewForConfig(cfg); err != nil {
			return err
		}
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
	err = d.waiter().Poll(ctx, 100*time.Millisecond, 30*time.Second, func(context.Context) (bool, error) {
		r, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		return err == nil && r.Status.Allowed, err
	})
	if err != nil {
		return fmt.Errorf("admin.conf is not authorized yet after binding its group to cluster-admin: %w", err)
	}
	return nil
}
