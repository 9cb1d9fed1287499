package manifests

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kubeforge/kubeforge/config"
)

// The log-store addon's names.
const (
	// LogStoreName names the StatefulSet, its Service and the component
	// (`kubeforge component log-store`).
	LogStoreName = "log-store"
	// LogStorePort is the store's HTTP port (VictoriaLogs' insert, select
	// and /health endpoints).
	LogStorePort = 9428
	// LogStoreInsertPort serves only /insert/... and /health
	// (`-insertListenAddr`): the Service LogStoreName, which the nodes may
	// POST to through the API server's Service proxy, leads there, so a
	// node's credentials cannot run a query.
	LogStoreInsertPort = 9429
	// LogStoreQueryName is the Service on LogStorePort, for searches
	// (`kubeforge logs`, the dashboard): no node may use its proxy.
	LogStoreQueryName = "log-store-query"
	// LogShipperRole lets the nodes (group system:nodes) POST to the
	// store through the API server's Service proxy, and nothing else.
	LogShipperRole = "kubeforge:log-shipper"
	// LogStoreDirectoryBinding binds the store's ServiceAccount to the
	// Role NodeDirectoryReader: the store serves only the nodes the node
	// directory lists (`-nodeDirectory`).
	LogStoreDirectoryBinding = "kubeforge:log-store:node-directory-reader"
	// LogStoreClass is the StorageClass the store's volume claim uses when
	// the cluster has it at init (the local-path provisioner's).
	LogStoreClass = "local-path"
	// LogStoreHostDir is the store's data directory on the control-plane
	// node when no such class exists.
	LogStoreHostDir = "/var/lib/kubeforge/log-store"
	// LogStoreVolumeSize is the size the volume claim asks for.
	LogStoreVolumeSize = "10Gi"

	// LogStoreQueryKeySecret holds the key every request to the store's
	// main port (searches) must carry in LogStoreQueryKeyHeader, under
	// LogStoreQueryKeyField: the source allowlist admits any process on a
	// node, the key only those who may read this Secret (cluster
	// administrators; `kubeforge logs` and the dashboard read it with the
	// caller's credentials). The API server's Service proxy passes the
	// header on (it strips only Authorization).
	LogStoreQueryKeySecret = "log-store-query-key"
	LogStoreQueryKeyField  = "key"
	LogStoreQueryKeyHeader = "X-Kubeforge-Log-Key"
	// LogStoreQueryKeyEnv is how the store gets the key (from the Secret).
	LogStoreQueryKeyEnv = "KUBEFORGE_LOG_QUERY_KEY"

	logStoreDataDir = "/data"
	logStoreVolume  = "data"
)

// LogStorage says where the store keeps its data.
type LogStorage struct {
	// Class, when set, is the StorageClass of a volume claim
	// (volumeClaimTemplates); else the data goes to LogStoreHostDir on a
	// control-plane node (hostPath).
	Class string
	// QueryKey, when set, is the key of the Secret LogStoreQueryKeySecret,
	// which the store then requires of every search.
	QueryKey string
}

// LogStoreProxyPath is the API server path that reaches the store's
// insert port through its Service proxy; sub is the store's own path
// ("/insert/jsonline").
func LogStoreProxyPath(sub string) string {
	return fmt.Sprintf("/api/v1/namespaces/%s/services/%s/proxy%s", metav1.NamespaceSystem, LogStoreName, sub)
}

// LogStoreQueryProxyPath is the API server path that reaches the store's
// main port (searches) through the query Service's proxy.
func LogStoreQueryProxyPath(sub string) string {
	return fmt.Sprintf("/api/v1/namespaces/%s/services/%s/proxy%s", metav1.NamespaceSystem, LogStoreQueryName, sub)
}

// LogStoreObjects are the log-store addon: VictoriaLogs as a one-replica
// StatefulSet on the self-image (`kubeforge component log-store`), its
// Services, the RBAC that lets every node's credentials POST to it
// through the API server's Service proxy (verb create on services/proxy
// of this Service only), and its ServiceAccount, which may read the node
// directory and nothing else: the store serves the addresses of the nodes
// the directory lists and refuses everyone else.
func LogStoreObjects(c *config.Config, st LogStorage) []runtime.Object {
	ns := metav1.NamespaceSystem
	labels := map[string]string{"k8s-app": LogStoreName}
	retention := c.Kubeforge.Addons.LogStore.Retention
	if retention == "" {
		retention = config.DefaultLogRetention
	}
	a := Addon{WorkloadRef: LogStoreWorkload,
		Args: []string{
			"-storageDataPath=" + logStoreDataDir,
			"-retentionPeriod=" + retention,
			fmt.Sprintf("-httpListenAddr=:%d", LogStorePort),
			fmt.Sprintf("-insertListenAddr=:%d", LogStoreInsertPort),
			// Caches sized for a small cluster, not 60% of the node.
			"-memory.allowedBytes=96MiB",
			// Only the nodes may connect (the API server's proxy, the
			// kubelets' probes): the addresses the node directory lists.
			// The pod network names pods as such in the refusals.
			"-nodeDirectory=" + metav1.NamespaceSystem + "/" + NodeDirectory,
			"-podNetwork=" + c.Cluster.Networking.PodSubnet,
			"-loggerLevel=WARN",
		},
		// It reads the directory at the control-plane endpoint, not through
		// the kubernetes Service (kube-proxy may not be running yet).
		Env:    apiServerEnv(c),
		Ports:  []corev1.ContainerPort{tcpPort("http", LogStorePort), tcpPort("insert", LogStoreInsertPort)},
		CPU:    "50m",
		Memory: "64Mi",
		// /health answers 503 until the store has read the node directory
		// (it serves no one before): the pod stays unready. Liveness is
		// the port accepting connections, so that a directory the store
		// cannot read does not restart it in a loop.
		Readiness: quickReadiness(httpGet("/health", intstr.FromString("http"), "")),
		Liveness: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("http")}},
			InitialDelaySeconds: 30, PeriodSeconds: 10, TimeoutSeconds: 2, FailureThreshold: 3},
		// Root owns the data directory (a hostPath the kubelet creates); no
		// capability, no escalation, a read-only root.
		Security:    Security{User: ptr(int64(0))},
		Mounts:      []corev1.VolumeMount{{Name: logStoreVolume, MountPath: logStoreDataDir}},
		Priority:    "system-cluster-critical",
		Tolerations: criticalAddon(),
		GracePeriod: ptr(int64(10)),
		// Its ServiceAccount may read the node directory and nothing else.
		Bindings:       []Binding{{Name: LogStoreDirectoryBinding, Role: NodeDirectoryReader}},
		NoServiceLinks: true,
		Extra: []runtime.Object{
			role(ns, LogShipperRole, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"services/proxy"},
				ResourceNames: []string{LogStoreName}, Verbs: []string{"create"}}),
			roleBinding(ns, LogShipperRole, group("system:nodes")),
		},
	}
	if st.Class != "" {
		a.Claims = []corev1.PersistentVolumeClaim{{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
			ObjectMeta: metav1.ObjectMeta{Name: logStoreVolume, Labels: labels},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				StorageClassName: ptr(st.Class),
				Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceStorage: resource.MustParse(LogStoreVolumeSize)}},
			},
		}}
	} else {
		// No persistent volume class: the data stays on a control-plane
		// node, where the store is pinned.
		a.NodeSelector = map[string]string{"node-role.kubernetes.io/control-plane": ""}
		a.Volumes = []corev1.Volume{{Name: logStoreVolume, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
			Path: LogStoreHostDir, Type: ptr(corev1.HostPathDirectoryOrCreate)}}}}
	}
	// Unnamed ports: the API server's Service proxy path then needs no port
	// ("services/log-store/proxy/..."), and the RBAC resource name is the
	// Service's name alone. The nodes' Service leads to the insert-only
	// port; searches go through the query Service.
	insert := a.service(corev1.ServiceSpec{Ports: []corev1.ServicePort{
		{Port: LogStorePort, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("insert")}}})
	query := a.service(corev1.ServiceSpec{Ports: []corev1.ServicePort{
		{Port: LogStorePort, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("http")}}})
	query.Name = LogStoreQueryName
	a.Extra = append(a.Extra, insert, query)
	if st.QueryKey != "" {
		a.Extra = append(a.Extra, &corev1.Secret{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: metav1.ObjectMeta{Name: LogStoreQueryKeySecret, Namespace: ns, Labels: labels},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{LogStoreQueryKeyField: []byte(st.QueryKey)}})
		a.Env = append(a.Env, corev1.EnvVar{Name: LogStoreQueryKeyEnv, ValueFrom: &corev1.EnvVarSource{
			SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: LogStoreQueryKeySecret},
				Key: LogStoreQueryKeyField}}})
	}
	return a.Objects()
}
