//go:build k8s136

package containerd

import "github.com/containerd/containerd/v2/cmd/containerd/command"

// runDaemon runs containerd's command line: containerd v2.3 (the build
// against Kubernetes v1.36, hack/build-k136.sh) uses urfave/cli v2, whose
// Run takes no context.
func runDaemon(args []string) error {
	return command.App().Run(args)
}
