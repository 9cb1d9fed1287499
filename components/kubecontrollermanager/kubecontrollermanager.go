// Package kubecontrollermanager runs the Kubernetes controller manager (kube-controller-manager), compiled in from
// k8s.io/kubernetes/cmd/kube-controller-manager, together with kubeforge's
// kubelet serving certificate approver (internal/csrapprover) and the node
// directory's publisher (internal/nodedir), which use the controller
// manager's own credentials (--kubeconfig).
package kubecontrollermanager

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	_ "time/tzdata" // CronJob time zones, as upstream

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"

	"github.com/kubeforge/kubeforge/components/internal/k8srun"
	"github.com/kubeforge/kubeforge/internal/csrapprover"
	"github.com/kubeforge/kubeforge/internal/nodedir"
	"github.com/kubeforge/kubeforge/manifests"
)

// Main runs kube-controller-manager with its upstream flags (args excludes the program
// name) and returns its exit code.
func Main(args []string) int {
	if kc := k8srun.FlagValue(args, "kubeconfig"); kc != "" {
		go runApprover(kc, apiServerCertPath(args), k8srun.FlagValue(args, "service-cluster-ip-range"))
		go runNodeDirectory(kc)
	}
	return k8srun.Run(app.NewControllerManagerCommand(), args)
}

// apiServerCertPath is the API server certificate the approver protects:
// the manifest names it (manifests.ApproverAPIServerCertEnv); a manifest
// written before that names the certificate directory through --root-ca-file.
func apiServerCertPath(args []string) string {
	if p := os.Getenv(manifests.ApproverAPIServerCertEnv); p != "" {
		return p
	}
	if ca := k8srun.FlagValue(args, "root-ca-file"); ca != "" {
		return filepath.Join(filepath.Dir(ca), "apiserver.crt")
	}
	return ""
}

func runApprover(kubeconfig, apiServerCert, serviceRange string) {
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
	cidrs, err := csrapprover.ParseCIDRs(serviceRange)
	if err != nil {
		log.Error("kubelet serving CSR approver disabled: --service-cluster-ip-range", "err", err)
		return
	}
	reserved := func() (csrapprover.Reserved, error) {
		if apiServerCert == "" {
			return csrapprover.Reserved{}, errors.New("no API server certificate configured (" + manifests.ApproverAPIServerCertEnv + ")")
		}
		pem, err := os.ReadFile(apiServerCert)
		if err != nil {
			return csrapprover.Reserved{}, err
		}
		return csrapprover.ReservedFromCert(pem, cidrs)
	}
	if err := csrapprover.Run(context.Background(), client, csrapprover.Options{Log: log, Reserved: reserved}); err != nil {
		log.Error("kubelet serving CSR approver stopped", "err", err)
	}
}

// runNodeDirectory publishes the node directory (every controller-manager
// does, not only the leader: they write the same content, and only when it
// differs, see nodedir.Publish).
func runNodeDirectory(kubeconfig string) {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "node-directory")
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		log.Error("node directory publisher disabled: the nodes' pod network agents and LoadBalancer speakers will not see the other nodes", "err", err)
		return
	}
	cfg.UserAgent = "kubeforge-node-directory"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		log.Error("node directory publisher disabled: the nodes' pod network agents and LoadBalancer speakers will not see the other nodes", "err", err)
		return
	}
	if err := nodedir.Publish(context.Background(), client, nodedir.PublishOptions{Log: log}); err != nil {
		log.Error("node directory publisher stopped", "err", err)
	}
}
