package cli

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/progress"
	"github.com/kubeforge/kubeforge/phases"
)

// joinOptions are the flags of `kubeforge join` (kubeadm's names): those
// that set configuration are config.JoinFlags, merged by config.LoadJoin.
type joinOptions struct {
	config.JoinFlags
	ignorePreflightErrors []string
	skipPhases            []string
	dryRun                bool
	output                string
}

func newJoinCmd(_ io.Reader, out, _ io.Writer) *cobra.Command {
	o := &joinOptions{}
	wf := phases.JoinWorkflow()
	cmd := &cobra.Command{
		Use:   "join [API_SERVER_ENDPOINT]",
		Short: "Join this host to a cluster as a worker or control-plane node",
		Long: `Join this host to an existing cluster.

  kubeforge join 10.0.0.1:6443 --token abcdef.0123456789abcdef \
      --discovery-token-ca-cert-hash sha256:<hash>            # a worker
  ... --control-plane --certificate-key <key>                  # a control-plane node
  ... --control-plane      # one whose shared certificates were copied to /etc/kubernetes/pki by hand

` + wf.Describe(),
		Args: cobra.MaximumNArgs(1),
	}
	fs := cmd.Flags()
	o.addFlags(fs)
	newData := func(cmd *cobra.Command, args []string) (*phases.JoinData, error) {
		return o.newData(cmd.Flags(), args, out)
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		d, err := newData(cmd, args)
		if err != nil {
			return err
		}
		defer d.Close()
		skip, err := wf.ParseSkip(append(o.skipPhases, d.Cfg.Join.SkipPhases...))
		if err != nil {
			return err
		}
		d.EarlyNodeStart = !skip["kubelet-start"] && !d.DryRun
		wf.OnPhaseDone = phaseTimer[*phases.JoinData](func(d *phases.JoinData) *progress.Reporter { return d.Out })
		start := time.Now()
		if err := wf.Run(cmd.Context(), d, skip); err != nil {
			var pe *phases.PhaseError
			if errors.As(err, &pe) {
				return fmt.Errorf("join failed in phase %q: %w\nFix the cause and run the same command again (or `kubeforge reset` to start over)", pe.Phase, pe.Err)
			}
			return err
		}
		if err := d.MarkDone(); err != nil {
			return err
		}
		what := "worker"
		if d.Cfg.IsControlPlaneJoin() {
			what = "control-plane"
		}
		d.Out.Emit(progress.Event{Phase: "join", Action: "done", Seconds: progress.Seconds(time.Since(start)),
			Message: fmt.Sprintf("This node joined the cluster as a %s node: `kubectl get nodes` on a control-plane node shows %s", what, d.Cfg.NodeName())})
		return nil
	}
	cmd.AddCommand(wf.PhaseCommand(phases.BindOptions[*phases.JoinData]{
		Flags: fs,
		Common: []string{"config", "token", "discovery-token", "tls-bootstrap-token", "discovery-token-ca-cert-hash",
			"discovery-token-unsafe-skip-ca-verification", "discovery-file", "discovery-timeout", "node-name", "node-ip",
			"cri-socket", "control-plane", "certificate-key", "apiserver-advertise-address", "apiserver-bind-port", "dry-run", "output"},
		NewData: func(cmd *cobra.Command, _ string) (*phases.JoinData, error) { return newData(cmd, cmd.Flags().Args()) },
		Finish:  func(d *phases.JoinData, err error) error { d.Close(); return err },
	}))
	return cmd
}

func (o *joinOptions) addFlags(fs *pflag.FlagSet) {
	f := &o.JoinFlags
	fs.StringVar(&f.ConfigFile, "config", "", "path to a kubeadm-style JoinConfiguration (kubeadm.k8s.io/v1beta4), optionally with a KubeletConfiguration")
	fs.StringVar(&f.Token, "token", "", "the bootstrap token, for both discovery and the kubelet's TLS bootstrap")
	fs.StringVar(&f.DiscoveryToken, "discovery-token", "", "the bootstrap token for discovery only")
	fs.StringVar(&f.TLSBootstrapToken, "tls-bootstrap-token", "", "the bootstrap token for the kubelet's TLS bootstrap only")
	fs.StringSliceVar(&f.CACertHashes, "discovery-token-ca-cert-hash", nil, "pin the cluster CA: sha256:<hex SHA-256 of its public key> (what init printed)")
	fs.BoolVar(&f.UnsafeSkipCAVerification, "discovery-token-unsafe-skip-ca-verification", false, "trust the CA cluster-info names without a pin (unsafe)")
	fs.StringVar(&f.DiscoveryFile, "discovery-file", "", "a kubeconfig naming the cluster and its CA, instead of token discovery")
	fs.DurationVar(&f.DiscoveryTimeout, "discovery-timeout", 0, "how long to try to reach and authenticate the cluster (default 5m)")
	fs.StringVar(&f.NodeName, "node-name", "", "this node's name (default: the hostname)")
	fs.StringVar(&f.NodeIP, "node-ip", "", "this node's address (default: its address on the route to the API server)")
	fs.StringVar(&f.CRISocket, "cri-socket", "", "use an existing container runtime at this socket instead of the bundled containerd")
	fs.BoolVar(&f.ControlPlane, "control-plane", false, "join as a control-plane node: with --certificate-key, or with the cluster's shared certificates and keys copied by hand into the certificate dir (checked before anything is written)")
	fs.StringVar(&f.CertificateKey, "certificate-key", "", "the key that decrypts the certificates `init --upload-certs` shared; without it a control-plane join uses the shared certificates already on this node")
	fs.StringVar(&f.AdvertiseAddress, "apiserver-advertise-address", "", "this control-plane node's API server address (default: --node-ip)")
	fs.Int32Var(&f.BindPort, "apiserver-bind-port", config.DefaultBindPort, "this control-plane node's API server port")
	fs.StringSliceVar(&o.ignorePreflightErrors, "ignore-preflight-errors", nil, "pre-flight checks whose errors become warnings ('all' for every one)")
	fs.StringSliceVar(&o.skipPhases, "skip-phases", nil, "phases to skip")
	fs.BoolVar(&o.dryRun, "dry-run", false, "change nothing; print what would be done")
	fs.BoolVar(&f.AirGapped, "air-gapped", false, airGappedUsage)
	fs.StringVar(&f.ControlPlaneRuntime, "control-plane-runtime", "", controlPlaneRuntimeUsage+" (with --control-plane)")
	fs.StringVarP(&o.output, "output", "o", "text", "progress output: text or json")
}

func (o *joinOptions) newData(fs *pflag.FlagSet, args []string, out io.Writer) (*phases.JoinData, error) {
	if o.output != "text" && o.output != "json" {
		return nil, fmt.Errorf("--output %q: must be text or json", o.output)
	}
	host := config.HostDefaults()
	cfg, err := config.LoadJoin(o.JoinFlags, args, fs.Changed, host)
	if err != nil {
		return nil, err
	}
	return phases.NewJoinData(cfg, progress.New(out, o.output == "json"), o.dryRun, host, o.ignorePreflightErrors)
}
