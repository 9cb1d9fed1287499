// Package csrapprover approves kubelet serving certificate requests
// (signer kubernetes.io/kubelet-serving), which the controller-manager's
// own approver never does, but only for the requesting node's own names and
// addresses as the Node object records them. kubeforge runs it inside the
// kube-controller-manager process, so `kubectl logs` and `kubectl exec`
// reach every kubelet over verified TLS without any manual approval.
package csrapprover

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

const (
	// SignerName is the only signer this approver handles.
	SignerName = certificatesv1.KubeletServingSignerName
	// Reason is set on the Approved condition.
	Reason = "KubeforgeKubeletServingAutoApprove"
	// NodeUserPrefix is the username prefix of kubelets.
	NodeUserPrefix = "system:node:"
)

// Decision is the outcome of checking one request.
type Decision struct {
	Approve bool
	// Retry: the request may become acceptable later (the Node's addresses
	// are not reported yet); check again.
	Retry  bool
	Reason string
}

// Check decides on one CSR given the node it claims to be for (nil if not found).
func Check(csr *certificatesv1.CertificateSigningRequest, node *corev1.Node) Decision {
	if csr.Spec.SignerName != SignerName {
		return Decision{Reason: "not a kubelet serving request"}
	}
	nodeName, ok := strings.CutPrefix(csr.Spec.Username, NodeUserPrefix)
	if !ok || !slices.Contains(csr.Spec.Groups, "system:nodes") {
		return Decision{Reason: fmt.Sprintf("requested by %q, not by a node", csr.Spec.Username)}
	}
	blk, _ := pem.Decode(csr.Spec.Request)
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		return Decision{Reason: "request is not a PEM certificate request"}
	}
	req, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return Decision{Reason: "request does not parse: " + err.Error()}
	}
	if err := req.CheckSignature(); err != nil {
		return Decision{Reason: "request signature invalid: " + err.Error()}
	}
	if req.Subject.CommonName != csr.Spec.Username {
		return Decision{Reason: fmt.Sprintf("subject CN %q is not the requester %q", req.Subject.CommonName, csr.Spec.Username)}
	}
	if len(req.Subject.Organization) != 1 || req.Subject.Organization[0] != "system:nodes" {
		return Decision{Reason: fmt.Sprintf("subject organization %v is not [system:nodes]", req.Subject.Organization)}
	}
	if len(req.EmailAddresses) > 0 || len(req.URIs) > 0 {
		return Decision{Reason: "request has email or URI names"}
	}
	if len(req.DNSNames)+len(req.IPAddresses) == 0 {
		return Decision{Reason: "request names no DNS name or IP"}
	}
	hasServerAuth := false
	for _, u := range csr.Spec.Usages {
		switch u {
		case certificatesv1.UsageServerAuth:
			hasServerAuth = true
		case certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment:
		default:
			return Decision{Reason: fmt.Sprintf("usage %q is not allowed for a kubelet serving certificate", u)}
		}
	}
	if !hasServerAuth {
		return Decision{Reason: "usages lack server auth"}
	}
	if node == nil {
		return Decision{Retry: true, Reason: fmt.Sprintf("node %s does not exist (yet)", nodeName)}
	}
	names := map[string]bool{node.Name: true}
	ips := map[string]bool{}
	for _, a := range node.Status.Addresses {
		switch a.Type {
		case corev1.NodeHostName, corev1.NodeInternalDNS, corev1.NodeExternalDNS:
			names[a.Address] = true
		case corev1.NodeInternalIP, corev1.NodeExternalIP:
			if ip := net.ParseIP(a.Address); ip != nil {
				ips[ip.String()] = true
			}
		}
	}
	for _, d := range req.DNSNames {
		if !names[d] {
			return Decision{Retry: true, Reason: fmt.Sprintf("DNS name %q is not one of node %s's names", d, nodeName)}
		}
	}
	for _, ip := range req.IPAddresses {
		if !ips[ip.String()] {
			return Decision{Retry: true, Reason: fmt.Sprintf("IP %s is not one of node %s's addresses", ip, nodeName)}
		}
	}
	return Decision{Approve: true, Reason: fmt.Sprintf("serving certificate for node %s's own names and addresses", nodeName)}
}

func pending(csr *certificatesv1.CertificateSigningRequest) bool {
	for _, c := range csr.Status.Conditions {
		if c.Type == certificatesv1.CertificateApproved || c.Type == certificatesv1.CertificateDenied || c.Type == certificatesv1.CertificateFailed {
			return false
		}
	}
	return true
}

// Run approves acceptable kubelet serving CSRs until ctx ends.
func Run(ctx context.Context, client kubernetes.Interface, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	factory := informers.NewSharedInformerFactory(client, 10*time.Minute)
	csrs := factory.Certificates().V1().CertificateSigningRequests()
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[string](500*time.Millisecond, 30*time.Second))
	defer queue.ShutDown()
	enqueue := func(obj any) {
		if csr, ok := obj.(*certificatesv1.CertificateSigningRequest); ok && csr.Spec.SignerName == SignerName && pending(csr) {
			queue.Add(csr.Name)
		}
	}
	if _, err := csrs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), csrs.Informer().HasSynced) {
		return errors.New("csr approver: cache did not sync")
	}
	go func() { <-ctx.Done(); queue.ShutDown() }()
	for {
		name, shutdown := queue.Get()
		if shutdown {
			return nil
		}
		retry := handle(ctx, client, csrs.Lister().Get, name, log)
		if retry {
			queue.AddRateLimited(name)
		} else {
			queue.Forget(name)
		}
		queue.Done(name)
	}
}

func handle(ctx context.Context, client kubernetes.Interface, get func(string) (*certificatesv1.CertificateSigningRequest, error), name string, log *slog.Logger) (retry bool) {
	csr, err := get(name)
	if err != nil || !pending(csr) {
		return false
	}
	var node *corev1.Node
	if n, ok := strings.CutPrefix(csr.Spec.Username, NodeUserPrefix); ok {
		node, _ = client.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
	}
	d := Check(csr, node)
	if !d.Approve {
		if d.Retry {
			log.Info("kubelet serving CSR not approved yet", "csr", name, "reason", d.Reason)
		} else {
			log.Warn("kubelet serving CSR left pending", "csr", name, "reason", d.Reason)
		}
		return d.Retry
	}
	csr = csr.DeepCopy()
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: Reason, Message: d.Reason,
		LastUpdateTime: metav1.Now(),
	})
	if _, err := client.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, name, csr, metav1.UpdateOptions{}); err != nil {
		log.Warn("approve kubelet serving CSR", "csr", name, "err", err)
		return true
	}
	log.Info("approved kubelet serving CSR", "csr", name, "reason", d.Reason)
	return false
}
