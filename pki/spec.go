// Package pki creates, verifies, reports on and renews the cluster's
// certificates and kubeconfig files, the way kubeadm lays them out.
//
// Two tables drive everything: Certificates (CAs and the leaves they sign,
// in kubeadm's order, plus the service-account key pair) and Kubeconfigs.
// The init sub-phases, `certs renew` names and `certs check-expiration` rows
// are generated from them.
//
// Every operation is idempotent: what exists is loaded and verified
// (signature, key match, subject, SANs, validity) and reused untouched; what
// is missing is created; what exists but does not fit is refused with its
// path, the reason and what to do. A CA whose certificate is present without
// its key is "external": kubeforge then signs nothing with it and requires
// every certificate and kubeconfig it would sign to be provided.
//
// Certificates are issued with cfssl (csr + signer/local). All writes go
// through fsutil.WriteFile: keys and kubeconfigs 0600, certificates and
// public keys 0644.
package pki

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/kubeforge/kubeforge/config"
)

// Defaults for a Spec made by hand (config.Config.Complete already applied
// them to a Spec made with ForConfig): config's, which are kubeadm's but for
// the key algorithm (config.DefaultAlgorithm says why).
const (
	DefaultCAValidity  = config.DefaultCAValidity
	DefaultValidity    = config.DefaultCertValidity
	DefaultAlgorithm   = string(config.DefaultAlgorithm)
	DefaultBindPort    = config.DefaultBindPort
	DefaultClusterName = config.DefaultClusterName
	// CertificateBackdate is how far NotBefore is set in the past, to
	// tolerate small clock differences between nodes (kubeadm: 5 minutes).
	CertificateBackdate = 5 * time.Minute
)

// Key algorithms, named as kubeadm's ClusterConfiguration.encryptionAlgorithm.
const (
	AlgorithmRSA2048   = "RSA-2048"
	AlgorithmRSA3072   = "RSA-3072"
	AlgorithmRSA4096   = "RSA-4096"
	AlgorithmECDSAP256 = "ECDSA-P256"
	AlgorithmECDSAP384 = "ECDSA-P384"
)

// Spec is what the PKI is built from: the paths and the few cluster settings
// that end up in subjects, SANs and kubeconfig server URLs.
type Spec struct {
	Paths config.Paths

	// NodeName is this node's name: etcd server/peer CN and SAN, apiserver SAN,
	// kubelet.conf user system:node:<NodeName>.
	NodeName string
	// AdvertiseAddress is the apiserver's (and etcd's) address on this node.
	AdvertiseAddress net.IP
	// ControlPlaneEndpoint is "host" or "host:port" shared by all control-plane
	// nodes; empty means AdvertiseAddress:BindPort.
	ControlPlaneEndpoint string
	// BindPort is the apiserver's port (default 6443).
	BindPort int32
	// ServiceSubnet is the service CIDR, comma-separated when dual-stack;
	// the first IP of the first CIDR is the `kubernetes` Service IP.
	ServiceSubnet string
	// DNSDomain is the cluster domain (cluster.local); empty omits
	// kubernetes.default.svc.<domain> from the apiserver SANs, as kubeadm does.
	DNSDomain string

	// Extra SANs, each an IP or a DNS name (wildcards allowed).
	APIServerCertSANs  []string
	EtcdServerCertSANs []string
	EtcdPeerCertSANs   []string

	// CAValidity and Validity default to 10 years and 1 year.
	CAValidity time.Duration
	Validity   time.Duration
	// KeepLifetime: when Validity is unset, a renewal (Renew, RenewAll)
	// keeps the lifetime of the certificate it replaces instead of the
	// 1-year default (for `certs renew` when the cluster's
	// certificateValidityPeriod is unknown). New certificates still get
	// the default.
	KeepLifetime bool
	keepLifetime bool

	// Algorithm is one of the Algorithm* names (default ECDSA-P256).
	Algorithm string

	// Now is the clock (default time.Now).
	Now func() time.Time

	// Keys, when set, supplies pre-generated private keys. Start one with
	// NewKeyPool early (before preflight, say) and share it between the certs
	// and kubeconfig phases so key generation overlaps other work. Nil: each
	// EnsureAll/EnsureAllKubeconfigs/RenewAll generates its keys concurrently.
	Keys *KeyPool
}

// ForConfig is the certificate spec of this node from a completed
// configuration (config.Config.Complete or CompleteJoin, which applied
// every default): the node from Config.ThisNode, the cluster's names,
// SANs, lifetimes and key algorithm. Paths is where the files are (the
// configuration's, or a dry run's scratch root).
func ForConfig(c *config.Config, paths config.Paths) Spec {
	s := Spec{
		Paths:                paths,
		NodeName:             c.ThisNode.Name,
		AdvertiseAddress:     c.ThisNode.API.IP(),
		ControlPlaneEndpoint: c.Cluster.ControlPlaneEndpoint,
		BindPort:             c.ThisNode.API.Port,
		ServiceSubnet:        c.Cluster.Networking.ServiceSubnet,
		DNSDomain:            c.Cluster.Networking.DNSDomain,
		APIServerCertSANs:    c.Cluster.APIServer.CertSANs,
		CAValidity:           c.CAValidity(),
		Validity:             c.CertValidity(),
		Algorithm:            string(c.Cluster.EncryptionAlgorithm),
	}
	if l := c.Cluster.Etcd.Local; l != nil {
		s.EtcdServerCertSANs, s.EtcdPeerCertSANs = l.ServerCertSANs, l.PeerCertSANs
	}
	return s
}

// withDefaults returns a copy of s with defaults applied and the algorithm checked.
func (s Spec) withDefaults() (Spec, error) {
	if s.CAValidity == 0 {
		s.CAValidity = DefaultCAValidity
	}
	if s.Validity == 0 {
		s.keepLifetime = s.KeepLifetime
		s.Validity = DefaultValidity
	}
	if s.Algorithm == "" {
		s.Algorithm = DefaultAlgorithm
	}
	if s.BindPort == 0 {
		s.BindPort = DefaultBindPort
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	if _, err := parseAlgorithm(s.Algorithm); err != nil {
		return s, err
	}
	if s.CAValidity < 0 || s.Validity < 0 {
		return s, fmt.Errorf("certificate validity must be positive (CA %v, leaf %v)", s.CAValidity, s.Validity)
	}
	return s, nil
}

func (s Spec) advertise() (net.IP, error) {
	if s.AdvertiseAddress == nil || s.AdvertiseAddress.IsUnspecified() {
		return nil, fmt.Errorf("advertise address is not set: pass --advertise-address (an IP of this node)")
	}
	return s.AdvertiseAddress, nil
}

// ControlPlaneURL is the URL admin.conf, super-admin.conf and kubelet.conf
// point at: https://<ControlPlaneEndpoint> (port defaulting to BindPort), or
// the local endpoint when no ControlPlaneEndpoint is set.
func (s Spec) ControlPlaneURL() (string, error) {
	s, err := s.withDefaults()
	if err != nil {
		return "", err
	}
	if s.ControlPlaneEndpoint == "" {
		return s.LocalURL()
	}
	ep, err := controlPlaneEndpoint(s.ControlPlaneEndpoint)
	if err != nil {
		return "", err
	}
	return ep.WithDefaultPort(s.BindPort).URL(), nil
}

// controlPlaneEndpoint parses Spec.ControlPlaneEndpoint.
func controlPlaneEndpoint(s string) (config.Endpoint, error) {
	ep, err := config.ParseEndpoint(s)
	if err != nil {
		return config.Endpoint{}, fmt.Errorf("control-plane endpoint: %w", err)
	}
	return ep, nil
}

// LocalURL is the URL of this node's apiserver, https://<advertise>:<port>,
// which controller-manager.conf and scheduler.conf use (as in kubeadm).
func (s Spec) LocalURL() (string, error) {
	ip, err := s.advertise()
	if err != nil {
		return "", err
	}
	return config.Endpoint{Host: ip.String(), Port: s.BindPort}.WithDefaultPort(DefaultBindPort).URL(), nil
}

// serviceIP returns the first IP of the primary (first) service CIDR.
func serviceIP(subnets string) (net.IP, error) {
	first := strings.TrimSpace(strings.Split(subnets, ",")[0])
	if first == "" {
		return nil, fmt.Errorf("service subnet is empty: set networking.serviceSubnet (e.g. 10.96.0.0/12)")
	}
	_, cidr, err := net.ParseCIDR(first)
	if err != nil {
		return nil, fmt.Errorf("service subnet %q: %w", first, err)
	}
	ip := make(net.IP, len(cidr.IP))
	copy(ip, cidr.IP)
	for i := len(ip) - 1; i >= 0; i-- { // + 1
		ip[i]++
		if ip[i] != 0 {
			break
		}
	}
	if !cidr.Contains(ip) {
		return nil, fmt.Errorf("service subnet %q is too small to hold the kubernetes Service IP", first)
	}
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	return ip, nil
}
