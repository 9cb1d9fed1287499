// Package kubescheduler runs the Kubernetes scheduler (kube-scheduler), compiled in from
// k8s.io/kubernetes/cmd/kube-scheduler.
package kubescheduler

import (
	"k8s.io/kubernetes/cmd/kube-scheduler/app"

	"github.com/kubeforge/kubeforge/components/internal/k8srun"
)

// Main runs kube-scheduler with its upstream flags (args excludes the program
// name) and returns its exit code.
func Main(args []string) int {
	return k8srun.Run(app.NewSchedulerCommand(), args)
}
