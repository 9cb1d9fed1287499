package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/progress"
	"github.com/kubeforge/kubeforge/join/discovery"
	"github.com/kubeforge/kubeforge/phases"
)

// joinOptions are the flags of `kubeforge join` (kubeadm's names).
type joinOptions struct {
	configFile            string
	token                 string
	discoveryToken        string
	tlsBootstrapToken     string
	caCertHashes          []string
	unsafeSkipCA          bool
	discoveryFile         string
	discoveryTimeout      time.Duration
	nodeName              string
	nodeIP                string
	criSocket             string
	controlPlane          bool
	certificateKey        string
	advertiseAddress      string
	bindPort              int32
	ignorePreflightErrors []string
	skipPhases            []string
	dryRun                bool
	output                string
	airGapped             bool
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
	fs.StringVar(&o.configFile, "config", "", "path to a kubeadm-style JoinConfiguration (kubeadm.k8s.io/v1beta4), optionally with a KubeletConfiguration")
	fs.StringVar(&o.token, "token", "", "the bootstrap token, for both discovery and the kubelet's TLS bootstrap")
	fs.StringVar(&o.discoveryToken, "discovery-token", "", "the bootstrap token for discovery only")
	fs.StringVar(&o.tlsBootstrapToken, "tls-bootstrap-token", "", "the bootstrap token for the kubelet's TLS bootstrap only")
	fs.StringSliceVar(&o.caCertHashes, "discovery-token-ca-cert-hash", nil, "pin the cluster CA: sha256:<hex SHA-256 of its public key> (what init printed)")
	fs.BoolVar(&o.unsafeSkipCA, "discovery-token-unsafe-skip-ca-verification", false, "trust the CA cluster-info names without a pin (unsafe)")
	fs.StringVar(&o.discoveryFile, "discovery-file", "", "a kubeconfig naming the cluster and its CA, instead of token discovery")
	fs.DurationVar(&o.discoveryTimeout, "discovery-timeout", 0, "how long to try to reach and authenticate the cluster (default 5m)")
	fs.StringVar(&o.nodeName, "node-name", "", "this node's name (default: the hostname)")
	fs.StringVar(&o.nodeIP, "node-ip", "", "this node's address (default: its address on the route to the API server)")
	fs.StringVar(&o.criSocket, "cri-socket", "", "use an existing container runtime at this socket instead of the bundled containerd")
	fs.BoolVar(&o.controlPlane, "control-plane", false, "join as a control-plane node: with --certificate-key, or with the cluster's shared certificates and keys copied by hand into the certificate dir (checked before anything is written)")
	fs.StringVar(&o.certificateKey, "certificate-key", "", "the key that decrypts the certificates `init --upload-certs` shared; without it a control-plane join uses the shared certificates already on this node")
	fs.StringVar(&o.advertiseAddress, "apiserver-advertise-address", "", "this control-plane node's API server address (default: --node-ip)")
	fs.Int32Var(&o.bindPort, "apiserver-bind-port", config.DefaultBindPort, "this control-plane node's API server port")
	fs.StringSliceVar(&o.ignorePreflightErrors, "ignore-preflight-errors", nil, "pre-flight checks whose errors become warnings ('all' for every one)")
	fs.StringSliceVar(&o.skipPhases, "skip-phases", nil, "phases to skip")
	fs.BoolVar(&o.dryRun, "dry-run", false, "change nothing; print what would be done")
	fs.BoolVar(&o.airGapped, "air-gapped", false, airGappedUsage)
	fs.StringVarP(&o.output, "output", "o", "text", "progress output: text or json")
}

func (o *joinOptions) newData(fs *pflag.FlagSet, args []string, out io.Writer) (*phases.JoinData, error) {
	if o.output != "text" && o.output != "json" {
		return nil, fmt.Errorf("--output %q: must be text or json", o.output)
	}
	cfg := config.New()
	if o.configFile != "" {
		var err error
		if cfg, err = config.Load(o.configFile); err != nil {
			return nil, err
		}
	}
	if fs.Changed("air-gapped") {
		cfg.Kubeforge.AirGapped = o.airGapped
		cfg.SetFrom("KubeforgeConfiguration.airGapped", "--air-gapped")
	}
	j := &cfg.Join
	bt := j.Discovery.BootstrapToken
	if bt == nil && j.Discovery.File == nil {
		bt = &v1beta4.BootstrapTokenDiscovery{}
		j.Discovery.BootstrapToken = bt
	}
	if len(args) > 0 {
		if bt == nil {
			bt = &v1beta4.BootstrapTokenDiscovery{}
			j.Discovery.BootstrapToken = bt
		}
		bt.APIServerEndpoint = args[0]
	}
	if o.token != "" {
		if bt != nil {
			bt.Token = o.token
		}
		j.Discovery.TLSBootstrapToken = o.token
	}
	if o.discoveryToken != "" && bt != nil {
		bt.Token = o.discoveryToken
	}
	if o.tlsBootstrapToken != "" {
		j.Discovery.TLSBootstrapToken = o.tlsBootstrapToken
	}
	if j.Discovery.TLSBootstrapToken == "" && bt != nil {
		j.Discovery.TLSBootstrapToken = bt.Token
	}
	if bt != nil {
		bt.CACertHashes = append(bt.CACertHashes, o.caCertHashes...)
		bt.UnsafeSkipCAVerification = bt.UnsafeSkipCAVerification || o.unsafeSkipCA
	}
	if o.discoveryFile != "" {
		j.Discovery.File = &v1beta4.FileDiscovery{KubeConfigPath: o.discoveryFile}
		j.Discovery.BootstrapToken = nil
	}
	if o.discoveryTimeout > 0 {
		if j.Timeouts == nil {
			j.Timeouts = &v1beta4.Timeouts{}
		}
		j.Timeouts.Discovery = &metav1.Duration{Duration: o.discoveryTimeout}
	}
	if fs.Changed("node-name") {
		j.NodeRegistration.Name = o.nodeName
	}
	if fs.Changed("cri-socket") {
		j.NodeRegistration.CRISocket = o.criSocket
	}
	if o.controlPlane || fs.Changed("certificate-key") || fs.Changed("apiserver-advertise-address") {
		if j.ControlPlane == nil {
			j.ControlPlane = &v1beta4.JoinControlPlane{}
		}
		if fs.Changed("certificate-key") {
			j.ControlPlane.CertificateKey = o.certificateKey
		}
		if fs.Changed("apiserver-advertise-address") {
			j.ControlPlane.LocalAPIEndpoint.AdvertiseAddress = o.advertiseAddress
		}
		if fs.Changed("apiserver-bind-port") {
			j.ControlPlane.LocalAPIEndpoint.BindPort = o.bindPort
		}
	}
	cfg.Init.NodeRegistration.CRISocket = j.NodeRegistration.CRISocket

	dopts := discovery.Options{Timeout: config.Timeout(cfg.JoinTimeouts().Discovery, 5*time.Minute)}
	switch {
	case j.Discovery.File != nil:
		b, err := os.ReadFile(j.Discovery.File.KubeConfigPath)
		if err != nil {
			return nil, fmt.Errorf("--discovery-file: %w", err)
		}
		dopts.File, dopts.FileName = b, j.Discovery.File.KubeConfigPath
	case bt != nil:
		dopts.Endpoint = bt.APIServerEndpoint
		dopts.Token = bt.Token
		dopts.CACertHashes = bt.CACertHashes
		dopts.UnsafeSkipCAVerification = bt.UnsafeSkipCAVerification
		if dopts.Endpoint == "" {
			return nil, errors.New("no API server endpoint: kubeforge join HOST:PORT --token … (or discovery.bootstrapToken.apiServerEndpoint in --config)")
		}
		if dopts.Token == "" {
			return nil, errors.New("no bootstrap token: pass --token (kubeforge token create --print-join-command on a control-plane node prints the whole command)")
		}
	}
	if j.Discovery.TLSBootstrapToken == "" {
		return nil, errors.New("no TLS bootstrap token: pass --token or --tls-bootstrap-token")
	}
	nodeIP := o.nodeIP
	if nodeIP == "" && j.ControlPlane != nil && j.ControlPlane.LocalAPIEndpoint.AdvertiseAddress != "" {
		nodeIP = j.ControlPlane.LocalAPIEndpoint.AdvertiseAddress
	}
	if nodeIP == "" {
		target := dopts.Endpoint
		if len(dopts.File) > 0 {
			if kc, err := clientcmd.Load(dopts.File); err == nil {
				for _, c := range kc.Clusters {
					target = c.Server
				}
			}
		}
		ip, err := phases.SourceAddress(target)
		if err != nil {
			return nil, fmt.Errorf("cannot tell this node's address on the way to %s (%v): pass --node-ip", target, err)
		}
		nodeIP = ip
	}
	host := config.HostDefaults()
	if err := cfg.CompleteJoin(host, nodeIP); err != nil {
		return nil, err
	}
	rep := progress.New(out, o.output == "json")
	n, err := phases.NewNode(cfg, rep, o.dryRun || j.DryRun, host)
	if err != nil {
		return nil, err
	}
	return &phases.JoinData{Node: n, Discovery: dopts, TLSBootstrapToken: j.Discovery.TLSBootstrapToken,
		IgnorePreflightErrors: o.ignorePreflightErrors, NodeIP: nodeIP}, nil
}
