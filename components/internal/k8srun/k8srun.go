// Package k8srun runs an upstream Kubernetes cobra command the way its own
// main package does (component-base's cli.Run), but with explicit
// arguments instead of os.Args.
package k8srun

import (
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"

	// What every upstream Kubernetes main imports for its side effects.
	_ "k8s.io/component-base/logs/json/register"          // JSON log format
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric

	// Stamps the Kubernetes version (normally done with -ldflags).
	_ "github.com/kubeforge/kubeforge/components/internal/k8sversion"
)

// Run executes cmd with args (flags and arguments, without the program
// name) and returns the exit code, exactly as cli.Run does for the upstream
// binaries: flag errors print usage, runtime errors are logged, exit 1.
func Run(cmd *cobra.Command, args []string) int {
	if args == nil {
		args = []string{} // nil would make cobra fall back to os.Args
	}
	cmd.SetArgs(args)
	return cli.Run(cmd)
}

// FlagValue finds --name=value or --name value in args (the last word is
// a flag's value only when a flag precedes it).
func FlagValue(args []string, name string) string {
	for i, a := range args {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		a = strings.TrimLeft(a, "-")
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}
