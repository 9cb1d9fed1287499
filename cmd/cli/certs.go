package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubeforge/kubeforge/components/node/certrenew"
	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/progress"
	"github.com/kubeforge/kubeforge/phases"
	"github.com/kubeforge/kubeforge/pki"
)

// certsOptions are the flags shared by the certs subcommands.
type certsOptions struct {
	certDir    string
	configFile string
	kubeconfig string
	output     string
	rootDir    string
}

func (o *certsOptions) paths() config.Paths {
	p := config.DefaultPaths()
	if o.certDir != "" {
		p.CertDir = o.certDir
	}
	if o.rootDir != "" {
		p = p.WithRoot(o.rootDir)
	}
	return p
}

func newCertsCmd(_ io.Reader, out, _ io.Writer) *cobra.Command {
	o := &certsOptions{}
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Inspect and renew the cluster's certificates",
		Args:  cobra.NoArgs,
	}
	cmd.PersistentFlags().StringVar(&o.certDir, "cert-dir", "", "where certificates are stored (default /etc/kubernetes/pki)")
	cmd.PersistentFlags().StringVar(&o.rootDir, "root-dir", "", "do all file I/O under this directory (for tests)")
	_ = cmd.PersistentFlags().MarkHidden("root-dir")

	check := &cobra.Command{
		Use:   "check-expiration",
		Short: "Show when each certificate and kubeconfig expires",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			now := time.Now()
			rows, err := pki.CheckExpiration(o.paths(), now)
			if err != nil {
				return err
			}
			auto, share, err := automaticRenewal(o.paths())
			if err != nil {
				return err
			}
			pki.SetRenewal(rows, auto.Enabled, share)
			switch o.output {
			case "json":
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				rep := pki.NewExpirationReport(rows)
				rep.AutomaticRenewal = &auto
				return enc.Encode(rep)
			case "", "text":
				if err := pki.FormatExpirationTable(out, rows); err != nil {
					return err
				}
				return pki.FormatRenewal(out, rows, auto, now)
			}
			return fmt.Errorf("--output %q: must be text or json", o.output)
		},
	}
	check.Flags().StringVarP(&o.output, "output", "o", "text", "text or json")
	cmd.AddCommand(check)

	renew := &cobra.Command{
		Use:   "renew NAME|all",
		Short: "Renew a certificate or kubeconfig with the same subject and SANs",
		Long: "Renew leaf certificates and kubeconfig client certificates, signed by their CA, with the\n" +
			"same subject and SANs. Names: all, " + strings.Join(pki.RenewNames(), ", ") + ".\n" +
			"Restart the control-plane components afterwards (they read certificates at start).",
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return o.renew(out, args[0])
		},
	}
	renew.Flags().StringVar(&o.configFile, "config", "", "config file with certificateValidityPeriod / encryptionAlgorithm (default: the cluster's ClusterConfiguration)")
	renew.Flags().StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig to read the cluster's ClusterConfiguration with (default /etc/kubernetes/admin.conf)")
	cmd.AddCommand(renew)

	cmd.AddCommand(newGenerateCSRCmd(o, out))

	cmd.AddCommand(&cobra.Command{
		Use:   "certificate-key",
		Short: "Generate a key for `init --upload-certs --certificate-key`",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			k := make([]byte, 32)
			if _, err := rand.Read(k); err != nil {
				return err
			}
			fmt.Fprintln(out, hex.EncodeToString(k))
			return nil
		},
	})
	return cmd
}

func (o *certsOptions) renew(out io.Writer, name string) error {
	if name != "all" && !slices.Contains(pki.RenewNames(), name) {
		return fmt.Errorf("unknown certificate %q; choose all or one of: %s", name, strings.Join(pki.RenewNames(), ", "))
	}
	spec := pki.Spec{Paths: o.paths()}
	rep := progress.New(out, false)
	if o.configFile != "" {
		c, err := config.Load(o.configFile)
		if err != nil {
			return err
		}
		if c.Cluster.CertificateValidityPeriod != nil {
			spec.Validity = c.Cluster.CertificateValidityPeriod.Duration
		}
		spec.Algorithm = string(c.Cluster.EncryptionAlgorithm)
	} else {
		// As kubeadm: the cluster's ClusterConfiguration decides; when it
		// cannot be read (or under --root-dir, which never touches a live
		// cluster), each certificate keeps its lifetime.
		spec.KeepLifetime = true
	}
	if o.configFile == "" && o.rootDir == "" {
		kc := o.kubeconfig
		if kc == "" {
			kc = spec.Paths.Kubeconfig("admin.conf")
		}
		validity, alg, err := clusterSettingsFrom(spec.Paths.Host(kc))
		if err != nil {
			rep.Warnf("certs", "Could not read the ClusterConfiguration from the cluster with %s (%v): renewed certificates keep their current lifetime; pass --config to set certificateValidityPeriod", kc, err)
		} else {
			spec.Validity, spec.Algorithm = validity, alg
		}
	}
	var results []pki.Result
	var err error
	if name == "all" {
		results, err = pki.RenewAll(spec)
	} else {
		var r pki.Result
		r, err = pki.Renew(spec, name)
		results = []pki.Result{r}
	}
	for _, r := range results {
		switch r.Action {
		case pki.ActionRenewed:
			rep.Emit(progress.Event{Phase: "certs", Action: string(r.Action), Path: r.CertPath, Seconds: progress.Seconds(r.Duration),
				Message: fmt.Sprintf("Renewed %q, valid until %s", r.Name, r.Cert.NotAfter.UTC().Format(time.RFC3339))})
		case pki.ActionSkipped:
			rep.Warnf("certs", "Skipped %q: %s", r.Name, r.Note)
		}
	}
	if err != nil {
		return err
	}
	rep.Printf("certs", "Done. Restart kube-apiserver, kube-controller-manager, kube-scheduler and etcd to use the new certificates (move their manifests out of %s and back)", spec.Paths.ManifestsDir)
	return nil
}

// automaticRenewal says whether the node service renews this node's
// certificates (its KubeforgeConfiguration, and whether it is a
// control-plane node) and at which share of their lifetime.
func automaticRenewal(p config.Paths) (pki.AutomaticRenewal, float64, error) {
	kf, err := config.LoadKubeforge(p)
	if err != nil {
		return pki.AutomaticRenewal{}, 0, err
	}
	cr := kf.CertificateRenewal
	share, err := cr.Share()
	if err != nil {
		return pki.AutomaticRenewal{}, 0, fmt.Errorf("%s: certificateRenewal.renewAt: %w", p.KubeforgeConfigFile(), err)
	}
	a := pki.AutomaticRenewal{Enabled: cr.On(), RenewAt: cr.RenewAt}
	switch {
	case !cr.On():
		a.Reason = "certificateRenewal.enabled is false in " + p.KubeforgeConfigFile()
	case !certrenew.IsControlPlane(p):
		a.Enabled, a.Reason = false, "not a control-plane node"
	}
	return a, share, nil
}

// clusterSettingsFrom reads the cluster's certificateValidityPeriod and
// encryptionAlgorithm with a kubeconfig.
func clusterSettingsFrom(kubeconfig string) (time.Duration, string, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return 0, "", err
	}
	cfg.Timeout = 10 * time.Second
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return 0, "", err
	}
	return certrenew.ReadClusterSettings(context.Background(), c)
}

// generateCSROptions are the flags of `kubeforge certs generate-csr` (kubeadm's).
type generateCSROptions struct {
	configFile    string
	kubeconfigDir string
}

func newGenerateCSRCmd(certs *certsOptions, out io.Writer) *cobra.Command {
	o := &generateCSROptions{}
	cmd := &cobra.Command{
		Use:   "generate-csr",
		Short: "Generate keys and certificate signing requests (external CA mode)",
		Long: "Generate a private key and a certificate signing request (CSR) for every certificate the control plane\n" +
			"needs (.key and .csr in --cert-dir), and for every kubeconfig file a kubeconfig with its private key in\n" +
			"users > user > client-key-data and a .csr next to it (as `kubeadm certs generate-csr`). Subjects, SANs and\n" +
			"usages are those `kubeforge init` would issue for --config. Have your CA sign each request; save the\n" +
			"certificates next to the keys as .crt, put each kubeconfig's certificate (base64 of the PEM) in\n" +
			"client-certificate-data and the CA certificate in certificate-authority-data (filled already when ca.crt\n" +
			"was in --cert-dir), and place ca.crt, front-proxy-ca.crt and etcd/ca.crt without their keys: `kubeforge\n" +
			"init` then runs in external CA mode. Existing keys, CSRs and kubeconfigs are never overwritten.",
		Example: "  kubeforge certs generate-csr --config init.yaml --kubeconfig-dir /tmp/etc-k8s --cert-dir /tmp/etc-k8s/pki",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd, certs, out)
		},
	}
	cmd.Flags().StringVar(&o.configFile, "config", "", "kubeadm-style config file (InitConfiguration, ClusterConfiguration) with the names and addresses the certificates carry; default: this host's defaults")
	cmd.Flags().StringVar(&o.kubeconfigDir, "kubeconfig-dir", "", "where to write the kubeconfig files (default /etc/kubernetes)")
	return cmd
}

func (o *generateCSROptions) run(cmd *cobra.Command, certs *certsOptions, out io.Writer) error {
	cfg := config.New()
	if o.configFile != "" {
		var err error
		if cfg, err = config.Load(o.configFile); err != nil {
			return err
		}
	}
	host := config.HostDefaults()
	if err := cfg.Complete(host); err != nil {
		return err
	}
	// --cert-dir and --kubeconfig-dir win over the config file, as in kubeadm.
	if certs.certDir != "" {
		cfg.Paths.CertDir = certs.certDir
	}
	if o.kubeconfigDir != "" {
		cfg.Paths.KubernetesDir = o.kubeconfigDir
	}
	if certs.rootDir != "" {
		cfg.Paths = cfg.Paths.WithRoot(certs.rootDir)
	}
	rep := progress.New(out, false)
	node, err := phases.NewNode(cfg, rep, false, host)
	if err != nil {
		return err
	}
	csrs, err := pki.GenerateCSRs(node.PKISpec())
	if err != nil {
		return err
	}
	for _, c := range csrs {
		what, where := "key and CSR", c.KeyPath+", "+c.CSRPath
		if c.Kubeconfig != "" {
			what, where = "kubeconfig with its key, and CSR", c.Kubeconfig+", "+c.CSRPath
		}
		rep.Emit(progress.Event{Phase: "certs", Action: "generated", Path: c.CSRPath,
			Message: fmt.Sprintf("Generated %q %s: %s (%s)", c.Name, what, where, pki.DescribeRequest(c.Request))})
	}
	rep.Printf("certs", "Next: sign each .csr with your CA (CN, O and SANs as requested; usages as requested); save the certificates as .crt next to the keys in %s; "+
		"in each kubeconfig in %s set client-certificate-data to its certificate and certificate-authority-data to the CA certificate; "+
		"place ca.crt, front-proxy-ca.crt and etcd/ca.crt (without their keys) in %s; then run `kubeforge init`",
		cfg.Paths.CertDir, cfg.Paths.KubernetesDir, cfg.Paths.CertDir)
	return nil
}
