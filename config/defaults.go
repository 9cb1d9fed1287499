package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"
	"k8s.io/utils/ptr"

	"github.com/kubeforge/kubeforge/internal/version"
)

// Complete applies the defaults for this host and validates the result.
func (c *Config) Complete(h HostFacts) error {
	if err := c.checkUnsupported(); err != nil {
		return err
	}
	if err := c.applyDefaults(h); err != nil {
		return err
	}
	return c.Validate(h)
}

func (c *Config) applyDefaults(h HostFacts) error {
	nr := &c.Init.NodeRegistration
	if nr.Name == "" {
		nr.Name = strings.ToLower(h.Hostname)
	}
	defaultKubeforge(&c.Kubeforge)
	ep := &c.Init.LocalAPIEndpoint
	if ep.AdvertiseAddress == "" {
		if h.DefaultAddress == nil {
			return errors.New("no advertise address: pass --advertise-address (or set InitConfiguration.localAPIEndpoint.advertiseAddress)")
		}
		ip, err := h.DefaultAddress()
		if err != nil {
			return fmt.Errorf("choosing an advertise address: %w; pass --advertise-address", err)
		}
		ep.AdvertiseAddress = ip.String()
	}
	if ep.BindPort == 0 {
		ep.BindPort = DefaultBindPort
	}
	c.ThisNode = initNode(c)
	if len(c.Init.BootstrapTokens) == 0 {
		c.Init.BootstrapTokens = append(c.Init.BootstrapTokens, defaultToken())
	}
	for i := range c.Init.BootstrapTokens {
		t := &c.Init.BootstrapTokens[i]
		if t.TTL == nil && t.Expires == nil {
			t.TTL = &metav1.Duration{Duration: DefaultTokenTTL}
		}
		if len(t.Usages) == 0 {
			t.Usages = []string{"signing", "authentication"}
		}
		if len(t.Groups) == 0 {
			t.Groups = []string{"system:bootstrappers:kubeadm:default-node-token"}
		}
	}

	cl := &c.Cluster
	n := &cl.Networking
	if n.ServiceSubnet == "" {
		n.ServiceSubnet = DefaultServiceSubnet
	}
	if n.PodSubnet == "" {
		n.PodSubnet = DefaultPodSubnet
	}
	if n.DNSDomain == "" {
		n.DNSDomain = DefaultDNSDomain
	}
	if cl.CertificatesDir == "" {
		cl.CertificatesDir = c.Paths.CertDir
	} else {
		c.Paths.CertDir = filepath.Clean(cl.CertificatesDir)
	}
	if cl.Etcd.Local == nil {
		cl.Etcd.Local = &v1beta4.LocalEtcd{}
	}
	if cl.Etcd.Local.DataDir == "" {
		cl.Etcd.Local.DataDir = c.Paths.EtcdDataDir
	} else {
		c.Paths.EtcdDataDir = filepath.Clean(cl.Etcd.Local.DataDir)
	}
	if cl.ClusterName == "" {
		cl.ClusterName = DefaultClusterName
	}
	if cl.KubernetesVersion == "" {
		cl.KubernetesVersion = version.Kubernetes
	}
	if cl.EncryptionAlgorithm == "" {
		cl.EncryptionAlgorithm = DefaultAlgorithm
	}
	if cl.CACertificateValidityPeriod == nil {
		cl.CACertificateValidityPeriod = &metav1.Duration{Duration: DefaultCAValidity}
	}
	if cl.CertificateValidityPeriod == nil {
		cl.CertificateValidityPeriod = &metav1.Duration{Duration: DefaultCertValidity}
	}
	if err := c.defaultKubelet(h); err != nil {
		return err
	}
	c.defaultKubeProxy(h)
	return nil
}

// KubeProxyKubeconfig is where kube-proxy's pod finds its kubeconfig (from
// the kube-proxy ConfigMap), as with kubeadm.
const KubeProxyKubeconfig = "/var/lib/kube-proxy/kubeconfig.conf"

// defaultKubeProxy fills the KubeProxyConfiguration as kubeadm does, with
// nftables mode where the host has nft (IPVS is not an option on kernels
// without its modules), and conntrack limits left to the host.
func (c *Config) defaultKubeProxy(h HostFacts) {
	k := &c.KubeProxy
	if k.ClientConnection.Kubeconfig == "" {
		k.ClientConnection.Kubeconfig = KubeProxyKubeconfig
	}
	if k.ClusterCIDR == "" {
		k.ClusterCIDR = c.Cluster.Networking.PodSubnet
	}
	if k.BindAddress == "" {
		k.BindAddress = "0.0.0.0"
	}
	if k.Mode == "" {
		k.Mode = "iptables"
		if h.HasNft {
			k.Mode = "nftables"
		}
	}
	if k.Conntrack.MaxPerCore == nil {
		// Leave nf_conntrack_max alone: it is host-wide, and several nodes
		// may share a host.
		k.Conntrack.MaxPerCore = ptr.To[int32](0)
	}
}

// StrongCipherSuites are the TLS 1.2 cipher suites the API server and the
// kubelets offer (the CIS Kubernetes Benchmark's list: ECDHE with AEAD).
var StrongCipherSuites = []string{
	"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
	"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
	"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
	"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
	"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
	"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
}

// DefaultPodPidsLimit bounds the processes of one pod (kubelet podPidsLimit).
const DefaultPodPidsLimit = 4096

// defaultKubelet fills the KubeletConfiguration the way kubeadm does, plus
// kubeforge's secure defaults, keeping every value the user set.
func (c *Config) defaultKubelet(h HostFacts) error {
	k := &c.Kubelet
	if k.StaticPodPath == "" {
		k.StaticPodPath = c.Paths.ManifestsDir
	}
	a := &k.Authentication
	if a.Anonymous.Enabled == nil {
		a.Anonymous.Enabled = ptr.To(false)
	}
	if a.Webhook.Enabled == nil {
		a.Webhook.Enabled = ptr.To(true)
	}
	if a.X509.ClientCAFile == "" {
		a.X509.ClientCAFile = c.Paths.Cert("ca.crt")
	}
	if k.Authorization.Mode == "" {
		k.Authorization.Mode = kubeletv1beta1.KubeletAuthorizationModeWebhook
	}
	if len(k.ClusterDNS) == 0 && len(c.ServiceSubnets()) > 0 {
		k.ClusterDNS = []string{c.DNSServiceIP().String()}
	}
	if k.ClusterDomain == "" {
		k.ClusterDomain = c.Cluster.Networking.DNSDomain
	}
	k.RotateCertificates = true
	if !c.kubeletKeys["serverTLSBootstrap"] {
		k.ServerTLSBootstrap = true
	}
	if k.CgroupDriver == "" {
		if h.SystemdInit {
			k.CgroupDriver = "systemd"
		} else {
			k.CgroupDriver = "cgroupfs"
		}
	}
	if k.FailCgroupV1 == nil && h.CgroupV1 {
		k.FailCgroupV1 = ptr.To(false)
	}
	if k.ContainerRuntimeEndpoint == "" {
		k.ContainerRuntimeEndpoint = c.CRIEndpoint()
	}
	// CIS Kubernetes Benchmark 4.2: strong TLS ciphers only (TLS 1.3's are
	// always on), the runtime's default seccomp profile for every container,
	// and a bound on the processes one pod may start.
	if len(k.TLSCipherSuites) == 0 {
		k.TLSCipherSuites = StrongCipherSuites
	}
	if k.SeccompDefault == nil {
		k.SeccompDefault = ptr.To(true)
	}
	if k.PodPidsLimit == nil {
		k.PodPidsLimit = ptr.To[int64](DefaultPodPidsLimit)
	}
	if k.HealthzBindAddress == "" {
		k.HealthzBindAddress = "127.0.0.1"
	}
	if k.HealthzPort == nil {
		k.HealthzPort = ptr.To[int32](DefaultKubeletHealthzPort)
	}
	if k.ResolverConfig == nil {
		k.ResolverConfig = ptr.To(h.resolvConf())
	}
	return nil
}

// resolvConf is the resolv.conf the kubelet gives pods with dnsPolicy
// Default (CoreDNS among them): /etc/resolv.conf, unless it only names
// systemd-resolved's local stub (127.0.0.53), which CoreDNS would see as a
// loop; then systemd-resolved's list of real servers, as kubeadm does.
func (h HostFacts) resolvConf() string {
	if h.ResolvedStub {
		return "/run/systemd/resolve/resolv.conf"
	}
	return "/etc/resolv.conf"
}

// HostDefaults reads the facts defaults depend on from the real host.
func HostDefaults() HostFacts {
	h := HostFacts{DefaultAddress: defaultAddress, SourceAddress: sourceAddress}
	h.Hostname, _ = os.Hostname()
	if comm, err := os.ReadFile("/proc/1/comm"); err == nil {
		h.SystemdInit = strings.TrimSpace(string(comm)) == "systemd"
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
		h.CgroupV1 = true
	}
	if _, err := exec.LookPath("nft"); err == nil {
		h.HasNft = true
	}
	h.ResolvedStub = usesResolvedStub("/etc/resolv.conf", "/run/systemd/resolve/resolv.conf")
	return h
}

// usesResolvedStub reports whether resolvConf names only local stub
// resolvers (127.0.0.0/8) and systemd-resolved's full list exists.
func usesResolvedStub(resolvConf, resolved string) bool {
	if _, err := os.Stat(resolved); err != nil {
		return false
	}
	b, err := os.ReadFile(resolvConf)
	if err != nil {
		return false
	}
	servers := 0
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			servers++
			if !strings.HasPrefix(f[1], "127.") {
				return false
			}
		}
	}
	return servers > 0
}

// defaultAddress picks the first global unicast address of an interface
// that is up, preferring IPv4, as kubeadm does when there is a default route.
func defaultAddress() (net.IP, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var v6 net.IP
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || !ipn.IP.IsGlobalUnicast() {
				continue
			}
			if ipn.IP.To4() != nil {
				return ipn.IP, nil
			}
			if v6 == nil {
				v6 = ipn.IP
			}
		}
	}
	if v6 != nil {
		return v6, nil
	}
	return nil, errors.New("no interface has a global unicast address")
}

// sourceAddress is this host's address on the route to endpoint (host:port);
// no packet is sent (a UDP socket is only connected).
func sourceAddress(endpoint string) (string, error) {
	host := endpoint
	if u, err := url.Parse(endpoint); err == nil && u.Host != "" {
		host = u.Host
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), "443")
		}
	}
	c, err := net.Dial("udp", host)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP.String(), nil
}
