// Package kubeproxy runs kube-proxy, the Service proxy, compiled in from
// k8s.io/kubernetes/cmd/kube-proxy. In kubeforge's kube-proxy pod the host's
// root is mounted at hosttools.HostRootDir: the iptables/nft/conntrack
// programs kube-proxy runs are then the host's (see components/hosttools).
package kubeproxy

import (
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/kubernetes/cmd/kube-proxy/app"

	"github.com/kubeforge/kubeforge/components/hosttools"
	"github.com/kubeforge/kubeforge/components/internal/k8srun"
)

// Main runs kube-proxy with its upstream flags (args excludes the program
// name) and returns its exit code.
func Main(args []string) int {
	if root := os.Getenv(hosttools.HostRootEnv); root != "" {
		exe, err := os.Executable()
		if err == nil {
			var path string
			path, err = hosttools.Setup(filepath.Join(os.TempDir(), "kubeforge-host-tools"), exe, os.Getenv("PATH"))
			if err == nil {
				err = os.Setenv("PATH", path)
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "kubeforge: cannot use the host's network tools from %s: %v\n", root, err)
			return 1
		}
	}
	return k8srun.Run(app.NewProxyCommand(), args)
}
