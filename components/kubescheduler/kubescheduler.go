// Package kubescheduler runs the Kubernetes scheduler (kube-scheduler), compiled in from
// k8s.io/kubernetes/cmd/kube-scheduler.
package kubescheduler

import (
	"context"
	"log/slog"
	"os"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/components/internal/k8srun"
	"github.com/kubeforge/kubeforge/internal/apiconn"
)

// Main runs kube-scheduler with its upstream flags (args excludes the program
// name) and returns its exit code.
func Main(args []string) int {
	if kc := schedulerKubeconfig(args); kc != "" {
		waitReady(kc, readyTimeout)
	}
	return k8srun.Run(app.NewSchedulerCommand(), args)
}

// readyTimeout bounds waitReady: past it the scheduler starts as upstream's
// would (its informers retry on their own).
var readyTimeout = 30 * time.Second

// waitReady waits until the API server at kubeconfig answers /readyz with
// ok, before the scheduler's own set-up.
//
// At init the scheduler starts with the API server. Its informers' first
// lists came when the API server served but had not yet written the default
// roles (its rbac/bootstrap-roles hook, which /readyz waits for): they were
// refused, and client-go retried each only 0.8-1.6 s later, so every pod of
// the new cluster waited that long to be scheduled. Its set-up had also been
// refused the extension-apiserver-authentication ConfigMap, and went on
// without its request-header (front proxy) authentication until the
// scheduler restarted. Waiting for /readyz rather than for the first allowed
// request keeps the set-up's CPU out of the API server's own start on a
// small machine (measured: waiting for the first allowed list made /readyz
// later). What is waited out: no connection yet, an answer that is not ok
// (not ready, or refused before the default roles exist), overload; any
// other error (a bad kubeconfig, a certificate the API server does not
// trust, Unauthorized) is left to the scheduler, which reports it as usual.
func waitReady(kubeconfig string, timeout time.Duration) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return
	}
	cfg.UserAgent = "kube-scheduler/kubeforge-start"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return
	}
	start := time.Now()
	waited := false
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := client.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Error()
		cancel()
		if !retryable(err) {
			if waited {
				logger().Info("the API server is ready; starting the scheduler", "waited", time.Since(start).Round(time.Millisecond), "err", err)
			}
			return
		}
		if time.Since(start) > timeout {
			logger().Warn("starting the scheduler before the API server is ready", "waited", timeout, "lastError", err)
			return
		}
		waited = true
		time.Sleep(100 * time.Millisecond)
	}
}

// retryable: the API server does not serve yet, is not ready, or refuses
// the scheduler because its default roles are not written yet.
func retryable(err error) bool {
	// /readyz's "readyz check failed" is a plain 500, which client-go
	// reports as an InternalError.
	return apiconn.Unreachable(err) || apiconn.NotAuthorizedYet(err) || apierrors.IsInternalError(err)
}

func logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "kube-scheduler")
}

// schedulerKubeconfig is the kubeconfig the scheduler's client uses:
// --kubeconfig, else its --config file's clientConnection.kubeconfig.
func schedulerKubeconfig(args []string) string {
	if kc := k8srun.FlagValue(args, "kubeconfig"); kc != "" {
		return kc
	}
	path := k8srun.FlagValue(args, "config")
	if path == "" {
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var c struct {
		ClientConnection struct {
			Kubeconfig string `json:"kubeconfig"`
		} `json:"clientConnection"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		return ""
	}
	return c.ClientConnection.Kubeconfig
}
