package manifests

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kubeforge/kubeforge/config"
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
	a := Addon{WorkloadRef: DashboardWorkload, Component: DashboardComponent,
		Args: []string{
			"--listen=127.0.0.1:8080",
			"--health-listen=:8081",
			"--ca-file=" + dashboardCADir + "/ca.crt",
		},
		Env:       apiServerEnv(c),
		Ports:     []corev1.ContainerPort{tcpPort("http", DashboardPort), tcpPort("health", DashboardHealthPort)},
		CPU:       "10m",
		Memory:    "32Mi",
		Readiness: quickReadiness(httpGet("/healthz", intstr.FromString("health"), "")),
		Liveness: &corev1.Probe{ProbeHandler: httpGet("/healthz", intstr.FromString("health"), ""),
			InitialDelaySeconds: 10, PeriodSeconds: 10, TimeoutSeconds: 1, FailureThreshold: 3},
		Security: Security{User: ptr(int64(1000))},
		Mounts:   []corev1.VolumeMount{{Name: "ca", MountPath: dashboardCADir, ReadOnly: true}},
		Volumes:  []corev1.Volume{configMapVolume("ca", "kube-root-ca.crt")},
		// The dashboard has no rights of its own: no token.
		NoToken:     true,
		Tolerations: []corev1.Toleration{{Key: config.ControlPlaneTaint.Key, Effect: corev1.TaintEffectNoSchedule}},
	}
	a.Extra = []runtime.Object{a.service(corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{
		{Name: "http", Port: DashboardPort, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("http")}}})}
	return a.Objects()
}
