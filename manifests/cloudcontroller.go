package manifests

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/lbpool"
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

// NodeReservedPorts are the ports the nodes' own programs listen on, on
// any protocol: a LoadBalancer Service on the nodes' addresses may not
// take them (kube-proxy would send the nodes' own connections to them to
// the Service). VXLANPort is the pod network's: a Service on it would
// receive every node's pod traffic to the other nodes.
func NodeReservedPorts(c *config.Config) []int32 {
	const ssh = 22
	ports := []int32{ssh, EtcdClientPort, EtcdPeerPort, EtcdMetricsPort, config.DefaultKubeletHealthzPort, KubeProxyMetricsPort,
		KubeletPort, KubeProxyHealthzPort, ControllerManagerPort, CloudControllerPort, SchedulerPort, VXLANPort}
	if p := c.BindPort(); p > 0 && !slices.Contains(ports, p) {
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
	cc := c.Kubeforge.Addons.CloudController
	cfg, err := yaml.Marshal(cloudConfig{AddressPool: cc.AddressPool, ReservedPorts: NodeReservedPorts(c)})
	if err != nil {
		return nil, fmt.Errorf("render the cloud config: %w", err)
	}
	role := "system:kubeforge:" + CloudControllerName
	return Addon{WorkloadRef: CloudControllerWorkload,
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
		Env:    apiServerEnv(c),
		CPU:    "50m",
		Memory: "50Mi",
		Liveness: &corev1.Probe{ProbeHandler: localGet("/healthz", CloudControllerPort, corev1.URISchemeHTTPS),
			InitialDelaySeconds: 15, PeriodSeconds: 10, TimeoutSeconds: 5, FailureThreshold: 3},
		Security: Security{WritableRoot: true},
		Mounts:   []corev1.VolumeMount{{Name: "cloud-config", MountPath: cloudConfigDir, ReadOnly: true}},
		Volumes:  []corev1.Volume{configMapVolume("cloud-config", CloudControllerConfigMap)},
		// On the host network: it needs neither the pod network nor
		// kube-proxy (it reaches the API server directly).
		HostNetwork:  true,
		NodeSelector: map[string]string{config.ControlPlaneTaint.Key: ""},
		Priority:     "system-cluster-critical",
		Tolerations: append(criticalAddon(),
			// A kubelet run with --cloud-provider=external waits for this
			// controller to initialize its node.
			corev1.Toleration{Key: "node.cloudprovider.kubernetes.io/uninitialized", Value: "true", Effect: corev1.TaintEffectNoSchedule},
			corev1.Toleration{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoSchedule}),
		// A change of the pool restarts the pod, which reads its config at
		// start.
		Annotations: map[string]string{"kubeforge.io/cloud-config-hash": shortHash(cfg)},
		// The upstream cloud-controller-manager role (k8s.io/cloud-provider's
		// RBAC), without the service accounts it needs only with
		// --use-service-account-credentials.
		ClusterRole: Rules{Name: role, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch", "update"}},
			{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch", "update"}},
			{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch", "update", "patch", "delete"}},
			{APIGroups: []string{""}, Resources: []string{"nodes/status"}, Verbs: []string{"patch", "update"}},
			{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "list", "watch", "patch", "update"}},
			{APIGroups: []string{""}, Resources: []string{"services/status"}, Verbs: []string{"patch", "update"}},
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "create", "update"}},
		}},
		Bindings: []Binding{
			{Name: "kubeforge:" + CloudControllerName + ":auth-delegator", ClusterRole: "system:auth-delegator"},
			{Name: "kubeforge:" + CloudControllerName + ":auth-reader", Role: "extension-apiserver-authentication-reader"},
		},
		Extra: []runtime.Object{&corev1.ConfigMap{TypeMeta: configMapType,
			ObjectMeta: metav1.ObjectMeta{Name: CloudControllerConfigMap, Namespace: metav1.NamespaceSystem, Labels: map[string]string{"k8s-app": CloudControllerName}},
			Data:       map[string]string{cloudConfigKey: string(cfg)}}},
	}.Objects(), nil
}

// CloudConfigPool is the address pool of the cloud config ConfigMap
// (CloudControllerConfigMap): the LoadBalancer speakers announce only its
// addresses.
func CloudConfigPool(cm *corev1.ConfigMap) (lbpool.Pool, error) {
	var c cloudConfig
	if err := yaml.Unmarshal([]byte(cm.Data[cloudConfigKey]), &c); err != nil {
		return nil, fmt.Errorf("%s/%s %s: %w", cm.Namespace, cm.Name, cloudConfigKey, err)
	}
	p, err := lbpool.Parse(c.AddressPool)
	if err != nil {
		return nil, fmt.Errorf("%s/%s %s addressPool: %w", cm.Namespace, cm.Name, cloudConfigKey, err)
	}
	return p, nil
}

// shortHash names the content of b (for a pod annotation that changes
// with it).
func shortHash(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:8])
}
