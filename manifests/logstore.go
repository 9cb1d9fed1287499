package manifests

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/version"
)

// The log-store addon's names.
const (
	// LogStoreName names the StatefulSet, its Service and the component
	// (`kubeforge component log-store`).
	LogStoreName = "log-store"
	// LogStorePort is the store's HTTP port (VictoriaLogs' insert, select
	// and /health endpoints).
	LogStorePort = 9428
	// LogShipperRole lets the nodes (group system:nodes) POST to the
	// store through the API server's Service proxy, and nothing else.
	LogShipperRole = "kubeforge:log-shipper"
	// LogStoreClass is the StorageClass the store's volume claim uses when
	// the cluster has it at init (the local-path provisioner's).
	LogStoreClass = "local-path"
	// LogStoreHostDir is the store's data directory on the control-plane
	// node when no such class exists.
	LogStoreHostDir = "/var/lib/kubeforge/log-store"
	// LogStoreVolumeSize is the size the volume claim asks for.
	LogStoreVolumeSize = "10Gi"

	logStoreDataDir = "/data"
	logStoreVolume  = "data"
)

// LogStorage says where the store keeps its data.
type LogStorage struct {
	// Class, when set, is the StorageClass of a volume claim
	// (volumeClaimTemplates); else the data goes to LogStoreHostDir on a
	// control-plane node (hostPath).
	Class string
}

// LogStoreProxyPath is the API server path that reaches the store through
// its Service proxy; sub is the store's own path ("/insert/jsonline").
func LogStoreProxyPath(sub string) string {
	return fmt.Sprintf("/api/v1/namespaces/%s/services/%s/proxy%s", metav1.NamespaceSystem, LogStoreName, sub)
}

// LogStoreObjects are the log-store addon: VictoriaLogs as a one-replica
// StatefulSet on the self-image (`kubeforge component log-store`), its
// Service, and the RBAC that lets every node's credentials POST to it
// through the API server's Service proxy (verb create on services/proxy
// of this Service only).
func LogStoreObjects(c *config.Config, st LogStorage) []runtime.Object {
	ns := metav1.NamespaceSystem
	labels := map[string]string{"k8s-app": LogStoreName}
	replicas := int32(1)
	falseV, trueV := false, true
	root := int64(0)
	retention := c.Kubeforge.Addons.LogStore.Retention
	if retention == "" {
		retention = config.DefaultLogRetention
	}
	spec := corev1.PodSpec{
		Containers: []corev1.Container{{
			Name:            LogStoreName,
			Image:           version.Image(),
			ImagePullPolicy: corev1.PullIfNotPresent,
			Command:         []string{"kubeforge", "component", LogStoreName},
			Args: []string{
				"-storageDataPath=" + logStoreDataDir,
				"-retentionPeriod=" + retention,
				fmt.Sprintf("-httpListenAddr=:%d", LogStorePort),
				// Caches sized for a small cluster, not 60% of the node.
				"-memory.allowedBytes=96MiB",
				"-loggerLevel=WARN",
			},
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: LogStorePort, Protocol: corev1.ProtocolTCP}},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/health", Port: intstr.FromString("http")}},
				PeriodSeconds: 2, TimeoutSeconds: 1, FailureThreshold: 3},
			LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/health", Port: intstr.FromString("http")}},
				InitialDelaySeconds: 30, PeriodSeconds: 10, TimeoutSeconds: 2, FailureThreshold: 3},
			// Root owns the data directory (a hostPath the kubelet creates);
			// no capability, no escalation, a read-only root.
			SecurityContext: &corev1.SecurityContext{
				AllowPrivilegeEscalation: &falseV,
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				ReadOnlyRootFilesystem:   &trueV,
				RunAsUser:                &root,
				SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			VolumeMounts: []corev1.VolumeMount{{Name: logStoreVolume, MountPath: logStoreDataDir}},
		}},
		AutomountServiceAccountToken:  &falseV,
		EnableServiceLinks:            &falseV,
		NodeSelector:                  map[string]string{corev1.LabelOSStable: "linux"},
		PriorityClassName:             "system-cluster-critical",
		TerminationGracePeriodSeconds: ptr(int64(10)),
		Tolerations: []corev1.Toleration{
			{Key: "CriticalAddonsOnly", Operator: corev1.TolerationOpExists},
			{Key: config.ControlPlaneTaint.Key, Effect: corev1.TaintEffectNoSchedule},
		},
	}
	sts := &appsv1.StatefulSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: metav1.ObjectMeta{Name: LogStoreName, Namespace: ns, Labels: labels},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    &replicas,
			ServiceName: LogStoreName,
			Selector:    &metav1.LabelSelector{MatchLabels: labels},
		},
	}
	if st.Class != "" {
		class := st.Class
		sts.Spec.VolumeClaimTemplates = []corev1.PersistentVolumeClaim{{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
			ObjectMeta: metav1.ObjectMeta{Name: logStoreVolume, Labels: labels},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				StorageClassName: &class,
				Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceStorage: resource.MustParse(LogStoreVolumeSize)}},
			},
		}}
	} else {
		// No persistent volume class: the data stays on a control-plane
		// node, where the store is pinned.
		spec.NodeSelector["node-role.kubernetes.io/control-plane"] = ""
		spec.Volumes = []corev1.Volume{{Name: logStoreVolume, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
			Path: LogStoreHostDir, Type: ptr(corev1.HostPathDirectoryOrCreate)}}}}
	}
	sts.Spec.Template = corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec}

	shipper := role(ns, LogShipperRole, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"services/proxy"},
		ResourceNames: []string{LogStoreName}, Verbs: []string{"create"}})
	return []runtime.Object{
		&corev1.Service{TypeMeta: serviceType,
			ObjectMeta: metav1.ObjectMeta{Name: LogStoreName, Namespace: ns, Labels: labels},
			Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{
				// Unnamed: the API server's Service proxy path then needs
				// no port ("services/log-store/proxy/..."), and the RBAC
				// resource name is the Service's name alone.
				{Port: LogStorePort, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("http")}}}},
		sts,
		shipper,
		roleBinding(ns, LogShipperRole, group("system:nodes")),
	}
}
