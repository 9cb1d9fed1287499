//go:build !k8s136

package containerd

import (
	"context"

	"github.com/containerd/containerd/v2/cmd/containerd/command"
)

// runDaemon runs containerd's command line (containerd v2.4: urfave/cli v3).
func runDaemon(args []string) error {
	return command.App().Run(context.Background(), args)
}
