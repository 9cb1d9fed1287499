package csrapprover

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func request(t testing.TB, cn string, orgs, dns []string, ips []string) []byte {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn, Organization: orgs}, DNSNames: dns}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// nodeReq is a well-formed request by node n1 for the given names.
func nodeReq(t testing.TB, dns []string, ips ...string) []byte {
	return request(t, "system:node:n1", []string{"system:nodes"}, dns, ips)
}

func csrFor(name, user string, req []byte, usages ...certificatesv1.KeyUsage) *certificatesv1.CertificateSigningRequest {
	if usages == nil {
		usages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}
	}
	return &certificatesv1.CertificateSigningRequest{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: certificatesv1.CertificateSigningRequestSpec{SignerName: SignerName, Username: user,
			Groups: []string{"system:nodes", "system:authenticated"}, Request: req, Usages: usages}}
}

func node(name, ip string, labels ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: ip}, {Type: corev1.NodeHostName, Address: name}}}}
	for _, l := range labels {
		n.Labels[l] = ""
	}
	return n
}

// The cluster of these tests: control-plane node cp (10.0.0.1, serving the
// API there and at the endpoint api.example / 10.0.0.100), workers n1
// (10.0.0.2) and n2 (10.0.0.3), Services in 10.96.0.0/16.
func reserved(t testing.TB) Reserved {
	cidrs, err := ParseCIDRs("10.96.0.0/16,fd00:96::/108")
	if err != nil {
		t.Fatal(err)
	}
	return Reserved{
		APIServerDNSNames: []string{"cp", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local", "api.example", "*.lb.example"},
		APIServerIPs: []net.IP{net.ParseIP("10.96.0.1"), net.ParseIP("10.0.0.1"), net.ParseIP("10.0.0.100")},
		ServiceCIDRs: cidrs,
	}
}

func TestCheck(t *testing.T) {
	cp := node("cp", "10.0.0.1", ControlPlaneLabel)
	n1, n2 := node("n1", "10.0.0.2"), node("n2", "10.0.0.3")
	// n1 has written an address of the API server's and of n2 into its own
	// status (a node writes its status itself).
	n1Liar := node("n1", "10.0.0.2")
	n1Liar.Status.Addresses = append(n1Liar.Status.Addresses,
		corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "10.0.0.100"},
		corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "10.96.0.1"},
		corev1.NodeAddress{Type: corev1.NodeExternalDNS, Address: "api.example"},
		corev1.NodeAddress{Type: corev1.NodeExternalDNS, Address: "kubernetes.default.svc"},
		corev1.NodeAddress{Type: corev1.NodeExternalDNS, Address: "x.lb.example"},
		corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "127.0.0.1"})
	facts := Facts{Node: n1, Others: []*corev1.Node{cp, n2}, Reserved: reserved(t)}
	liar := Facts{Node: n1Liar, Others: []*corev1.Node{cp, n2}, Reserved: reserved(t)}
	// n1 labelled as a control-plane node by a kubelet would be refused by
	// NodeRestriction; even so it gets no other node's addresses.
	n1CP := node("n1", "10.0.0.2", ControlPlaneLabel)
	good := nodeReq(t, []string{"n1"}, "10.0.0.2")
	for _, tc := range []struct {
		name  string
		csr   *certificatesv1.CertificateSigningRequest
		facts Facts
		want  Verdict
		why   string // part of the reason
	}{
		{"own names", csrFor("a", "system:node:n1", good), facts, Approve, "own names"},
		{"no node yet", csrFor("a", "system:node:n1", good), Facts{Others: []*corev1.Node{cp}, Reserved: reserved(t)}, Wait, "does not exist"},
		{"address not reported yet", csrFor("a", "system:node:n1", nodeReq(t, []string{"n1"}, "10.0.0.9")), facts, Wait, "not one of node n1's addresses"},
		{"name not reported yet", csrFor("a", "system:node:n1", nodeReq(t, []string{"n1.example"})), facts, Wait, "not one of node n1's names"},

		// Another node's names and addresses.
		{"other node's IP", csrFor("a", "system:node:n1", nodeReq(t, []string{"n1"}, "10.0.0.2", "10.0.0.3")), facts, Deny, "belongs to node n2"},
		{"other node's name", csrFor("a", "system:node:n1", nodeReq(t, []string{"n2"})), facts, Deny, "belongs to node n2"},
		{"control-plane node's IP", csrFor("a", "system:node:n1", nodeReq(t, nil, "10.0.0.1")), facts, Deny, "belongs to node cp"},
		{"control-plane node's name", csrFor("a", "system:node:n1", nodeReq(t, []string{"CP"})), facts, Deny, "belongs to node cp"},
		{"other node's IP, even as a control-plane node", csrFor("a", "system:node:n1", nodeReq(t, nil, "10.0.0.3")),
			Facts{Node: n1CP, Others: []*corev1.Node{cp, n2}, Reserved: reserved(t)}, Deny, "belongs to node n2"},

		// The API server's names and addresses, even when the node lists them.
		{"control-plane endpoint IP", csrFor("a", "system:node:n1", nodeReq(t, nil, "10.0.0.100")), liar, Deny, "API server's certificate"},
		{"control-plane endpoint name", csrFor("a", "system:node:n1", nodeReq(t, []string{"api.example"})), liar, Deny, "API server's certificate"},
		{"kubernetes service name", csrFor("a", "system:node:n1", nodeReq(t, []string{"kubernetes.default.svc"})), liar, Deny, "API server's certificate"},
		{"name under a wildcard SAN", csrFor("a", "system:node:n1", nodeReq(t, []string{"x.lb.example"})), liar, Deny, "*.lb.example"},
		{"kubernetes service IP", csrFor("a", "system:node:n1", nodeReq(t, nil, "10.96.0.1")), liar, Deny, "Service range"},
		{"any service IP", csrFor("a", "system:node:n1", nodeReq(t, nil, "10.96.3.4")), facts, Deny, "Service range"},
		{"IPv6 service IP", csrFor("a", "system:node:n1", nodeReq(t, nil, "fd00:96::a")), facts, Deny, "Service range"},
		{"loopback", csrFor("a", "system:node:n1", nodeReq(t, nil, "127.0.0.1")), liar, Deny, "no node alone"},
		{"unspecified", csrFor("a", "system:node:n1", nodeReq(t, nil, "0.0.0.0")), facts, Deny, "no node alone"},

		// A control-plane node gets its own name and address, which the API
		// server certificate carries too; not the endpoint's.
		{"control-plane node's own", csrFor("a", "system:node:cp", request(t, "system:node:cp", []string{"system:nodes"}, []string{"cp"}, []string{"10.0.0.1"})),
			Facts{Node: cp, Others: []*corev1.Node{n1, n2}, Reserved: reserved(t)}, Approve, "own names"},
		{"control-plane node, endpoint IP", csrFor("a", "system:node:cp", request(t, "system:node:cp", []string{"system:nodes"}, []string{"cp"}, []string{"10.0.0.100"})),
			Facts{Node: cp, Others: []*corev1.Node{n1, n2}, Reserved: reserved(t)}, Deny, "API server's certificate"},
		{"unlabelled node named like the API server", csrFor("a", "system:node:cp", request(t, "system:node:cp", []string{"system:nodes"}, []string{"cp"}, nil)),
			Facts{Node: node("cp", "10.0.0.1"), Reserved: reserved(t)}, Deny, "API server's certificate"},

		// The request itself.
		{"CN is another node", csrFor("a", "system:node:n1", request(t, "system:node:n2", []string{"system:nodes"}, []string{"n1"}, nil)), facts, Deny, "subject CN"},
		{"not a node", csrFor("a", "alice", good), facts, Deny, "not by a node"},
		{"client auth usage", csrFor("a", "system:node:n1", good, certificatesv1.UsageServerAuth, certificatesv1.UsageClientAuth), facts, Deny, "client auth"},
		{"no server auth", csrFor("a", "system:node:n1", good, certificatesv1.UsageDigitalSignature), facts, Deny, "lack server auth"},
		{"wrong org", csrFor("a", "system:node:n1", request(t, "system:node:n1", []string{"system:masters"}, []string{"n1"}, nil)), facts, Deny, "organization"},
		{"garbage", csrFor("a", "system:node:n1", []byte("not pem")), facts, Deny, "not a PEM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Check(tc.csr, tc.facts)
			if d.Verdict != tc.want || !strings.Contains(d.Reason, tc.why) {
				t.Fatalf("got %v (%s), want %v (…%s…)", d.Verdict, d.Reason, tc.want, tc.why)
			}
		})
	}
	other := csrFor("a", "system:node:n1", good)
	other.Spec.SignerName = certificatesv1.KubeAPIServerClientKubeletSignerName
	if d := Check(other, facts); d.Verdict != Ignore {
		t.Fatalf("another signer's request: %v", d)
	}
}

func TestReservedFromCert(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kube-apiserver"},
		DNSNames: []string{"kubernetes", "cp"}, IPAddresses: []net.IP{net.ParseIP("10.96.0.1")},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ReservedFromCert(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil)
	if err != nil || len(r.APIServerDNSNames) != 2 || !r.APIServerIPs[0].Equal(net.ParseIP("10.96.0.1")) {
		t.Fatalf("%+v %v", r, err)
	}
	if _, err := ReservedFromCert([]byte("junk"), nil); err == nil {
		t.Fatal("junk accepted")
	}
	if _, err := ParseCIDRs("10.96.0.0/33"); err == nil {
		t.Fatal("bad CIDR accepted")
	}
}

// decisions records what the approver decided, per CSR.
type decisions struct {
	mu   sync.Mutex
	seen map[string][]Decision
	ch   chan struct{}
}

func newDecisions() *decisions {
	return &decisions{seen: map[string][]Decision{}, ch: make(chan struct{}, 100)}
}

func (r *decisions) record(name string, d Decision) {
	r.mu.Lock()
	r.seen[name] = append(r.seen[name], d)
	r.mu.Unlock()
	r.ch <- struct{}{}
}

// waitFor blocks until cond holds for the recorded decisions.
func (r *decisions) waitFor(t *testing.T, what string, cond func(map[string][]Decision) bool) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		ok := cond(r.seen)
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.ch:
		case <-timeout:
			t.Fatalf("timed out waiting for %s; decisions: %v", what, r.seen)
		}
	}
}

func condition(t *testing.T, client *fake.Clientset, name string) certificatesv1.RequestConditionType {
	t.Helper()
	c, err := client.CertificatesV1().CertificateSigningRequests().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Status.Conditions) == 0 {
		return ""
	}
	return c.Status.Conditions[len(c.Status.Conditions)-1].Type
}

func TestRun(t *testing.T) {
	good := csrFor("good", "system:node:n1", nodeReq(t, []string{"n1"}, "10.0.0.2"))
	foreign := csrFor("foreign", "system:node:n1", nodeReq(t, []string{"n1"}, "10.0.0.3"))
	apiIP := csrFor("api-ip", "system:node:n1", nodeReq(t, nil, "10.0.0.100"))
	later := csrFor("later", "system:node:n1", nodeReq(t, []string{"n1"}, "10.0.0.7"))
	client := fake.NewClientset(node("n1", "10.0.0.2"), node("n2", "10.0.0.3"), good, foreign, apiIP, later)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := newDecisions()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, client, Options{Reserved: func() (Reserved, error) { return reserved(t), nil }, Decided: rec.record})
	}()
	rec.waitFor(t, "a decision on every request", func(s map[string][]Decision) bool {
		return len(s["good"]) > 0 && len(s["foreign"]) > 0 && len(s["api-ip"]) > 0 && len(s["later"]) > 0
	})
	for name, want := range map[string]certificatesv1.RequestConditionType{
		"good": certificatesv1.CertificateApproved, "foreign": certificatesv1.CertificateDenied,
		"api-ip": certificatesv1.CertificateDenied, "later": "",
	} {
		if got := condition(t, client, name); got != want {
			t.Errorf("%s: condition %q, want %q (decisions %v)", name, got, want, rec.seen[name])
		}
	}
	// "later" waits, seen and declined for now; once n1 reports the
	// address, the Node update brings it back and it is approved.
	n1 := node("n1", "10.0.0.2")
	n1.Status.Addresses = append(n1.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "10.0.0.7"})
	if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, n1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "later approved", func(s map[string][]Decision) bool {
		d := s["later"]
		return len(d) > 0 && d[len(d)-1].Verdict == Approve
	})
	if got := condition(t, client, "later"); got != certificatesv1.CertificateApproved {
		t.Fatalf("later: condition %q", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Without the API server's certificate the approver approves nothing.
func TestRunFailsClosed(t *testing.T) {
	good := csrFor("good", "system:node:n1", nodeReq(t, []string{"n1"}, "10.0.0.2"))
	client := fake.NewClientset(node("n1", "10.0.0.2"), good)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := newDecisions()
	go Run(ctx, client, Options{Decided: rec.record, Reserved: func() (Reserved, error) {
		return Reserved{}, &net.ParseError{Type: "test", Text: "no certificate"}
	}})
	rec.waitFor(t, "a decision", func(s map[string][]Decision) bool { return len(s["good"]) > 0 })
	if d := rec.seen["good"][0]; d.Verdict != Wait || !strings.Contains(d.Reason, "no certificate") {
		t.Fatalf("decision %v", d)
	}
	if got := condition(t, client, "good"); got != "" {
		t.Fatalf("condition %q", got)
	}
}
