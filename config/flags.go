package config

import (
	"errors"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"
)

// Changed reports whether the user typed a flag (by its name without
// dashes): pflag's FlagSet.Changed. A flag left at its default does not
// override the config file.
type Changed func(flag string) bool

// InitFlags are the flags of `kubeforge init` that set configuration
// (kubeadm's names). The command binds its flags to these fields; LoadInit
// merges them over --config.
type InitFlags struct {
	ConfigFile           string
	AdvertiseAddress     string
	BindPort             int32
	ControlPlaneEndpoint string
	NodeName             string
	PodNetworkCIDR       string
	ServiceCIDR          string
	ServiceDNSDomain     string
	CertSANs             []string
	CertDir              string
	CRISocket            string
	CertificateKey       string
	SingleNode           bool
	AirGapped            bool
	ControlPlaneRuntime  string
	// RootDir does all file I/O under this directory (tests).
	RootDir string
}

// LoadInit reads f.ConfigFile (if any), applies the flags the user set on
// top (recording which flag set which field, for error messages), then
// defaults and validates. Nothing is written.
func LoadInit(f InitFlags, changed Changed, h HostFacts) (*Config, error) {
	c := New()
	if f.ConfigFile != "" {
		var err error
		if c, err = Load(f.ConfigFile); err != nil {
			return nil, err
		}
	}
	f.Apply(c, changed)
	if err := c.Complete(h); err != nil {
		return nil, err
	}
	return c, nil
}

// Apply sets the fields of c that the flags the user typed name, and
// records which flag set which field.
func (f InitFlags) Apply(c *Config, changed Changed) {
	set := func(flag, path string, apply func()) {
		if changed(flag) {
			apply()
			c.SetFrom(path, "--"+flag)
		}
	}
	set("advertise-address", "InitConfiguration.localAPIEndpoint.advertiseAddress", func() { c.Init.LocalAPIEndpoint.AdvertiseAddress = f.AdvertiseAddress })
	set("apiserver-bind-port", "InitConfiguration.localAPIEndpoint.bindPort", func() { c.Init.LocalAPIEndpoint.BindPort = f.BindPort })
	set("control-plane-endpoint", "ClusterConfiguration.controlPlaneEndpoint", func() { c.Cluster.ControlPlaneEndpoint = f.ControlPlaneEndpoint })
	set("node-name", "InitConfiguration.nodeRegistration.name", func() { c.Init.NodeRegistration.Name = f.NodeName })
	set("pod-network-cidr", "ClusterConfiguration.networking.podSubnet", func() { c.Cluster.Networking.PodSubnet = f.PodNetworkCIDR })
	set("service-cidr", "ClusterConfiguration.networking.serviceSubnet", func() { c.Cluster.Networking.ServiceSubnet = f.ServiceCIDR })
	set("service-dns-domain", "ClusterConfiguration.networking.dnsDomain", func() { c.Cluster.Networking.DNSDomain = f.ServiceDNSDomain })
	set("cert-dir", "ClusterConfiguration.certificatesDir", func() { c.Cluster.CertificatesDir = f.CertDir })
	set("cri-socket", "InitConfiguration.nodeRegistration.criSocket", func() { c.Init.NodeRegistration.CRISocket = f.CRISocket })
	set("certificate-key", "InitConfiguration.certificateKey", func() { c.Init.CertificateKey = f.CertificateKey })
	set("air-gapped", "KubeforgeConfiguration.airGapped", func() { c.Kubeforge.AirGapped = f.AirGapped })
	set("control-plane-runtime", "KubeforgeConfiguration.controlPlane.runtime", func() { c.Kubeforge.ControlPlane.Runtime = f.ControlPlaneRuntime })
	if changed("apiserver-cert-extra-sans") {
		for i := range f.CertSANs {
			c.SetFrom(fmt.Sprintf("ClusterConfiguration.apiServer.certSANs[%d]", len(c.Cluster.APIServer.CertSANs)+i), "--apiserver-cert-extra-sans")
		}
		c.Cluster.APIServer.CertSANs = append(c.Cluster.APIServer.CertSANs, f.CertSANs...)
	}
	if f.SingleNode {
		c.Init.NodeRegistration.Taints = []corev1.Taint{}
		c.SetFrom("InitConfiguration.nodeRegistration.taints", "--single-node")
	}
	if f.RootDir != "" {
		c.Paths = c.Paths.WithRoot(f.RootDir)
	}
}

// JoinFlags are the flags of `kubeforge join` that set configuration
// (kubeadm's names); LoadJoin merges them over --config.
type JoinFlags struct {
	ConfigFile               string
	Token                    string
	DiscoveryToken           string
	TLSBootstrapToken        string
	CACertHashes             []string
	UnsafeSkipCAVerification bool
	DiscoveryFile            string
	DiscoveryTimeout         time.Duration
	NodeName                 string
	// NodeIP is not a JoinConfiguration field: LoadJoin makes it
	// ThisNode.IP (kubeadm passes it in kubeletExtraArgs).
	NodeIP           string
	CRISocket        string
	ControlPlane     bool
	CertificateKey   string
	AdvertiseAddress string
	BindPort         int32
	AirGapped        bool
	// ControlPlaneRuntime: see InitFlags (a control-plane join only).
	ControlPlaneRuntime string
}

// Field paths of the JoinConfiguration that flags set.
const (
	joinEndpointPath  = "JoinConfiguration.discovery.bootstrapToken.apiServerEndpoint"
	joinTokenPath     = "JoinConfiguration.discovery.bootstrapToken.token"
	joinTLSTokenPath  = "JoinConfiguration.discovery.tlsBootstrapToken"
	joinHashesPath    = "JoinConfiguration.discovery.bootstrapToken.caCertHashes"
	joinUnsafePath    = "JoinConfiguration.discovery.bootstrapToken.unsafeSkipCAVerification"
	joinFilePath      = "JoinConfiguration.discovery.file.kubeConfigPath"
	joinAdvertisePath = "JoinConfiguration.controlPlane.localAPIEndpoint.advertiseAddress"
)

// LoadJoin reads f.ConfigFile (if any), applies the flags and the
// API_SERVER_ENDPOINT argument (args) on top, recording which flag set
// which field, checks that discovery has what it needs, chooses this
// node's address (--node-ip, else the control-plane advertise address,
// else the host's address on the route to the cluster), then defaults and
// validates the node-local part (CompleteJoin). Nothing is written.
func LoadJoin(f JoinFlags, args []string, changed Changed, h HostFacts) (*Config, error) {
	c := New()
	if f.ConfigFile != "" {
		var err error
		if c, err = Load(f.ConfigFile); err != nil {
			return nil, err
		}
	}
	f.Apply(c, args, changed)
	if err := c.checkJoinDiscovery(); err != nil {
		return nil, err
	}
	nodeIP, err := c.joinNodeIP(f.NodeIP, h)
	if err != nil {
		return nil, err
	}
	if err := c.CompleteJoin(h, nodeIP); err != nil {
		return nil, err
	}
	return c, nil
}

// Apply merges the flags and the API_SERVER_ENDPOINT argument (args[0])
// into the JoinConfiguration, as kubeadm: without discovery in the file,
// token discovery; --token is both the discovery and the TLS bootstrap
// token unless --discovery-token or --tls-bootstrap-token say otherwise;
// the TLS bootstrap token defaults to the discovery token; --discovery-file
// replaces token discovery; CA hashes add to the file's.
func (f JoinFlags) Apply(c *Config, args []string, changed Changed) {
	if changed("air-gapped") {
		c.Kubeforge.AirGapped = f.AirGapped
		c.SetFrom("KubeforgeConfiguration.airGapped", "--air-gapped")
	}
	if changed("control-plane-runtime") {
		c.Kubeforge.ControlPlane.Runtime = f.ControlPlaneRuntime
		c.SetFrom("KubeforgeConfiguration.controlPlane.runtime", "--control-plane-runtime")
	}
	j := &c.Join
	bt := j.Discovery.BootstrapToken
	if bt == nil && j.Discovery.File == nil {
		bt = &v1beta4.BootstrapTokenDiscovery{}
		j.Discovery.BootstrapToken = bt
	}
	if len(args) > 0 {
		if bt == nil {
			bt = &v1beta4.BootstrapTokenDiscovery{}
			j.Discovery.BootstrapToken = bt
		}
		bt.APIServerEndpoint = args[0]
		c.SetFrom(joinEndpointPath, "the API_SERVER_ENDPOINT argument")
	}
	if f.Token != "" {
		if bt != nil {
			bt.Token = f.Token
			c.SetFrom(joinTokenPath, "--token")
		}
		j.Discovery.TLSBootstrapToken = f.Token
		c.SetFrom(joinTLSTokenPath, "--token")
	}
	if f.DiscoveryToken != "" && bt != nil {
		bt.Token = f.DiscoveryToken
		c.SetFrom(joinTokenPath, "--discovery-token")
	}
	if f.TLSBootstrapToken != "" {
		j.Discovery.TLSBootstrapToken = f.TLSBootstrapToken
		c.SetFrom(joinTLSTokenPath, "--tls-bootstrap-token")
	}
	if j.Discovery.TLSBootstrapToken == "" && bt != nil {
		j.Discovery.TLSBootstrapToken = bt.Token
		if from, ok := c.sources[joinTokenPath]; ok {
			c.SetFrom(joinTLSTokenPath, from)
		}
	}
	if bt != nil {
		if len(f.CACertHashes) > 0 {
			bt.CACertHashes = append(bt.CACertHashes, f.CACertHashes...)
			c.SetFrom(joinHashesPath, "--discovery-token-ca-cert-hash")
		}
		if f.UnsafeSkipCAVerification {
			bt.UnsafeSkipCAVerification = true
			c.SetFrom(joinUnsafePath, "--discovery-token-unsafe-skip-ca-verification")
		}
	}
	if f.DiscoveryFile != "" {
		j.Discovery.File = &v1beta4.FileDiscovery{KubeConfigPath: f.DiscoveryFile}
		j.Discovery.BootstrapToken = nil
		c.SetFrom(joinFilePath, "--discovery-file")
	}
	if f.DiscoveryTimeout > 0 {
		if j.Timeouts == nil {
			j.Timeouts = &v1beta4.Timeouts{}
		}
		j.Timeouts.Discovery = &metav1.Duration{Duration: f.DiscoveryTimeout}
		c.SetFrom("JoinConfiguration.timeouts.discovery", "--discovery-timeout")
	}
	if changed("node-name") {
		j.NodeRegistration.Name = f.NodeName
		c.SetFrom("JoinConfiguration.nodeRegistration.name", "--node-name")
	}
	if changed("cri-socket") {
		j.NodeRegistration.CRISocket = f.CRISocket
		c.SetFrom("JoinConfiguration.nodeRegistration.criSocket", "--cri-socket")
	}
	if f.ControlPlane || changed("certificate-key") || changed("apiserver-advertise-address") {
		if j.ControlPlane == nil {
			j.ControlPlane = &v1beta4.JoinControlPlane{}
		}
		if changed("certificate-key") {
			j.ControlPlane.CertificateKey = f.CertificateKey
			c.SetFrom("JoinConfiguration.controlPlane.certificateKey", "--certificate-key")
		}
		if changed("apiserver-advertise-address") {
			j.ControlPlane.LocalAPIEndpoint.AdvertiseAddress = f.AdvertiseAddress
			c.SetFrom(joinAdvertisePath, "--apiserver-advertise-address")
		}
		if changed("apiserver-bind-port") {
			j.ControlPlane.LocalAPIEndpoint.BindPort = f.BindPort
			c.SetFrom("JoinConfiguration.controlPlane.localAPIEndpoint.bindPort", "--apiserver-bind-port")
		}
	}
}

// checkJoinDiscovery refuses a join whose discovery lacks what it needs.
func (c *Config) checkJoinDiscovery() error {
	d := c.Join.Discovery
	if d.File == nil && d.BootstrapToken != nil {
		if d.BootstrapToken.APIServerEndpoint == "" {
			return errors.New("no API server endpoint: kubeforge join HOST:PORT --token … (or discovery.bootstrapToken.apiServerEndpoint in --config)")
		}
		if d.BootstrapToken.Token == "" {
			return errors.New("no bootstrap token: pass --token (kubeforge token create --print-join-command on a control-plane node prints the whole command)")
		}
	}
	if d.TLSBootstrapToken == "" {
		return errors.New("no TLS bootstrap token: pass --token or --tls-bootstrap-token")
	}
	return nil
}

// joinNodeIP is this node's address: flagIP (--node-ip), else the
// control-plane advertise address, else the host's address on the route
// to the cluster (the discovery endpoint, or the server the discovery file
// names).
func (c *Config) joinNodeIP(flagIP string, h HostFacts) (string, error) {
	if flagIP != "" {
		c.SetFrom("--node-ip", "--node-ip")
		return flagIP, nil
	}
	if cp := c.Join.ControlPlane; cp != nil && cp.LocalAPIEndpoint.AdvertiseAddress != "" {
		return cp.LocalAPIEndpoint.AdvertiseAddress, nil
	}
	var target string
	switch d := c.Join.Discovery; {
	case d.File != nil:
		b, err := os.ReadFile(d.File.KubeConfigPath)
		if err != nil {
			return "", fmt.Errorf("%s: %w", c.where(joinFilePath), err)
		}
		if kc, err := clientcmd.Load(b); err == nil {
			for _, cl := range kc.Clusters {
				target = cl.Server
			}
		}
	case d.BootstrapToken != nil:
		target = d.BootstrapToken.APIServerEndpoint
	}
	if h.SourceAddress == nil {
		return "", errors.New("no node address: pass --node-ip")
	}
	ip, err := h.SourceAddress(target)
	if err != nil {
		return "", fmt.Errorf("cannot tell this node's address on the way to %s (%v): pass --node-ip", target, err)
	}
	return ip, nil
}
