package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/kubeforge/kubeforge/config"
)

type configValidateOptions struct {
	file string
}

func newConfigCmd(_ io.Reader, out, _ io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Print default configuration or validate a configuration file",
		Args:  cobra.NoArgs,
	}
	printCmd := &cobra.Command{Use: "print", Short: "Print configuration", Args: cobra.NoArgs}
	printCmd.AddCommand(&cobra.Command{
		Use:   "init-defaults",
		Short: "Print a complete default configuration for `kubeforge init --config`",
		Long: `Print the InitConfiguration, ClusterConfiguration, KubeletConfiguration and
KubeProxyConfiguration kubeforge uses by default, in kubeadm's v1beta4 format.
The node name, advertise address and token are placeholders to replace.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			c, err := config.InitDefaults(config.HostDefaults())
			if err != nil {
				return err
			}
			b, err := c.MarshalDocuments()
			if err != nil {
				return err
			}
			_, err = out.Write(b)
			return err
		},
	})
	cmd.AddCommand(printCmd)

	vo := &configValidateOptions{}
	validate := &cobra.Command{
		Use:   "validate",
		Short: "Check a configuration file: every field known, of the right type, with valid values",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if vo.file == "" {
				return fmt.Errorf("--config is required: the file to validate")
			}
			c, err := config.Load(vo.file)
			if err != nil {
				return err
			}
			h := config.HostDefaults()
			if c.Init.LocalAPIEndpoint.AdvertiseAddress == "" {
				// Validating a file must not depend on this host's interfaces.
				c.Init.LocalAPIEndpoint.AdvertiseAddress = "192.0.2.1"
			}
			if err := c.Complete(h); err != nil {
				return err
			}
			for _, w := range c.Warnings {
				fmt.Fprintf(out, "warning: %s\n", w)
			}
			fmt.Fprintf(out, "%s: ok\n", vo.file)
			return nil
		},
	}
	validate.Flags().StringVar(&vo.file, "config", "", "the configuration file to check")
	cmd.AddCommand(validate)
	return cmd
}
