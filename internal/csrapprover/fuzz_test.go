package csrapprover

import (
	"crypto/x509"
	"encoding/pem"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"net"
	"slices"
	"strings"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
)

// fuzzRequest is a signed PEM certificate request (a fresh key each run:
// the signature bytes differ between runs, the structure does not).
func fuzzRequest(f *testing.F, cn string, orgs, dns []string, ips ...string) []byte {
	return request(f, cn, orgs, dns, ips)
}

func fuzzNode(name, ip string, controlPlane bool) *corev1.Node {
	if controlPlane {
		return node(name, ip, ControlPlaneLabel)
	}
	return node(name, ip)
}

func FuzzCheck(f *testing.F) {
	org := []string{"system:nodes"}
	n1 := fuzzRequest(f, "system:node:n1", org, []string{"n1"}, "10.0.0.2")
	f.Add(n1, "system:node:n1", true, false)
	f.Add(fuzzRequest(f, "system:node:n1", org, []string{"N1"}), "system:node:n1", true, false)
	f.Add(fuzzRequest(f, "system:node:cp", org, []string{"cp"}, "10.0.0.1"), "system:node:cp", true, false)
	f.Add(fuzzRequest(f, "system:node:n1", org, nil, "10.0.0.3"), "system:node:n1", true, false)
	f.Add(fuzzRequest(f, "system:node:n1", org, nil, "10.96.0.1"), "system:node:n1", true, false)
	f.Add(fuzzRequest(f, "system:node:n1", org, []string{"x.lb.example"}), "system:node:n1", true, false)
	f.Add(fuzzRequest(f, "system:node:n1", org, nil, "127.0.0.1", "::ffff:10.0.0.2"), "system:node:n1", true, false)
	f.Add(fuzzRequest(f, "system:node:n2", org, []string{"n1"}), "system:node:n1", true, false)
	f.Add(fuzzRequest(f, "system:node:n1", []string{"system:masters"}, []string{"n1"}), "system:node:n1", true, false)
	f.Add(n1, "system:node:n1", false, false)
	f.Add(n1, "system:node:n1", true, true)
	f.Add(n1, "alice", true, false)
	blk, _ := pem.Decode(n1)
	f.Add(blk.Bytes, "system:node:n1", true, false)
	bad := slices.Clone(blk.Bytes)
	bad[len(bad)-3] ^= 0xff
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: bad}), "system:node:n1", true, false)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: blk.Bytes}), "system:node:n1", true, false)
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n"), "system:node:n1", true, false)
	f.Add([]byte{}, "", false, false)

	cidrs, err := ParseCIDRs("10.96.0.0/16,fd00:96::/108")
	if err != nil {
		f.Fatal(err)
	}
	reserved := Reserved{
		APIServerDNSNames: []string{"cp", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local", "api.example", "*.lb.example"},
		APIServerIPs: []net.IP{net.ParseIP("10.96.0.1"), net.ParseIP("10.0.0.1"), net.ParseIP("10.0.0.100")},
		ServiceCIDRs: cidrs,
	}
	f.Fuzz(func(t *testing.T, request []byte, username string, nodeExists, clientAuth bool) {
		usages := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}
		if clientAuth {
			usages = append(usages, certificatesv1.UsageClientAuth)
		}
		csr := &certificatesv1.CertificateSigningRequest{ObjectMeta: metav1.ObjectMeta{Name: "fuzz"},
			Spec: certificatesv1.CertificateSigningRequestSpec{SignerName: SignerName, Username: username,
				Groups: []string{"system:nodes", "system:authenticated"}, Request: request, Usages: usages}}
		// The facts as the approver gathers them: the requester's Node (if
		// it exists) and every other Node.
		facts := Facts{Reserved: reserved}
		name, _ := strings.CutPrefix(username, NodeUserPrefix)
		for _, n := range []*corev1.Node{fuzzNode("cp", "10.0.0.1", true), fuzzNode("n1", "10.0.0.2", false), fuzzNode("n2", "10.0.0.3", false)} {
			if n.Name == name {
				if nodeExists {
					facts.Node = n
				}
			} else {
				facts.Others = append(facts.Others, n)
			}
		}
		d := Check(csr, facts)
		if d.Reason == "" {
			t.Fatalf("decision without a reason: %+v", d)
		}
		if d.Verdict < Wait || d.Verdict > Ignore {
			t.Fatalf("verdict %d", d.Verdict)
		}
		if d.Verdict != Approve {
			return
		}
		if facts.Node == nil || username != NodeUserPrefix+facts.Node.Name {
			t.Fatalf("approved for user %q, node %v: %s", username, facts.Node, d.Reason)
		}
		if clientAuth {
			t.Fatal("approved client auth")
		}
		blk, _ := pem.Decode(request)
		if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
			t.Fatal("approved a request that is not PEM")
		}
		req, err := x509.ParseCertificateRequest(blk.Bytes)
		if err != nil {
			t.Fatalf("approved a request that does not parse: %v", err)
		}
		if err := req.CheckSignature(); err != nil {
			t.Fatalf("approved a request with a bad signature: %v", err)
		}
		if req.Subject.CommonName != username || !slices.Equal(req.Subject.Organization, []string{"system:nodes"}) {
			t.Fatalf("approved subject %v for %q", req.Subject, username)
		}
		if len(req.DNSNames)+len(req.IPAddresses) == 0 || len(req.EmailAddresses)+len(req.URIs) > 0 {
			t.Fatalf("approved names %v %v %v %v", req.DNSNames, req.IPAddresses, req.EmailAddresses, req.URIs)
		}
		own := facts.Node
		for _, dns := range req.DNSNames {
			if !strings.EqualFold(dns, own.Name) {
				t.Fatalf("approved DNS name %q for node %s", dns, own.Name)
			}
		}
		ownIP := net.ParseIP(own.Status.Addresses[0].Address)
		for _, ip := range req.IPAddresses {
			if !ip.Equal(ownIP) {
				t.Fatalf("approved IP %s for node %s", ip, own.Name)
			}
			for _, n := range cidrs {
				if n.Contains(ip) {
					t.Fatalf("approved Service IP %s", ip)
				}
			}
			if _, cp := own.Labels[ControlPlaneLabel]; !cp && slices.ContainsFunc(reserved.APIServerIPs, ip.Equal) {
				t.Fatalf("approved the API server's IP %s for worker %s", ip, own.Name)
			}
		}
	})
}
