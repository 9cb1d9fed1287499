package manifests

import (
	"flag"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"
	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/config"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func testConfig(t *testing.T) *config.Config {
	t.Helper()
	c := config.New()
	c.Init.NodeRegistration.Name = "n1"
	c.Init.LocalAPIEndpoint.AdvertiseAddress = "10.201.0.2"
	c.Cluster.Networking.PodSubnet = "10.244.0.0/16"
	err := c.Complete(config.HostFacts{Hostname: "n1", CgroupV1: true,
		DefaultAddress: func() (net.IP, error) { return net.ParseIP("10.201.0.2"), nil }})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// sharedGoldens are the golden files other packages' tests read too, as a
// manifest kubeforge renders: they live in the repository's testdata.
var sharedGoldens = map[string]bool{Etcd + ".yaml": true}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	dir := "testdata"
	if sharedGoldens[name] {
		dir = filepath.Join("..", "testdata")
	}
	path := filepath.Join(dir, name+".golden")
	if *update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./manifests -update to create it)", err)
	}
	if string(want) != string(got) {
		t.Errorf("%s differs from the golden file (run with -update if the change is intended):\n--- got\n%s", path, got)
	}
}

func TestStaticPodsGolden(t *testing.T) {
	c := testConfig(t)
	for _, name := range ControlPlaneComponents {
		t.Run(name, func(t *testing.T) {
			p, err := StaticPod(c, name, Derived{})
			if err != nil {
				t.Fatal(err)
			}
			b, err := MarshalPod(p)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, name+".yaml", b)

			// Properties every manifest must have, checked on the parsed object.
			var pod corev1.Pod
			if err := yaml.UnmarshalStrict(b, &pod); err != nil {
				t.Fatal(err)
			}
			ctr := pod.Spec.Containers[0]
			if pod.Namespace != "kube-system" || pod.Labels["component"] != name || pod.Labels["tier"] != "control-plane" ||
				pod.Spec.PriorityClassName != "system-node-critical" || !pod.Spec.HostNetwork {
				t.Errorf("metadata/spec basics wrong: %+v", pod.ObjectMeta)
			}
			if ctr.Image != "kubeforge.local/kubeforge:"+strings.TrimPrefix(ctr.Image, "kubeforge.local/kubeforge:") ||
				ctr.Command[0] != "kubeforge" || ctr.Command[1] != "component" || ctr.Command[2] != name {
				t.Errorf("image/command: %s %v", ctr.Image, ctr.Command[:3])
			}
			if ctr.LivenessProbe == nil || ctr.StartupProbe == nil || ctr.Resources.Requests.Cpu().IsZero() {
				t.Error("probes and requests required")
			}
			if ctr.ImagePullPolicy == corev1.PullAlways {
				t.Error("images must never be pulled")
			}
			for _, v := range pod.Spec.Volumes {
				if v.HostPath == nil {
					t.Errorf("volume %s is not a hostPath", v.Name)
				}
			}
		})
	}
}

func TestAPIServerSecureDefaults(t *testing.T) {
	p, _ := StaticPod(testConfig(t), KubeAPIServer, Derived{})
	cmd := strings.Join(p.Spec.Containers[0].Command, " ")
	for _, want := range []string{"--authorization-mode=Node,RBAC", "--profiling=false", "--authentication-config=",
		"--encryption-provider-config=", "--audit-policy-file=", "--kubelet-client-certificate=", "--etcd-cafile="} {
		if !strings.Contains(cmd, want) {
			t.Errorf("apiserver command lacks %s", want)
		}
	}
	if strings.Contains(cmd, "--anonymous-auth") {
		t.Error("--anonymous-auth conflicts with --authentication-config")
	}
	var authn map[string]any
	if err := yaml.Unmarshal(AuthenticationConfig(), &authn); err != nil {
		t.Fatal(err)
	}
	conds := authn["anonymous"].(map[string]any)["conditions"].([]any)
	if len(conds) != len(AnonymousPaths) {
		t.Fatalf("conditions %v", conds)
	}
}

func TestExtraArgsOverride(t *testing.T) {
	c := testConfig(t)
	c.Cluster.Scheduler.ExtraArgs = append(c.Cluster.Scheduler.ExtraArgs,
		argOf("v", "4"), argOf("leader-elect", "false"), argOf("feature-gates", "A=true"), argOf("feature-gates", "B=true"))
	p, _ := StaticPod(c, KubeScheduler, Derived{})
	cmd := strings.Join(p.Spec.Containers[0].Command, " ")
	if strings.Contains(cmd, "--leader-elect=true") || !strings.Contains(cmd, "--leader-elect=false") || !strings.Contains(cmd, "--v=4") {
		t.Fatal(cmd)
	}
	if !strings.Contains(cmd, "--feature-gates=A=true --feature-gates=B=true") {
		t.Fatalf("repeated extraArgs must keep their order: %s", cmd)
	}
}

// Kubelet serving certificates: signed by their own CA, which the API
// server verifies kubelets with; kubeadm's single-CA flags, when a user
// sets them, replace every per-signer flag (the controller-manager refuses
// both kinds together).
func TestKubeletServingCA(t *testing.T) {
	c := testConfig(t)
	api, _ := StaticPod(c, KubeAPIServer, Derived{})
	if cmd := strings.Join(api.Spec.Containers[0].Command, " "); !strings.Contains(cmd, "--kubelet-certificate-authority=/etc/kubernetes/pki/kubelet-serving-ca.crt") {
		t.Errorf("apiserver: %s", cmd)
	}
	cm, _ := StaticPod(c, KubeControllerMgr, Derived{})
	cmd := strings.Join(cm.Spec.Containers[0].Command, " ")
	for _, want := range []string{"--cluster-signing-kubelet-serving-cert-file=/etc/kubernetes/pki/kubelet-serving-ca.crt",
		"--cluster-signing-kubelet-serving-key-file=/etc/kubernetes/pki/kubelet-serving-ca.key",
		"--cluster-signing-kubelet-client-cert-file=/etc/kubernetes/pki/ca.crt"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("controller-manager lacks %s: %s", want, cmd)
		}
	}
	if strings.Contains(cmd, "--cluster-signing-cert-file") {
		t.Errorf("controller-manager has the single-CA flag next to the per-signer ones: %s", cmd)
	}
	if env := cm.Spec.Containers[0].Env; len(env) == 0 || env[0].Name != ApproverAPIServerCertEnv || env[0].Value != "/etc/kubernetes/pki/apiserver.crt" {
		t.Errorf("controller-manager env %v", env)
	}
	c.Cluster.ControllerManager.ExtraArgs = append(c.Cluster.ControllerManager.ExtraArgs,
		argOf("cluster-signing-cert-file", "/x/ca.crt"), argOf("cluster-signing-key-file", "/x/ca.key"))
	cm, _ = StaticPod(c, KubeControllerMgr, Derived{})
	cmd = strings.Join(cm.Spec.Containers[0].Command, " ")
	if strings.Contains(cmd, "--cluster-signing-kubelet-") || !strings.Contains(cmd, "--cluster-signing-cert-file=/x/ca.crt") {
		t.Errorf("with the user's single-CA flags: %s", cmd)
	}
}

func TestKubeletFilesGolden(t *testing.T) {
	c := testConfig(t)
	b, err := KubeletConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "kubelet-config.yaml", b)
	golden(t, "kubeadm-flags.env", KubeletFlags(c, "10.201.0.2"))
	golden(t, "cni.conflist", CNIConfig(c.Paths.PodCIDRFile(), true, false, 0))
	golden(t, "cni-mtu.conflist", CNIConfig(c.Paths.PodCIDRFile(), true, false, 1450))
	golden(t, "authentication-config.yaml", AuthenticationConfig())
	golden(t, "audit-policy.yaml", AuditPolicy())
}

// A node whose node service runs the control plane's manifests gives its
// kubelet no static pod directory: it would start a second control plane.
func TestKubeletConfigControlPlaneProcesses(t *testing.T) {
	c := testConfig(t)
	c.Kubeforge.ControlPlane.Runtime = config.ControlPlaneProcesses
	b, err := KubeletConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "staticPodPath") {
		t.Errorf("the kubelet config names a static pod directory:\n%s", b)
	}
	if c.Kubelet.StaticPodPath != c.Paths.ManifestsDir {
		t.Errorf("the shared KubeletConfiguration (uploaded for joining nodes) lost its staticPodPath: %q", c.Kubelet.StaticPodPath)
	}
}

func TestFirstNodeCIDR(t *testing.T) {
	for in, want := range map[string]string{"10.244.0.0/16": "10.244.0.0/24", "10.0.0.0/24": "10.0.0.0/24", "fd00::/48": "fd00::/64"} {
		if got := FirstNodeCIDR(netip.MustParsePrefix(in)).String(); got != want {
			t.Errorf("%s: got %s want %s", in, got, want)
		}
	}
}

func argOf(name, value string) v1beta4.Arg { return v1beta4.Arg{Name: name, Value: value} }

// Under an external CA the controller-manager runs no signer for it (as
// kubeadm), and keeps the kubelet serving signer while that CA's key is there.
func TestControllerManagerExternalCA(t *testing.T) {
	c := testConfig(t)
	cm, _ := StaticPod(c, KubeControllerMgr, Derived{ExternalCAs: []string{"ca", "front-proxy-ca"}})
	cmd := strings.Join(cm.Spec.Containers[0].Command, " ")
	if strings.Contains(cmd, "/pki/ca.key") || strings.Contains(cmd, "--cluster-signing-kubelet-client") || strings.Contains(cmd, "--cluster-signing-legacy-unknown") ||
		strings.Contains(cmd, "--cluster-signing-kube-apiserver-client") || strings.Contains(cmd, "--cluster-signing-cert-file") {
		t.Errorf("external ca: the controller-manager still signs with it: %s", cmd)
	}
	if !strings.Contains(cmd, "--cluster-signing-kubelet-serving-key-file=/etc/kubernetes/pki/kubelet-serving-ca.key") {
		t.Errorf("external ca: the kubelet serving signer is gone: %s", cmd)
	}
	cm, _ = StaticPod(c, KubeControllerMgr, Derived{ExternalCAs: []string{"ca", "kubelet-serving-ca"}})
	if cmd := strings.Join(cm.Spec.Containers[0].Command, " "); strings.Contains(cmd, "--cluster-signing-") {
		t.Errorf("every signing CA external: %s", cmd)
	}
}

// A joining etcd member's initial cluster is an argument (found by the
// join's etcd phase), not configuration: without it the member starts a
// new cluster of its own.
func TestEtcdInitialClusterIsDerived(t *testing.T) {
	c := testConfig(t)
	own, _ := StaticPod(c, Etcd, Derived{})
	flags := PodFlags(own)
	if flags["initial-cluster"] != "n1=https://10.201.0.2:2380" || flags["initial-cluster-state"] != "" {
		t.Errorf("first member: initial cluster %q, state %q", flags["initial-cluster"], flags["initial-cluster-state"])
	}
	joined := "cp1=https://10.201.0.1:2380,n1=https://10.201.0.2:2380"
	member, _ := StaticPod(c, Etcd, Derived{EtcdInitialCluster: joined})
	flags = PodFlags(member)
	if flags["initial-cluster"] != joined || flags["initial-cluster-state"] != "existing" {
		t.Errorf("joining member: initial cluster %q, state %q", flags["initial-cluster"], flags["initial-cluster-state"])
	}
}
