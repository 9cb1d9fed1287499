package cli

import (
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/pki"
)

// kubeconfigOptions are the flags of `kubeforge kubeconfig user`.
type kubeconfigOptions struct {
	clientName string
	orgs       []string
	validity   time.Duration
	configFile string
	rootDir    string
}

func newKubeconfigCmd(_ io.Reader, out, _ io.Writer) *cobra.Command {
	o := &kubeconfigOptions{}
	cmd := &cobra.Command{
		Use:   "kubeconfig",
		Short: "Make kubeconfig files",
		Args:  cobra.NoArgs,
	}
	user := &cobra.Command{
		Use:   "user",
		Short: "Print a kubeconfig for a user, with a client certificate signed by the cluster CA",
		Long: "Print, on standard output, a kubeconfig for the user --client-name in the groups --org, with a\n" +
			"client certificate signed by the cluster CA, for the API server of this node's admin.conf (as\n" +
			"`kubeadm kubeconfig user`). Run it on a control-plane node. Grant the user or its groups rights\n" +
			"with RBAC bindings.",
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			p := config.DefaultPaths()
			if o.rootDir != "" {
				p = p.WithRoot(o.rootDir)
			}
			spec := pki.Spec{Paths: p}
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
			b, err := pki.UserKubeconfig(spec, o.clientName, o.orgs, o.validity)
			if err != nil {
				return err
			}
			_, err = out.Write(b)
			return err
		},
	}
	user.Flags().StringVar(&o.clientName, "client-name", "", "the user name (the certificate's CN)")
	user.Flags().StringSliceVar(&o.orgs, "org", nil, "a group of the user (the certificate's O); repeat for more")
	user.Flags().DurationVar(&o.validity, "validity-period", 0, "how long the certificate is valid (default: certificateValidityPeriod, 8760h)")
	user.Flags().StringVar(&o.configFile, "config", "", "config file with certificateValidityPeriod / encryptionAlgorithm")
	user.Flags().StringVar(&o.rootDir, "root-dir", "", "do all file I/O under this directory (for tests)")
	_ = user.Flags().MarkHidden("root-dir")
	_ = user.MarkFlagRequired("client-name")
	cmd.AddCommand(user)
	return cmd
}
