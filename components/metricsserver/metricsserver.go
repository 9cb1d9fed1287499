// Package metricsserver runs metrics-server, the resource metrics API
// (metrics.k8s.io) behind `kubectl top` and the HorizontalPodAutoscaler,
// compiled in from sigs.k8s.io/metrics-server/cmd/metrics-server.
package metricsserver

import (
	"os"
	"runtime"

	genericapiserver "k8s.io/apiserver/pkg/server"
	"sigs.k8s.io/metrics-server/cmd/metrics-server/app"

	"github.com/kubeforge/kubeforge/components/internal/k8srun"
)

// Main runs metrics-server with its upstream flags (args excludes the
// program name) and returns its exit code.
func Main(args []string) int {
	// As upstream's main: use every CPU unless GOMAXPROCS says otherwise.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(runtime.NumCPU())
	}
	return k8srun.Run(app.NewMetricsServerCommand(genericapiserver.SetupSignalHandler()), args)
}
