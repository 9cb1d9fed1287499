package manifests

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/version"
)

// The dashboard addon's names and ports.
const (
	// DashboardName names the ServiceAccount, Service and Deployment
	// (namespace kube-system).
	DashboardName = "kubeforge-dashboard"
	// DashboardComponent is the command the pod runs: `kubeforge
	// component dashboard`.
	DashboardComponent = "dashboard"
	// DashboardAdminName is the ServiceAccount (and its ClusterRoleBinding
	// to cluster-admin) that `kubeforge dashboard --admin` creates on
	// request; the addon never creates it.
	DashboardAdminName = "kubeforge-dashboard-admin"
	// DashboardPort is where the dashboard serves plain HTTP: on the
	// pod's loopback only, so that nothing but a port-forward (which the
	// API server authorizes and which enters the pod's network namespace)
	// reaches it.
	DashboardPort = 8080
	// DashboardHealthPort serves /healthz only, on the pod's address, for
	// the kubelet's probes.
	DashboardHealthPort = 8081

	dashboardCADir = "/etc/kubeforge-dashboard/ca"
)

// DashboardObjects are the dashboard addon: a ServiceAccount with no
// token mounted and no role bound (the dashboard calls the API with the
// signed-in user's token only), a headless Service naming the pod and its
// port for `kubeforge dashboard`, and a Deployment running the self-image's
// `kubeforge component kubeforge-dashboard`. The API server's CA comes from
// the kube-root-ca.crt ConfigMap every namespace has.
func DashboardObjects(c *config.Config) []runtime.Object {
	ns := metav1.NamespaceSystem
	labels := map[string]string{"k8s-app": DashboardName}
	replicas := int32(1)
	falseV, trueV := false, true
	uid := int64(1000)
	dep := &appsv1.Deployment{
		TypeMeta:   deploymentType,
		ObjectMeta: metav1.ObjectMeta{Name: DashboardName, Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name:            DashboardName,
						Image:           version.Image(),
						ImagePullPolicy: corev1.PullIfNotPresent,
						Command:         []string{"kubeforge", "component", DashboardComponent},
						Args: []string{
							"--listen=127.0.0.1:8080",
							"--health-listen=:8081",
							"--ca-file=" + dashboardCADir + "/ca.crt",
						},
						Ports: []corev1.ContainerPort{
							{Name: "http", ContainerPort: DashboardPort, Protocol: corev1.ProtocolTCP},
							{Name: "health", ContainerPort: DashboardHealthPort, Protocol: corev1.ProtocolTCP},
						},
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
						},
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
							Path: "/healthz", Port: intstr.FromString("health")}},
							PeriodSeconds: 2, TimeoutSeconds: 1, FailureThreshold: 3},
						LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
							Path: "/healthz", Port: intstr.FromString("health")}},
							InitialDelaySeconds: 10, PeriodSeconds: 10, TimeoutSeconds: 1, FailureThreshold: 3},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: &falseV,
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
							ReadOnlyRootFilesystem:   &trueV,
							RunAsNonRoot:             &trueV,
							RunAsUser:                &uid,
							SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
						},
						VolumeMounts: []corev1.VolumeMount{{Name: "ca", MountPath: dashboardCADir, ReadOnly: true}},
						Env:          apiServerEnv(c),
					}},
					NodeSelector:       map[string]string{corev1.LabelOSStable: "linux"},
					ServiceAccountName: DashboardName,
					// The dashboard has no rights of its own: no token.
					AutomountServiceAccountToken: &falseV,
					Tolerations: []corev1.Toleration{
						{Key: config.ControlPlaneTaint.Key, Effect: corev1.TaintEffectNoSchedule},
					},
					Volumes: []corev1.Volume{
						{Name: "ca", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
							LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}}}},
					},
				},
			},
		},
	}
	return []runtime.Object{
		&corev1.ServiceAccount{TypeMeta: saType, ObjectMeta: metav1.ObjectMeta{Name: DashboardName, Namespace: ns, Labels: labels},
			AutomountServiceAccountToken: &falseV},
		&corev1.Service{TypeMeta: serviceType,
			ObjectMeta: metav1.ObjectMeta{Name: DashboardName, Namespace: ns, Labels: labels},
			Spec: corev1.ServiceSpec{Selector: labels, ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{
				{Name: "http", Port: DashboardPort, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("http")}}}},
		dep,
	}
}
