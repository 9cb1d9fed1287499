// Package config is kubeforge's configuration: kubeadm's own
// kubeadm.k8s.io/v1beta4 documents (InitConfiguration, ClusterConfiguration,
// JoinConfiguration), the kubelet's KubeletConfiguration and kube-proxy's
// KubeProxyConfiguration, decoded strictly, defaulted for this host, and
// validated with errors that name the file, the field and the bad value.
package config

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeproxyv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	bootstraptokenv1 "k8s.io/kubernetes/cmd/kubeadm/app/apis/bootstraptoken/v1"
	"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"
)

// API groups and kinds kubeforge reads.
const (
	KubeadmAPIVersion   = "kubeadm.k8s.io/v1beta4"
	KubeletAPIVersion   = "kubelet.config.k8s.io/v1beta1"
	KubeProxyAPIVersion = "kubeproxy.config.k8s.io/v1alpha1"
)

// Defaults that are kubeadm's (or, where kubeadm has none, kubeforge's).
const (
	DefaultServiceSubnet = "10.96.0.0/12"
	DefaultPodSubnet     = "10.244.0.0/16"
	DefaultDNSDomain     = "cluster.local"
	DefaultClusterName   = "kubernetes"
	DefaultBindPort      = 6443
	DefaultCAValidity    = 10 * 365 * 24 * time.Hour
	DefaultCertValidity  = 365 * 24 * time.Hour
	// DefaultAlgorithm is kubeforge's, not kubeadm's (RSA-2048): ECDSA
	// P-256, as k3s. Its keys are made in microseconds rather than ~50 ms,
	// and a TLS handshake signs with it ~30x cheaper, which every component
	// pays on each new connection (the API server opens dozens to etcd as
	// it starts). `encryptionAlgorithm: RSA-2048` gives kubeadm's.
	DefaultAlgorithm = v1beta4.EncryptionAlgorithmECDSAP256
	DefaultTokenTTL  = 24 * time.Hour
	DefaultImageRepo = "registry.k8s.io"
	// DefaultKubeletHealthzPort is the kubelet's healthzPort when its
	// configuration sets none (the kubelet's own default).
	DefaultKubeletHealthzPort = 10248
)

// Config is one node's whole configuration.
type Config struct {
	Init      v1beta4.InitConfiguration
	Join      v1beta4.JoinConfiguration
	Cluster   v1beta4.ClusterConfiguration
	Kubelet   kubeletv1beta1.KubeletConfiguration
	KubeProxy kubeproxyv1alpha1.KubeProxyConfiguration
	// Kubeforge is kubeforge's own document (settings kubeadm has no
	// field for); see KubeforgeConfiguration.
	Kubeforge KubeforgeConfiguration

	// Paths is where everything lives on the host.
	Paths Paths

	// Source is the config file the values came from ("" for flags/defaults).
	Source string
	// sources maps a field path to the flag that set it, so errors name
	// the flag the user typed rather than a field of a file they never wrote.
	sources map[string]string
	// kubeletKeys are the top-level keys of the KubeletConfiguration
	// document, to tell a false the user wrote from an absent bool.
	kubeletKeys map[string]bool
	// Warnings lists accepted settings that have no effect in kubeforge.
	Warnings []string

	// ThisNode is the node init or join sets up, built once by Complete
	// (init) or CompleteJoin (join) from the documents and flags: read it,
	// not InitConfiguration's nodeRegistration and localAPIEndpoint.
	ThisNode ThisNode
}

// SetFrom records that the field at path was set by flag (for error messages).
func (c *Config) SetFrom(path, flag string) {
	if c.sources == nil {
		c.sources = map[string]string{}
	}
	c.sources[path] = flag
}

// where names the origin of a field for an error message: the flag that set
// it, or the file and field path.
func (c *Config) where(path string) string {
	if f, ok := c.sources[path]; ok {
		return f
	}
	if c.Source != "" {
		return c.Source + ": " + path
	}
	return path
}

// HostFacts are the facts about the machine that defaults depend on.
// Tests inject them; HostDefaults reads the real ones.
type HostFacts struct {
	Hostname string
	// DefaultAddress returns the address to advertise when none is given.
	DefaultAddress func() (net.IP, error)
	// SourceAddress returns this host's address on the route to an
	// endpoint (host:port or a URL): a joining node's default address.
	SourceAddress func(endpoint string) (string, error)
	// SystemdInit is true when PID 1 is systemd.
	SystemdInit bool
	// CgroupV1 is true on cgroup v1 and hybrid hosts.
	CgroupV1 bool
	// HasNft is true when the host has the nft program (kube-proxy then
	// runs in nftables mode by default, else iptables).
	HasNft bool
	// ResolvedStub is true when /etc/resolv.conf only names
	// systemd-resolved's local stub.
	ResolvedStub bool
}

// New returns a Config with no file values.
func New() *Config {
	c := &Config{Paths: DefaultPaths()}
	c.Init.APIVersion, c.Init.Kind = KubeadmAPIVersion, "InitConfiguration"
	c.Join.APIVersion, c.Join.Kind = KubeadmAPIVersion, "JoinConfiguration"
	c.Cluster.APIVersion, c.Cluster.Kind = KubeadmAPIVersion, "ClusterConfiguration"
	c.Kubelet.APIVersion, c.Kubelet.Kind = KubeletAPIVersion, "KubeletConfiguration"
	c.KubeProxy.APIVersion, c.KubeProxy.Kind = KubeProxyAPIVersion, "KubeProxyConfiguration"
	c.Kubeforge.APIVersion, c.Kubeforge.Kind = KubeforgeAPIVersion, KubeforgeKind
	return c
}

// NodeName is this node's name (ThisNode.Name).
func (c *Config) NodeName() string { return c.ThisNode.Name }

// AdvertiseAddress is the address this node's API server advertises
// (ThisNode.API.Host).
func (c *Config) AdvertiseAddress() string { return c.ThisNode.API.Host }

// BindPort is this node's API server's secure port (ThisNode.API.Port).
func (c *Config) BindPort() int32 { return c.ThisNode.API.Port }

// LocalAPIEndpoint is https://<advertise>:<port>.
func (c *Config) LocalAPIEndpoint() string { return c.ThisNode.API.URL() }

// ControlPlaneEndpoint is the endpoint clients use: the configured
// control-plane endpoint (with the bind port added when it has none) or the
// local endpoint.
func (c *Config) ControlPlaneEndpoint() string {
	if c.Cluster.ControlPlaneEndpoint == "" {
		return c.LocalAPIEndpoint()
	}
	ep, ok := c.SharedEndpoint()
	if !ok {
		return "https://" + c.Cluster.ControlPlaneEndpoint // not valid: shown as written
	}
	return ep.URL()
}

// SharedEndpoint is ClusterConfiguration.controlPlaneEndpoint, parsed, with
// this node's bind port when it names none; false when none is set (or it
// does not parse: Validate refuses that).
func (c *Config) SharedEndpoint() (Endpoint, bool) {
	if c.Cluster.ControlPlaneEndpoint == "" {
		return Endpoint{}, false
	}
	ep, err := ParseEndpoint(c.Cluster.ControlPlaneEndpoint)
	if err != nil {
		return Endpoint{}, false
	}
	return ep.WithDefaultPort(c.BindPort()), true
}

// ServiceSubnets returns the service CIDRs (one per IP family).
func (c *Config) ServiceSubnets() []netip.Prefix {
	return mustPrefixes(c.Cluster.Networking.ServiceSubnet)
}

// PodSubnets returns the pod CIDRs (one per IP family).
func (c *Config) PodSubnets() []netip.Prefix { return mustPrefixes(c.Cluster.Networking.PodSubnet) }

// APIServerServiceIP is the first address of the (first) service CIDR: the
// `kubernetes` Service's ClusterIP.
func (c *Config) APIServerServiceIP() netip.Addr { return NthAddr(c.ServiceSubnets()[0], 1) }

// DNSServiceIP is the tenth address of the service CIDR, kube-dns's ClusterIP.
func (c *Config) DNSServiceIP() netip.Addr { return NthAddr(c.ServiceSubnets()[0], 10) }

// NthAddr returns the n-th address of p (0 is the network address).
func NthAddr(p netip.Prefix, n int) netip.Addr {
	a := p.Masked().Addr()
	for range n {
		a = a.Next()
	}
	return a
}

func mustPrefixes(s string) []netip.Prefix {
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		if p, err := netip.ParsePrefix(strings.TrimSpace(part)); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}

// CAValidity and CertValidity are the certificate lifetimes.
func (c *Config) CAValidity() time.Duration {
	if d := c.Cluster.CACertificateValidityPeriod; d != nil {
		return d.Duration
	}
	return DefaultCAValidity
}

// CertValidity is the lifetime of leaf certificates.
func (c *Config) CertValidity() time.Duration {
	if d := c.Cluster.CertificateValidityPeriod; d != nil {
		return d.Duration
	}
	return DefaultCertValidity
}

// Timeout returns a configured kubeadm timeout or def.
func Timeout(d *metav1.Duration, def time.Duration) time.Duration {
	if d == nil || d.Duration <= 0 {
		return def
	}
	return d.Duration
}

// Timeouts returns the InitConfiguration's timeouts (all unset when the
// file has none); use Timeout to apply a default.
func (c *Config) Timeouts() v1beta4.Timeouts {
	if c.Init.Timeouts == nil {
		return v1beta4.Timeouts{}
	}
	return *c.Init.Timeouts
}

// JoinTimeouts returns the JoinConfiguration's timeouts (all unset when the
// file has none).
func (c *Config) JoinTimeouts() v1beta4.Timeouts {
	if c.Join.Timeouts == nil {
		return v1beta4.Timeouts{}
	}
	return *c.Join.Timeouts
}

// ExternalCRI reports whether the node uses a container runtime other than
// the bundled containerd.
func (c *Config) ExternalCRI() bool {
	s := c.ThisNode.CRISocket
	return s != "" && strings.TrimPrefix(s, "unix://") != c.Paths.ContainerdSocket()
}

// CRIEndpoint is the kubelet's containerRuntimeEndpoint.
func (c *Config) CRIEndpoint() string {
	if c.ExternalCRI() {
		s := c.ThisNode.CRISocket
		if !strings.Contains(s, "://") {
			s = "unix://" + s
		}
		return s
	}
	return "unix://" + c.Paths.ContainerdSocket()
}

// ControlPlaneTaint is the taint kubeadm puts on control-plane nodes.
var ControlPlaneTaint = corev1.Taint{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule}

// defaultToken is the bootstrap token init creates when the config has none.
func defaultToken() bootstraptokenv1.BootstrapToken {
	return bootstraptokenv1.BootstrapToken{
		TTL:    &metav1.Duration{Duration: DefaultTokenTTL},
		Usages: []string{"signing", "authentication"},
		Groups: []string{"system:bootstrappers:kubeadm:default-node-token"},
	}
}

// String renders a compact description for logs.
func (c *Config) String() string {
	return fmt.Sprintf("node %s, advertise %s:%d, services %s, pods %s", c.NodeName(), c.AdvertiseAddress(),
		c.BindPort(), c.Cluster.Networking.ServiceSubnet, c.Cluster.Networking.PodSubnet)
}
