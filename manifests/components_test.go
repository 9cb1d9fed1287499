package manifests

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"

	"github.com/kubeforge/kubeforge/config"
)

// roundTrip renders a component's pod and reads it back as a manifest file
// is read: the health endpoint must come from what was written.
func roundTrip(t *testing.T, c *config.Config, name string) *corev1.Pod {
	t.Helper()
	p, err := StaticPod(c, name, Derived{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := MarshalPod(p)
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalPod(b)
	if err != nil {
		t.Fatal(err)
	}
	return back
}

// TestHealthEndpoints: each component's health endpoint and its pod's
// probe port follow its final flags, defaults and the user's extraArgs.
func TestHealthEndpoints(t *testing.T) {
	for _, tc := range []struct {
		name, component string
		edit            func(c *config.Config)
		url             string
		probePort       int32
		clusterCA       bool
	}{
		{"etcd default", Etcd, nil, "http://127.0.0.1:2381/readyz", 2381, false},
		{"etcd metrics URL", Etcd, func(c *config.Config) {
			c.Cluster.Etcd.Local.ExtraArgs = append(c.Cluster.Etcd.Local.ExtraArgs,
				v1beta4.Arg{Name: "listen-metrics-urls", Value: "http://127.0.0.1:2391,http://10.201.0.2:2391"})
		}, "http://127.0.0.1:2391/readyz", 2391, false},
		{"apiserver default", KubeAPIServer, nil, "https://10.201.0.2:6443/readyz", 6443, true},
		{"apiserver bind port", KubeAPIServer, func(c *config.Config) {
			c.ThisNode.API.Port = 7443 // what Complete makes of localAPIEndpoint.bindPort: 7443
		}, "https://10.201.0.2:7443/readyz", 7443, true},
		{"apiserver secure-port extraArg", KubeAPIServer, func(c *config.Config) {
			c.Cluster.APIServer.ExtraArgs = append(c.Cluster.APIServer.ExtraArgs, v1beta4.Arg{Name: "secure-port", Value: "8443"})
		}, "https://10.201.0.2:8443/readyz", 8443, true},
		{"controller-manager default", KubeControllerMgr, nil, "https://127.0.0.1:10257/healthz", 10257, false},
		{"controller-manager secure-port", KubeControllerMgr, func(c *config.Config) {
			c.Cluster.ControllerManager.ExtraArgs = append(c.Cluster.ControllerManager.ExtraArgs, v1beta4.Arg{Name: "secure-port", Value: "10999"})
		}, "https://127.0.0.1:10999/healthz", 10999, false},
		{"controller-manager wildcard bind", KubeControllerMgr, func(c *config.Config) {
			c.Cluster.ControllerManager.ExtraArgs = append(c.Cluster.ControllerManager.ExtraArgs, v1beta4.Arg{Name: "bind-address", Value: "0.0.0.0"})
		}, "https://127.0.0.1:10257/healthz", 10257, false},
		{"controller-manager bind address", KubeControllerMgr, func(c *config.Config) {
			c.Cluster.ControllerManager.ExtraArgs = append(c.Cluster.ControllerManager.ExtraArgs, v1beta4.Arg{Name: "bind-address", Value: "10.201.0.2"})
		}, "https://10.201.0.2:10257/healthz", 10257, false},
		{"etcd metrics on the node address", Etcd, func(c *config.Config) {
			c.Cluster.Etcd.Local.ExtraArgs = append(c.Cluster.Etcd.Local.ExtraArgs,
				v1beta4.Arg{Name: "listen-metrics-urls", Value: "http://10.201.0.2:2381"})
		}, "http://10.201.0.2:2381/readyz", 2381, false},
		{"scheduler default", KubeScheduler, nil, "https://127.0.0.1:10259/livez", 10259, false},
		{"scheduler bind address", KubeScheduler, func(c *config.Config) {
			c.Cluster.Scheduler.ExtraArgs = append(c.Cluster.Scheduler.ExtraArgs, v1beta4.Arg{Name: "bind-address", Value: "10.201.0.2"})
		}, "https://10.201.0.2:10259/livez", 10259, false},
		{"scheduler secure-port", KubeScheduler, func(c *config.Config) {
			c.Cluster.Scheduler.ExtraArgs = append(c.Cluster.Scheduler.ExtraArgs, v1beta4.Arg{Name: "secure-port", Value: "10998"})
		}, "https://127.0.0.1:10998/livez", 10998, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig(t)
			if tc.edit != nil {
				tc.edit(c)
			}
			pod := roundTrip(t, c, tc.component)
			e, err := HealthEndpoint(pod)
			if err != nil {
				t.Fatal(err)
			}
			if e.URL() != tc.url || e.ClusterCA != tc.clusterCA {
				t.Errorf("endpoint %s (cluster CA %v), want %s (%v)", e.URL(), e.ClusterCA, tc.url, tc.clusterCA)
			}
			ports := pod.Spec.Containers[0].Ports
			if len(ports) != 1 || ports[0].Name != "probe-port" || ports[0].ContainerPort != tc.probePort {
				t.Errorf("probe port %+v, want %d", ports, tc.probePort)
			}
			// The kubelet probes where the component listens: a
			// --bind-address moves its probes too.
			ctr := pod.Spec.Containers[0]
			for _, pr := range []*corev1.Probe{ctr.LivenessProbe, ctr.StartupProbe, ctr.ReadinessProbe} {
				if pr != nil && pr.HTTPGet.Host != e.Host {
					t.Errorf("probe host %q, want the health endpoint's %q", pr.HTTPGet.Host, e.Host)
				}
			}
		})
	}
}

func TestHealthEndpointRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spec  HealthSpec
		flags map[string]string
	}{
		{"no metrics URL", etcdHealth, map[string]string{}},
		{"metrics URL without port", etcdHealth, map[string]string{"listen-metrics-urls": "http://127.0.0.1"}},
		{"port not a number", controllerManagerHealth, map[string]string{"secure-port": "x"}},
		{"port out of range", schedulerHealth, map[string]string{"secure-port": "70000"}},
		{"no API server address", apiServerHealth, map[string]string{"secure-port": "6443"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if e, err := tc.spec.Endpoint(tc.flags); err == nil {
				t.Errorf("got %s, want an error", e.URL())
			}
		})
	}
	if _, err := HealthEndpoint(&corev1.Pod{}); err == nil {
		t.Error("a pod of no known component: want an error")
	}
}

// TestTableDrivesNames: the table is the one list of the static pods.
func TestTableDrivesNames(t *testing.T) {
	if len(ControlPlaneComponents) != len(ControlPlane) {
		t.Fatalf("%v vs %d rows", ControlPlaneComponents, len(ControlPlane))
	}
	c := testConfig(t)
	for i, row := range ControlPlane {
		if ControlPlaneComponents[i] != row.Name {
			t.Errorf("ControlPlaneComponents[%d] = %s, row %s", i, ControlPlaneComponents[i], row.Name)
		}
		if got, ok := Lookup(row.Name); !ok || got.Name != row.Name {
			t.Errorf("Lookup(%s) = %+v, %v", row.Name, got.Name, ok)
		}
		if p := row.Render(c, Derived{}); p.Name != row.Name || p.Labels["component"] != row.Name {
			t.Errorf("row %s renders pod %s (component %s)", row.Name, p.Name, p.Labels["component"])
		}
		if row.Phase == "" || row.SubPhase == "" {
			t.Errorf("row %s names no phase", row.Name)
		}
	}
	if _, ok := Lookup("kubelet"); ok {
		t.Error("the kubelet is not a static pod")
	}
}
