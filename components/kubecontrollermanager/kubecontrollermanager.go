// Package kubecontrollermanager runs the Kubernetes controller manager (kube-controller-manager), compiled in from
// k8s.io/kubernetes/cmd/kube-controller-manager.
package kubecontrollermanager

import (
	_ "time/tzdata" // CronJob time zones, as upstream

	"k8s.io/kubernetes/cmd/kube-controller-manager/app"

	"github.com/kubeforge/kubeforge/components/internal/k8srun"
)

// Main runs kube-controller-manager with its upstream flags (args excludes the program
// name) and returns its exit code.
func Main(args []string) int {
	return k8srun.Run(app.NewControllerManagerCommand(), args)
}
