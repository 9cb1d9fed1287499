package staticproc

import (
	"net"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/manifests"
)

func renderedPods(t *testing.T) map[string]*corev1.Pod {
	t.Helper()
	c := config.New()
	c.Init.NodeRegistration.Name = "n1"
	c.Init.LocalAPIEndpoint.AdvertiseAddress = "10.201.0.2"
	c.Kubeforge.ControlPlane.Runtime = config.ControlPlaneProcesses
	if err := c.Complete(config.HostFacts{Hostname: "n1", CgroupV1: true,
		DefaultAddress: func() (net.IP, error) { return net.ParseIP("10.201.0.2"), nil }}); err != nil {
		t.Fatal(err)
	}
	out := map[string]*corev1.Pod{}
	for _, name := range Components {
		pod, err := manifests.StaticPod(c, name, manifests.Derived{})
		if err != nil {
			t.Fatal(err)
		}
		out[name] = pod
	}
	return out
}

// Every manifest kubeforge writes runs as a process: its own command from
// the host's executable, its probes, the directories it asks for.
func TestFromPodRunsKubeforgesManifests(t *testing.T) {
	for name, pod := range renderedPods(t) {
		p, err := FromPod(pod, "/opt/kf/kubeforge")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(p.Args) < 4 || p.Args[0] != "/opt/kf/kubeforge" || p.Args[1] != "component" || p.Args[2] != name {
			t.Errorf("%s: args %q, want /opt/kf/kubeforge component %s --…", name, p.Args, name)
		}
		if p.Liveness == nil {
			t.Errorf("%s: no liveness probe", name)
		}
	}
	api, _ := FromPod(renderedPods(t)[manifests.KubeAPIServer], "kubeforge")
	if got, want := api.Liveness.URL, "https://10.201.0.2:6443/livez"; got != want {
		t.Errorf("API server liveness %s, want %s (the named port resolved)", got, want)
	}
	if api.Startup == nil || api.Startup.FailureThreshold != 240 || api.Readiness == nil || api.Readiness.Period.Seconds() != 1 {
		t.Errorf("API server startup %+v readiness %+v", api.Startup, api.Readiness)
	}
	found := false
	for _, d := range api.Dirs {
		found = found || d == "/var/log/kubeforge/audit"
	}
	if !found {
		t.Errorf("API server dirs %v lack the audit log directory (DirectoryOrCreate)", api.Dirs)
	}
}

// What a process cannot do as the manifest says is refused, naming the
// field.
func TestFromPodRefuses(t *testing.T) {
	base := func() *corev1.Pod { return renderedPods(t)[manifests.KubeScheduler].DeepCopy() }
	cases := map[string]struct {
		change func(*corev1.Pod)
		want   string
	}{
		"another program": {func(p *corev1.Pod) { p.Spec.Containers[0].Command = []string{"/usr/bin/haproxy", "-f", "x"} }, "spec.containers[0].command"},
		"pod network":     {func(p *corev1.Pod) { p.Spec.HostNetwork = false }, "spec.hostNetwork"},
		"two containers": {func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, p.Spec.Containers[0])
		}, "spec.containers: 2 containers"},
		"env from the API": {func(p *corev1.Pod) {
			p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}}}
		}, "env[0] (X): valueFrom"},
		"path mounted elsewhere": {func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts[0].MountPath = "/elsewhere"
		}, "mount it at"},
		"not a host path": {func(p *corev1.Pod) {
			p.Spec.Volumes[0].VolumeSource = corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}
		}, "not a hostPath volume"},
		"exec probe": {func(p *corev1.Pod) {
			p.Spec.Containers[0].LivenessProbe.ProbeHandler = corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}
		}, "livenessProbe: only httpGet"},
		"unknown port name": {func(p *corev1.Pod) {
			p.Spec.Containers[0].LivenessProbe.HTTPGet.Port = intstr.FromString("nope")
		}, "livenessProbe.httpGet.port"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			pod := base()
			c.change(pod)
			_, err := FromPod(pod, "kubeforge")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one containing %q", err, c.want)
			}
		})
	}
}
