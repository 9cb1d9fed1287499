package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/kubeforge/kubeforge/components"
)

// newComponentCmd is the help entry for `kubeforge component NAME`. The
// components themselves never get here: components.Multicall runs them
// before cobra parses anything, so their upstream flags pass untouched.
// What reaches this command is a bare `kubeforge component`, --help, or a
// name that is not in the table.
func newComponentCmd(_ io.Reader, out, _ io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "component NAME [upstream flags...]",
		Short: "Run one of the bundled upstream components (etcd, kube-apiserver, kubelet, ...)",
		Long: `Run one of the upstream programs compiled into kubeforge, with exactly its
upstream flags. Each runs as its own process, as the upstream binary would;
static pod manifests call them as: kubeforge component kube-apiserver --flag=...

` + componentTable() + `
Every component has its own help: kubeforge component NAME --help
(CoreDNS and etcd use single-dash flags: kubeforge component coredns -help).`,
		DisableFlagParsing:    true,
		DisableFlagsInUseLine: true,
		Args:                  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
				return cmd.Help()
			}
			return fmt.Errorf("unknown component %q: must be one of %s", args[0], strings.Join(componentNames(), ", "))
		},
	}
	cmd.SetOut(out)
	return cmd
}

func componentNames() []string {
	var names []string
	for _, c := range components.Registry {
		names = append(names, c.Name)
	}
	return names
}

func componentTable() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "Components:")
	for _, c := range components.Registry {
		fmt.Fprintf(tw, "  %s\t%s\t(%s)\n", c.Name, c.Short, c.Source)
	}
	tw.Flush()
	return b.String()
}
