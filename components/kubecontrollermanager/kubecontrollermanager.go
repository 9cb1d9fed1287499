// Package kubecontrollermanager runs the Kubernetes controller manager (kube-controller-manager), compiled in from
// k8s.io/kubernetes/cmd/kube-controller-manager, together with kubeforge's
// kubelet serving certificate approver (internal/csrapprover), which uses
// the controller manager's own credentials (--kubeconfig).
package kubecontrollermanager

import (
	"context"
	"log/slog"
	"os"
	"strings"
	_ "time/tzdata" // CronJob time zones, as upstream

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"

	"github.com/kubeforge/kubeforge/components/internal/k8srun"
	"github.com/kubeforge/kubeforge/internal/csrapprover"
)

// Main runs kube-controller-manager with its upstream flags (args excludes the program
// name) and returns its exit code.
func Main(args []string) int {
	if kc := flagValue(args, "kubeconfig"); kc != "" {
		go runApprover(kc)
	}
	return k8srun.Run(app.NewControllerManagerCommand(), args)
}

// flagValue finds --name=value or --name value in args.
func flagValue(args []string, name string) string {
	for i, a := range args {
		a = strings.TrimLeft(a, "-")
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

func runApprover(kubeconfig string) {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "kubelet-serving-approver")
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		log.Error("kubelet serving CSR approver disabled", "err", err)
		return
	}
	cfg.UserAgent = "kubeforge-kubelet-serving-approver"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		log.Error("kubelet serving CSR approver disabled", "err", err)
		return
	}
	if err := csrapprover.Run(context.Background(), client, log); err != nil {
		log.Error("kubelet serving CSR approver stopped", "err", err)
	}
}
