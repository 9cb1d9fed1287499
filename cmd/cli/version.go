package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kubeforge/kubeforge/internal/version"
)

type versionOptions struct {
	output string
}

func newVersionCmd(_ io.Reader, out, _ io.Writer) *cobra.Command {
	o := &versionOptions{}
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the kubeforge version and the versions of the bundled components",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := map[string]string{
				"kubeforge":  version.Version,
				"kubernetes": version.Kubernetes,
				"etcd":       version.Etcd,
				"containerd": version.Containerd,
				"coredns":    version.CoreDNS,
				"go":         version.GoVersion(),
				"platform":   runtime.GOOS + "/" + runtime.GOARCH,
				"patches":    version.Patches,
			}
			switch o.output {
			case "json":
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(info)
			case "", "text":
				fmt.Fprintf(out, "kubeforge %s (Kubernetes %s, etcd %s, containerd %s, CoreDNS %s, %s, %s)\n",
					version.Version, version.Kubernetes, version.Etcd, version.Containerd, version.CoreDNS,
					info["go"], info["platform"])
				if version.Patches == "" {
					fmt.Fprintln(out, "upstream code as released (no patches)")
				} else {
					fmt.Fprintf(out, "patched upstream code (README \"Upstream patches\"): %s\n", strings.ReplaceAll(version.Patches, ",", ", "))
				}
				return nil
			default:
				return fmt.Errorf("--output %q: must be text or json", o.output)
			}
		},
	}
	cmd.Flags().StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	return cmd
}
