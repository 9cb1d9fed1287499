// Package kubeapiserver runs the Kubernetes API server (kube-apiserver), compiled in from
// k8s.io/kubernetes/cmd/kube-apiserver.
package kubeapiserver

import (
	"time"
	_ "time/tzdata" // CronJob time zones, as upstream

	"k8s.io/kubernetes/cmd/kube-apiserver/app"

	"github.com/kubeforge/kubeforge/components/internal/k8srun"
	"github.com/kubeforge/kubeforge/components/kubeapiserver/etcdwait"
)

// Main runs kube-apiserver with its upstream flags (args excludes the program
// name) and returns its exit code. It first waits (at most etcdWait) for
// etcd to accept connections (etcdwait.Waiter.Wait says why).
func Main(args []string) int {
	etcdwait.Default().Wait(etcdwait.Servers(args), etcdWait)
	return k8srun.Run(app.NewAPIServerCommand(), args)
}

// etcdWait bounds how long the API server's start waits for etcd.
const etcdWait = 20 * time.Second
