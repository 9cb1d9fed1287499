// Package manifests renders kubeforge's files from the configuration: static
// pod manifests, the kubelet's configuration and flags, the API server's
// authentication, encryption and audit configuration, the CNI configuration
// and the addon objects. Renderers are pure (no I/O) and golden-tested.
package manifests

import (
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"
	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/version"
)

// EtcdLocalClientURL is where a control-plane node's etcd member serves
// clients on loopback: the node's API server, snapshots, reset and upgrade
// talk to their own member there (its server certificate names 127.0.0.1).
var EtcdLocalClientURL = "https://" + hostPort("127.0.0.1", EtcdClientPort)

// ApproverAPIServerCertEnv names, in the controller-manager's environment,
// the API server certificate whose names and addresses the kubelet serving
// CSR approver (internal/csrapprover) never grants to a kubelet.
const ApproverAPIServerCertEnv = "KUBEFORGE_APISERVER_CERT"

// BinaryPath is where the self-image holds the kubeforge executable.
const BinaryPath = "/usr/local/bin/kubeforge"

// Derived are what the static pods depend on besides the configuration:
// facts the phases find on the node or in the cluster, passed in so that
// the renderers stay pure.
type Derived struct {
	// EtcdInitialCluster, when set, is etcd's --initial-cluster for a
	// member joining an existing cluster (a control-plane join, from the
	// member list; an upgrade keeps the one its manifest has).
	EtcdInitialCluster string
	// ExternalCAs are the certificate authorities (base names under the
	// certificate dir: "ca", "kubelet-serving-ca") whose certificate is
	// present without its key (pki.ExternalCAs): the controller-manager
	// then runs no signer for them, as kubeadm drops
	// --cluster-signing-* under an external CA.
	ExternalCAs []string
}

// StaticPod renders one control-plane component's Pod.
func StaticPod(c *config.Config, component string, d Derived) (*corev1.Pod, error) {
	if comp, ok := Lookup(component); ok {
		return comp.Render(c, d), nil
	}
	return nil, fmt.Errorf("unknown control-plane component %q", component)
}

// MarshalPod renders a Pod as manifest YAML.
func MarshalPod(p *corev1.Pod) ([]byte, error) {
	return yaml.Marshal(p)
}

// UnmarshalPod decodes a static pod manifest; it must have a container.
func UnmarshalPod(data []byte) (*corev1.Pod, error) {
	var p corev1.Pod
	if err := yaml.Unmarshal(data, &p); err != nil {
		return nil, err
	}
	if len(p.Spec.Containers) == 0 {
		return nil, fmt.Errorf("the pod has no container")
	}
	return &p, nil
}

// PodFlags maps the --name=value words of a pod's first container's
// command and arguments to their values (a bare --name maps to "").
func PodFlags(p *corev1.Pod) map[string]string {
	out := map[string]string{}
	if len(p.Spec.Containers) == 0 {
		return out
	}
	c := p.Spec.Containers[0]
	for _, a := range append(append([]string{}, c.Command...), c.Args...) {
		if name, ok := strings.CutPrefix(a, "--"); ok && name != "" {
			k, v, _ := strings.Cut(name, "=")
			out[k] = v
		}
	}
	return out
}

// PodImage is the image of a pod's first container.
func PodImage(p *corev1.Pod) string {
	if len(p.Spec.Containers) == 0 {
		return ""
	}
	return p.Spec.Containers[0].Image
}

// vols collects hostPath volumes and their mounts.
type vols struct {
	volumes []corev1.Volume
	mounts  []corev1.VolumeMount
}

func (v *vols) add(name, hostPath, mountPath string, readOnly bool, t corev1.HostPathType) {
	v.volumes = append(v.volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{
		HostPath: &corev1.HostPathVolumeSource{Path: hostPath, Type: &t}}})
	v.mounts = append(v.mounts, corev1.VolumeMount{Name: name, MountPath: mountPath, ReadOnly: readOnly})
}

func (v *vols) addExtra(extra []v1beta4.HostPathMount) {
	for _, e := range extra {
		t := e.PathType
		if t == "" {
			t = corev1.HostPathDirectoryOrCreate
		}
		v.add(e.Name, e.HostPath, e.MountPath, e.ReadOnly, t)
	}
}

// args turns defaults plus the user's extraArgs into sorted --name=value
// flags; an extraArg replaces the default of the same name.
func args(defaults map[string]string, extra []v1beta4.Arg) []string {
	names := make([]string, 0, len(defaults))
	for n := range defaults {
		names = append(names, n)
	}
	overridden := map[string]bool{}
	for _, a := range extra {
		overridden[a.Name] = true
	}
	out := make([]string, 0, len(names)+len(extra))
	for _, n := range names {
		if !overridden[n] {
			out = append(out, "--"+n+"="+defaults[n])
		}
	}
	for _, a := range extra {
		out = append(out, "--"+a.Name+"="+a.Value)
	}
	// Stable: repeated extraArgs keep the user's order.
	slices.SortStableFunc(out, func(a, b string) int { return strings.Compare(flagName(a), flagName(b)) })
	return out
}

func flagName(arg string) string {
	n, _, _ := strings.Cut(strings.TrimPrefix(arg, "--"), "=")
	return n
}

func envs(extra []v1beta4.EnvVar) []corev1.EnvVar {
	var out []corev1.EnvVar
	for _, e := range extra {
		out = append(out, e.EnvVar)
	}
	return out
}

type probeSpec struct {
	host, path, scheme string
}

// pod assembles a control-plane Pod the way kubeadm does, with probes tuned
// so the pod turns Ready as soon as the component is (kubeadm's 10 s
// startup-probe delay is what makes its control plane take ~26 s to report
// Ready): the startup probe starts at once and polls every second.
func pod(c *config.Config, name string, command []string, port int, probe probeSpec, readiness *probeSpec,
	v vols, requests corev1.ResourceList, env []corev1.EnvVar, annotations map[string]string) *corev1.Pod {
	httpGet := func(p probeSpec) *corev1.HTTPGetAction {
		return &corev1.HTTPGetAction{Host: p.host, Path: p.path, Port: intstr.FromString("probe-port"),
			Scheme: corev1.URIScheme(p.scheme)}
	}
	ctr := corev1.Container{
		Name:            name,
		Image:           version.Image(),
		ImagePullPolicy: corev1.PullIfNotPresent,
		Command:         append([]string{"kubeforge", "component", name}, command...),
		Env:             env,
		Ports: []corev1.ContainerPort{{Name: "probe-port", ContainerPort: int32(port),
			Protocol: corev1.ProtocolTCP}},
		Resources:    corev1.ResourceRequirements{Requests: requests},
		VolumeMounts: v.mounts,
		LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: httpGet(probe)},
			InitialDelaySeconds: 10, TimeoutSeconds: 15, PeriodSeconds: 10, FailureThreshold: 8},
		StartupProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: httpGet(probe)},
			InitialDelaySeconds: 0, TimeoutSeconds: 15, PeriodSeconds: 1, FailureThreshold: 240},
	}
	if readiness != nil {
		ctr.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: httpGet(*readiness)},
			TimeoutSeconds: 15, PeriodSeconds: 1, FailureThreshold: 3}
	}
	priority := int32(2000001000)
	annotations = withShimGroup(annotations)
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Namespace:   metav1.NamespaceSystem,
			Labels:      map[string]string{"component": name, "tier": "control-plane"},
			Annotations: annotations,
		},
		Spec: corev1.PodSpec{
			Containers:        []corev1.Container{ctr},
			HostNetwork:       true,
			Priority:          &priority,
			PriorityClassName: "system-node-critical",
			SecurityContext: &corev1.PodSecurityContext{
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Volumes: v.volumes,
		},
	}
}

func cpu(m string) corev1.ResourceList {
	return corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(m)}
}

func hostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

func etcdPod(c *config.Config, d Derived) *corev1.Pod {
	initialCluster := d.EtcdInitialCluster
	p := c.Paths
	adv := c.AdvertiseAddress()
	etcdPKI := filepath.Join(p.CertDir, "etcd")
	local := c.Cluster.Etcd.Local
	clientURL := "https://" + hostPort(adv, EtcdClientPort)
	peerURL := "https://" + hostPort(adv, EtcdPeerPort)
	defaults := map[string]string{
		"advertise-client-urls":          clientURL,
		"cert-file":                      filepath.Join(etcdPKI, "server.crt"),
		"client-cert-auth":               "true",
		"data-dir":                       local.DataDir,
		"feature-gates":                  "InitialCorruptCheck=true",
		"initial-advertise-peer-urls":    peerURL,
		"initial-cluster":                c.NodeName() + "=" + peerURL,
		"key-file":                       filepath.Join(etcdPKI, "server.key"),
		"listen-client-urls":             EtcdLocalClientURL + "," + clientURL,
		"listen-metrics-urls":            "http://" + hostPort("127.0.0.1", EtcdMetricsPort),
		"listen-peer-urls":               peerURL,
		"name":                           c.NodeName(),
		"peer-cert-file":                 filepath.Join(etcdPKI, "peer.crt"),
		"peer-client-cert-auth":          "true",
		"peer-key-file":                  filepath.Join(etcdPKI, "peer.key"),
		"peer-trusted-ca-file":           filepath.Join(etcdPKI, "ca.crt"),
		"snapshot-count":                 "10000",
		"trusted-ca-file":                filepath.Join(etcdPKI, "ca.crt"),
		"watch-progress-notify-interval": "5s",
	}
	if initialCluster != "" {
		defaults["initial-cluster"] = initialCluster
		defaults["initial-cluster-state"] = "existing"
	}
	var v vols
	v.add("etcd-data", local.DataDir, local.DataDir, false, corev1.HostPathDirectoryOrCreate)
	v.add("etcd-certs", etcdPKI, etcdPKI, true, corev1.HostPathDirectoryOrCreate)
	flags := args(defaults, local.ExtraArgs)
	host, port := probeAt(etcdHealth, flags, "127.0.0.1", EtcdMetricsPort)
	probe := probeSpec{host, "/livez", "HTTP"}
	ready := probeSpec{host, "/readyz", "HTTP"}
	pd := pod(c, Etcd, flags, port, probe, &ready, v,
		corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("100Mi")},
		envs(local.ExtraEnvs), map[string]string{"kubeadm.kubernetes.io/etcd.advertise-client-urls": clientURL})
	// kubeadm probes etcd's startup on /readyz.
	pd.Spec.Containers[0].StartupProbe.HTTPGet.Path = "/readyz"
	return pd
}

func apiServerPod(c *config.Config) *corev1.Pod {
	p := c.Paths
	adv := c.AdvertiseAddress()
	cert := p.Cert
	defaults := map[string]string{
		"advertise-address":             adv,
		"admission-control-config-file": p.AdmissionConfigFile(),
		"allow-privileged":              "true",
		"audit-log-maxage":              "30",
		"audit-log-maxbackup":           "10",
		"audit-log-maxsize":             "100",
		"audit-log-path":                filepath.Join(p.AuditLogDir(), "audit.log"),
		"audit-policy-file":             p.AuditPolicyFile(),
		"authentication-config":         p.AuthnConfigFile(),
		"authorization-mode":            "Node,RBAC",
		"client-ca-file":                cert("ca.crt"),
		"enable-admission-plugins":      "NodeRestriction",
		"enable-bootstrap-token-auth":   "true",
		// The aggregator dials an APIService's endpoints (pod IPs, routed
		// by the pod network) rather than its ClusterIP: a node without a
		// default route has no route to the Service range, so a dial of a
		// ClusterIP from the host fails before kube-proxy's DNAT applies.
		"enable-aggregator-routing":  "true",
		"encryption-provider-config": p.EncryptionConfigFile(),
		// Reread the file once a minute: `kubeforge secrets rotate-key`
		// changes keys without restarting the API server.
		"encryption-provider-config-automatic-reload": "true",
		"etcd-cafile":                             cert("etcd/ca.crt"),
		"etcd-certfile":                           cert("apiserver-etcd-client.crt"),
		"etcd-keyfile":                            cert("apiserver-etcd-client.key"),
		"etcd-servers":                            EtcdLocalClientURL,
		"kubelet-certificate-authority":           cert("kubelet-serving-ca.crt"),
		"kubelet-client-certificate":              cert("apiserver-kubelet-client.crt"),
		"kubelet-client-key":                      cert("apiserver-kubelet-client.key"),
		"kubelet-preferred-address-types":         "InternalIP,ExternalIP,Hostname",
		"profiling":                               "false",
		"proxy-client-cert-file":                  cert("front-proxy-client.crt"),
		"proxy-client-key-file":                   cert("front-proxy-client.key"),
		"requestheader-allowed-names":             "front-proxy-client",
		"requestheader-client-ca-file":            cert("front-proxy-ca.crt"),
		"requestheader-extra-headers-prefix":      "X-Remote-Extra-",
		"requestheader-group-headers":             "X-Remote-Group",
		"requestheader-username-headers":          "X-Remote-User",
		"secure-port":                             strconv.Itoa(int(c.BindPort())),
		"service-account-extend-token-expiration": "false",
		// On SIGTERM, end the open watches at once (clients re-establish
		// them) instead of leaving them to the HTTP server's 60 s shutdown
		// timeout: without it the API server outlives the kubelet's 30 s
		// grace period on every restart (measured: 60 s after SIGTERM),
		// and the port is closed all that time.
		"shutdown-watch-termination-grace-period": "5s",
		"service-account-issuer":                  "https://kubernetes.default.svc." + c.Cluster.Networking.DNSDomain,
		"service-account-key-file":                cert("sa.pub"),
		"service-account-signing-key-file":        cert("sa.key"),
		"service-cluster-ip-range":                c.Cluster.Networking.ServiceSubnet,
		"tls-cert-file":                           cert("apiserver.crt"),
		"tls-cipher-suites":                       strings.Join(config.StrongCipherSuites, ","),
		"tls-private-key-file":                    cert("apiserver.key"),
	}
	var v vols
	v.add("k8s-certs", p.CertDir, p.CertDir, true, corev1.HostPathDirectoryOrCreate)
	v.add("apiserver-config", filepath.Dir(p.AuthnConfigFile()), filepath.Dir(p.AuthnConfigFile()), true, corev1.HostPathDirectoryOrCreate)
	v.add("audit-log", p.AuditLogDir(), p.AuditLogDir(), false, corev1.HostPathDirectoryOrCreate)
	v.addExtra(c.Cluster.APIServer.ExtraVolumes)
	flags := args(defaults, c.Cluster.APIServer.ExtraArgs)
	host, port := probeAt(apiServerHealth, flags, adv, int(c.BindPort()))
	probe := probeSpec{host, "/livez", "HTTPS"}
	ready := probeSpec{host, "/readyz", "HTTPS"}
	return pod(c, KubeAPIServer, flags, port, probe, &ready, v,
		cpu("250m"), envs(c.Cluster.APIServer.ExtraEnvs),
		map[string]string{"kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint": hostPort(adv, int(c.BindPort()))})
}

func controllerManagerPod(c *config.Config, externalCAs []string) *corev1.Pod {
	p := c.Paths
	cert := p.Cert
	kubeconfig := p.Kubeconfig("controller-manager.conf")
	defaults := map[string]string{
		"allocate-node-cidrs":       "true",
		"authentication-kubeconfig": kubeconfig,
		"authorization-kubeconfig":  kubeconfig,
		"bind-address":              "127.0.0.1",
		"client-ca-file":            cert("ca.crt"),
		"cluster-cidr":              c.Cluster.Networking.PodSubnet,
		"cluster-name":              c.Cluster.ClusterName,
		// Kubelet serving certificates come from a CA of their own, which
		// no API client trusts (pki.KubeletServingCA); the other signers use
		// the cluster CA, as kubeadm's --cluster-signing-{cert,key}-file.
		"cluster-signing-kubelet-serving-cert-file":       cert("kubelet-serving-ca.crt"),
		"cluster-signing-kubelet-serving-key-file":        cert("kubelet-serving-ca.key"),
		"cluster-signing-kubelet-client-cert-file":        cert("ca.crt"),
		"cluster-signing-kubelet-client-key-file":         cert("ca.key"),
		"cluster-signing-kube-apiserver-client-cert-file": cert("ca.crt"),
		"cluster-signing-kube-apiserver-client-key-file":  cert("ca.key"),
		"cluster-signing-legacy-unknown-cert-file":        cert("ca.crt"),
		"cluster-signing-legacy-unknown-key-file":         cert("ca.key"),
		"controllers":                      "*,bootstrapsigner,tokencleaner",
		"kube-api-burst":                   "200",
		"kube-api-qps":                     "100",
		"kubeconfig":                       kubeconfig,
		"leader-elect":                     "true",
		"leader-elect-retry-period":        "500ms",
		"profiling":                        "false",
		"requestheader-client-ca-file":     cert("front-proxy-ca.crt"),
		"root-ca-file":                     cert("ca.crt"),
		"service-account-private-key-file": cert("sa.key"),
		"service-cluster-ip-range":         c.Cluster.Networking.ServiceSubnet,
		"terminated-pod-gc-threshold":      "1000",
		"use-service-account-credentials":  "true",
	}
	// Under an external CA (its key absent) the signers it backs are left
	// out, as kubeadm leaves out --cluster-signing-{cert,key}-file: their
	// CSRs stay pending for the CA's owner to sign.
	for _, s := range []struct{ ca, signer string }{
		{"kubelet-serving-ca", "kubelet-serving"}, {"ca", "kubelet-client"}, {"ca", "kube-apiserver-client"}, {"ca", "legacy-unknown"},
	} {
		if slices.Contains(externalCAs, s.ca) {
			delete(defaults, "cluster-signing-"+s.signer+"-cert-file")
			delete(defaults, "cluster-signing-"+s.signer+"-key-file")
		}
	}
	// kube-controller-manager refuses --cluster-signing-{cert,key}-file
	// next to the per-signer flags: a user who sets the former (kubeadm's
	// flags) gets one CA for every signer, as with kubeadm.
	for _, a := range c.Cluster.ControllerManager.ExtraArgs {
		if a.Name == "cluster-signing-cert-file" || a.Name == "cluster-signing-key-file" {
			for n := range defaults {
				if strings.HasPrefix(n, "cluster-signing-") && strings.HasSuffix(n, "-file") {
					delete(defaults, n)
				}
			}
		}
	}
	var v vols
	v.add("k8s-certs", p.CertDir, p.CertDir, true, corev1.HostPathDirectoryOrCreate)
	v.add("kubeconfig", kubeconfig, kubeconfig, true, corev1.HostPathFileOrCreate)
	v.addExtra(c.Cluster.ControllerManager.ExtraVolumes)
	// kubeforge's kubelet serving CSR approver runs in this process and
	// refuses every name and address of the API server's certificate.
	env := append([]corev1.EnvVar{{Name: ApproverAPIServerCertEnv, Value: cert("apiserver.crt")}},
		envs(c.Cluster.ControllerManager.ExtraEnvs)...)
	flags := args(defaults, c.Cluster.ControllerManager.ExtraArgs)
	host, port := probeAt(controllerManagerHealth, flags, "127.0.0.1", ControllerManagerPort)
	return pod(c, KubeControllerMgr, flags, port, probeSpec{host, "/healthz", "HTTPS"}, nil, v, cpu("200m"), env, nil)
}
