package preflight

import (
	"net"
	"net/netip"
	"strings"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/manifests"
)

// Ports the node's components listen on (the control plane's from its
// table in manifests).
const (
	DefaultAPIServerPort      = config.DefaultBindPort
	KubeSchedulerPort         = manifests.SchedulerPort
	KubeControllerManagerPort = manifests.ControllerManagerPort
	KubeletPort               = manifests.KubeletPort
	EtcdClientPort            = manifests.EtcdClientPort
	EtcdPeerPort              = manifests.EtcdPeerPort
	EtcdMetricsPort           = manifests.EtcdMetricsPort
)

// InitOptions is what the init checks need to know about the node to build.
type InitOptions struct {
	// Paths locates the files the checks look for. A zero value means
	// config.DefaultPaths().
	Paths config.Paths
	// AdvertiseAddress is the node's address: etcd's ports are checked on it
	// and HTTPProxy checks whether it goes through a proxy. Empty means
	// auto-detected (etcd ports are then checked on every interface).
	AdvertiseAddress string
	// BindAddress is where the apiserver, controller-manager, scheduler and
	// kubelet ports are checked. Empty means every interface, the strictest
	// test (it fails if any address holds the port).
	BindAddress string
	// BindPort is the apiserver's port; 0 means config.DefaultBindPort.
	BindPort int32
	// NodeName is the node's name; empty means the host name.
	NodeName string
	// ExternalCRI is set when the node uses a container runtime of its own
	// instead of the bundled containerd (no runc needed from us).
	ExternalCRI bool
	// ExternalEtcd is set when etcd runs elsewhere (no local etcd ports or
	// data dir).
	ExternalEtcd bool
	// Runtime, when set, checks the external container runtime.
	Runtime *ContainerRuntimeCheck
	// ServiceSubnet and PodSubnet (comma-separated for dual stack), when
	// set, are checked for proxies (HTTPProxyCIDR).
	ServiceSubnet string
	PodSubnet     string
}

// JoinOptions is what the join checks need to know about the node.
type JoinOptions struct {
	// Paths locates the files the checks look for. A zero value means
	// config.DefaultPaths().
	Paths config.Paths
	// APIServerEndpoint is the cluster's "host:port" used for discovery;
	// HTTPProxy checks whether it goes through a proxy.
	APIServerEndpoint string
	// NodeName is the node's name; empty means the host name.
	NodeName string
	// ExternalCRI and Runtime: see InitOptions.
	ExternalCRI bool
	Runtime     *ContainerRuntimeCheck
	// BindAddress: see InitOptions (the kubelet port, and the control-plane
	// ports when ControlPlane is set).
	BindAddress string

	// ControlPlane adds the control-plane checks; the fields below are only
	// used then, as in InitOptions.
	ControlPlane     bool
	AdvertiseAddress string
	BindPort         int32
	ExternalEtcd     bool
}

// InitChecks returns the checks of `kubeforge init`, in the order they are
// reported.
func InitChecks(o InitOptions, sys System) []Check {
	p := defaultPaths(o.Paths)
	checks := []Check{
		IsPrivilegedUserCheck{Sys: sys},
	}
	checks = append(checks, controlPlaneChecks(sys, p, controlPlaneOptions{
		advertiseAddress: o.AdvertiseAddress,
		bindAddress:      o.BindAddress,
		bindPort:         o.BindPort,
		externalEtcd:     o.ExternalEtcd,
		// No FileAvailable check of the kubeconfig files, as kubeadm's init:
		// existing ones are the user's in external CA mode (`certs
		// generate-csr`, signed elsewhere), and the kubeconfig phase verifies
		// each (CA, server, client certificate) and refuses, naming the
		// file, one that belongs to another cluster.
		subnets: splitList(o.ServiceSubnet, o.PodSubnet),
	})...)
	checks = append(checks, nodeChecks(sys, o.NodeName, o.BindAddress, o.ExternalCRI, o.AdvertiseAddress)...)
	if o.Runtime != nil {
		checks = append(checks, *o.Runtime)
	}
	if !o.ExternalEtcd {
		checks = append(checks, etcdChecks(sys, p, o.AdvertiseAddress)...)
	}
	return checks
}

// JoinChecks returns the checks of `kubeforge join`: the node checks, plus
// the control-plane ones when o.ControlPlane is set.
func JoinChecks(o JoinOptions, sys System) []Check {
	p := defaultPaths(o.Paths)
	checks := []Check{IsPrivilegedUserCheck{Sys: sys}}
	if !o.ControlPlane {
		// A control-plane join checks kubelet.conf after discovery, with the
		// other kubeconfig files: under an external CA they are provided.
		checks = append(checks, FileAvailableCheck{Sys: sys, Path: p.Kubeconfig("kubelet.conf"), Fix: resetFix})
	}
	checks = append(checks, FileAvailableCheck{Sys: sys, Path: p.Kubeconfig("bootstrap-kubelet.conf"), Fix: resetFix})
	if !o.ControlPlane {
		// A joining control plane brings (or downloads) the cluster CA.
		checks = append(checks, FileAvailableCheck{Sys: sys, Path: p.Cert("ca.crt"), Fix: resetFix})
	}
	endpointHost := o.APIServerEndpoint
	if h, _, err := net.SplitHostPort(o.APIServerEndpoint); err == nil {
		endpointHost = h
	}
	checks = append(checks, nodeChecks(sys, o.NodeName, o.BindAddress, o.ExternalCRI, endpointHost)...)
	if o.Runtime != nil {
		checks = append(checks, *o.Runtime)
	}
	checks = append(checks, HTTPProxyCheck{Sys: sys, Host: endpointHost})
	if o.ControlPlane {
		checks = append(checks, controlPlaneChecks(sys, p, controlPlaneOptions{
			advertiseAddress: o.AdvertiseAddress,
			bindAddress:      o.BindAddress,
			bindPort:         o.BindPort,
			externalEtcd:     o.ExternalEtcd,
			// No FileAvailable check of the kubeconfig files, as kubeadm's
			// join: in external CA mode the node's own are in place before
			// it joins. The join verifies each one that exists once it knows
			// the cluster (its CA, endpoint and whether the CA is external),
			// before it writes anything, and refuses, naming the file, one
			// that does not fit (phases.JoinData.checkProvidedFiles).
		})...)
		if !o.ExternalEtcd {
			checks = append(checks, etcdChecks(sys, p, o.AdvertiseAddress)...)
		}
	}
	return checks
}

// ResetChecks returns the checks of `kubeforge reset`.
func ResetChecks(sys System) []Check {
	return []Check{IsPrivilegedUserCheck{Sys: sys}}
}

type controlPlaneOptions struct {
	advertiseAddress, bindAddress string
	bindPort                      int32
	externalEtcd                  bool
	subnets                       []string
}

// controlPlaneChecks: resources, control-plane ports, files of a previous
// control plane, proxies.
func controlPlaneChecks(sys System, p config.Paths, o controlPlaneOptions) []Check {
	port := int(o.bindPort)
	if port == 0 {
		port = DefaultAPIServerPort
	}
	checks := []Check{
		NumCPUCheck{Sys: sys, Min: ControlPlaneNumCPU},
		MemCheck{Sys: sys, MinMB: ControlPlaneMemMB},
		PortCheck{Sys: sys, Port: port, Addresses: []string{o.bindAddress}},
		PortCheck{Sys: sys, Port: KubeSchedulerPort, Addresses: []string{o.bindAddress}},
		PortCheck{Sys: sys, Port: KubeControllerManagerPort, Addresses: []string{o.bindAddress}},
	}
	// kubeadm's order (its check names and output are matched), not the table's.
	for _, c := range []string{manifests.KubeAPIServer, manifests.KubeControllerMgr, manifests.KubeScheduler, manifests.Etcd} {
		checks = append(checks, FileAvailableCheck{Sys: sys, Path: p.Manifest(c), Fix: resetFix})
	}
	checks = append(checks, HTTPProxyCheck{Sys: sys, Host: o.advertiseAddress})
	for _, cidr := range o.subnets {
		checks = append(checks, HTTPProxyCIDRCheck{Sys: sys, CIDR: cidr})
	}
	return checks
}

// nodeChecks are common to every node that runs a kubelet.
func nodeChecks(sys System, nodeName, bindAddress string, externalCRI bool, familyOf string) []Check {
	var checks []Check
	checks = append(checks, SwapCheck{Sys: sys})
	if !externalCRI {
		checks = append(checks, InPathCheck{Sys: sys, Executables: []string{"runc"}, Mandatory: true,
			Fix: "the bundled containerd starts containers with runc: `apt-get install runc` (or use an external container runtime)"})
	}
	checks = append(checks,
		InPathCheck{Sys: sys, Executables: []string{"iptables", "nft"},
			Fix: "kube-proxy needs one of them to program Services: `apt-get install iptables` (or nftables)"},
		SystemVerificationCheck{Sys: sys},
		KernelFeaturesCheck{Sys: sys},
		HostnameCheck{Sys: sys, NodeName: nodeName},
		PortCheck{Sys: sys, Port: KubeletPort, Addresses: []string{bindAddress}},
		forwardingCheck(sys, familyOf),
	)
	return checks
}

// forwardingCheck checks IP forwarding for the family of addr (IPv4 unless
// addr is an IPv6 address).
func forwardingCheck(sys System, addr string) Check {
	if a, err := netip.ParseAddr(addr); err == nil && a.Is6() && !a.Is4In6() {
		return FileContentCheck{Sys: sys, Path: ipv6DefaultForwarding, Content: "1",
			Fix: "pods cannot reach anything without IP forwarding: run `sysctl -w net.ipv6.conf.default.forwarding=1` and persist it in /etc/sysctl.d/k8s.conf"}
	}
	return FileContentCheck{Sys: sys, Path: ipv4Forward, Content: "1",
		Fix: "pods cannot reach anything without IP forwarding: run `sysctl -w net.ipv4.ip_forward=1` and persist it in /etc/sysctl.d/k8s.conf"}
}

// etcdChecks are for a node that runs a local etcd member.
func etcdChecks(sys System, p config.Paths, advertise string) []Check {
	client := []string{advertise}
	if advertise != "" && advertise != "127.0.0.1" {
		client = append(client, "127.0.0.1") // etcd also serves clients on loopback
	}
	return []Check{
		PortCheck{Sys: sys, Port: EtcdClientPort, Addresses: client},
		PortCheck{Sys: sys, Port: EtcdPeerPort, Addresses: []string{advertise}},
		PortCheck{Sys: sys, Port: EtcdMetricsPort, Addresses: []string{"127.0.0.1"}},
		DirAvailableCheck{Sys: sys, Path: p.EtcdDataDir,
			Fix: "it holds the data of a previous etcd member: run `kubeforge reset` to remove it, or move it away to keep it"},
	}
}

func defaultPaths(p config.Paths) config.Paths {
	if p.KubernetesDir == "" {
		return config.DefaultPaths().WithRoot(p.Root)
	}
	return p
}

func splitList(lists ...string) []string {
	var out []string
	for _, l := range lists {
		for _, s := range strings.Split(l, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}
