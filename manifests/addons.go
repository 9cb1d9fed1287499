package manifests

import (
	"fmt"
	"net/url"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/config"
)

// Addon object names, as kubeadm's.
const (
	CoreDNSName     = "coredns"
	KubeDNSService  = "kube-dns"
	KubeProxyName   = "kube-proxy"
	corefileKey     = "Corefile"
	kubeProxyConfig = "config.conf"
	kubeProxyKC     = "kubeconfig.conf"
)

var (
	deploymentType = metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"}
	daemonSetType  = metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DaemonSet"}
	saType         = metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}
	serviceType    = metav1.TypeMeta{APIVersion: "v1", Kind: "Service"}
)

// Corefile is kubeadm's Corefile for the cluster's DNS domain.
func Corefile(domain string) string {
	return fmt.Sprintf(`.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes %s in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30 {
       disable success %s
       disable denial %s
    }
    loop
    reload
    loadbalance
}
`, domain, domain, domain)
}

// CoreDNSObjects are the CoreDNS addon: the Corefile ConfigMap, RBAC, the
// coredns Deployment (2 replicas, spread over nodes) running the
// self-image's CoreDNS, and the kube-dns Service at the tenth address of
// the service CIDR. The readiness probe polls every second, so CoreDNS is
// Ready as soon as it has synced with the API.
func CoreDNSObjects(c *config.Config) []runtime.Object {
	ns := metav1.NamespaceSystem
	labels := map[string]string{"k8s-app": KubeDNSService}
	a := Addon{WorkloadRef: CoreDNSWorkload, App: KubeDNSService,
		Args: []string{"-conf", "/etc/coredns/Corefile"},
		Env:  apiServerEnv(c),
		Ports: []corev1.ContainerPort{
			{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
			tcpPort("dns-tcp", 53),
			tcpPort("metrics", 9153),
			tcpPort("liveness-probe", 8080),
			tcpPort("readiness-probe", 8181),
		},
		CPU:         "100m",
		Memory:      "70Mi",
		MemoryLimit: "170Mi",
		Liveness: &corev1.Probe{ProbeHandler: httpGet("/health", intstr.FromString("liveness-probe"), corev1.URISchemeHTTP),
			InitialDelaySeconds: 60, TimeoutSeconds: 5, SuccessThreshold: 1, FailureThreshold: 5},
		Readiness: &corev1.Probe{ProbeHandler: httpGet("/ready", intstr.FromString("readiness-probe"), corev1.URISchemeHTTP),
			PeriodSeconds: 1, TimeoutSeconds: 1, FailureThreshold: 3},
		Security: Security{Add: []corev1.Capability{"NET_BIND_SERVICE"}, NoSeccomp: true},
		Mounts:   []corev1.VolumeMount{{Name: "config-volume", MountPath: "/etc/coredns", ReadOnly: true}},
		Volumes: []corev1.Volume{{Name: "config-volume", VolumeSource: corev1.VolumeSource{
			ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: CoreDNSName},
				Items: []corev1.KeyToPath{{Key: corefileKey, Path: corefileKey}}}}}},
		DNSPolicy:   corev1.DNSDefault,
		Priority:    "system-cluster-critical",
		Tolerations: criticalAddon(),
		// Two replicas, preferably on two nodes.
		Replicas:       2,
		MaxUnavailable: ptr(intstr.FromInt32(1)),
		Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
			PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{Weight: 100,
				PodAffinityTerm: corev1.PodAffinityTerm{TopologyKey: corev1.LabelHostname,
					LabelSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
						Key: "k8s-app", Operator: metav1.LabelSelectorOpIn, Values: []string{KubeDNSService}}}}}}}}},
		PlainServiceAccount: true,
		ClusterRole: Rules{Name: "system:coredns", Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"endpoints", "services", "pods", "namespaces"}, Verbs: []string{"list", "watch"}},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}}}},
	}
	a.Extra = []runtime.Object{
		&corev1.ConfigMap{TypeMeta: configMapType, ObjectMeta: metav1.ObjectMeta{Name: CoreDNSName, Namespace: ns},
			Data: map[string]string{corefileKey: Corefile(c.Cluster.Networking.DNSDomain)}},
		// The kube-dns Service, at the tenth address of the service CIDR.
		&corev1.Service{
			TypeMeta: serviceType,
			ObjectMeta: metav1.ObjectMeta{Name: KubeDNSService, Namespace: ns,
				Labels:      map[string]string{"k8s-app": KubeDNSService, "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
				Annotations: map[string]string{"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}},
			Spec: corev1.ServiceSpec{
				ClusterIP: c.DNSServiceIP().String(),
				Selector:  labels,
				Ports: []corev1.ServicePort{
					{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(53)},
					{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(53)},
					{Name: "metrics", Port: 9153, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(9153)},
				},
			},
		},
	}
	return a.Objects()
}

// apiServerEnv points a pod's in-cluster client (client-go reads
// KUBERNETES_SERVICE_HOST and _PORT, which the container's own env
// overrides) at the control-plane endpoint, the API server kube-proxy
// talks to too, instead of the `kubernetes` Service. CoreDNS starts
// together with kube-proxy: through the Service its first API requests
// fail until kube-proxy has programmed it, and client-go's backoff then
// held CoreDNS unready for up to ~50 s after kube-proxy was done.
func apiServerEnv(c *config.Config) []corev1.EnvVar {
	u, err := url.Parse(c.ControlPlaneEndpoint())
	if err != nil || u.Hostname() == "" {
		return nil
	}
	port := u.Port()
	if port == "" {
		port = "443"
	}
	return []corev1.EnvVar{{Name: "KUBERNETES_SERVICE_HOST", Value: u.Hostname()}, {Name: "KUBERNETES_SERVICE_PORT", Value: port}}
}

// The kube-proxy pod's contract with components/hosttools (which must not
// import this package: its trampoline is a tiny separate binary): the host's
// root is mounted read-only at KubeProxyHostRootDir and named in the
// environment variable KubeProxyHostRootEnv. A test in components/hosttools
// holds both sides equal.
const (
	KubeProxyHostRootEnv = "KUBEFORGE_HOST_ROOT"
	KubeProxyHostRootDir = "/host"
)

// KubeProxyObjects are the kube-proxy addon: its ConfigMap (the
// KubeProxyConfiguration and an in-cluster kubeconfig), RBAC and the
// DaemonSet running the self-image's kube-proxy on every node. The pod
// mounts the host's root, recursively read-only, so kube-proxy runs the
// host's iptables/nft (a chroot, see components/hosttools); the one file
// they write, the xtables lock, is mounted writable inside it.
func KubeProxyObjects(c *config.Config) ([]runtime.Object, error) {
	ns := metav1.NamespaceSystem
	cfg, err := yaml.Marshal(&c.KubeProxy)
	if err != nil {
		return nil, fmt.Errorf("render KubeProxyConfiguration: %w", err)
	}
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt
    server: %s
  name: default
contexts:
- context:
    cluster: default
    namespace: default
    user: default
  name: default
current-context: default
users:
- name: default
  user:
    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token
`, c.ControlPlaneEndpoint())
	return Addon{WorkloadRef: KubeProxyWorkload,
		Command:  []string{"--config=/var/lib/kube-proxy/" + kubeProxyConfig, "--hostname-override=$(NODE_NAME)"},
		Env:      []corev1.EnvVar{nodeNameEnv(), {Name: KubeProxyHostRootEnv, Value: KubeProxyHostRootDir}},
		Security: Security{Privileged: true},
		Mounts: []corev1.VolumeMount{
			{Name: KubeProxyName, MountPath: "/var/lib/kube-proxy"},
			{Name: "xtables-lock", MountPath: "/run/xtables.lock"},
			{Name: "lib-modules", MountPath: "/lib/modules", ReadOnly: true},
			{Name: "host-root", MountPath: KubeProxyHostRootDir, ReadOnly: true, RecursiveReadOnly: ptr(corev1.RecursiveReadOnlyIfPossible)},
			{Name: "xtables-lock", MountPath: KubeProxyHostRootDir + "/run/xtables.lock"},
		},
		Volumes: []corev1.Volume{
			configMapVolume(KubeProxyName, KubeProxyName),
			{Name: "xtables-lock", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/run/xtables.lock", Type: ptr(corev1.HostPathFileOrCreate)}}},
			{Name: "lib-modules", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/lib/modules"}}},
			{Name: "host-root", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/", Type: ptr(corev1.HostPathDirectory)}}},
		},
		HostNetwork:         true,
		Priority:            "system-node-critical",
		Tolerations:         anyTaint(),
		PlainServiceAccount: true,
		Bindings:            []Binding{{Name: "kubeadm:node-proxier", ClusterRole: "system:node-proxier"}},
		Extra: []runtime.Object{
			&corev1.ConfigMap{TypeMeta: configMapType, ObjectMeta: metav1.ObjectMeta{Name: KubeProxyName, Namespace: ns, Labels: map[string]string{"app": KubeProxyName}},
				Data: map[string]string{kubeProxyConfig: string(cfg), kubeProxyKC: kubeconfig}},
			role(ns, KubeProxyName, getNamed("configmaps", KubeProxyName)),
			roleBinding(ns, KubeProxyName, group(NodeBootstrapGroup)),
		},
	}.Objects(), nil
}
