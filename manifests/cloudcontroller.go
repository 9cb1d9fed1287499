package manifests

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/version"
)

// The cloud-controller addon's names.
const (
	CloudControllerName = "cloud-controller-manager"
	// CloudControllerConfigMap holds the cloud config file
	// (--cloud-config): the address pool and the nodes' reserved ports.
	CloudControllerConfigMap = "kubeforge-cloud-config"
	cloudConfigKey           = "cloud.yaml"
	cloudConfigDir           = "/etc/kubeforge/cloud"
	// CloudControllerPort is the upstream cloud-controller-manager's
	// secure port (on the host network, bound to 127.0.0.1).
	CloudControllerPort = 10258
)

// cloudConfig is the file components/cloudcontroller.Config reads (a
// component test holds the two equal).
type cloudConfig struct {
	AddressPool   []string `json:"addressPool,omitempty"`
	ReservedPorts []int32  `json:"reservedPorts,omitempty"`
}

// NodeReservedPorts are the ports the nodes' own programs listen on: a
// LoadBalancer Service on the nodes' addresses may not take them (kube-proxy
// would send the nodes' own connections to them to the Service).
func NodeReservedPorts(c *config.Config) []int32 {
	ports := []int32{22, 2379, 2380, 2381, 10248, 10249, 10250, 10256, 10257, 10258, 10259}
	if p := c.Init.LocalAPIEndpoint.BindPort; p > 0 && !slices.Contains(ports, p) {
		ports = append(ports, p)
	}
	slices.Sort(ports)
	return ports
}

// CloudControllerObjects are the cloud-controller addon: the upstream
// cloud-controller-manager with the kubeforge provider
// (`kubeforge component cloud-controller-manager` on the self-image), one
// replica on a control-plane node with leader election (a second replica,
// on another control-plane node, waits for the lease), its RBAC (the
// upstream cloud-controller-manager role) and its cloud config.
func CloudControllerObjects(c *config.Config) ([]runtime.Object, error) {
	ns := metav1.NamespaceSystem
	cc := c.Kubeforge.Addons.CloudController
	cfg, err := yaml.Marshal(cloudConfig{AddressPool: cc.AddressPool, ReservedPorts: NodeReservedPorts(c)})
	if err != nil {
		return nil, fmt.Errorf("render the cloud config: %w", err)
	}
	labels := map[string]string{"k8s-app": CloudControllerName}
	replicas := int32(1)
	falseV := false
	dep := &appsv1.Deployment{
		TypeMeta:   deploymentType,
		ObjectMeta: metav1.ObjectMeta{Name: CloudControllerName, Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels,
					// A change of the pool restarts the pod, which reads its
					// config at start.
					Annotations: map[string]string{"kubeforge.io/cloud-config-hash": shortHash(cfg)}},
				Spec: corev1.PodSpec{
					// On the host network: it needs neither the pod network
					// nor kube-proxy (it reaches the API server directly).
					HostNetwork: true,
					Containers: []corev1.Container{{
						Name:            CloudControllerName,
						Image:           version.Image(),
						ImagePullPolicy: corev1.PullIfNotPresent,
						Command:         []string{"kubeforge", "component", CloudControllerName},
						Args: []string{
							"--cloud-provider=kubeforge",
							"--cloud-config=" + cloudConfigDir + "/" + cloudConfigKey,
							"--controllers=service,cloud-node,cloud-node-lifecycle",
							"--leader-elect=true",
							"--leader-elect-resource-name=" + CloudControllerName,
							"--use-service-account-credentials=false",
							"--configure-cloud-routes=false",
							"--allocate-node-cidrs=false",
							"--bind-address=127.0.0.1",
							fmt.Sprintf("--secure-port=%d", CloudControllerPort),
						},
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("50Mi")},
						},
						LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
							Host: "127.0.0.1", Path: "/healthz", Port: intstr.FromInt32(CloudControllerPort), Scheme: corev1.URISchemeHTTPS}},
							InitialDelaySeconds: 15, PeriodSeconds: 10, TimeoutSeconds: 5, FailureThreshold: 3},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: &falseV,
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
							SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
						},
						VolumeMounts: []corev1.VolumeMount{{Name: "cloud-config", MountPath: cloudConfigDir, ReadOnly: true}},
						Env:          apiServerEnv(c),
					}},
					NodeSelector:       map[string]string{corev1.LabelOSStable: "linux", config.ControlPlaneTaint.Key: ""},
					PriorityClassName:  "system-cluster-critical",
					ServiceAccountName: CloudControllerName,
					Tolerations: []corev1.Toleration{
						{Key: "CriticalAddonsOnly", Operator: corev1.TolerationOpExists},
						{Key: config.ControlPlaneTaint.Key, Effect: corev1.TaintEffectNoSchedule},
						// A kubelet run with --cloud-provider=external
						// waits for this controller to initialize its node.
						{Key: "node.cloudprovider.kubernetes.io/uninitialized", Value: "true", Effect: corev1.TaintEffectNoSchedule},
						{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoSchedule},
					},
					Volumes: []corev1.Volume{{Name: "cloud-config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
						LocalObjectReference: corev1.LocalObjectReference{Name: CloudControllerConfigMap}}}}},
				},
			},
		},
	}
	sa := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: CloudControllerName, Namespace: ns}
	role := "system:kubeforge:" + CloudControllerName
	authReader := &rbacv1.RoleBinding{TypeMeta: metav1.TypeMeta{APIVersion: rbacGV, Kind: "RoleBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: "kubeforge:" + CloudControllerName + ":auth-reader", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "extension-apiserver-authentication-reader"},
		Subjects:   []rbacv1.Subject{sa}}
	return []runtime.Object{
		&corev1.ServiceAccount{TypeMeta: saType, ObjectMeta: metav1.ObjectMeta{Name: CloudControllerName, Namespace: ns, Labels: labels}},
		// The upstream cloud-controller-manager role (k8s.io/cloud-provider's
		// RBAC), without the service accounts it needs only with
		// --use-service-account-credentials.
		clusterRole(role,
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch", "update"}},
			rbacv1.PolicyRule{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch", "update"}},
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch", "update", "patch", "delete"}},
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"nodes/status"}, Verbs: []string{"patch", "update"}},
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "list", "watch", "patch", "update"}},
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"services/status"}, Verbs: []string{"patch", "update"}},
			rbacv1.PolicyRule{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "create", "update"}},
		),
		clusterRoleBinding(role, role, sa),
		clusterRoleBinding("kubeforge:"+CloudControllerName+":auth-delegator", "system:auth-delegator", sa),
		authReader,
		&corev1.ConfigMap{TypeMeta: configMapType, ObjectMeta: metav1.ObjectMeta{Name: CloudControllerConfigMap, Namespace: ns, Labels: labels},
			Data: map[string]string{cloudConfigKey: string(cfg)}},
		dep,
	}, nil
}

// shortHash names the content of b (for a pod annotation that changes
// with it).
func shortHash(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:8])
}
