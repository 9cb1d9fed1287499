package config

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func testHost() HostFacts {
	return HostFacts{Hostname: "Node1", CgroupV1: true,
		DefaultAddress: func() (net.IP, error) { return net.ParseIP("10.0.0.5"), nil }}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubeadm.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestKubeadmDefaultsFileLoads(t *testing.T) {
	// kubeadm's own `config print init-defaults` output must be accepted.
	c, err := Load("testdata/kubeadm-init-defaults.yaml")
	if err != nil {
		t.Fatal(err)
	}
	h := testHost()
	h.SystemdInit = true // the file says cgroupDriver: systemd
	if err := c.Complete(h); err != nil {
		t.Fatal(err)
	}
	if c.NodeName() != "node" || c.AdvertiseAddress() != "1.2.3.4" || c.Cluster.Networking.ServiceSubnet != "10.96.0.0/12" {
		t.Fatalf("values not read: %s", c)
	}
	if !c.ExternalCRI() || c.CRIEndpoint() != "unix:///var/run/containerd/containerd.sock" {
		t.Fatalf("criSocket from the file should select that runtime, got %q", c.CRIEndpoint())
	}
	if len(c.Warnings) == 0 {
		t.Fatal("imagePullPolicy should produce a 'has no effect' warning")
	}
	// On a host without systemd the same file is refused, naming the field.
	c, _ = Load("testdata/kubeadm-init-defaults.yaml")
	err = c.Complete(testHost())
	if err == nil || !strings.Contains(err.Error(), "KubeletConfiguration.cgroupDriver") {
		t.Fatalf("want a cgroupDriver error, got %v", err)
	}
}

func TestDefaults(t *testing.T) {
	c := New()
	if err := c.Complete(testHost()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, got, want string }{
		{"node name lowercased hostname", c.NodeName(), "node1"},
		{"advertise", c.AdvertiseAddress(), "10.0.0.5"},
		{"endpoint", c.ControlPlaneEndpoint(), "https://10.0.0.5:6443"},
		{"service IP", c.APIServerServiceIP().String(), "10.96.0.1"},
		{"dns IP", c.DNSServiceIP().String(), "10.96.0.10"},
		{"clusterDNS", strings.Join(c.Kubelet.ClusterDNS, ","), "10.96.0.10"},
		{"cgroup driver", c.Kubelet.CgroupDriver, "cgroupfs"},
		{"cri", c.CRIEndpoint(), "unix:///run/kubeforge/containerd/containerd.sock"},
		{"pods", c.Cluster.Networking.PodSubnet, DefaultPodSubnet},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, tc.got, tc.want)
		}
	}
	if c.Kubelet.FailCgroupV1 == nil || *c.Kubelet.FailCgroupV1 {
		t.Error("failCgroupV1 must be false on a cgroup v1 host")
	}
	if !c.Kubelet.ServerTLSBootstrap || *c.Kubelet.Authentication.Anonymous.Enabled {
		t.Error("serverTLSBootstrap on and anonymous off by default")
	}
	if len(c.ThisNode.Taints) != 1 || c.ThisNode.Taints[0] != ControlPlaneTaint {
		t.Error("control-plane taint by default")
	}
}

func TestControlPlaneEndpointPort(t *testing.T) {
	c := New()
	c.Cluster.ControlPlaneEndpoint = "api.example.test"
	if err := c.Complete(testHost()); err != nil {
		t.Fatal(err)
	}
	if got := c.ControlPlaneEndpoint(); got != "https://api.example.test:6443" {
		t.Fatal(got)
	}
}

func TestBadFiles(t *testing.T) {
	head := "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n"
	for _, tc := range []struct {
		name, content string
		want          []string
	}{
		{"unknown field", head + "networking:\n  podSubnett: 10.244.0.0/16\n", []string{"networking.podSubnett", "unknown field", "document 1"}},
		{"duplicate field", head + "clusterName: a\nclusterName: b\n", []string{"clusterName", "duplicate"}},
		{"wrong type", head + "networking:\n  serviceSubnet: [1, 2]\n", []string{"networking.serviceSubnet", "wrong type"}},
		{"invalid pod CIDR", head + "networking:\n  podSubnet: 10.244.0.0/33\n", []string{"ClusterConfiguration.networking.podSubnet", `"10.244.0.0/33"`}},
		{"host bits", head + "networking:\n  serviceSubnet: 10.96.0.1/12\n", []string{"serviceSubnet", "host bits"}},
		{"overlap", head + "networking:\n  podSubnet: 10.96.0.0/16\n", []string{"overlaps the service subnet"}},
		{"invalid IP", "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nlocalAPIEndpoint:\n  advertiseAddress: 10.0.0.300\n",
			[]string{"InitConfiguration.localAPIEndpoint.advertiseAddress", `"10.0.0.300"`}},
		{"bad token", "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nbootstrapTokens:\n- token: nope\n", []string{"token"}},
		{"unsupported external etcd", head + "etcd:\n  external:\n    endpoints: [https://e:2379]\n    caFile: a\n    certFile: b\n    keyFile: c\n",
			[]string{"ClusterConfiguration.etcd.external", "not supported"}},
		{"unsupported version", head + "kubernetesVersion: v1.30.0\n", []string{"kubernetesVersion", "v1.37.2", "upgrade plan"}},
		{"feature gate", head + "featureGates:\n  ControlPlaneKubeletLocalMode: true\n", []string{"featureGates.ControlPlaneKubeletLocalMode"}},
		{"old api", "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\n", []string{"v1beta3", "kubeadm config migrate"}},
		{"unknown kind", "apiVersion: v1\nkind: Pod\n", []string{`unknown kind "Pod"`}},
		{"kubelet unknown", "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nfooBar: 1\n", []string{"fooBar"}},
		{"bad cert SAN", head + "apiServer:\n  certSANs: [\"bad_name!\"]\n", []string{"apiServer.certSANs[0]", "bad_name!"}},
		{"extraArgs dashes", head + "apiServer:\n  extraArgs:\n  - name: --v\n    value: \"2\"\n", []string{"apiServer.extraArgs[0].name"}},
		{"scheduler extraArg for its file", head + "scheduler:\n  extraArgs:\n  - name: kube-api-burst\n    value: lots\n", []string{"scheduler.extraArgs[0].value", "kube-api-burst", "not a valid value"}},
		{"scheduler profiling", head + "scheduler:\n  extraArgs:\n  - name: profiling\n    value: maybe\n", []string{"scheduler.extraArgs[0].value", "--profiling"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, tc.content)
			c, err := Load(path)
			if err == nil {
				err = c.Complete(testHost())
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error does not name the file: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestFlagNamedInError(t *testing.T) {
	c := New()
	c.Cluster.Networking.PodSubnet = "nope"
	c.SetFrom("ClusterConfiguration.networking.podSubnet", "--pod-network-cidr")
	err := c.Complete(testHost())
	if err == nil || !strings.HasPrefix(err.Error(), "--pod-network-cidr: ") {
		t.Fatalf("want the flag named, got %v", err)
	}
}

func TestInitDefaultsRoundTrip(t *testing.T) {
	c, err := InitDefaults(testHost())
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.MarshalDocuments()
	if err != nil {
		t.Fatal(err)
	}
	path := writeFile(t, string(b))
	c2, err := Load(path)
	if err != nil {
		t.Fatalf("printed defaults do not load: %v\n%s", err, b)
	}
	if err := c2.Complete(testHost()); err != nil {
		t.Fatalf("printed defaults do not validate: %v", err)
	}
	if c2.NodeName() != "node" || c2.Init.BootstrapTokens[0].Token.String() != "abcdef.0123456789abcdef" {
		t.Fatal("placeholders lost")
	}
}

func TestResolvedStub(t *testing.T) {
	dir := t.TempDir()
	resolved := filepath.Join(dir, "resolved.conf")
	os.WriteFile(resolved, []byte("nameserver 192.0.2.53\n"), 0o644)
	for content, want := range map[string]bool{
		"nameserver 127.0.0.53\noptions edns0\n":        true,
		"nameserver 127.0.0.53\nnameserver 192.0.2.1\n": false,
		"nameserver 192.0.2.1\n":                        false,
		"# empty\n":                                     false,
	} {
		rc := filepath.Join(dir, "resolv.conf")
		os.WriteFile(rc, []byte(content), 0o644)
		if got := usesResolvedStub(rc, resolved); got != want {
			t.Errorf("%q: got %v", content, got)
		}
	}
	if usesResolvedStub(filepath.Join(dir, "resolv.conf"), filepath.Join(dir, "missing")) {
		t.Error("without systemd-resolved's file there is nothing to switch to")
	}
	h := testHost()
	h.ResolvedStub = true
	c := New()
	if err := c.Complete(h); err != nil {
		t.Fatal(err)
	}
	if *c.Kubelet.ResolverConfig != "/run/systemd/resolve/resolv.conf" {
		t.Fatalf("resolvConf %s", *c.Kubelet.ResolverConfig)
	}
}

func TestKubeforgeConfigurationDocument(t *testing.T) {
	c := New()
	c.Source = "cluster.yaml"
	err := c.Decode([]byte("apiVersion: kubeforge.io/v1alpha1\nkind: KubeforgeConfiguration\nnoSuchField: 1\n"))
	if err == nil || !strings.Contains(err.Error(), "cluster.yaml") || !strings.Contains(err.Error(), "noSuchField") {
		t.Errorf("unknown field: %v", err)
	}
	p := Paths{Root: t.TempDir(), StateDir: "/var/lib/kubeforge"}
	k, err := LoadKubeforge(p)
	if err != nil || k.Kind != KubeforgeKind {
		t.Fatalf("no file: %+v, %v (want the defaults)", k, err)
	}
	data, err := MarshalKubeforge(KubeforgeConfiguration{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(p.Host(p.StateDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.Host(p.KubeforgeConfigFile()), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKubeforge(p); err != nil {
		t.Errorf("round trip: %v", err)
	}
	if err := os.WriteFile(p.Host(p.KubeforgeConfigFile()), []byte("kind: KubeletConfiguration\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKubeforge(p); err == nil || !strings.Contains(err.Error(), p.KubeforgeConfigFile()) {
		t.Errorf("wrong kind: %v, want an error naming the file", err)
	}
}

// kubeadm's version labels, its placeholder and other patches of the bundled
// minor are accepted with a note naming the version that runs.
func TestKubernetesVersionAccepted(t *testing.T) {
	for _, v := range []string{"v1.37.2", "1.37.0", "v1.37.9", "stable", "stable-1", "latest-1.37", "1.37"} {
		c := New()
		c.Cluster.KubernetesVersion = v
		if err := c.Complete(testHost()); err != nil {
			t.Errorf("%s: %v", v, err)
			continue
		}
		noted := false
		for _, w := range c.Warnings {
			noted = noted || strings.Contains(w, "kubernetesVersion") && strings.Contains(w, "v1.37.2")
		}
		if noted != (v != "v1.37.2") {
			t.Errorf("%s: warnings %q (a note unless it is exactly the bundled version)", v, c.Warnings)
		}
	}
	c := New()
	c.Cluster.KubernetesVersion = "v1.38.0"
	if err := c.Complete(testHost()); err == nil || !strings.Contains(err.Error(), "upgrade plan") {
		t.Errorf("another minor: %v", err)
	}
}
