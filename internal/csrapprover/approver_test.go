package csrapprover

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func request(t *testing.T, cn string, orgs, dns []string, ips []string) []byte {
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

func csrFor(name, user string, req []byte, usages ...certificatesv1.KeyUsage) *certificatesv1.CertificateSigningRequest {
	if usages == nil {
		usages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}
	}
	return &certificatesv1.CertificateSigningRequest{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: certificatesv1.CertificateSigningRequestSpec{SignerName: SignerName, Username: user,
			Groups: []string{"system:nodes", "system:authenticated"}, Request: req, Usages: usages}}
}

func testNode() *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "10.0.0.2"}, {Type: corev1.NodeHostName, Address: "n1"}}}}
}

func TestCheck(t *testing.T) {
	node := testNode()
	good := request(t, "system:node:n1", []string{"system:nodes"}, []string{"n1"}, []string{"10.0.0.2"})
	for _, tc := range []struct {
		name          string
		csr           *certificatesv1.CertificateSigningRequest
		node          *corev1.Node
		approve, retr bool
	}{
		{"own names", csrFor("a", "system:node:n1", good), node, true, false},
		{"no node yet", csrFor("a", "system:node:n1", good), nil, false, true},
		{"other node's IP", csrFor("a", "system:node:n1", request(t, "system:node:n1", []string{"system:nodes"}, []string{"n1"}, []string{"10.0.0.3"})), node, false, true},
		{"foreign DNS name", csrFor("a", "system:node:n1", request(t, "system:node:n1", []string{"system:nodes"}, []string{"evil.example"}, nil)), node, false, true},
		{"CN is another node", csrFor("a", "system:node:n1", request(t, "system:node:n2", []string{"system:nodes"}, []string{"n1"}, nil)), node, false, false},
		{"not a node", csrFor("a", "alice", good), node, false, false},
		{"client auth usage", csrFor("a", "system:node:n1", good, certificatesv1.UsageServerAuth, certificatesv1.UsageClientAuth), node, false, false},
		{"wrong org", csrFor("a", "system:node:n1", request(t, "system:node:n1", []string{"system:masters"}, []string{"n1"}, nil)), node, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Check(tc.csr, tc.node)
			if d.Approve != tc.approve || d.Retry != tc.retr {
				t.Fatalf("got %+v", d)
			}
		})
	}
	other := csrFor("a", "system:node:n1", good)
	other.Spec.SignerName = certificatesv1.KubeAPIServerClientKubeletSignerName
	if Check(other, node).Approve {
		t.Fatal("approved another signer's request")
	}
}

func TestRunApproves(t *testing.T) {
	good := csrFor("good", "system:node:n1", request(t, "system:node:n1", []string{"system:nodes"}, []string{"n1"}, []string{"10.0.0.2"}))
	bad := csrFor("bad", "system:node:n1", request(t, "system:node:n1", []string{"system:nodes"}, []string{"n1"}, []string{"10.9.9.9"}))
	client := fake.NewClientset(testNode(), good, bad)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Run(ctx, client, nil)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		g, _ := client.CertificatesV1().CertificateSigningRequests().Get(ctx, "good", metav1.GetOptions{})
		if !pending(g) {
			b, _ := client.CertificatesV1().CertificateSigningRequests().Get(ctx, "bad", metav1.GetOptions{})
			if !pending(b) {
				t.Fatal("approved a request for an address the node does not have")
			}
			if g.Status.Conditions[0].Type != certificatesv1.CertificateApproved {
				t.Fatalf("conditions %v", g.Status.Conditions)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the good request was not approved")
}
