// Package kubeproxy runs kube-proxy, the Service proxy, compiled in from
// k8s.io/kubernetes/cmd/kube-proxy.
package kubeproxy

import (
	"k8s.io/kubernetes/cmd/kube-proxy/app"

	"github.com/kubeforge/kubeforge/components/internal/k8srun"
)

// Main runs kube-proxy with its upstream flags (args excludes the program
// name) and returns its exit code.
func Main(args []string) int {
	return k8srun.Run(app.NewProxyCommand(), args)
}
