package cli

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/progress"
	"github.com/kubeforge/kubeforge/pki"
)

// certsOptions are the flags shared by the certs subcommands.
type certsOptions struct {
	certDir    string
	configFile string
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
			rows, err := pki.CheckExpiration(o.paths(), time.Now())
			if err != nil {
				return err
			}
			switch o.output {
			case "json":
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(pki.NewExpirationReport(rows))
			case "", "text":
				return pki.FormatExpirationTable(out, rows)
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
	renew.Flags().StringVar(&o.configFile, "config", "", "config file with certificateValidityPeriod / encryptionAlgorithm")
	cmd.AddCommand(renew)

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
	if o.configFile != "" {
		c, err := config.Load(o.configFile)
		if err != nil {
			return err
		}
		if c.Cluster.CertificateValidityPeriod != nil {
			spec.Validity = c.Cluster.CertificateValidityPeriod.Duration
		}
		spec.Algorithm = string(c.Cluster.EncryptionAlgorithm)
	}
	rep := progress.New(out, false)
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
