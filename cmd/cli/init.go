package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/progress"
	"github.com/kubeforge/kubeforge/phases"
)

// initOptions are the flags of `kubeforge init` (kubeadm's names): those
// that set configuration are config.InitFlags, merged by config.LoadInit.
type initOptions struct {
	config.InitFlags
	ignorePreflightErrors []string
	skipPhases            []string
	dryRun                bool
	output                string
	uploadCerts           bool
	skipTokenPrint        bool
}

func newInitCmd(_ io.Reader, out, _ io.Writer) *cobra.Command {
	o := &initOptions{}
	wf := phases.InitWorkflow()
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Turn this host into a Kubernetes control-plane node",
		Long:  "Run this command to set up a Kubernetes control-plane node.\n\n" + wf.Describe(),
		Args:  cobra.NoArgs,
	}
	fs := cmd.Flags()
	o.addFlags(fs)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		d, err := o.newData(cmd, out, "")
		if err != nil {
			return err
		}
		skip, err := wf.ParseSkip(append(o.skipPhases, d.Cfg.Init.SkipPhases...))
		if err != nil {
			d.Close()
			return err
		}
		d.EarlyNodeStart = !skip["kubelet-start"] && !d.DryRun
		wf.OnPhaseDone = phaseTimer[*phases.InitData](func(d *phases.InitData) *progress.Reporter { return d.Out })
		start := time.Now()
		runErr := wf.Run(cmd.Context(), d, skip)
		return finishInit(d, runErr, start)
	}
	phaseCmd := wf.PhaseCommand(phases.BindOptions[*phases.InitData]{
		Flags: fs,
		Common: []string{"config", "dry-run", "output", "root-dir", "cri-socket", "advertise-address", "apiserver-bind-port",
			"control-plane-endpoint", "node-name", "pod-network-cidr", "service-cidr", "service-dns-domain", "cert-dir",
			"apiserver-cert-extra-sans"},
		NewData: func(cmd *cobra.Command, phase string) (*phases.InitData, error) {
			return o.newData(cmd, out, phase)
		},
		Finish: func(d *phases.InitData, err error) error { return finishInit(d, err, time.Time{}) },
	})
	cmd.AddCommand(phaseCmd)
	return cmd
}

func (o *initOptions) addFlags(fs *pflag.FlagSet) {
	f := &o.InitFlags
	fs.StringVar(&f.ConfigFile, "config", "", "path to a kubeadm-style config file (kubeadm.k8s.io/v1beta4 InitConfiguration, ClusterConfiguration, KubeletConfiguration, KubeProxyConfiguration)")
	fs.StringVar(&f.AdvertiseAddress, "advertise-address", "", "the IP address the API server advertises; by default the first global address of an interface that is up")
	fs.Int32Var(&f.BindPort, "apiserver-bind-port", config.DefaultBindPort, "port the API server binds to")
	fs.StringVar(&f.ControlPlaneEndpoint, "control-plane-endpoint", "", "a stable IP or DNS name (with optional port) for the control plane, shared by all control-plane nodes")
	fs.StringVar(&f.NodeName, "node-name", "", "the node's name (default: the hostname)")
	fs.StringVar(&f.PodNetworkCIDR, "pod-network-cidr", "", "the pod network's CIDR (default "+config.DefaultPodSubnet+"); each node gets a /24 of it")
	fs.StringVar(&f.ServiceCIDR, "service-cidr", "", "the Services' virtual IP range (default "+config.DefaultServiceSubnet+")")
	fs.StringVar(&f.ServiceDNSDomain, "service-dns-domain", "", "the cluster's DNS domain (default "+config.DefaultDNSDomain+")")
	fs.StringSliceVar(&f.CertSANs, "apiserver-cert-extra-sans", nil, "extra Subject Alternative Names (IPs or DNS names) for the API server's certificate")
	fs.StringVar(&f.CertDir, "cert-dir", "", "where certificates are stored (default /etc/kubernetes/pki)")
	fs.StringVar(&f.CRISocket, "cri-socket", "", "use an existing container runtime at this socket instead of the bundled containerd")
	fs.StringSliceVar(&o.ignorePreflightErrors, "ignore-preflight-errors", nil, "pre-flight checks whose errors become warnings, e.g. 'IsPrivilegedUser,Swap'; 'all' ignores every check")
	fs.StringSliceVar(&o.skipPhases, "skip-phases", nil, "phases to skip, e.g. 'preflight,addon/kube-proxy'")
	fs.BoolVar(&o.dryRun, "dry-run", false, "change nothing; print what would be done and the files that would be written")
	fs.StringVarP(&o.output, "output", "o", "text", "progress output: text or json (one event per line)")
	fs.BoolVar(&o.uploadCerts, "upload-certs", false, "upload the control-plane certificates to the kubeadm-certs Secret (for joining control-plane nodes)")
	fs.StringVar(&f.CertificateKey, "certificate-key", "", "key to encrypt the uploaded certificates with (64 hex characters; generated when empty)")
	fs.BoolVar(&f.SingleNode, "single-node", false, "do not taint the control-plane node, so it runs workloads too")
	fs.BoolVar(&o.skipTokenPrint, "skip-token-print", false, "do not print the bootstrap token")
	fs.BoolVar(&f.AirGapped, "air-gapped", false, airGappedUsage)
	fs.StringVar(&f.ControlPlaneRuntime, "control-plane-runtime", "", controlPlaneRuntimeUsage)
	fs.StringVar(&f.RootDir, "root-dir", "", "do all file I/O under this directory instead of / (for tests)")
	_ = fs.MarkHidden("root-dir")
}

func (o *initOptions) newData(cmd *cobra.Command, out io.Writer, phase string) (*phases.InitData, error) {
	if o.output != "text" && o.output != "json" {
		return nil, fmt.Errorf("--output %q: must be text or json", o.output)
	}
	host := config.HostDefaults()
	cfg, err := config.LoadInit(o.InitFlags, cmd.Flags().Changed, host)
	if err != nil {
		return nil, err
	}
	rep := progress.New(out, o.output == "json")
	for _, w := range cfg.Warnings {
		rep.Warnf("config", "%s", w)
	}
	node, err := phases.NewNode(cfg, rep, o.dryRun || cfg.Init.DryRun, host)
	if err != nil {
		return nil, err
	}
	d := &phases.InitData{Node: node, IgnorePreflightErrors: o.ignorePreflightErrors,
		UploadCerts: o.uploadCerts, CertificateKey: cfg.Init.CertificateKey, SkipTokenPrint: o.skipTokenPrint}
	if phase == "" || strings.HasPrefix(phase, "certs") || strings.HasPrefix(phase, "kubeconfig") {
		d.StartKeyPool()
	}
	return d, nil
}

// finishInit releases the run's resources and turns a phase error into the
// message a user needs: which phase failed, why, and that a rerun continues.
func finishInit(d *phases.InitData, runErr error, start time.Time) error {
	defer d.Close()
	if runErr != nil {
		var pe *phases.PhaseError
		if errors.As(runErr, &pe) {
			if d.Out.JSON() {
				d.Out.Emit(progress.Event{Phase: pe.Phase, Level: progress.Error, Action: "failed", Message: pe.Err.Error()})
			}
			if pe.Phase == "preflight" {
				return fmt.Errorf("init failed in phase %q: %w", pe.Phase, pe.Err)
			}
			return fmt.Errorf("init failed in phase %q: %w\nFix the cause and run the same command again: it continues where this run stopped, reusing what is done", pe.Phase, pe.Err)
		}
		return runErr
	}
	if !start.IsZero() {
		if err := d.MarkDone(); err != nil {
			return err
		}
		d.Out.Emit(progress.Event{Phase: "init", Action: "done", Message: "kubeforge init finished", Seconds: progress.Seconds(time.Since(start))})
	}
	return nil
}

// phaseTimer reports each phase's duration as a JSON event (text output
// already has a duration on every action line).
func phaseTimer[T any](rep func(T) *progress.Reporter) func(d T, name string, took time.Duration) {
	return func(d T, name string, took time.Duration) {
		r := rep(d)
		if r.JSON() {
			r.Emit(progress.Event{Phase: name, Action: "phase-done", Message: "phase " + name + " done", Seconds: progress.Seconds(took)})
		}
	}
}

// controlPlaneRuntimeUsage is --control-plane-runtime's help.
var controlPlaneRuntimeUsage = "how this node runs its control plane: " + config.ControlPlaneStaticPods +
	" (the kubelet runs static pods, as kubeadm; the default) or " + config.ControlPlaneProcesses +
	" (the node service runs the same manifests as its own processes: a faster start, no mirror pods)"

// airGappedUsage is --air-gapped's help, the same for init and join.
const airGappedUsage = "pull no image from any registry (KubeforgeConfiguration.airGapped): workloads' images come from `kubeforge images import` or " +
	"/var/lib/kubeforge/agent/images; by default they are pulled as configured in /etc/kubeforge/registries.yaml"
