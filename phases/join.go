package phases

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	kubeletbootstrap "k8s.io/kubernetes/pkg/kubelet/certificate/bootstrap"

	"github.com/kubeforge/kubeforge/components/node"
	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/progress"
	"github.com/kubeforge/kubeforge/join/discovery"
	"github.com/kubeforge/kubeforge/join/etcdmember"
	"github.com/kubeforge/kubeforge/join/uploadcerts"
	"github.com/kubeforge/kubeforge/manifests"
	"github.com/kubeforge/kubeforge/pki"
	"github.com/kubeforge/kubeforge/preflight"
)

// JoinData is what the join phases share.
type JoinData struct {
	*Node
	Discovery             discovery.Options
	TLSBootstrapToken     string
	IgnorePreflightErrors []string
	// EarlyNodeStart starts the node service right after preflight.
	EarlyNodeStart bool

	// resuming: preflight continues this node's unfinished join.
	resuming bool

	found       *discovery.Result
	bootClient  kubernetes.Interface
	clusterYAML []byte
	kubeletYAML []byte
	sharedCerts map[string][]byte
}

// MarkDone records that the join finished on this host (a later join is
// then refused instead of continued).
func (d *JoinData) MarkDone() error { return markState(d.Node, "join", StateDone) }

// NewJoinData prepares the join of cfg (made by config.LoadJoin): the
// discovery options from its JoinConfiguration (reading a discovery file),
// and the node's shared data. ignore are --ignore-preflight-errors.
func NewJoinData(cfg *config.Config, out *progress.Reporter, dryRun bool, host config.HostFacts, ignore []string) (*JoinData, error) {
	j := &cfg.Join
	dopts := discovery.Options{Timeout: config.Timeout(cfg.JoinTimeouts().Discovery, 5*time.Minute)}
	switch {
	case j.Discovery.File != nil:
		b, err := os.ReadFile(j.Discovery.File.KubeConfigPath)
		if err != nil {
			return nil, fmt.Errorf("--discovery-file: %w", err)
		}
		dopts.File, dopts.FileName = b, j.Discovery.File.KubeConfigPath
	case j.Discovery.BootstrapToken != nil:
		bt := j.Discovery.BootstrapToken
		dopts.Endpoint = bt.APIServerEndpoint
		dopts.Token = bt.Token
		dopts.CACertHashes = bt.CACertHashes
		dopts.UnsafeSkipCAVerification = bt.UnsafeSkipCAVerification
	}
	n, err := NewNode(cfg, out, dryRun || j.DryRun, host)
	if err != nil {
		return nil, err
	}
	return &JoinData{Node: n, Discovery: dopts, TLSBootstrapToken: j.Discovery.TLSBootstrapToken,
		IgnorePreflightErrors: ignore}, nil
}

// JoinWorkflow is the tree of `kubeforge join` phases (kubeadm's).
func JoinWorkflow() *Workflow[*JoinData] {
	cp := func(d *JoinData) bool { return d.Cfg.IsControlPlaneJoin() }
	return &Workflow[*JoinData]{Name: "join", Phases: []Phase[*JoinData]{
		{Name: "preflight", Short: "Run join pre-flight checks, and discover and authenticate the cluster", Run: runJoinPreflight,
			Flags: []string{"ignore-preflight-errors"}},
		{Name: "control-plane-prepare", Short: "Prepare the machine for serving a control plane", RunIf: cp, Phases: []Phase[*JoinData]{
			{Name: "download-certs", Short: "Write the control plane's shared certificates from the kubeadm-certs Secret (with --certificate-key; without, use those copied to the node)", Run: runDownloadCerts},
			{Name: "certs", Short: "Generate this node's certificates", Run: runJoinCerts},
			{Name: "kubeconfig", Short: "Generate the kubeconfig files of this control-plane node", Run: runJoinKubeconfig},
			{Name: manifests.PhaseControlPlane, Short: "Generate the control plane's static Pod manifests", Run: runJoinControlPlaneManifests},
		}},
		{Name: "pod-network", Short: podNetworkShort, Run: runJoinPodNetwork},
		{Name: "kubelet-start", Short: "Write the kubelet's configuration, start the node service and wait for the kubelet's TLS bootstrap (a control-plane node signs its kubelet's certificate instead)", Run: runJoinKubeletStart,
			Flags: []string{"air-gapped"}},
		{Name: "control-plane-join", Short: "Join the machine as a control-plane instance", RunIf: cp, Phases: []Phase[*JoinData]{
			{Name: etcdRow.Phase, Short: "Add this node's etcd member (as a learner, promoted once in sync)", Run: runJoinEtcd},
			{Name: "mark-control-plane", Short: "Label and taint the node as a control-plane node", Run: runJoinMarkControlPlane},
		}},
		{Name: "wait-control-plane", Short: "Wait for this node's control plane to be healthy", RunIf: cp, Run: func(ctx context.Context, d *JoinData) error {
			return d.waitControlPlane(ctx, "wait-control-plane")
		}},
	}}
}

// discover authenticates the cluster and reads what a joining node needs,
// writing nothing: every refusal happens before the first file is written.
func (d *JoinData) discover(ctx context.Context) error {
	if d.found != nil {
		return nil
	}
	const phase = "preflight"
	start := time.Now()
	o := d.Discovery
	o.Warn = func(s string) { d.Out.Warnf(phase, "%s", s) }
	found, err := discovery.Discover(ctx, o)
	if err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	d.Out.Done(phase, "discovered", "", start, "Discovered the cluster at %s (CA %s)", found.Server, pki.CAHash(found.CA))

	// The bootstrap token must still be accepted by the API server (an
	// expired token can linger in cluster-info until the cleaner runs).
	token := d.TLSBootstrapToken
	cfg := &rest.Config{Host: found.Server, BearerToken: token, UserAgent: "kubeforge-join",
		TLSClientConfig: rest.TLSClientConfig{CAData: found.CAData}, Timeout: 15 * time.Second}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	if _, err := client.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{}); err != nil {
		if apierrors.IsUnauthorized(err) {
			return errors.New("the API server does not accept the bootstrap token: it has expired or was deleted; create a new one with `kubeforge token create --print-join-command` on a control-plane node")
		}
		return fmt.Errorf("authenticate with the bootstrap token: %w", err)
	}
	kubelet, err := client.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, manifests.KubeletConfigMap, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read the cluster's kubelet configuration (kube-system/%s): %w", manifests.KubeletConfigMap, err)
	}
	d.kubeletYAML = []byte(kubelet.Data["kubelet"])
	// Every node needs the ClusterConfiguration, as with kubeadm: a worker
	// too (its CNI configuration routes the cluster's pod subnet families).
	kc, err := client.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, manifests.KubeadmConfigMap, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read the cluster configuration (kube-system/%s): %w", manifests.KubeadmConfigMap, err)
	}
	d.clusterYAML = []byte(kc.Data["ClusterConfiguration"])
	if d.Cfg.IsControlPlaneJoin() && !d.sharedByHand() {
		key, err := uploadcerts.ParseKey(d.Cfg.Join.ControlPlane.CertificateKey)
		if err != nil {
			return fmt.Errorf("--certificate-key: %w", err)
		}
		if d.sharedCerts, err = uploadcerts.Fetch(ctx, client, key); err != nil {
			return err
		}
	}
	if err := d.Cfg.AdoptCluster(d.clusterYAML, d.kubeletYAML, d.Host); err != nil {
		return err
	}
	if d.sharedByHand() {
		// No certificate key: the shared files were copied here by hand
		// (after AdoptCluster: the cluster's certificatesDir).
		if err := checkSharedFiles(d.Cfg.Paths, found.CA, found.Server, time.Now()); err != nil {
			return err
		}
	}
	if d.Cfg.IsControlPlaneJoin() {
		if d.Cfg.Cluster.ControlPlaneEndpoint == "" {
			d.Out.Warnf(phase, "the cluster has no controlPlaneEndpoint: clients keep talking to the first API server only; set ClusterConfiguration.controlPlaneEndpoint (a DNS name or a load-balanced address) when you create the cluster")
		}
	}
	d.found, d.bootClient = found, client
	return nil
}

func runJoinPreflight(ctx context.Context, d *JoinData) error {
	const phase = "preflight"
	start := time.Now()
	d.Out.Printf(phase, "Running pre-flight checks")
	checks := preflight.JoinChecks(preflight.JoinOptions{
		Paths:             d.Cfg.Paths,
		APIServerEndpoint: d.Discovery.Endpoint,
		NodeName:          d.Cfg.NodeName(),
		ExternalCRI:       d.Cfg.ExternalCRI(),
		Runtime:           d.runtimeCheck(),
		ControlPlane:      d.Cfg.IsControlPlaneJoin(),
		AdvertiseAddress:  d.Cfg.AdvertiseAddress(),
		BindPort:          d.Cfg.BindPort(),
	}, preflight.HostSystem(d.Cfg.Paths))
	ignore := append(append([]string(nil), d.IgnorePreflightErrors...), d.Cfg.ThisNode.IgnorePreflightErrors...)
	resumed, st := resumeIgnores(d.Node, "join", checks)
	if st != nil {
		d.Out.Printf(phase, "Continuing the unfinished join of node %s started %s: its files, data and ports are expected",
			st.NodeName, st.Started.Format(time.RFC3339))
		ignore = append(ignore, resumed...)
		d.resuming = true
	}
	if d.DryRun {
		ignore = []string{"all"}
	}
	warnings, err := preflight.Run(checks, ignore)
	for _, w := range warnings {
		if w.Ignored && slices.Contains(resumed, w.Check) && !d.DryRun {
			continue // expected leftovers of the run being continued
		}
		d.Out.Warnf(phase, "[%s]: %v", w.Check, w.Err)
	}
	if err != nil {
		if st, ok := readState(d.Node, "join"); ok && st.Status == StateDone {
			return fmt.Errorf("%w\nThis host already joined a cluster (`kubeforge join` finished on %s): run `kubeforge reset` first to start over", err, st.Finished.Format(time.RFC3339))
		}
		return err
	}
	d.Out.Done(phase, "checked", "", start, "Pre-flight checks passed (%d checks)", len(checks))
	if err := d.discover(ctx); err != nil {
		return err
	}
	if err := d.checkProvidedFiles(); err != nil {
		return err
	}
	if d.sharedByHand() {
		if err := d.compareSharedWithCluster(ctx); err != nil {
			return err
		}
	}
	// From here on the join writes to the host: a failed run is continued
	// by running it again (resumeIgnores), as init's.
	if err := markState(d.Node, "join", StateInProgress); err != nil {
		return err
	}
	if d.EarlyNodeStart {
		d.StartNodeEarly(ctx)
	}
	return nil
}

func runDownloadCerts(ctx context.Context, d *JoinData) error {
	const phase = "download-certs"
	if err := d.discover(ctx); err != nil {
		return err
	}
	if d.sharedByHand() {
		return useSharedFilesOnNode(d)
	}
	if d.DryRun {
		for f := range d.sharedCerts {
			d.Out.Printf(phase, "Would write %q from the kubeadm-certs Secret", d.Cfg.Paths.Cert(f))
		}
		return nil
	}
	start := time.Now()
	if err := uploadcerts.Write(d.Paths, d.sharedCerts); err != nil {
		return err
	}
	d.Out.Done(phase, "written", "", start, "Wrote the control plane's shared certificates and keys (%d files) to %q", len(d.sharedCerts), d.Cfg.Paths.CertDir)
	return nil
}

func runJoinCerts(ctx context.Context, d *JoinData) error {
	if err := d.discover(ctx); err != nil {
		return err
	}
	results, err := pki.EnsureAll(d.PKISpec())
	for _, r := range results {
		reportPKI(d.Node, "certs", r, "certificate and key")
	}
	return err
}

func runJoinKubeconfig(ctx context.Context, d *JoinData) error {
	if err := d.discover(ctx); err != nil {
		return err
	}
	for _, name := range []string{"admin", "controller-manager", "scheduler"} {
		res, err := pki.EnsureKubeconfig(d.PKISpec(), name)
		if err != nil {
			return err
		}
		reportPKI(d.Node, "kubeconfig", res, "kubeconfig file")
	}
	return nil
}

func runJoinControlPlaneManifests(ctx context.Context, d *JoinData) error {
	const phase = manifests.PhaseControlPlane
	if err := d.discover(ctx); err != nil {
		return err
	}
	if err := writeAPIServerConfig(d.Node, phase); err != nil {
		return err
	}
	for _, c := range manifests.ControlPlane {
		if c.Phase != manifests.PhaseControlPlane {
			continue // etcd: written by control-plane-join/etcd once its member is added
		}
		if err := writeNodeManifest(d.Node, phase, c.Name); err != nil {
			return err
		}
	}
	return nil
}

func runJoinKubeletStart(ctx context.Context, d *JoinData) error {
	const phase = "kubelet-start"
	if err := d.discover(ctx); err != nil {
		return err
	}
	p := d.Cfg.Paths
	// The cluster CA and the bootstrap kubeconfig first: the node service
	// starts the kubelet as soon as its config file appears.
	if err := d.WriteFile(phase, "cluster CA certificate", p.Cert("ca.crt"), d.found.CAData, 0o644, HideContent); err != nil {
		return err
	}
	boot := clientcmdapi.NewConfig()
	boot.Clusters["kubernetes"] = &clientcmdapi.Cluster{Server: d.found.Server, CertificateAuthorityData: d.found.CAData}
	boot.AuthInfos["tls-bootstrap-token-user"] = &clientcmdapi.AuthInfo{Token: d.TLSBootstrapToken}
	boot.Contexts["tls-bootstrap-token-user@kubernetes"] = &clientcmdapi.Context{Cluster: "kubernetes", AuthInfo: "tls-bootstrap-token-user"}
	boot.CurrentContext = "tls-bootstrap-token-user@kubernetes"
	bootBytes, err := clientcmd.Write(*boot)
	if err != nil {
		return err
	}
	kubeletConf := p.Kubeconfig("kubelet.conf")
	haveKubeletConf := fileExists(d.Paths.Host(kubeletConf))
	signed := false
	if !haveKubeletConf && d.Cfg.IsControlPlaneJoin() && !slices.Contains(pki.ExternalCAs(d.Paths), pki.CAName) {
		// A control-plane node holds the cluster CA's key, as init does:
		// it signs its kubelet's client certificate itself, and the
		// kubelet starts this node's static pods at once instead of after
		// a TLS bootstrap round trip through the controller-manager.
		if err := signKubeletConf(d); err != nil {
			return err
		}
		haveKubeletConf, signed = true, true
	}
	if !haveKubeletConf {
		if err := d.WriteFile(phase, "bootstrap kubeconfig", p.Kubeconfig("bootstrap-kubelet.conf"), bootBytes, 0o600, HideContent); err != nil {
			return err
		}
		if !d.DryRun {
			if err := bootstrapKubeletCert(ctx, d); err != nil {
				return err
			}
		}
	}
	if err := writeKubeletFiles(d.Node, phase, d.Cfg.ThisNode.IP, !d.Cfg.IsControlPlaneJoin()); err != nil {
		return err
	}
	if d.DryRun {
		d.Out.Printf(phase, "Would start the node service and wait for the kubelet's TLS bootstrap")
		return nil
	}
	start := time.Now()
	if err := d.WaitNodeService(ctx); err != nil {
		return err
	}
	if signed {
		// The kubelet has its credentials and registers the node by
		// itself; mark-control-plane waits for the Node. The etcd phase
		// goes on at once, so that the etcd manifest is there when the
		// kubelet starts the static pods: etcd is the join's critical
		// path (this node's API server serves only once its member votes).
		d.Out.Done(phase, "started", "", start, "The node service is running; the kubelet registers node %s with its own client certificate", d.Cfg.NodeName())
		return nil
	}
	// The kubelet registers the node with the client certificate that
	// bootstrapKubeletCert got (or that a rerun found in kubelet.conf).
	timeout := config.Timeout(d.Cfg.JoinTimeouts().TLSBootstrap, 5*time.Minute)
	var client kubernetes.Interface
	err = d.waiter().Poll(ctx, 100*time.Millisecond, timeout, func(context.Context) (bool, error) {
		if client == nil {
			if !fileExists(d.Paths.Host(kubeletConf)) {
				return false, nil
			}
			cfg, err := restConfig(d.Paths, kubeletConf)
			if err != nil {
				return false, nil
			}
			if client, err = kubernetes.NewForConfig(cfg); err != nil {
				return false, err
			}
		}
		_, err := client.CoreV1().Nodes().Get(ctx, d.Cfg.NodeName(), metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("the kubelet did not complete its TLS bootstrap and register node %s within %s (see %s): %v",
			d.Cfg.NodeName(), timeout, node.KubeletLogFile(p), err)
	}
	_ = os.Remove(d.Paths.Host(p.Kubeconfig("bootstrap-kubelet.conf")))
	d.Out.Done(phase, "registered", "", start, "The kubelet got its client certificate and registered node %s", d.Cfg.NodeName())
	return nil
}

// bootstrapKubeletCert does the kubelet's TLS bootstrap from the join, with
// the kubelet's own code (bootstrap.LoadClientCert: a key, a CSR as the
// bootstrap token's user, the signed certificate in the kubelet's
// certificate store, kubelet.conf pointing at it), while the node service
// starts containerd; before the kubelet's config is written, so the
// kubelet starts with its credentials (skipping its own bootstrap) and
// registers the node at once. A failed bootstrap leaves the key for the
// rerun, as the kubelet's does.
func bootstrapKubeletCert(ctx context.Context, d *JoinData) error {
	const phase = "kubelet-start"
	p := d.Cfg.Paths
	start := time.Now()
	timeout := config.Timeout(d.Cfg.JoinTimeouts().TLSBootstrap, 5*time.Minute)
	bctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := kubeletbootstrap.LoadClientCert(bctx, d.Paths.Host(p.Kubeconfig("kubelet.conf")), d.Paths.Host(p.Kubeconfig("bootstrap-kubelet.conf")),
		d.Paths.Host(p.KubeletPKIDir()), types.NodeName(d.Cfg.NodeName())); err != nil {
		return fmt.Errorf("the kubelet's TLS bootstrap (a client certificate for system:node:%s through a CertificateSigningRequest, at most %s) failed: %w; "+
			"see `kubectl get csr` on a control-plane node", d.Cfg.NodeName(), timeout, err)
	}
	d.Out.Done(phase, "signed", p.Kubeconfig("kubelet.conf"), start, "The kubelet's client certificate was signed (TLS bootstrap); wrote %q", p.Kubeconfig("kubelet.conf"))
	return nil
}

// signKubeletConf writes a joining control-plane node's kubelet.conf with a
// client certificate for system:node:<name> signed by the cluster CA,
// pointing at the control-plane endpoint (this node's API server serves
// only once its etcd member has joined), and moves the certificate to the
// file the kubelet rotates, as init does.
func signKubeletConf(d *JoinData) error {
	const phase = "kubelet-start"
	spec := d.PKISpec()
	server, err := spec.ControlPlaneURL()
	if err != nil {
		return err
	}
	res, err := pki.EnsureKubeconfigAt(spec, "kubelet", server)
	if err != nil {
		return err
	}
	reportPKI(d.Node, phase, res, "kubeconfig file")
	return useRotatingKubeletCert(d.Node, phase)
}

// adminClient is the admin.conf client of a joining control-plane node.
func (d *JoinData) adminClient() (kubernetes.Interface, error) {
	cfg, err := restConfig(d.Paths, d.Cfg.Paths.Kubeconfig("admin.conf"))
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

func runJoinEtcd(ctx context.Context, d *JoinData) error {
	phase := etcdRow.Phase
	if err := d.discover(ctx); err != nil {
		return err
	}
	if d.DryRun {
		d.Out.Printf(phase, "Would add this node's etcd member as a learner, start it and promote it")
		return writeNodeManifest(d.Node, phase, manifests.Etcd)
	}
	start := time.Now()
	client, err := d.adminClient()
	if err != nil {
		return err
	}
	endpoints, err := etcdEndpoints(ctx, client, d.Cfg.NodeName(), d.Cfg.AdvertiseAddress())
	if err != nil {
		return err
	}
	ec, err := etcdmember.Client(d.Paths, endpoints)
	if err != nil {
		return err
	}
	defer ec.Close()
	timeout := config.Timeout(d.Cfg.JoinTimeouts().EtcdAPICall, 2*time.Minute)
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	peerURL := "https://" + net.JoinHostPort(d.Cfg.AdvertiseAddress(), fmt.Sprint(manifests.EtcdPeerPort))
	id, initial, err := etcdmember.AddLearner(actx, ec, d.Cfg.NodeName(), peerURL)
	if err != nil {
		return err
	}
	d.Out.Done(phase, "member-added", "", start, "Added etcd member %s (%x) as a learner; initial cluster %s", d.Cfg.NodeName(), id, initial)
	d.EtcdInitialCluster = initial
	if err := d.MkdirAll(phase, d.Cfg.Cluster.Etcd.Local.DataDir, 0o700); err != nil {
		return err
	}
	seen := func(bool) {}
	if _, running := node.Running(d.Cfg.Paths); running {
		seen, err = d.writeSeenManifest(ctx, phase, manifests.Etcd) // kubelet-start started the kubelet moments ago
	} else {
		err = writeNodeManifest(d.Node, phase, manifests.Etcd)
	}
	if err != nil {
		return err
	}
	promoteStart := time.Now()
	promoted, err := etcdmember.Promote(actx, ec, id)
	// A member promoted now runs; one that already voted (a rerun) may
	// not, and a failed promotion wants the kubelet's warning: let the
	// wait for the watch and the touch finish then.
	seen(promoted)
	if err != nil {
		return fmt.Errorf("%w (is the local etcd running? see its log under %s)", err, d.Cfg.Paths.PodLogDir)
	}
	msg := "Promoted etcd member %s to a voting member"
	if !promoted {
		msg = "etcd member %s is a voting member already (an earlier run promoted it)"
	}
	d.Out.Done(phase, "member-promoted", "", promoteStart, msg, d.Cfg.NodeName())
	return nil
}

// etcdEndpoints are the client URLs of the cluster's etcd members, from the
// etcd pods' advertise-client-urls annotations (kubeadm's ClusterStatus),
// or, with no etcd pod (a control plane run as processes), from the API
// servers' addresses (apiServerEtcdURLs), except those of node self
// (selfIP): a joining node's own etcd does not run yet
// (an etcd pod of self is left from before a reset), and trying it only
// costs the etcd client retries and warnings.
func etcdEndpoints(ctx context.Context, c kubernetes.Interface, self, selfIP string) ([]string, error) {
	pods, err := c.CoreV1().Pods(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{LabelSelector: "component=etcd,tier=control-plane"})
	if err != nil {
		return nil, fmt.Errorf("find the etcd members: %w", err)
	}
	var out []string
	for _, p := range pods.Items {
		if p.Spec.NodeName == self {
			continue
		}
		if u := p.Annotations["kubeadm.kubernetes.io/etcd.advertise-client-urls"]; u != "" {
			out = append(out, strings.Split(u, ",")...)
		}
	}
	if len(out) == 0 {
		// A control plane run as processes has no etcd pods: its etcd
		// serves clients on each API server's advertise address
		// (kubeforge's etcd manifest), which the kubernetes Service's
		// endpoints list. The member list then gives the real URLs.
		out, err = apiServerEtcdURLs(ctx, c, selfIP)
		if err != nil {
			return nil, err
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no etcd pod announces its client URL (annotation kubeadm.kubernetes.io/etcd.advertise-client-urls), and the kubernetes Service lists no API server: is this a cluster with local etcd?")
	}
	return out, nil
}

// apiServerEtcdURLs are etcd client URLs at the addresses of the API
// servers in the kubernetes Service's EndpointSlices, but selfIP's.
func apiServerEtcdURLs(ctx context.Context, c kubernetes.Interface, selfIP string) ([]string, error) {
	list, err := c.DiscoveryV1().EndpointSlices(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=kubernetes"})
	if err != nil {
		return nil, fmt.Errorf("find the API servers (for their etcd members): %w", err)
	}
	var out []string
	for _, sl := range list.Items {
		for _, ep := range sl.Endpoints {
			for _, a := range ep.Addresses {
				if a != selfIP {
					out = append(out, "https://"+net.JoinHostPort(a, strconv.Itoa(manifests.EtcdClientPort)))
				}
			}
		}
	}
	return out, nil
}

func runJoinMarkControlPlane(ctx context.Context, d *JoinData) error {
	if d.DryRun {
		d.Out.Printf("mark-control-plane", "Would mark node %s as control-plane", d.Cfg.NodeName())
		return nil
	}
	client, err := d.adminClient()
	if err != nil {
		return err
	}
	// The kubelet registers the node: right after kubelet-start's TLS
	// bootstrap, or by itself with the certificate a control-plane node
	// signed (then this is the first wait for it).
	timeout := config.Timeout(d.Cfg.JoinTimeouts().TLSBootstrap, 5*time.Minute)
	return markControlPlane(ctx, d.Out, client, d.Cfg.NodeName(), d.Cfg.ThisNode.Taints, timeout)
}

// markControlPlane labels a node as control plane and adds taints.
func markControlPlane(ctx context.Context, out *progress.Reporter, client kubernetes.Interface, name string, taints []corev1.Taint, timeout time.Duration) error {
	const phase = "mark-control-plane"
	labels := []string{"node-role.kubernetes.io/control-plane", "node.kubernetes.io/exclude-from-external-load-balancers"}
	start := time.Now()
	var n *corev1.Node
	err := (&liveWaiter{out: out}).Poll(ctx, 100*time.Millisecond, timeout, func(context.Context) (bool, error) {
		var err error
		n, err = client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		return fmt.Errorf("node %s did not register: %w", name, err)
	}
	newTaints := append([]corev1.Taint(nil), n.Spec.Taints...)
	for _, t := range taints {
		found := false
		for _, x := range newTaints {
			if x.MatchTaint(&t) {
				found = true
			}
		}
		if !found {
			newTaints = append(newTaints, t)
		}
	}
	patch := map[string]any{"metadata": map[string]any{"labels": map[string]string{labels[0]: "", labels[1]: ""}}}
	if len(newTaints) != len(n.Spec.Taints) {
		patch["spec"] = map[string]any{"taints": newTaints}
	}
	b, _ := json.Marshal(patch)
	if _, err := client.CoreV1().Nodes().Patch(ctx, name, types.StrategicMergePatchType, b, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("label and taint node %s: %w", name, err)
	}
	out.Done(phase, "marked", "", start, "Marked node %s as control-plane: labels %v, taints %v", name, labels, taintStrings(taints))
	return nil
}
