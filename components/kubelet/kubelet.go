// Package kubelet runs the kubelet, the node agent, compiled in from
// k8s.io/kubernetes/cmd/kubelet.
package kubelet

import (
	"context"

	"k8s.io/kubernetes/cmd/kubelet/app"

	"github.com/kubeforge/kubeforge/components/internal/k8srun"
)

// Main runs kubelet with its upstream flags (args excludes the program
// name) and returns its exit code.
func Main(args []string) int {
	return k8srun.Run(app.NewKubeletCommand(context.Background()), args)
}
