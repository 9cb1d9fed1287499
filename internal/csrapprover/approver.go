// Package csrapprover decides on kubelet serving certificate requests
// (signer kubernetes.io/kubelet-serving), which the controller-manager's own
// approver never handles. kubeforge runs it inside the kube-controller-manager
// process, so `kubectl logs`, `exec` and `port-forward` reach every kubelet
// over TLS that the API server verifies (--kubelet-certificate-authority).
//
// A node writes its own Node status, so the addresses it lists there prove
// nothing by themselves. The approver therefore grants a name or address
// only when it belongs to the requesting node alone:
//
//   - never an address in the Service CIDRs, a loopback, unspecified or
//     multicast address;
//   - never a name or address of another Node;
//   - never a name or address of the API server's certificate (its Service
//     IP, the kubernetes.default names, the control-plane endpoint, extra
//     SANs), except a control-plane node's own name and address, which the
//     API server certificate carries because that node serves the API (the
//     node-role label that marks it is set by the admin, never by a kubelet:
//     NodeRestriction forbids it);
//   - and only names and addresses in the node's own status (until the node
//     reports them, the request waits).
//
// A request that breaks a "never" rule is denied (kubectl get csr shows
// Denied and why); one that names something the node has not reported yet
// stays pending and is checked again when the Node changes.
//
// The certificates are signed with a CA of their own (pki.KubeletServingCA)
// that no client trusts for the API server, so even an approved certificate
// cannot impersonate it: the rules above are the second line.
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
	"k8s.io/apimachinery/pkg/labels"
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
	// DenyReason is set on the Denied condition.
	DenyReason = "KubeforgeKubeletServingDenied"
	// NodeUserPrefix is the username prefix of kubelets.
	NodeUserPrefix = "system:node:"
	// ControlPlaneLabel marks control-plane nodes (set by init's and
	// join's mark-control-plane phase with admin credentials).
	ControlPlaneLabel = "node-role.kubernetes.io/control-plane"
)

// Verdict is what to do with a request.
type Verdict int

const (
	// Wait leaves the request pending: it names something the node has not
	// reported (yet), or the approver lacks a fact; it is checked again.
	Wait Verdict = iota
	// Approve approves it.
	Approve
	// Deny denies it: it can never be acceptable.
	Deny
	// Ignore leaves it alone: not a kubelet serving request.
	Ignore
)

func (v Verdict) String() string {
	return [...]string{"wait", "approve", "deny", "ignore"}[v]
}

// Decision is the outcome of checking one request.
type Decision struct {
	Verdict Verdict
	Reason  string
}

// Reserved are the names and addresses no kubelet may be given (but for a
// control-plane node's own, see the package comment).
type Reserved struct {
	// APIServerDNSNames and APIServerIPs are the API server certificate's SANs.
	APIServerDNSNames []string
	APIServerIPs      []net.IP
	// ServiceCIDRs are the cluster's Service IP ranges.
	ServiceCIDRs []*net.IPNet
}

// ReservedFromCert reads the SANs of the API server's certificate (PEM).
func ReservedFromCert(certPEM []byte, serviceCIDRs []*net.IPNet) (Reserved, error) {
	blk, _ := pem.Decode(certPEM)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return Reserved{}, errors.New("not a PEM certificate")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return Reserved{}, err
	}
	return Reserved{APIServerDNSNames: c.DNSNames, APIServerIPs: c.IPAddresses, ServiceCIDRs: serviceCIDRs}, nil
}

// ParseCIDRs parses a comma-separated CIDR list (kube-controller-manager's
// --service-cluster-ip-range).
func ParseCIDRs(list string) ([]*net.IPNet, error) {
	var out []*net.IPNet
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// Facts is what a decision needs besides the request.
type Facts struct {
	// Node is the requesting node (nil if it does not exist yet).
	Node *corev1.Node
	// Others are every other Node.
	Others   []*corev1.Node
	Reserved Reserved
}

// nodeNames returns a node's DNS names (its name and DNS-type addresses)
// and IPs, lower-cased / canonical.
func nodeNames(n *corev1.Node) (names, ips map[string]bool) {
	names = map[string]bool{strings.ToLower(n.Name): true}
	ips = map[string]bool{}
	for _, a := range n.Status.Addresses {
		switch a.Type {
		case corev1.NodeHostName, corev1.NodeInternalDNS, corev1.NodeExternalDNS:
			names[strings.ToLower(a.Address)] = true
		case corev1.NodeInternalIP, corev1.NodeExternalIP:
			if ip := net.ParseIP(a.Address); ip != nil {
				ips[ip.String()] = true
			}
		}
	}
	return names, ips
}

// dnsMatches reports whether name is covered by a certificate SAN
// (exactly, or by a one-label wildcard), case-insensitively.
func dnsMatches(san, name string) bool {
	san, name = strings.ToLower(san), strings.ToLower(name)
	if san == name {
		return true
	}
	if rest, ok := strings.CutPrefix(san, "*."); ok {
		_, after, found := strings.Cut(name, ".")
		return found && after == rest
	}
	return false
}

// parseRequest checks everything about a request that does not depend on
// the cluster; it returns the parsed request or a denial.
func parseRequest(csr *certificatesv1.CertificateSigningRequest) (*x509.CertificateRequest, string, *Decision) {
	deny := func(format string, a ...any) *Decision {
		return &Decision{Verdict: Deny, Reason: fmt.Sprintf(format, a...)}
	}
	nodeName, ok := strings.CutPrefix(csr.Spec.Username, NodeUserPrefix)
	if !ok || !slices.Contains(csr.Spec.Groups, "system:nodes") {
		return nil, "", deny("requested by %q, not by a node", csr.Spec.Username)
	}
	blk, _ := pem.Decode(csr.Spec.Request)
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		return nil, "", deny("request is not a PEM certificate request")
	}
	req, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return nil, "", deny("request does not parse: %v", err)
	}
	if err := req.CheckSignature(); err != nil {
		return nil, "", deny("request signature invalid: %v", err)
	}
	if req.Subject.CommonName != csr.Spec.Username {
		return nil, "", deny("subject CN %q is not the requester %q", req.Subject.CommonName, csr.Spec.Username)
	}
	if len(req.Subject.Organization) != 1 || req.Subject.Organization[0] != "system:nodes" {
		return nil, "", deny("subject organization %v is not [system:nodes]", req.Subject.Organization)
	}
	if len(req.EmailAddresses) > 0 || len(req.URIs) > 0 {
		return nil, "", deny("request has email or URI names")
	}
	if len(req.DNSNames)+len(req.IPAddresses) == 0 {
		return nil, "", deny("request names no DNS name or IP")
	}
	hasServerAuth := false
	for _, u := range csr.Spec.Usages {
		switch u {
		case certificatesv1.UsageServerAuth:
			hasServerAuth = true
		case certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment:
		default:
			return nil, "", deny("usage %q is not allowed for a kubelet serving certificate", u)
		}
	}
	if !hasServerAuth {
		return nil, "", deny("usages lack server auth")
	}
	return req, nodeName, nil
}

// Check decides on one request.
func Check(csr *certificatesv1.CertificateSigningRequest, f Facts) Decision {
	if csr.Spec.SignerName != SignerName {
		return Decision{Verdict: Ignore, Reason: "not a kubelet serving request"}
	}
	req, nodeName, denied := parseRequest(csr)
	if denied != nil {
		return *denied
	}
	deny := func(format string, a ...any) Decision {
		return Decision{Verdict: Deny, Reason: fmt.Sprintf(format, a...)}
	}
	// The rules that hold whatever the node's own status says.
	otherName := map[string]string{}
	otherIP := map[string]string{}
	for _, o := range f.Others {
		if o.Name == nodeName {
			continue
		}
		names, ips := nodeNames(o)
		for n := range names {
			otherName[n] = o.Name
		}
		for ip := range ips {
			otherIP[ip] = o.Name
		}
	}
	var ownNames, ownIPs map[string]bool
	controlPlane := false
	if f.Node != nil {
		ownNames, ownIPs = nodeNames(f.Node)
		_, controlPlane = f.Node.Labels[ControlPlaneLabel]
	}
	for _, d := range req.DNSNames {
		if o, ok := otherName[strings.ToLower(d)]; ok {
			return deny("DNS name %q belongs to node %s", d, o)
		}
		for _, san := range f.Reserved.APIServerDNSNames {
			if dnsMatches(san, d) && !(controlPlane && ownNames[strings.ToLower(d)]) {
				return deny("DNS name %q is a name of the API server's certificate (%s)", d, san)
			}
		}
	}
	for _, ip := range req.IPAddresses {
		if ip.IsLoopback() || ip.IsUnspecified() || ip.IsMulticast() || ip.IsLinkLocalUnicast() {
			return deny("IP %s belongs to no node alone", ip)
		}
		for _, n := range f.Reserved.ServiceCIDRs {
			if n.Contains(ip) {
				return deny("IP %s is in the Service range %s", ip, n)
			}
		}
		if o, ok := otherIP[ip.String()]; ok {
			return deny("IP %s belongs to node %s", ip, o)
		}
		for _, a := range f.Reserved.APIServerIPs {
			if a.Equal(ip) && !(controlPlane && ownIPs[ip.String()]) {
				return deny("IP %s is an address of the API server's certificate", ip)
			}
		}
	}
	// What the node must have reported first.
	if f.Node == nil {
		return Decision{Verdict: Wait, Reason: fmt.Sprintf("node %s does not exist (yet)", nodeName)}
	}
	for _, d := range req.DNSNames {
		if !ownNames[strings.ToLower(d)] {
			return Decision{Verdict: Wait, Reason: fmt.Sprintf("DNS name %q is not one of node %s's names (yet)", d, nodeName)}
		}
	}
	for _, ip := range req.IPAddresses {
		if !ownIPs[ip.String()] {
			return Decision{Verdict: Wait, Reason: fmt.Sprintf("IP %s is not one of node %s's addresses (yet)", ip, nodeName)}
		}
	}
	return Decision{Verdict: Approve, Reason: fmt.Sprintf("serving certificate for node %s's own names and addresses", nodeName)}
}

func pending(csr *certificatesv1.CertificateSigningRequest) bool {
	for _, c := range csr.Status.Conditions {
		if c.Type == certificatesv1.CertificateApproved || c.Type == certificatesv1.CertificateDenied || c.Type == certificatesv1.CertificateFailed {
			return false
		}
	}
	return true
}

// Options configure Run.
type Options struct {
	Log *slog.Logger
	// Reserved returns the names and addresses no kubelet may have; it is
	// called for every decision (the API server's certificate may be
	// renewed). An error leaves requests pending: the approver fails closed.
	Reserved func() (Reserved, error)
	// Decided, when set, is told every decision (tests: "seen and declined").
	Decided func(csr string, d Decision)
}

// Run decides on kubelet serving CSRs until ctx ends.
func Run(ctx context.Context, client kubernetes.Interface, opts Options) error {
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	factory := informers.NewSharedInformerFactory(client, 10*time.Minute)
	csrs := factory.Certificates().V1().CertificateSigningRequests()
	nodes := factory.Core().V1().Nodes()
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
	// A Node that reports (new) addresses may make its waiting requests
	// acceptable, or another's refusable: look at the pending ones again.
	nodeChanged := func(any) {
		all, err := csrs.Lister().List(labels.Everything())
		if err != nil {
			return
		}
		for _, c := range all {
			enqueue(c)
		}
	}
	if _, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    nodeChanged,
		UpdateFunc: func(_, obj any) { nodeChanged(obj) },
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), csrs.Informer().HasSynced, nodes.Informer().HasSynced) {
		return errors.New("csr approver: caches did not sync")
	}
	go func() { <-ctx.Done(); queue.ShutDown() }()
	a := &approver{client: client, log: log, opts: opts, csrs: csrs.Lister().Get,
		nodes: func() ([]*corev1.Node, error) { return nodes.Lister().List(labels.Everything()) }}
	for {
		name, shutdown := queue.Get()
		if shutdown {
			return nil
		}
		if a.handle(ctx, name) {
			queue.AddRateLimited(name)
		} else {
			queue.Forget(name)
		}
		queue.Done(name)
	}
}

type approver struct {
	client kubernetes.Interface
	log    *slog.Logger
	opts   Options
	csrs   func(string) (*certificatesv1.CertificateSigningRequest, error)
	nodes  func() ([]*corev1.Node, error)
}

// facts gathers what Check needs for a request by user.
func (a *approver) facts(user string) (Facts, error) {
	var f Facts
	all, err := a.nodes()
	if err != nil {
		return f, fmt.Errorf("list nodes: %w", err)
	}
	name, _ := strings.CutPrefix(user, NodeUserPrefix)
	for _, n := range all {
		if n.Name == name {
			f.Node = n
		} else {
			f.Others = append(f.Others, n)
		}
	}
	if a.opts.Reserved != nil {
		if f.Reserved, err = a.opts.Reserved(); err != nil {
			return f, fmt.Errorf("the API server's names and addresses: %w", err)
		}
	}
	return f, nil
}

// handle decides on one CSR; it returns whether to look at it again later.
func (a *approver) handle(ctx context.Context, name string) (retry bool) {
	csr, err := a.csrs(name)
	if err != nil || !pending(csr) {
		return false
	}
	f, err := a.facts(csr.Spec.Username)
	d := Check(csr, f)
	if err != nil && d.Verdict == Approve {
		d = Decision{Verdict: Wait, Reason: err.Error()}
	}
	// The hook hears a verdict once it holds: an approval or denial after
	// the API server has it.
	decided := func(d Decision) {
		if a.opts.Decided != nil {
			a.opts.Decided(name, d)
		}
	}
	var cond certificatesv1.CertificateSigningRequestCondition
	switch d.Verdict {
	case Ignore:
		decided(d)
		return false
	case Wait:
		decided(d)
		a.log.Info("kubelet serving CSR not approved yet", "csr", name, "reason", d.Reason)
		return true
	case Approve:
		cond = certificatesv1.CertificateSigningRequestCondition{Type: certificatesv1.CertificateApproved, Reason: Reason}
	case Deny:
		cond = certificatesv1.CertificateSigningRequestCondition{Type: certificatesv1.CertificateDenied, Reason: DenyReason}
	}
	cond.Status, cond.Message, cond.LastUpdateTime = corev1.ConditionTrue, d.Reason, metav1.Now()
	csr = csr.DeepCopy()
	csr.Status.Conditions = append(csr.Status.Conditions, cond)
	if _, err := a.client.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, name, csr, metav1.UpdateOptions{}); err != nil {
		a.log.Warn("update kubelet serving CSR", "csr", name, "verdict", d.Verdict, "err", err)
		decided(Decision{Verdict: Wait, Reason: "recording the verdict failed: " + err.Error()})
		return true
	}
	decided(d)
	if d.Verdict == Deny {
		a.log.Warn("denied kubelet serving CSR", "csr", name, "requester", csr.Spec.Username, "reason", d.Reason)
	} else {
		a.log.Info("approved kubelet serving CSR", "csr", name, "reason", d.Reason)
	}
	return false
}
