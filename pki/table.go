package pki

import (
	"crypto/x509"
	"fmt"
	"net"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// CertConfig is what a certificate must say: subject, SANs and extended key
// usages. CAs have no SANs and no extended usages.
type CertConfig struct {
	CommonName    string
	Organizations []string
	DNSNames      []string
	IPs           []net.IP
	Usages        []x509.ExtKeyUsage
}

// Cert is one row of the certificate table.
type Cert struct {
	// Name is kubeadm's name for it: the `init phase certs NAME` sub-phase,
	// the `certs renew NAME` argument, the check-expiration row.
	Name string
	// LongName says what it is for (help texts).
	LongName string
	// BaseName is the file name under the certificate dir without extension
	// ("etcd/server" → etcd/server.crt, etcd/server.key).
	BaseName string
	// CAName is the Name of the signing CA; empty for CAs.
	CAName string
	// IsCA marks a self-signed certificate authority.
	IsCA bool
	// Config builds the subject, SANs and usages for a Spec.
	Config func(Spec) (CertConfig, error)
}

// Names used across the table.
const (
	CAName           = "ca"
	KubeletServingCA = "kubelet-serving-ca"
	FrontProxyCA     = "front-proxy-ca"
	EtcdCA           = "etcd-ca"
	ServiceAccount   = "sa"
	ClusterAdmins    = "kubeadm:cluster-admins"
	SystemMasters    = "system:masters"
	NodesGroup       = "system:nodes"
	NodesUserPrefix  = "system:node:"
)

var (
	serverAuth      = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	clientAuth      = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	serverAndClient = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
)

func fixed(cn string, usages []x509.ExtKeyUsage, orgs ...string) func(Spec) (CertConfig, error) {
	return func(Spec) (CertConfig, error) {
		return CertConfig{CommonName: cn, Organizations: orgs, Usages: usages}, nil
	}
}

// Certificates is the certificate table, in kubeadm's order. The
// service-account key pair ("sa") is not a certificate and is described by
// ServiceAccountKey; Ensure and EnsureAll handle it too.
var Certificates = []Cert{
	{
		Name: CAName, BaseName: "ca", IsCA: true,
		LongName: "self-signed Kubernetes CA to provision identities for other Kubernetes components",
		Config:   fixed("kubernetes", nil),
	},
	{
		Name: "apiserver", BaseName: "apiserver", CAName: CAName,
		LongName: "certificate for serving the Kubernetes API",
		Config:   apiServerConfig,
	},
	{
		// kubeadm v1.37 gives this certificate no organization: the apiserver
		// is authorized on kubelets by the ClusterRoleBinding
		// kubeadm:apiserver-kubelet-client (user kube-apiserver-kubelet-client
		// → system:kubelet-api-admin), not by a group.
		Name: "apiserver-kubelet-client", BaseName: "apiserver-kubelet-client", CAName: CAName,
		LongName: "certificate for the API server to connect to kubelet",
		Config:   fixed("kube-apiserver-kubelet-client", clientAuth),
	},
	{
		// Not in kubeadm. The controller-manager signs kubelet serving
		// certificates (signer kubernetes.io/kubelet-serving) with this CA,
		// and the API server verifies kubelets with it
		// (--kubelet-certificate-authority). No client trusts it for the
		// API server, so a kubelet serving certificate, whatever names it
		// carries, can never pass for the API server's.
		Name: KubeletServingCA, BaseName: "kubelet-serving-ca", IsCA: true,
		LongName: "self-signed CA to sign kubelet serving certificates, which the API server verifies kubelets with",
		Config:   fixed("kubelet-serving-ca", nil),
	},
	{
		Name: FrontProxyCA, BaseName: "front-proxy-ca", IsCA: true,
		LongName: "self-signed CA to provision identities for front proxy",
		Config:   fixed("front-proxy-ca", nil),
	},
	{
		Name: "front-proxy-client", BaseName: "front-proxy-client", CAName: FrontProxyCA,
		LongName: "certificate for the front proxy client",
		Config:   fixed("front-proxy-client", clientAuth),
	},
	{
		Name: EtcdCA, BaseName: "etcd/ca", IsCA: true,
		LongName: "self-signed CA to provision identities for etcd",
		Config:   fixed("etcd-ca", nil),
	},
	{
		Name: "etcd-server", BaseName: "etcd/server", CAName: EtcdCA,
		LongName: "certificate for serving etcd",
		Config:   etcdConfig(func(s Spec) []string { return s.EtcdServerCertSANs }),
	},
	{
		Name: "etcd-peer", BaseName: "etcd/peer", CAName: EtcdCA,
		LongName: "certificate for etcd nodes to communicate with each other",
		Config:   etcdConfig(func(s Spec) []string { return s.EtcdPeerCertSANs }),
	},
	{
		Name: "etcd-healthcheck-client", BaseName: "etcd/healthcheck-client", CAName: EtcdCA,
		LongName: "certificate for liveness probes to healthcheck etcd",
		Config:   fixed("kube-etcd-healthcheck-client", clientAuth),
	},
	{
		Name: "apiserver-etcd-client", BaseName: "apiserver-etcd-client", CAName: EtcdCA,
		LongName: "certificate the apiserver uses to access etcd",
		Config:   fixed("kube-apiserver-etcd-client", clientAuth),
	},
}

// KeyPair is a bare key pair (no certificate): the service-account signing key.
type KeyPair struct {
	Name     string // "sa"
	LongName string
	BaseName string // sa → sa.key, sa.pub
}

// ServiceAccountKey is the key pair the apiserver signs (sa.key) and
// verifies (sa.pub) service-account tokens with. As in kubeadm it follows
// Spec.Algorithm (RSA of the chosen size, or ECDSA).
var ServiceAccountKey = KeyPair{
	Name:     ServiceAccount,
	BaseName: "sa",
	LongName: "a private key for signing service account tokens along with its public key",
}

// CertNames returns the names Ensure accepts, in table order: every
// certificate, then "sa". Use it to generate the certs sub-phases.
func CertNames() []string {
	names := make([]string, 0, len(Certificates)+1)
	for _, c := range Certificates {
		names = append(names, c.Name)
	}
	return append(names, ServiceAccount)
}

// LookupCert finds a table row by Name ("etcd-server") or BaseName ("etcd/server").
func LookupCert(name string) (Cert, bool) {
	for _, c := range Certificates {
		if c.Name == name || c.BaseName == name {
			return c, true
		}
	}
	return Cert{}, false
}

func mustCA(name string) Cert {
	c, ok := LookupCert(name)
	if !ok || !c.IsCA {
		panic("pki: table names unknown CA " + name)
	}
	return c
}

// apiServerConfig: kubeadm's GetAPIServerAltNames.
func apiServerConfig(s Spec) (CertConfig, error) {
	adv, err := s.advertise()
	if err != nil {
		return CertConfig{}, err
	}
	svcIP, err := serviceIP(s.ServiceSubnet)
	if err != nil {
		return CertConfig{}, err
	}
	cfg := CertConfig{CommonName: "kube-apiserver", Usages: serverAuth}
	if s.NodeName != "" {
		cfg.DNSNames = append(cfg.DNSNames, s.NodeName)
	}
	cfg.DNSNames = append(cfg.DNSNames, "kubernetes", "kubernetes.default", "kubernetes.default.svc")
	if s.DNSDomain != "" {
		cfg.DNSNames = append(cfg.DNSNames, "kubernetes.default.svc."+s.DNSDomain)
	}
	cfg.IPs = []net.IP{svcIP, adv}
	if s.ControlPlaneEndpoint != "" {
		ep, err := controlPlaneEndpoint(s.ControlPlaneEndpoint)
		if err != nil {
			return CertConfig{}, err
		}
		if ip := ep.IP(); ip != nil {
			cfg.IPs = append(cfg.IPs, ip)
		} else {
			cfg.DNSNames = append(cfg.DNSNames, ep.Host)
		}
	}
	if err := appendSANs(&cfg, s.APIServerCertSANs, "apiserver"); err != nil {
		return CertConfig{}, err
	}
	dedupe(&cfg)
	return cfg, nil
}

// etcdConfig: kubeadm's getAltNames for etcd server and peer; CN is the node name.
func etcdConfig(extra func(Spec) []string) func(Spec) (CertConfig, error) {
	return func(s Spec) (CertConfig, error) {
		adv, err := s.advertise()
		if err != nil {
			return CertConfig{}, err
		}
		if s.NodeName == "" {
			return CertConfig{}, fmt.Errorf("node name is not set: etcd certificates use it as their CN")
		}
		cfg := CertConfig{
			CommonName: s.NodeName,
			Usages:     serverAndClient,
			DNSNames:   []string{s.NodeName, "localhost"},
			IPs:        []net.IP{adv, net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback},
		}
		if err := appendSANs(&cfg, extra(s), "etcd"); err != nil {
			return CertConfig{}, err
		}
		dedupe(&cfg)
		return cfg, nil
	}
}

// appendSANs adds extra SANs: IPs as IP SANs, DNS-1123 names (or wildcards)
// as DNS SANs. kubeadm drops an invalid entry with a warning; we refuse it.
func appendSANs(cfg *CertConfig, sans []string, cert string) error {
	for _, san := range sans {
		san = strings.TrimSpace(san)
		if san == "" {
			continue
		}
		if ip := net.ParseIP(san); ip != nil {
			cfg.IPs = append(cfg.IPs, ip)
			continue
		}
		if len(validation.IsDNS1123Subdomain(san)) == 0 || len(validation.IsWildcardDNS1123Subdomain(san)) == 0 {
			cfg.DNSNames = append(cfg.DNSNames, san)
			continue
		}
		return fmt.Errorf("extra SAN %q for the %s certificate is neither an IP address nor a valid DNS name (RFC 1123): fix the certSANs list", san, cert)
	}
	return nil
}

// dedupe removes repeated SANs like kubeadm's RemoveDuplicateAltNames: DNS
// names end up sorted, IPs keep their first-occurrence order (IPv4 in 4-byte form).
func dedupe(cfg *CertConfig) {
	seen := map[string]bool{}
	var dns []string
	for _, d := range cfg.DNSNames {
		if k := strings.ToLower(d); !seen[k] {
			seen[k] = true
			dns = append(dns, d)
		}
	}
	sort.Strings(dns)
	cfg.DNSNames = dns
	seenIP := map[string]bool{}
	var ips []net.IP
	for _, ip := range cfg.IPs {
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		if k := ip.String(); !seenIP[k] {
			seenIP[k] = true
			ips = append(ips, ip)
		}
	}
	cfg.IPs = ips
}

// Kubeconfig is one row of the kubeconfig table.
type Kubeconfig struct {
	// Name is kubeadm's phase name ("admin", "controller-manager").
	Name string
	// FileName is the file in the Kubernetes dir ("admin.conf"); it is also
	// the name `certs renew` and check-expiration use.
	FileName string
	LongName string
	// Local: the server is this node's apiserver (https://advertise:port),
	// not the control-plane endpoint (controller-manager, scheduler, and
	// kubelet.conf on a control-plane node since kubeadm v1.3x).
	Local bool
	// AlsoControlPlane: an existing file may point at the control-plane
	// endpoint instead (kubelet.conf written by older kubeadm, or the one
	// kubeadm's external-CA validation expects).
	AlsoControlPlane bool
	// Renewable by `certs renew` (kubeadm leaves kubelet.conf to the
	// kubelet's own rotation; kubeforge renews it while it still embeds a
	// certificate).
	Renewable bool
	// Client builds the client certificate's subject.
	Client func(Spec) (CertConfig, error)
}

// Kubeconfigs is the kubeconfig table, in kubeadm's order.
var Kubeconfigs = []Kubeconfig{
	{
		Name: "admin", FileName: "admin.conf", Renewable: true,
		LongName: "kubeconfig file for the admin to use and for kubeadm itself",
		Client:   fixed("kubernetes-admin", clientAuth, ClusterAdmins),
	},
	{
		Name: "super-admin", FileName: "super-admin.conf", Renewable: true,
		LongName: "kubeconfig file for the super-admin",
		Client:   fixed("kubernetes-super-admin", clientAuth, SystemMasters),
	},
	{
		// kubeadm v1.37 init unsets controlPlaneEndpoint for kubelet.conf so
		// that the control-plane kubelet talks to its local apiserver.
		Name: "kubelet", FileName: "kubelet.conf", Local: true, AlsoControlPlane: true, Renewable: true,
		LongName: "kubeconfig file for the kubelet to use ONLY for cluster bootstrapping purposes",
		Client: func(s Spec) (CertConfig, error) {
			if s.NodeName == "" {
				return CertConfig{}, fmt.Errorf("node name is not set: kubelet.conf's user is system:node:<node name>")
			}
			return CertConfig{CommonName: NodesUserPrefix + s.NodeName, Organizations: []string{NodesGroup}, Usages: clientAuth}, nil
		},
	},
	{
		Name: "controller-manager", FileName: "controller-manager.conf", Local: true, Renewable: true,
		LongName: "kubeconfig file for the controller manager to use",
		Client:   fixed("system:kube-controller-manager", clientAuth),
	},
	{
		Name: "scheduler", FileName: "scheduler.conf", Local: true, Renewable: true,
		LongName: "kubeconfig file for the scheduler to use",
		Client:   fixed("system:kube-scheduler", clientAuth),
	},
}

// LookupKubeconfig finds a kubeconfig row by Name ("admin") or FileName ("admin.conf").
func LookupKubeconfig(name string) (Kubeconfig, bool) {
	for _, k := range Kubeconfigs {
		if k.Name == name || k.FileName == name {
			return k, true
		}
	}
	return Kubeconfig{}, false
}
