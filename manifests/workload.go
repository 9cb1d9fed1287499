package manifests

import (
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

// Kind is the kind of an addon's workload.
type Kind string

// The kinds of workload an addon runs as.
const (
	Deployment  Kind = "Deployment"
	DaemonSet   Kind = "DaemonSet"
	StatefulSet Kind = "StatefulSet"
)

// WorkloadRef names an addon's workload in kube-system: its kind and its
// name, which is its container's name too. Each addon's is stated once,
// below; the addon's renderer and `upgrade apply` (which moves it to a new
// self-image) both read it.
type WorkloadRef struct {
	Kind Kind
	Name string
}

// The addons' workloads on the self-image.
var (
	CoreDNSWorkload         = WorkloadRef{Deployment, CoreDNSName}
	KubeProxyWorkload       = WorkloadRef{DaemonSet, KubeProxyName}
	MetricsServerWorkload   = WorkloadRef{Deployment, MetricsServerName}
	LocalPathWorkload       = WorkloadRef{DaemonSet, LocalPathName}
	CloudControllerWorkload = WorkloadRef{Deployment, CloudControllerName}
	DashboardWorkload       = WorkloadRef{Deployment, DashboardName}
	NetworkPolicyWorkload   = WorkloadRef{DaemonSet, NetworkPolicyName}
	LogStoreWorkload        = WorkloadRef{StatefulSet, LogStoreName}
)

// Addon describes an addon that runs one workload on the self-image
// (`kubeforge component COMPONENT`) in kube-system: the workload with
// its one container, its ServiceAccount and the rights bound to it, and
// the addon's other objects. Objects renders it. What every addon shares
// is the renderer's: the self-image pulled if not present, the k8s-app
// label on every object and as the selector, Linux nodes only, a
// DaemonSet's rolling update, a Deployment's or StatefulSet's one
// replica.
type Addon struct {
	WorkloadRef
	// App is the k8s-app label (default Name).
	App string
	// Component is the self-image's component the container runs
	// (default Name).
	Component string
	// Command is what follows `kubeforge component COMPONENT` in the
	// container's command; Args are its args.
	Command, Args []string
	Env           []corev1.EnvVar
	Ports         []corev1.ContainerPort
	// CPU and Memory are the container's requests, MemoryLimit its limit.
	CPU, Memory, MemoryLimit string
	Readiness, Liveness      *corev1.Probe
	Security                 Security
	Mounts                   []corev1.VolumeMount

	// The pod.
	Volumes     []corev1.Volume
	HostNetwork bool
	// NodeSelector is added to kubernetes.io/os=linux.
	NodeSelector map[string]string
	// Priority is the pod's priority class.
	Priority    string
	Tolerations []corev1.Toleration
	// NoToken mounts no service account token in the pod (and marks the
	// ServiceAccount so).
	NoToken bool
	// NoServiceLinks sets no Service variables in the container's
	// environment.
	NoServiceLinks bool
	// FSGroup is the pod's supplementary group for its volumes.
	FSGroup *int64
	// GracePeriod is the pod's termination grace period in seconds.
	GracePeriod *int64
	DNSPolicy   corev1.DNSPolicy
	Affinity    *corev1.Affinity
	// Annotations are the pod template's.
	Annotations map[string]string

	// Replicas of a Deployment or StatefulSet (default 1).
	Replicas int32
	// MaxUnavailable, when set, is the rolling update's limit (a
	// Deployment without it keeps the API's default strategy).
	MaxUnavailable *intstr.IntOrString
	// Claims are a StatefulSet's volume claim templates (its Service is
	// the one named Name).
	Claims []corev1.PersistentVolumeClaim

	// The pod's identity and rights.
	//
	// NoServiceAccount runs the pod as the namespace's default
	// ServiceAccount (the addon makes none).
	NoServiceAccount bool
	// PlainServiceAccount makes the ServiceAccount without labels, as
	// kubeadm's (CoreDNS, kube-proxy).
	PlainServiceAccount bool
	// ClusterRole, when it has rules, is a ClusterRole bound to the
	// ServiceAccount by a ClusterRoleBinding of the same name.
	ClusterRole Rules
	// Bindings bind roles that exist already to the ServiceAccount.
	Bindings []Binding

	// Extra are the addon's other objects (its configuration, Service,
	// …), listed before the workload; After are listed after it.
	Extra, After []runtime.Object
}

// Rules name a role and its rules.
type Rules struct {
	Name  string
	Rules []rbacv1.PolicyRule
}

// Binding binds the ServiceAccount to a ClusterRole (ClusterRoleBinding
// Name) or, with Role set, to a Role in kube-system (RoleBinding Name).
type Binding struct {
	Name, ClusterRole, Role string
}

// Security is a container's security context: no privilege escalation,
// no capability but Add, a read-only root filesystem and the runtime's
// default seccomp profile, unless a field says otherwise.
type Security struct {
	// User is the uid the container runs as; a uid other than 0 runs it
	// as non-root.
	User *int64
	Add  []corev1.Capability
	// WritableRoot leaves the root filesystem writable.
	WritableRoot bool
	// NoSeccomp sets no seccomp profile (CoreDNS, as kubeadm's).
	NoSeccomp bool
	// Privileged gives the container everything instead (kube-proxy).
	Privileged bool
}

func (s Security) context() *corev1.SecurityContext {
	if s.Privileged {
		return &corev1.SecurityContext{Privileged: ptr(true)}
	}
	sc := &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr(false),
		Capabilities:             &corev1.Capabilities{Add: s.Add, Drop: []corev1.Capability{"ALL"}},
		RunAsUser:                s.User,
	}
	if !s.WritableRoot {
		sc.ReadOnlyRootFilesystem = ptr(true)
	}
	if s.User != nil && *s.User != 0 {
		sc.RunAsNonRoot = ptr(true)
	}
	if !s.NoSeccomp {
		sc.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}
	}
	return sc
}

// Objects are the addon's objects, in this order: its ServiceAccount,
// its ClusterRole and the bindings of its ServiceAccount, Extra, the
// workload, After. (The applier makes every object but the workloads
// first, whatever the order.)
func (a Addon) Objects() []runtime.Object {
	ns := metav1.NamespaceSystem
	var out []runtime.Object
	sa := a.subject()
	if !a.NoServiceAccount {
		o := &corev1.ServiceAccount{TypeMeta: saType, ObjectMeta: metav1.ObjectMeta{Name: a.Name, Namespace: ns, Labels: a.labels()}}
		if a.PlainServiceAccount {
			o.Labels = nil
		}
		if a.NoToken {
			o.AutomountServiceAccountToken = ptr(false)
		}
		out = append(out, o)
	}
	if len(a.ClusterRole.Rules) > 0 {
		out = append(out, clusterRole(a.ClusterRole.Name, a.ClusterRole.Rules...),
			clusterRoleBinding(a.ClusterRole.Name, a.ClusterRole.Name, sa))
	}
	for _, b := range a.Bindings {
		if b.Role != "" {
			rb := roleBinding(ns, b.Name, sa)
			rb.RoleRef.Name = b.Role
			out = append(out, rb)
			continue
		}
		out = append(out, clusterRoleBinding(b.Name, b.ClusterRole, sa))
	}
	out = append(out, a.Extra...)
	out = append(out, a.workload())
	return append(out, a.After...)
}

func (a Addon) labels() map[string]string {
	app := a.App
	if app == "" {
		app = a.Name
	}
	return map[string]string{"k8s-app": app}
}

func (a Addon) workload() runtime.Object {
	ns := metav1.NamespaceSystem
	labels := a.labels()
	meta := metav1.ObjectMeta{Name: a.Name, Namespace: ns, Labels: labels}
	selector := &metav1.LabelSelector{MatchLabels: labels}
	template := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: withShimGroup(a.Annotations)},
		Spec: a.pod()}
	replicas := a.Replicas
	if replicas == 0 {
		replicas = 1
	}
	switch a.Kind {
	case DaemonSet:
		ds := &appsv1.DaemonSet{TypeMeta: daemonSetType, ObjectMeta: meta, Spec: appsv1.DaemonSetSpec{
			Selector:       selector,
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType},
			Template:       template}}
		if a.MaxUnavailable != nil {
			ds.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{MaxUnavailable: a.MaxUnavailable}
		}
		return ds
	case StatefulSet:
		return &appsv1.StatefulSet{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: string(StatefulSet)}, ObjectMeta: meta,
			Spec: appsv1.StatefulSetSpec{Replicas: &replicas, ServiceName: a.Name, Selector: selector, Template: template,
				VolumeClaimTemplates: a.Claims}}
	default:
		dep := &appsv1.Deployment{TypeMeta: deploymentType, ObjectMeta: meta,
			Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: selector, Template: template}}
		if a.MaxUnavailable != nil {
			dep.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: a.MaxUnavailable}}
		}
		return dep
	}
}

func (a Addon) pod() corev1.PodSpec {
	component := a.Component
	if component == "" {
		component = a.Name
	}
	ctr := corev1.Container{
		Name:            a.Name,
		Image:           version.Image(),
		ImagePullPolicy: corev1.PullIfNotPresent,
		Command:         append([]string{"kubeforge", "component", component}, a.Command...),
		Args:            a.Args,
		Env:             a.Env,
		Ports:           a.Ports,
		ReadinessProbe:  a.Readiness,
		LivenessProbe:   a.Liveness,
		SecurityContext: a.Security.context(),
		VolumeMounts:    a.Mounts,
	}
	if a.CPU != "" || a.Memory != "" {
		ctr.Resources.Requests = corev1.ResourceList{}
		if a.CPU != "" {
			ctr.Resources.Requests[corev1.ResourceCPU] = resource.MustParse(a.CPU)
		}
		if a.Memory != "" {
			ctr.Resources.Requests[corev1.ResourceMemory] = resource.MustParse(a.Memory)
		}
	}
	if a.MemoryLimit != "" {
		ctr.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(a.MemoryLimit)}
	}
	nodes := map[string]string{corev1.LabelOSStable: "linux"}
	for k, v := range a.NodeSelector {
		nodes[k] = v
	}
	spec := corev1.PodSpec{
		Containers:                    []corev1.Container{ctr},
		Volumes:                       a.Volumes,
		HostNetwork:                   a.HostNetwork,
		NodeSelector:                  nodes,
		PriorityClassName:             a.Priority,
		Tolerations:                   a.Tolerations,
		TerminationGracePeriodSeconds: a.GracePeriod,
		DNSPolicy:                     a.DNSPolicy,
		Affinity:                      a.Affinity,
	}
	if !a.NoServiceAccount {
		spec.ServiceAccountName = a.Name
	}
	if a.NoToken {
		spec.AutomountServiceAccountToken = ptr(false)
	}
	if a.NoServiceLinks {
		spec.EnableServiceLinks = ptr(false)
	}
	if a.FSGroup != nil {
		spec.SecurityContext = &corev1.PodSecurityContext{FSGroup: a.FSGroup}
	}
	return spec
}

// subject is the addon's ServiceAccount as an RBAC subject.
func (a Addon) subject() rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: a.Name, Namespace: metav1.NamespaceSystem}
}

// service is the addon's Service (named Name, selecting its pods).
func (a Addon) service(spec corev1.ServiceSpec) *corev1.Service {
	spec.Selector = a.labels()
	return &corev1.Service{TypeMeta: serviceType,
		ObjectMeta: metav1.ObjectMeta{Name: a.Name, Namespace: metav1.NamespaceSystem, Labels: a.labels()}, Spec: spec}
}

// anyTaint tolerates every taint: a pod for every node (a DaemonSet's).
func anyTaint() []corev1.Toleration {
	return []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
}

// criticalAddon tolerates the control-plane nodes' taint and nodes kept
// for critical addons.
func criticalAddon() []corev1.Toleration {
	return []corev1.Toleration{
		{Key: "CriticalAddonsOnly", Operator: corev1.TolerationOpExists},
		{Key: config.ControlPlaneTaint.Key, Effect: corev1.TaintEffectNoSchedule},
	}
}

// nodeNameEnv is NODE_NAME, the name of the pod's node.
func nodeNameEnv() corev1.EnvVar {
	return corev1.EnvVar{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}}
}

// httpGet is a probe's HTTP GET of path on port.
func httpGet(path string, port intstr.IntOrString, scheme corev1.URIScheme) corev1.ProbeHandler {
	return corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: port, Scheme: scheme}}
}

// localGet is a probe's HTTP GET of path on port at 127.0.0.1 (a pod on
// the host network that serves on the node's loopback only).
func localGet(path string, port int32, scheme corev1.URIScheme) corev1.ProbeHandler {
	h := httpGet(path, intstr.FromInt32(port), scheme)
	h.HTTPGet.Host = "127.0.0.1"
	return h
}

// quickReadiness probes h every 2 s (ready soon after the process is).
func quickReadiness(h corev1.ProbeHandler) *corev1.Probe {
	return &corev1.Probe{ProbeHandler: h, PeriodSeconds: 2, TimeoutSeconds: 1, FailureThreshold: 3}
}

func tcpPort(name string, port int32) corev1.ContainerPort {
	return corev1.ContainerPort{Name: name, ContainerPort: port, Protocol: corev1.ProtocolTCP}
}

func configMapVolume(name, configMap string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: configMap}}}}
}

func ptr[T any](v T) *T { return &v }
