package manifests

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	apiregv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"

	"github.com/kubeforge/kubeforge/config"
)

// The metrics-server addon's names (those of the upstream manifests).
const (
	MetricsServerName = "metrics-server"
	// MetricsServerTLSSecret holds metrics-server's serving certificate,
	// signed by the cluster CA, which the APIService's caBundle names.
	MetricsServerTLSSecret = "metrics-server-tls"
	// KubeletServingCAConfigMap publishes kubeforge's kubelet serving CA,
	// which metrics-server verifies kubelets with.
	KubeletServingCAConfigMap = "kubelet-serving-ca"
	// MetricsAPIService is the aggregated API metrics-server serves.
	MetricsAPIService = "v1beta1.metrics.k8s.io"
	// MetricsServerResolution is how often metrics-server scrapes the
	// kubelets (upstream's manifests say 15s; 10s is its minimum), and
	// metricsKubeletTimeout how long one scrape may take: metrics-server
	// refuses a timeout above 90% of the resolution (its default, 10s,
	// with a 10s resolution makes it exit at start).
	MetricsServerResolution = "10s"
	metricsKubeletTimeout   = "5s"

	metricsServerPort   = 10250
	metricsTLSDir       = "/etc/metrics-server/tls"
	metricsKubeletCADir = "/etc/metrics-server/kubelet-ca"
	caCertKey           = "ca.crt"
)

// MetricsServerTLS is what metrics-server's objects carry besides the
// configuration: its serving pair, the CA that signed it (the
// APIService's caBundle: the API server's aggregator verifies
// metrics-server with it) and the kubelet serving CA (PEM).
type MetricsServerTLS struct {
	Cert, Key []byte
	CA        []byte
	KubeletCA []byte
}

// MetricsServerDNSNames are the names metrics-server's serving certificate
// must carry. The aggregator dials the Service as <name>.<namespace>.svc.
func MetricsServerDNSNames(dnsDomain string) []string {
	svc := MetricsServerName + "." + metav1.NamespaceSystem + ".svc"
	names := []string{MetricsServerName, MetricsServerName + "." + metav1.NamespaceSystem, svc}
	if dnsDomain != "" {
		names = append(names, svc+"."+dnsDomain)
	}
	return names
}

// MetricsServerObjects are the metrics-server addon: upstream's objects
// (ServiceAccount, RBAC, Service, Deployment, the v1beta1.metrics.k8s.io
// APIService) with kubeforge's TLS: the APIService is verified with the
// cluster CA (caBundle, no insecureSkipTLSVerify), and metrics-server
// verifies every kubelet's serving certificate with the kubelet serving
// CA (--kubelet-certificate-authority, no --kubelet-insecure-tls). It runs
// the self-image's `kubeforge component metrics-server`.
func MetricsServerObjects(c *config.Config, tls MetricsServerTLS) []runtime.Object {
	ns := metav1.NamespaceSystem
	labels := map[string]string{"k8s-app": MetricsServerName}
	uid := int64(1000)
	reader := clusterRole("system:aggregated-metrics-reader",
		rbacv1.PolicyRule{APIGroups: []string{"metrics.k8s.io"}, Resources: []string{"pods", "nodes"}, Verbs: []string{"get", "list", "watch"}})
	reader.Labels = map[string]string{
		"k8s-app": MetricsServerName,
		"rbac.authorization.k8s.io/aggregate-to-admin": "true",
		"rbac.authorization.k8s.io/aggregate-to-edit":  "true",
		"rbac.authorization.k8s.io/aggregate-to-view":  "true",
	}
	a := Addon{WorkloadRef: MetricsServerWorkload,
		Args: []string{
			"--cert-dir=/tmp",
			"--secure-port=" + strconv.Itoa(metricsServerPort),
			"--tls-cert-file=" + metricsTLSDir + "/" + corev1.TLSCertKey,
			"--tls-private-key-file=" + metricsTLSDir + "/" + corev1.TLSPrivateKeyKey,
			"--kubelet-certificate-authority=" + metricsKubeletCADir + "/" + caCertKey,
			"--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
			"--kubelet-use-node-status-port",
			"--metric-resolution=" + MetricsServerResolution,
			"--kubelet-request-timeout=" + metricsKubeletTimeout,
		},
		Env:    apiServerEnv(c),
		Ports:  []corev1.ContainerPort{tcpPort("https", metricsServerPort)},
		CPU:    "100m",
		Memory: "200Mi",
		// metrics-server is ready once it has scraped the nodes: probe
		// often so that `kubectl top` answers soon after the first scrape.
		Readiness: quickReadiness(httpGet("/readyz", intstr.FromString("https"), corev1.URISchemeHTTPS)),
		Liveness: &corev1.Probe{ProbeHandler: httpGet("/livez", intstr.FromString("https"), corev1.URISchemeHTTPS),
			InitialDelaySeconds: 30, PeriodSeconds: 10, TimeoutSeconds: 1, FailureThreshold: 3},
		Security: Security{User: &uid},
		Mounts: []corev1.VolumeMount{
			{Name: "tmp-dir", MountPath: "/tmp"},
			{Name: "tls", MountPath: metricsTLSDir, ReadOnly: true},
			{Name: "kubelet-ca", MountPath: metricsKubeletCADir, ReadOnly: true},
		},
		Volumes: []corev1.Volume{
			{Name: "tmp-dir", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName: MetricsServerTLSSecret, DefaultMode: ptr(int32(0o440))}}},
			configMapVolume("kubelet-ca", KubeletServingCAConfigMap),
		},
		Priority:    "system-cluster-critical",
		Tolerations: criticalAddon(),
		// The pod runs as uid 1000; the Secret's files are readable by its
		// group only.
		FSGroup:        &uid,
		MaxUnavailable: ptr(intstr.FromInt32(0)),
		ClusterRole: Rules{Name: "system:metrics-server", Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"nodes/metrics"}, Verbs: []string{"get"}},
			{APIGroups: []string{""}, Resources: []string{"pods", "nodes"}, Verbs: []string{"get", "list", "watch"}}}},
		Bindings: []Binding{
			{Name: "metrics-server-auth-reader", Role: "extension-apiserver-authentication-reader"},
			{Name: "metrics-server:system:auth-delegator", ClusterRole: "system:auth-delegator"},
		},
		After: []runtime.Object{&apiregv1.APIService{TypeMeta: metav1.TypeMeta{APIVersion: apiregv1.SchemeGroupVersion.String(), Kind: "APIService"},
			ObjectMeta: metav1.ObjectMeta{Name: MetricsAPIService, Labels: labels},
			Spec: apiregv1.APIServiceSpec{
				Service:              &apiregv1.ServiceReference{Name: MetricsServerName, Namespace: ns, Port: ptr(int32(443))},
				Group:                "metrics.k8s.io",
				Version:              "v1beta1",
				CABundle:             tls.CA,
				GroupPriorityMinimum: 100,
				VersionPriority:      100,
			}}},
	}
	a.Extra = []runtime.Object{
		reader,
		&corev1.ConfigMap{TypeMeta: configMapType, ObjectMeta: metav1.ObjectMeta{Name: KubeletServingCAConfigMap, Namespace: ns},
			Data: map[string]string{caCertKey: string(tls.KubeletCA)}},
		&corev1.Secret{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: metav1.ObjectMeta{Name: MetricsServerTLSSecret, Namespace: ns, Labels: labels},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{corev1.TLSCertKey: tls.Cert, corev1.TLSPrivateKeyKey: tls.Key}},
		a.service(corev1.ServiceSpec{Ports: []corev1.ServicePort{
			{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("https")}}}),
	}
	return a.Objects()
}
