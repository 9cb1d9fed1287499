package manifests

import (
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/version"
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
	ns := metav1.NamespaceSystem
	labels := map[string]string{"k8s-app": NetworkPolicyName}
	falseV, trueV := false, true
	root := int64(0)
	ds := &appsv1.DaemonSet{
		TypeMeta:   daemonSetType,
		ObjectMeta: metav1.ObjectMeta{Name: NetworkPolicyName, Namespace: ns, Labels: labels},
		Spec: appsv1.DaemonSetSpec{
			Selector:       &metav1.LabelSelector{MatchLabels: labels},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name:            NetworkPolicyName,
						Image:           version.Image(),
						ImagePullPolicy: corev1.PullIfNotPresent,
						Command: []string{"kubeforge", "component", NetworkPolicyComponent,
							"--hostname-override=$(NODE_NAME)",
							"--nfqueue-id=" + strconv.Itoa(NetworkPolicyQueue),
							"--health-address=127.0.0.1:" + strconv.Itoa(NetworkPolicyHealthPort),
							"--v=1",
						},
						Env: append([]corev1.EnvVar{
							{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
						}, apiServerEnv(c)...),
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("50Mi")},
						},
						// Ready once the caches synced and the nftables
						// table that feeds the queue is in place.
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
							Host: "127.0.0.1", Path: "/healthz", Port: intstr.FromInt32(NetworkPolicyHealthPort)}},
							PeriodSeconds: 2, TimeoutSeconds: 1, FailureThreshold: 3},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: &falseV,
							Capabilities: &corev1.Capabilities{
								Add:  []corev1.Capability{"NET_ADMIN"},
								Drop: []corev1.Capability{"ALL"},
							},
							ReadOnlyRootFilesystem: &trueV,
							RunAsUser:              &root,
							SeccompProfile:         &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
						},
					}},
					HostNetwork:        true,
					NodeSelector:       map[string]string{corev1.LabelOSStable: "linux"},
					PriorityClassName:  "system-node-critical",
					ServiceAccountName: NetworkPolicyName,
					Tolerations:        []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
				},
			},
		},
	}
	sa := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: NetworkPolicyName, Namespace: ns}
	return []runtime.Object{
		&corev1.ServiceAccount{TypeMeta: saType, ObjectMeta: metav1.ObjectMeta{Name: NetworkPolicyName, Namespace: ns, Labels: labels}},
		clusterRole(NetworkPolicyName,
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods", "namespaces"}, Verbs: []string{"list", "watch"}},
			rbacv1.PolicyRule{APIGroups: []string{networkingv1.GroupName}, Resources: []string{"networkpolicies"}, Verbs: []string{"list", "watch"}}),
		clusterRoleBinding(NetworkPolicyName, NetworkPolicyName, sa),
		ds,
	}
}
