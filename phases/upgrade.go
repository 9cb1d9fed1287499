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
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/components/node"
	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/fsutil"
	"github.com/kubeforge/kubeforge/internal/kubeletflags"
	"github.com/kubeforge/kubeforge/internal/progress"
	"github.com/kubeforge/kubeforge/internal/version"
	"github.com/kubeforge/kubeforge/manifests"
)

// NodeVersionAnnotation on a Node records the kubeforge version its node
// service runs, written by `upgrade apply` and `upgrade node`.
const NodeVersionAnnotation = "kubeforge.io/version"

// UpgradeData is what the `upgrade apply` and `upgrade node` phases share.
type UpgradeData struct {
	*Node
	// Workflow is "apply" or "node".
	Workflow string
	// Force overrides the skew rules --force may override.
	Force bool
	// CertificateRenewal renews the leaf certificates and kubeconfigs
	// before the static pods restart (on by default, as kubeadm's).
	CertificateRenewal bool
	// ComponentTimeout bounds the wait for each replaced static pod.
	ComponentTimeout time.Duration
	// EnsureImages loads this binary's self-image and pause image into the
	// node's container runtime, so the new manifests' image is there before
	// they are written (the command injects it: it needs containerd's client).
	EnsureImages func(ctx context.Context) error
	// SnapshotEtcd saves an etcd snapshot of endpoint to file and returns
	// the etcd version it came from; default saveEtcdSnapshot.
	SnapshotEtcd func(ctx context.Context, p config.Paths, endpoint, file string) (string, error)
	// RestoreEtcd, when set, restores this node's etcd data directory
	// from a snapshot file (used when the new etcd fails and the old one
	// does not come back on its data).
	RestoreEtcd func(ctx context.Context, cfg *config.Config, snapshot string) error

	// ControlPlane is true on a node with a kube-apiserver manifest.
	ControlPlane bool
	// OldKubernetes is the version the cluster's ClusterConfiguration named.
	OldKubernetes string
	Client        kubernetes.Interface
	Dynamic       dynamic.Interface
	// Plan is the cluster's state against this binary (apply and plan).
	Plan *Plan
	// LocalUpToDate: this node already runs this version (no unfinished
	// run to continue); its phases are skipped.
	LocalUpToDate bool

	state upgradeState
	// podsBefore are the UIDs of the pods of the component being replaced
	// before its new manifest was written.
	podsBefore map[string]bool
}

// upgradeState is /var/lib/kubeforge/upgrade-state.json: an upgrade under
// way, so that a rerun continues it (same backup, no second renewal).
type upgradeState struct {
	Workflow  string    `json:"workflow"`
	Target    string    `json:"target"`
	Status    string    `json:"status"`
	Started   time.Time `json:"started"`
	Finished  time.Time `json:"finished,omitzero"`
	BackupDir string    `json:"backupDir,omitempty"`
	// Done lists the one-time steps done: "backup", "certs".
	Done []string `json:"done,omitempty"`
}

func (d *UpgradeData) stateFile() string {
	return filepath.Join(d.Cfg.Paths.StateDir, "upgrade-state.json")
}

func (d *UpgradeData) loadState() {
	b, err := os.ReadFile(d.Cfg.Paths.Host(d.stateFile()))
	if err != nil {
		return
	}
	var s upgradeState
	if json.Unmarshal(b, &s) == nil && s.Status == StateInProgress && s.Target == version.Version {
		d.state = s
	}
}

func (d *UpgradeData) saveState() error {
	if d.DryRun {
		return nil
	}
	b, _ := json.MarshalIndent(d.state, "", "  ")
	_, err := fsutil.WriteFile(d.Paths.Host(d.stateFile()), append(b, '\n'), 0o600)
	return err
}

func (d *UpgradeData) stepDone(step string) bool {
	for _, s := range d.state.Done {
		if s == step {
			return true
		}
	}
	return false
}

func (d *UpgradeData) markStep(step string) error {
	if !d.stepDone(step) {
		d.state.Done = append(d.state.Done, step)
	}
	return d.saveState()
}

// inProgress reports whether an earlier run of this upgrade did not finish.
func (d *UpgradeData) inProgress() bool { return d.state.Status == StateInProgress }

// UpgradeOptions are what NewUpgradeData needs besides the node.
type UpgradeOptions struct {
	Paths    config.Paths
	Host     config.HostFacts
	Out      *progress.Reporter
	DryRun   bool
	Workflow string
}

// NewUpgradeData reads this node's and the cluster's configuration, as the
// new binary renders it: the cluster's ClusterConfiguration,
// KubeletConfiguration and KubeProxyConfiguration, and the node's name, API
// endpoint and kubelet file. Nothing is written.
func NewUpgradeData(ctx context.Context, o UpgradeOptions) (*UpgradeData, error) {
	p := o.Paths
	name := node.NodeName(p)
	if name == "" {
		return nil, fmt.Errorf("this host is not a kubeforge node (no %s and no --hostname-override in %s): run upgrade on a node made by `kubeforge init` or `kubeforge join`", node.InfoFile(p), p.KubeletFlagsFile())
	}
	cfg := config.New()
	cfg.Paths = p
	cfg.Init.NodeRegistration.Name = name
	apiManifest := p.Manifest(manifests.KubeAPIServer)
	controlPlane := fsutil.Exists(p.Host(apiManifest))
	if controlPlane {
		// A settings file that does not load is the node service's to
		// report; only one that says Processes stops the upgrade here.
		if k, err := config.LoadKubeforge(p); err == nil && k.ControlPlane.Processes() {
			return nil, fmt.Errorf("this node runs its control plane as processes (%s.controlPlane.runtime %s in %s): upgrading such a node is not supported yet",
				config.KubeforgeKind, config.ControlPlaneProcesses, p.KubeforgeConfigFile())
		}
	}
	var etcdPod *corev1.Pod
	if controlPlane {
		pod, err := readManifest(p, apiManifest)
		if err != nil {
			return nil, err
		}
		flags := manifests.PodFlags(pod)
		cfg.Init.LocalAPIEndpoint.AdvertiseAddress = flags["advertise-address"]
		if port := flags["secure-port"]; port != "" {
			var n int32
			if _, err := fmt.Sscan(port, &n); err == nil {
				cfg.Init.LocalAPIEndpoint.BindPort = n
			}
		}
		if pod, err := readManifest(p, p.Manifest(manifests.Etcd)); err == nil {
			etcdPod = pod
		}
	} else {
		args, err := node.FlagsFileArgs(p)
		if err != nil {
			return nil, err
		}
		if v, ok := kubeletflags.Last(args, "node-ip"); ok && v != "" {
			cfg.Init.LocalAPIEndpoint.AdvertiseAddress = v
		}
	}
	nodeKubelet, err := os.ReadFile(p.Host(p.KubeletConfigFile()))
	if err != nil {
		return nil, fmt.Errorf("read this node's kubelet configuration: %w", err)
	}
	var own struct {
		ContainerRuntimeEndpoint string `json:"containerRuntimeEndpoint"`
	}
	_ = yaml.Unmarshal(nodeKubelet, &own)
	if own.ContainerRuntimeEndpoint != "" && own.ContainerRuntimeEndpoint != "unix://"+p.ContainerdSocket() {
		cfg.Init.NodeRegistration.CRISocket = own.ContainerRuntimeEndpoint
	}
	if err := cfg.Complete(o.Host); err != nil {
		return nil, fmt.Errorf("this node's configuration: %w", err)
	}
	// Clients: admin.conf on a control-plane node, the kubelet's
	// credentials on a worker.
	kubeconfig := p.Kubeconfig("admin.conf")
	if !fsutil.Exists(p.Host(kubeconfig)) {
		kubeconfig = p.Kubeconfig("kubelet.conf")
	}
	rc, err := restConfig(p, kubeconfig)
	if err != nil {
		return nil, err
	}
	rc.Timeout = 15 * time.Second
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	getCM := func(name, key string) ([]byte, error) {
		cm, err := client.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("read the cluster's configuration (ConfigMap kube-system/%s) with %s: %w", name, kubeconfig, err)
		}
		return []byte(cm.Data[key]), nil
	}
	clusterYAML, err := getCM(manifests.KubeadmConfigMap, "ClusterConfiguration")
	if err != nil {
		return nil, err
	}
	kubeletYAML, err := getCM(manifests.KubeletConfigMap, "kubelet")
	if err != nil {
		return nil, err
	}
	var proxyYAML []byte
	if controlPlane {
		if proxyYAML, err = getCM(manifests.KubeProxyName, "config.conf"); err != nil && !cfg.Cluster.Proxy.Disabled {
			proxyYAML = nil // kube-proxy disabled or not installed: rendered from defaults
		}
	}
	old, err := cfg.AdoptForUpgrade(clusterYAML, kubeletYAML, proxyYAML, nodeKubelet, o.Host)
	if err != nil {
		return nil, err
	}
	n, err := NewNode(cfg, o.Out, o.DryRun, o.Host)
	if err != nil {
		return nil, err
	}
	if etcdPod != nil {
		// A member that joined an existing etcd keeps the initial cluster it
		// started with (etcd ignores it once it has data, but the manifest
		// would change for nothing).
		if f := manifests.PodFlags(etcdPod); f["initial-cluster-state"] == "existing" {
			n.EtcdInitialCluster = f["initial-cluster"]
		}
	}
	if o.DryRun {
		// A dry run reads the real files and writes into the scratch root:
		// copy what the phases compare against.
		for _, f := range append(append(manifestFiles(cfg.Paths), componentFilePaths(cfg)...), p.KubeletConfigFile()) {
			if b, err := os.ReadFile(p.Host(f)); err == nil {
				_ = os.MkdirAll(filepath.Dir(n.Paths.Host(f)), 0o700)
				_ = os.WriteFile(n.Paths.Host(f), b, 0o600)
			}
		}
	}
	d := &UpgradeData{Node: n, Workflow: o.Workflow, ControlPlane: controlPlane, OldKubernetes: old,
		Client: client, Dynamic: dyn, CertificateRenewal: true, ComponentTimeout: 4 * time.Minute}
	d.SnapshotEtcd = saveEtcdSnapshot
	d.loadState()
	return d, nil
}

// manifestFiles are the logical paths of the control-plane manifests.
func manifestFiles(p config.Paths) []string {
	var out []string
	for _, c := range manifests.ControlPlaneComponents {
		out = append(out, p.Manifest(c))
	}
	return out
}

// componentFilePaths are the configuration files this binary renders for
// the control-plane components (the scheduler's --config).
func componentFilePaths(cfg *config.Config) []string {
	var out []string
	for _, c := range manifests.ControlPlaneComponents {
		files, err := componentFiles(cfg, c)
		if err != nil {
			continue
		}
		for _, f := range files {
			out = append(out, f.Path)
		}
	}
	return out
}

func readManifest(p config.Paths, logical string) (*corev1.Pod, error) {
	b, err := os.ReadFile(p.Host(logical))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", logical, err)
	}
	var pod corev1.Pod
	if err := yaml.Unmarshal(b, &pod); err != nil {
		return nil, fmt.Errorf("%s: %w", logical, err)
	}
	if len(pod.Spec.Containers) == 0 {
		return nil, fmt.Errorf("%s has no container", logical)
	}
	return &pod, nil
}

// Close releases the dry-run scratch root.
func (d *UpgradeData) Close() error { return d.Node.Close() }

// MarkDone records that the upgrade finished.
func (d *UpgradeData) MarkDone() error {
	if d.DryRun || d.LocalUpToDate && !d.inProgress() {
		return nil
	}
	d.state.Status = StateDone
	d.state.Finished = time.Now().UTC()
	return d.saveState()
}

// UpgradeApplyWorkflow is the tree of `kubeforge upgrade apply` phases.
func UpgradeApplyWorkflow() *Workflow[*UpgradeData] {
	work := func(d *UpgradeData) bool { return !d.LocalUpToDate }
	return &Workflow[*UpgradeData]{Name: "upgrade apply", Phases: []Phase[*UpgradeData]{
		{Name: "preflight", Short: "Check the version-skew policy, the API server, the control-plane nodes, etcd and the disk space for the backup",
			Run: runUpgradePreflight, Flags: []string{"force"}},
		{Name: "backup", Short: "Save an etcd snapshot and a copy of the static Pod manifests into a timestamped backup directory", RunIf: work, Run: runUpgradeBackup},
		{Name: "certs", Short: "Renew the leaf certificates and kubeconfig files (--certificate-renewal=false skips it)", RunIf: work, Run: runUpgradeCerts,
			Flags: []string{"certificate-renewal"}},
		// The RBAC is the cluster's: applied on every apply, before the new
		// controller-manager needs it.
		{Name: "rbac", Short: "Apply this version's bootstrap RBAC (the node directory's Roles among it) and the shim group admission policy", Run: runUpgradeRBAC},
		upgradeControlPlanePhase(work),
		{Name: "upload-config", Short: "Upload the new ClusterConfiguration and KubeletConfiguration", RunIf: work, Run: runUpgradeUploadConfig},
		{Name: "kubelet-config", Short: "Write this node's new kubelet configuration", RunIf: work, Run: runUpgradeKubeletConfig},
		{Name: "node-service", Short: "Restart this node's node service (containerd, kubelet) on the new binary; containers keep running", RunIf: work, Run: runUpgradeNodeService},
		{Name: "rbac-cleanup", Short: "Delete the RBAC that let every node list all Nodes, once no node runs an older kubeforge", Run: runUpgradeRBACCleanup},
		// The addons are the cluster's: they run also when this node is
		// up to date (the apply after the other nodes' `upgrade node`).
		{Name: "addon", Short: "Upgrade the addons once every node runs the new version", Phases: append([]Phase[*UpgradeData]{
			{Name: "coredns", Short: "Upgrade CoreDNS, keeping the cluster's Corefile edits", Run: runUpgradeCoreDNS},
			{Name: "kube-proxy", Short: "Upgrade kube-proxy", Run: runUpgradeKubeProxy},
		}, selfImageAddonPhases()...)},
	}}
}

// UpgradeNodeWorkflow is the tree of `kubeforge upgrade node` phases: on
// a control-plane node the same static pod replacement as apply, on every
// node the kubelet configuration and the node service.
func UpgradeNodeWorkflow() *Workflow[*UpgradeData] {
	work := func(d *UpgradeData) bool { return !d.LocalUpToDate }
	cp := func(d *UpgradeData) bool { return !d.LocalUpToDate && d.ControlPlane }
	return &Workflow[*UpgradeData]{Name: "upgrade node", Phases: []Phase[*UpgradeData]{
		{Name: "preflight", Short: "Check that the control plane already runs this version and that this node can be upgraded",
			Run: runUpgradePreflight, Flags: []string{"force"}},
		{Name: "backup", Short: "On a control-plane node, save an etcd snapshot and a copy of the static Pod manifests", RunIf: cp, Run: runUpgradeBackup},
		{Name: "certs", Short: "On a control-plane node, renew the leaf certificates and kubeconfig files", RunIf: cp, Run: runUpgradeCerts,
			Flags: []string{"certificate-renewal"}},
		upgradeControlPlanePhase(cp),
		{Name: "kubelet-config", Short: "Write this node's new kubelet configuration", RunIf: work, Run: runUpgradeKubeletConfig},
		{Name: "node-service", Short: "Restart this node's node service on the new binary; containers keep running", RunIf: work, Run: runUpgradeNodeService},
	}}
}

func upgradeControlPlanePhase(runIf func(*UpgradeData) bool) Phase[*UpgradeData] {
	p := Phase[*UpgradeData]{Name: "control-plane", Short: "Replace the static Pods one at a time, rolling a component back if it does not come up",
		RunIf: runIf, Run: runUpgradeImages, Flags: []string{"component-timeout"}}
	for _, c := range manifests.ControlPlaneComponents {
		p.Phases = append(p.Phases, Phase[*UpgradeData]{Name: c, Short: "Upgrade the " + c + " static Pod",
			Run: func(ctx context.Context, d *UpgradeData) error { return d.replaceStaticPod(ctx, c) }})
	}
	return p
}

// runUpgradeImages loads the new self-image before any manifest names it.
func runUpgradeImages(ctx context.Context, d *UpgradeData) error {
	const phase = "upgrade/control-plane"
	if !d.ControlPlane {
		return errors.New("this node runs no control plane (no kube-apiserver manifest): run `kubeforge upgrade node` here")
	}
	if d.DryRun {
		d.Out.Printf(phase, "Would load the image %s into the node's container runtime", version.Image())
		return nil
	}
	if d.EnsureImages == nil {
		return nil
	}
	start := time.Now()
	if err := d.EnsureImages(ctx); err != nil {
		return fmt.Errorf("load the new image %s into the node's container runtime: %w", version.Image(), err)
	}
	d.Out.Done(phase, "image", "", start, "The node's container runtime has %s", version.Image())
	return nil
}
