package phases

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/kubeforge/kubeforge/components/node"
	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/encryption"
	"github.com/kubeforge/kubeforge/internal/fsutil"
	"github.com/kubeforge/kubeforge/internal/progress"
	"github.com/kubeforge/kubeforge/manifests"
	"github.com/kubeforge/kubeforge/pki"
	"github.com/kubeforge/kubeforge/preflight"
)

// InitData is what the init phases share.
type InitData struct {
	*Node
	// IgnorePreflightErrors lists check names (or "all") whose errors only warn.
	IgnorePreflightErrors []string
	// UploadCerts and CertificateKey drive the upload-certs phase.
	UploadCerts    bool
	CertificateKey string
	// EarlyNodeStart starts the node service right after preflight so its
	// image import overlaps the certificate work (full runs only).
	EarlyNodeStart bool
	// imagesIn: waitImages saw the images in the node's runtime.
	imagesIn bool
	// SkipTokenPrint keeps the token out of the output.
	SkipTokenPrint bool
	// Client and Dynamic, when both are set, replace the admin.conf
	// clients of the phases that talk to the API server (upload-config,
	// upload-certs, mark-control-plane, bootstrap-token, the addons), and
	// SuperAdmin the super-admin.conf client that binds admin.conf's group
	// to cluster-admin: in-process tests give fakes. A given client needs
	// no host, so those phases then also run under a root directory.
	Client     kubernetes.Interface
	Dynamic    dynamic.Interface
	SuperAdmin dynamic.Interface

	keys *pki.KeyPool
	live liveState
}

// MarkDone records that init finished on this host (a later init is then
// refused instead of continued).
func (d *InitData) MarkDone() error { return markState(d.Node, "init", StateDone) }

// Close releases what the run holds (key pool, dry-run scratch dir).
func (d *InitData) Close() error {
	d.keys.Close()
	return d.Node.Close()
}

// PKISpec is the certificate spec derived from the configuration, using
// the keys the pool generated ahead of time.
func (d *InitData) PKISpec() pki.Spec {
	s := d.Node.PKISpec()
	s.Keys = d.keys
	return s
}

// StartKeyPool begins generating the private keys that the certs and
// kubeconfig phases will need, so that work overlaps preflight.
func (d *InitData) StartKeyPool() {
	missing := 0
	for _, c := range pki.Certificates {
		if !fsutil.Exists(d.Paths.Host(d.Paths.Cert(c.BaseName + ".key"))) {
			missing++
		}
	}
	for _, k := range pki.Kubeconfigs {
		if !fsutil.Exists(d.Paths.Host(d.Paths.Kubeconfig(k.FileName))) {
			missing++
		}
	}
	if missing == 0 {
		return
	}
	if pool, err := pki.NewKeyPool(string(d.Cfg.Cluster.EncryptionAlgorithm), missing); err == nil {
		d.keys = pool
	}
}

// InitWorkflow is the tree of `kubeforge init` phases.
func InitWorkflow() *Workflow[*InitData] {
	w := &Workflow[*InitData]{Name: "init"}
	w.Phases = []Phase[*InitData]{
		{Name: "preflight", Short: "Run pre-flight checks", Run: runInitPreflight,
			Flags: []string{"ignore-preflight-errors"}},
		certsPhase(),
		kubeconfigPhase(),
		// The kubelet starts before it has static pods: its own start
		// (~0.4 s) then overlaps the node service's image import, and
		// the manifests follow once the images are in (waitImages).
		{Name: "pod-network", Short: podNetworkShort, Run: runInitPodNetwork},
		{Name: "kubelet-config", Short: "Write the kubelet configuration and its flags",
			Run: runKubeletConfig, Flags: []string{"air-gapped"}},
		kubeletStartPhase(),
		{Name: etcdRow.Phase, Short: "Generate the static Pod manifest for the local etcd",
			Phases: []Phase[*InitData]{{Name: etcdRow.SubPhase, Short: "Generate the static Pod manifest for a local, single-node etcd",
				Run: runEtcdLocal}}},
		controlPlanePhase(),
	}
	w.Phases = append(w.Phases, livePhases()...)
	return w
}

// waitImages waits, before the static Pod manifests are written, until the
// node service has imported the images: its kubelet may run already (it
// starts while the static pod directory is empty), and a static pod it
// found before the images were in would make containerd try to pull them.
// It waits in a whole init (which started the node service) and whenever a
// node service runs (a phase run on its own after kubelet-start); with no
// node service running, a phase run on its own writes at once.
func (d *InitData) waitImages(ctx context.Context, phase string) error {
	if d.imagesIn || d.DryRun || d.Cfg.Kubeforge.ControlPlane.Processes() {
		// The node service runs the manifests itself then, from the host's
		// executable: no image, no kubelet.
		return nil
	}
	if !d.EarlyNodeStart {
		if d.requireHost() != nil {
			return nil
		}
		if _, running := node.Running(d.Cfg.Paths); !running {
			return nil
		}
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute) // as wait-control-plane's default
	defer cancel()
	if err := node.WaitImages(ctx, d.Cfg.Paths); err != nil {
		return fmt.Errorf("before writing the static Pod manifests: %w (see %s)", err, d.Cfg.Paths.NodeLogFile())
	}
	if err := d.awaitKubeletWatch(ctx); err != nil {
		d.Out.Warnf(phase, "Writing the static Pod manifests without the kubelet's watch of %s (%v): it finds them at its next full read of the directory, within 20 s",
			d.Cfg.Paths.ManifestsDir, err)
	}
	d.imagesIn = true
	d.Out.Done(phase, "images", "", start, "The node service has the images and its kubelet watches the static Pod directory; writing the static Pod manifests")
	return nil
}

// awaitKubeletWatch waits, before a static Pod manifest is written on a
// node whose kubelet has just started, until the kubelet watches the
// static Pod directory: a manifest written while the kubelet sets up its
// watch would wait for its next full read of the directory, 20 s later
// (node.WaitKubeletWatch). The wait is bounded by kubeletWatchTimeout.
func (n *Node) awaitKubeletWatch(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, kubeletWatchTimeout)
	defer cancel()
	return node.WaitKubeletWatch(ctx, n.Cfg.Paths)
}

// writeSeenManifest writes a static Pod manifest on a node whose kubelet
// has just started, without waiting for the kubelet's watch of the
// directory (a control-plane join's etcd: the kubelet starts there only
// once the images are in, and waiting cost the join a second). When the
// watch is not there yet, a goroutine waits for it and then touches the
// file, so that the kubelet gets an event for it even if its first read of
// the directory came before the file (awaitKubeletWatch says why). The
// caller goes on at once and must call the returned function before it
// returns: with true once it knows the component runs, which ends that
// wait (the touch is not needed then), else with false, which lets the
// wait and the touch finish (at most kubeletWatchTimeout). It returns
// once the goroutine has.
func (n *Node) writeSeenManifest(ctx context.Context, phase, component string) (func(running bool), error) {
	if n.Cfg.Kubeforge.ControlPlane.Processes() {
		// The node service runs it: no kubelet watch to wait for.
		return func(bool) {}, writeNodeManifest(n, phase, component)
	}
	watched := node.KubeletWatches(n.Cfg.Paths)
	if err := writeNodeManifest(n, phase, component); err != nil || watched {
		return func(bool) {}, err
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := n.awaitKubeletWatch(wctx)
		if wctx.Err() != nil {
			return // the component runs, or the command ends
		}
		if err == nil {
			now := time.Now()
			err = os.Chtimes(n.Paths.Host(n.Cfg.Paths.Manifest(component)), now, now)
		}
		if err != nil {
			n.Out.Warnf(phase, "The kubelet may not have seen the %s manifest (%v): it finds it at its next full read of %s, within 20 s",
				component, err, n.Cfg.Paths.ManifestsDir)
		}
	}()
	return func(running bool) {
		if running {
			cancel()
		}
		<-done
		cancel()
	}, nil
}

// kubeletWatchTimeout bounds awaitKubeletWatch (the watch comes ~0.4 s
// after the kubelet starts).
var kubeletWatchTimeout = 10 * time.Second

func runInitPreflight(ctx context.Context, d *InitData) error {
	const phase = "preflight"
	start := time.Now()
	d.Out.Printf(phase, "Running pre-flight checks")
	checks := preflight.InitChecks(preflight.InitOptions{
		Paths:            d.Cfg.Paths,
		AdvertiseAddress: d.Cfg.AdvertiseAddress(),
		BindPort:         d.Cfg.BindPort(),
		NodeName:         d.Cfg.NodeName(),
		ExternalCRI:      d.Cfg.ExternalCRI(),
		Runtime:          d.runtimeCheck(),
	}, preflight.HostSystem(d.Cfg.Paths))
	ignore := append(append([]string(nil), d.IgnorePreflightErrors...), d.Cfg.ThisNode.IgnorePreflightErrors...)
	resumed, st := resumeIgnores(d.Node, "init", checks)
	if st != nil {
		d.Out.Printf(phase, "Continuing the unfinished init of node %s started %s: its files, data and ports are expected",
			st.NodeName, st.Started.Format(time.RFC3339))
		ignore = append(ignore, resumed...)
	}
	if d.DryRun {
		// A dry run reports what would fail but goes on, as kubeadm's.
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
		if st, ok := readState(d.Node, "init"); ok && st.Status == StateDone {
			return fmt.Errorf("%w\nThis host already runs a cluster set up by `kubeforge init` on %s: run `kubeforge reset` first to start over", err, st.Finished.Format(time.RFC3339))
		}
		return err
	}
	if err := markState(d.Node, "init", StateInProgress); err != nil {
		return err
	}
	d.Out.Done(phase, "checked", "", start, "Pre-flight checks passed (%d checks)", len(checks))
	if d.EarlyNodeStart {
		d.StartNodeEarly(ctx)
	}
	return nil
}

func certsPhase() Phase[*InitData] {
	p := Phase[*InitData]{Name: "certs", Short: "Certificate generation", Run: func(ctx context.Context, d *InitData) error {
		if d.EarlyNodeStart {
			d.StartNodeEarly(ctx)
		}
		d.Out.Printf("certs", "Using certificateDir folder %q", d.Cfg.Paths.CertDir)
		for _, base := range pki.ExternalCAs(d.Paths) {
			d.Out.Printf("certs", "External CA mode for %s: %s is present without its key, so kubeforge signs and renews nothing with it (nor does the controller-manager): the certificates it signs must be provided, and renewed with your CA",
				base, pki.CertPath(d.Cfg.Paths, base))
		}
		return nil
	}}
	for _, c := range pki.Certificates {
		p.Phases = append(p.Phases, Phase[*InitData]{Name: c.Name, Short: c.LongName,
			Run: func(_ context.Context, d *InitData) error { return ensureCert(d, c.Name) }})
	}
	p.Phases = append(p.Phases, Phase[*InitData]{Name: pki.ServiceAccount, Short: "Generate a private key for signing service account tokens along with its public key",
		Run: func(_ context.Context, d *InitData) error { return ensureCert(d, pki.ServiceAccount) }})
	return p
}

func ensureCert(d *InitData, name string) error {
	res, err := pki.Ensure(d.PKISpec(), name)
	if err != nil {
		return err
	}
	reportPKI(d.Node, "certs", res, "certificate and key")
	return nil
}

// reportPKI prints one certificate or kubeconfig result.
func reportPKI(n *Node, phase string, res pki.Result, what string) {
	e := progress.Event{Phase: phase, Action: string(res.Action), Path: res.CertPath, Seconds: progress.Seconds(res.Duration)}
	if res.Name == pki.ServiceAccount {
		what = "key and public key"
	}
	switch res.Action {
	case "generated":
		e.Message = fmt.Sprintf("Generated %q %s", res.Name, what)
		if n.DryRun {
			e.Message = fmt.Sprintf("Would write %q %s to %q", res.Name, what, res.CertPath)
		}
	case "external":
		e.Message = fmt.Sprintf("Using externally managed %q %s", res.Name, what)
	default:
		e.Message = fmt.Sprintf("Using existing %q %s", res.Name, what)
	}
	if res.Cert != nil && (n.DryRun || res.Action == "generated") && len(res.Cert.DNSNames)+len(res.Cert.IPAddresses) > 0 {
		e.Message += fmt.Sprintf("; serving cert signed for DNS names %v and IPs %v", res.Cert.DNSNames, res.Cert.IPAddresses)
	}
	if n.DryRun && res.Cert != nil {
		e.Detail = pki.DescribeCert(res.Cert)
	}
	n.Out.Emit(e)
}

func kubeconfigPhase() Phase[*InitData] {
	p := Phase[*InitData]{Name: "kubeconfig", Short: "Generate all kubeconfig files necessary to establish the control plane and the admin kubeconfig file",
		Run: func(_ context.Context, d *InitData) error {
			d.Out.Printf("kubeconfig", "Using kubeconfig folder %q", d.Cfg.Paths.KubernetesDir)
			return nil
		}}
	for _, k := range pki.Kubeconfigs {
		p.Phases = append(p.Phases, Phase[*InitData]{Name: k.Name, Short: k.LongName,
			Run: func(_ context.Context, d *InitData) error {
				res, err := pki.EnsureKubeconfig(d.PKISpec(), k.Name)
				if err != nil {
					return err
				}
				res.Name = k.FileName
				reportPKI(d.Node, "kubeconfig", res, "kubeconfig file")
				return nil
			}})
	}
	return p
}

// etcdRow is etcd's row of the control-plane table: the phase (and, at
// init, the sub-phase) that writes its manifest.
var etcdRow, _ = manifests.Lookup(manifests.Etcd)

func runEtcdLocal(ctx context.Context, d *InitData) error {
	if err := d.waitImages(ctx, etcdRow.Phase); err != nil {
		return err
	}
	if err := d.MkdirAll(etcdRow.Phase, d.Cfg.Cluster.Etcd.Local.DataDir, 0o700); err != nil {
		return err
	}
	return writeNodeManifest(d.Node, etcdRow.Phase, manifests.Etcd)
}

func controlPlanePhase() Phase[*InitData] {
	p := Phase[*InitData]{Name: manifests.PhaseControlPlane, Short: "Generate all static Pod manifests necessary to establish the control plane"}
	for _, c := range manifests.ControlPlane {
		if c.Phase != manifests.PhaseControlPlane {
			continue
		}
		sub := Phase[*InitData]{Name: c.SubPhase, Short: "Generate the " + c.Name + " static Pod manifest",
			Run: func(ctx context.Context, d *InitData) error {
				if err := d.waitImages(ctx, manifests.PhaseControlPlane); err != nil {
					return err
				}
				return writeNodeManifest(d.Node, manifests.PhaseControlPlane, c.Name)
			}}
		if c.Name == manifests.KubeAPIServer {
			sub.Short += " and its configuration files"
			sub.Run = runAPIServerManifest
		}
		p.Phases = append(p.Phases, sub)
	}
	return p
}

func runAPIServerManifest(ctx context.Context, d *InitData) error {
	if err := d.waitImages(ctx, manifests.PhaseControlPlane); err != nil {
		return err
	}
	if err := writeAPIServerConfig(d.Node, manifests.PhaseControlPlane); err != nil {
		return err
	}
	return writeNodeManifest(d.Node, manifests.PhaseControlPlane, manifests.KubeAPIServer)
}

// writeAPIServerConfig writes the API server's configuration files: the
// secrets encryption config (kept when present), authentication config,
// audit policy and audit log directory.
func writeAPIServerConfig(n *Node, phase string) error {
	p := n.Cfg.Paths
	if err := ensureEncryptionConfig(n, phase); err != nil {
		return err
	}
	if err := n.WriteFile(phase, "API server authentication configuration", p.AuthnConfigFile(), manifests.AuthenticationConfig(), 0o600, ShowContent); err != nil {
		return err
	}
	if err := n.WriteFile(phase, "API server audit policy", p.AuditPolicyFile(), manifests.AuditPolicy(), 0o600, ShowContent); err != nil {
		return err
	}
	if err := n.WriteFile(phase, "API server admission configuration (Pod Security)", p.AdmissionConfigFile(), manifests.AdmissionConfig(), 0o600, ShowContent); err != nil {
		return err
	}
	return n.MkdirAll(phase, p.AuditLogDir(), 0o700)
}

// writeNodeManifest writes one control-plane component's configuration
// files, then renders and writes its static pod manifest.
func writeNodeManifest(n *Node, phase, component string) error {
	if err := writeComponentFiles(n, phase, component); err != nil {
		return err
	}
	pod, err := n.renderStaticPod(component)
	if err != nil {
		return err
	}
	data, err := manifests.MarshalPod(pod)
	if err != nil {
		return fmt.Errorf("render %s manifest: %w", component, err)
	}
	return n.WriteFile(phase, "static Pod manifest for "+component, n.Cfg.Paths.Manifest(component), data, 0o600, ShowContent)
}

// writeComponentFiles writes the configuration files of a component's
// row in the control-plane table (the scheduler's --config).
func writeComponentFiles(n *Node, phase, component string) error {
	files, err := componentFiles(n.Cfg, component)
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := n.WriteFile(phase, f.What, f.Path, f.Data, 0o600, ShowContent); err != nil {
			return err
		}
	}
	return nil
}

// componentFiles renders the configuration files of a component's row in
// the control-plane table.
func componentFiles(cfg *config.Config, component string) ([]manifests.File, error) {
	row, ok := manifests.Lookup(component)
	if !ok {
		return nil, fmt.Errorf("no control-plane component %q", component)
	}
	return row.Files(cfg)
}

// ensureEncryptionConfig writes the secrets-at-rest encryption config with
// a new random secretbox key, once (`kubeforge secrets rotate-key` rotates it): an existing file is kept (its key encrypts data
// already in etcd).
func ensureEncryptionConfig(n *Node, phase string) error {
	logical := n.Cfg.Paths.EncryptionConfigFile()
	if fsutil.Exists(n.Paths.Host(logical)) {
		n.Out.Printf(phase, "Using existing secrets encryption configuration %q", logical)
		return nil
	}
	key, err := encryption.NewKey(time.Now())
	if err != nil {
		return err
	}
	return n.WriteFile(phase, "secrets encryption configuration ("+encryption.Secretbox+" key "+key.Name+")", logical,
		encryption.Render(encryption.Initial(key)), 0o600, HideContent)
}

func runKubeletConfig(_ context.Context, d *InitData) error {
	// The static pod directory exists before the kubelet starts: the
	// kubelet watches it for the manifests only then (else it looks again
	// every second).
	if err := d.MkdirAll("kubelet-config", d.Cfg.Paths.ManifestsDir, fsutil.DirMode); err != nil {
		return err
	}
	// kubelet.conf points at the rotating certificate before config.yaml
	// exists: a node service already running starts the kubelet as soon as
	// config.yaml appears, and a kubelet that loaded the embedded
	// certificate would not rotate it until restarted. (kubelet-start does
	// it again, a no-op then, for a run that skipped this phase; this
	// phase run on its own before the kubeconfig phase leaves it to it.)
	if err := useRotatingKubeletCert(d.Node, "kubelet-config"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return writeKubeletFiles(d.Node, "kubelet-config", d.Cfg.ThisNode.IP, false)
}

// writeKubeletFiles writes the kubelet's config.yaml and flags.
func writeKubeletFiles(n *Node, phase, nodeIP string, worker bool) error {
	cfg, err := manifests.KubeletConfig(n.Cfg)
	if err != nil {
		return fmt.Errorf("render the kubelet configuration: %w", err)
	}
	p := n.Cfg.Paths
	if err := writeNodeInfo(n, phase, worker); err != nil {
		return err
	}
	kf, err := config.MarshalKubeforge(n.Cfg.Kubeforge)
	if err != nil {
		return fmt.Errorf("render the kubeforge settings: %w", err)
	}
	if err := n.WriteFile(phase, "kubeforge settings", p.KubeforgeConfigFile(), kf, 0o600, ShowContent); err != nil {
		return err
	}
	if err := n.WriteFile(phase, "kubelet flags", p.KubeletFlagsFile(), manifests.KubeletFlags(n.Cfg, nodeIP), 0o600, ShowContent); err != nil {
		return err
	}
	// The configuration last: the node service starts the kubelet once it appears.
	return n.WriteFile(phase, "kubelet configuration", p.KubeletConfigFile(), cfg, 0o600, ShowContent)
}
