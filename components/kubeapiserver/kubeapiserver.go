// Package kubeapiserver runs the Kubernetes API server (kube-apiserver), compiled in from
// k8s.io/kubernetes/cmd/kube-apiserver.
package kubeapiserver

import (
	_ "time/tzdata" // CronJob time zones, as upstream

	"k8s.io/kubernetes/cmd/kube-apiserver/app"

	"github.com/kubeforge/kubeforge/components/internal/k8srun"
)

// Main runs kube-apiserver with its upstream flags (args excludes the program
// name) and returns its exit code.
func Main(args []string) int {
	return k8srun.Run(app.NewAPIServerCommand(), args)
}
