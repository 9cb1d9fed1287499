package components

import (
	"github.com/kubeforge/kubeforge/components/cloudcontroller"
	"github.com/kubeforge/kubeforge/components/containerd"
	"github.com/kubeforge/kubeforge/components/coredns"
	"github.com/kubeforge/kubeforge/components/dashboard"
	"github.com/kubeforge/kubeforge/components/etcd"
	"github.com/kubeforge/kubeforge/components/kubeapiserver"
	"github.com/kubeforge/kubeforge/components/kubecontrollermanager"
	"github.com/kubeforge/kubeforge/components/kubelet"
	"github.com/kubeforge/kubeforge/components/kubeproxy"
	"github.com/kubeforge/kubeforge/components/kubescheduler"
	"github.com/kubeforge/kubeforge/components/localpath"
	"github.com/kubeforge/kubeforge/components/logstore"
	"github.com/kubeforge/kubeforge/components/metricsserver"
	"github.com/kubeforge/kubeforge/components/netpol"
	"github.com/kubeforge/kubeforge/components/pause"
)

// Component is one upstream program compiled into kubeforge.
type Component struct {
	// Name is the command name: `kubeforge component NAME`, the same as the
	// upstream binary's name.
	Name string
	// Short says what it is, for `kubeforge component --help`.
	Short string
	// Source is the upstream package it is built from.
	Source string
	// Main runs the component with its upstream flags (args excludes the
	// program name) and returns the process exit code. It may also exit the
	// process itself, as the upstream program does.
	Main func(args []string) int
}

// Registry lists the components in the order a node starts them.
var Registry = []Component{
	{
		Name:   "containerd",
		Short:  "container runtime (CRI plugin included)",
		Source: "github.com/containerd/containerd/v2/cmd/containerd",
		Main:   containerdMain,
	},
	{
		Name:   "kubelet",
		Short:  "node agent: runs the static pods and the pods the API schedules here",
		Source: "k8s.io/kubernetes/cmd/kubelet",
		Main:   kubelet.Main,
	},
	{
		Name:   "etcd",
		Short:  "the cluster's key-value store",
		Source: "go.etcd.io/etcd/server/v3/etcdmain",
		Main:   etcd.Main,
	},
	{
		Name:   "kube-apiserver",
		Short:  "Kubernetes API server",
		Source: "k8s.io/kubernetes/cmd/kube-apiserver",
		Main:   kubeapiserver.Main,
	},
	{
		Name:   "kube-controller-manager",
		Short:  "Kubernetes controller manager",
		Source: "k8s.io/kubernetes/cmd/kube-controller-manager",
		Main:   kubecontrollermanager.Main,
	},
	{
		Name:   "kube-scheduler",
		Short:  "Kubernetes scheduler",
		Source: "k8s.io/kubernetes/cmd/kube-scheduler",
		Main:   kubescheduler.Main,
	},
	{
		Name:   "kube-proxy",
		Short:  "Service proxy (iptables/nftables)",
		Source: "k8s.io/kubernetes/cmd/kube-proxy",
		Main:   kubeproxy.Main,
	},
	{
		Name:   "coredns",
		Short:  "cluster DNS (the plugins a cluster needs; list them with -plugins)",
		Source: "github.com/coredns/coredns/coremain",
		Main:   coredns.Main,
	},
	{
		Name:   "metrics-server",
		Short:  "resource metrics API (metrics.k8s.io) for kubectl top and autoscaling",
		Source: "sigs.k8s.io/metrics-server/cmd/metrics-server",
		Main:   metricsserver.Main,
	},
	{
		Name:   "local-path-provisioner",
		Short:  "node-local PersistentVolumes for the local-path StorageClass (one per node, serving that node's claims)",
		Source: "sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller",
		Main:   localpath.Main,
	},
	{
		Name:   "cloud-controller-manager",
		Short:  "bare-metal cloud controller manager: LoadBalancer Service addresses and node addresses (cloud provider \"kubeforge\")",
		Source: "k8s.io/cloud-provider/app",
		Main:   cloudcontroller.Main,
	},
	{
		Name:   "dashboard",
		Short:  "kubeforge's web dashboard (acts with the signed-in user's token; `kubeforge dashboard` opens it)",
		Source: "kubeforge",
		Main:   dashboard.Main,
	},
	{
		Name:   logstore.Name,
		Short:  "cluster log store (VictoriaLogs): the logs every node ships, searched by kubeforge logs",
		Source: "github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs",
		Main:   logstore.Main,
	},
	{
		Name:   "network-policies",
		Short:  "NetworkPolicy enforcement on this node (nftables + NFQUEUE)",
		Source: "sigs.k8s.io/kube-network-policies/pkg/networkpolicy",
		Main:   netpol.Main,
	},
	{
		Name:   "pause",
		Short:  "pod sandbox process (the pause image's fallback where no tiny pause program exists)",
		Source: "kubeforge",
		Main:   pause.Main,
	},
}

// Lookup finds a component by name.
func Lookup(name string) (Component, bool) {
	for _, c := range Registry {
		if c.Name == name {
			return c, true
		}
	}
	return Component{}, false
}

// containerdMain adapts containerd.Main, which takes a full argv.
func containerdMain(args []string) int {
	return containerd.Main(append([]string{"containerd"}, args...))
}
