package manifests

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubeforge/kubeforge/config"
)

// The network policy addon (sigs.k8s.io/kube-network-policies, run as
// `kubeforge component network-policies`).
const (
	NetworkPolicyName = "kube-network-policies"
	// NetworkPolicyComponent is the self-image's component name.
	NetworkPolicyComponent = "network-policies"
	// NetworkPolicyHealthPort serves /healthz on the node's loopback.
	NetworkPolicyHealthPort = 10264
	// NetworkPolicyQueue is the NFQUEUE number the controller reads.
	NetworkPolicyQueue = 100
)

// NetworkPolicyTables are the inet nftables tables the controller makes
// on a node (upstream's own, and kubeforge's xtables NFQUEUE steering
// table for kernels without the nftables queue expression). The
// controller removes its table when it stops; `kubeforge reset` removes
// what a killed one left. components/netpol tests that its names match.
var NetworkPolicyTables = []string{"kube-network-policies", "kubeforge-network-policies"}

// NetworkPolicyObjects are the network policy addon: a ServiceAccount
// allowed to list and watch Pods, Namespaces and NetworkPolicies (what
// the controller reads, nothing else) and a DaemonSet running the
// self-image's controller on every node, in the host network with
// CAP_NET_ADMIN only (nftables and the NFQUEUE netlink socket).
func NetworkPolicyObjects(c *config.Config) []runtime.Object {
	return Addon{WorkloadRef: NetworkPolicyWorkload, Component: NetworkPolicyComponent,
		Command: []string{
			"--hostname-override=$(NODE_NAME)",
			"--nfqueue-id=" + strconv.Itoa(NetworkPolicyQueue),
			"--health-address=127.0.0.1:" + strconv.Itoa(NetworkPolicyHealthPort),
			"--v=1",
		},
		Env:    append([]corev1.EnvVar{nodeNameEnv()}, apiServerEnv(c)...),
		CPU:    "50m",
		Memory: "50Mi",
		// Ready once the caches synced and the nftables table that feeds
		// the queue is in place.
		Readiness:   quickReadiness(localGet("/healthz", NetworkPolicyHealthPort, "")),
		Security:    Security{User: ptr(int64(0)), Add: []corev1.Capability{"NET_ADMIN"}},
		HostNetwork: true,
		Priority:    "system-node-critical",
		Tolerations: anyTaint(),
		ClusterRole: Rules{Name: NetworkPolicyName, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods", "namespaces"}, Verbs: []string{"list", "watch"}},
			{APIGroups: []string{networkingv1.GroupName}, Resources: []string{"networkpolicies"}, Verbs: []string{"list", "watch"}}}},
	}.Objects()
}
