package config

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
)

// fuzzHost is a fixed host, so that a fuzz run reads nothing from the machine.
func fuzzHost() HostFacts {
	return HostFacts{Hostname: "fuzz-node", CgroupV1: true, HasNft: true,
		DefaultAddress: func() (net.IP, error) { return net.ParseIP("10.0.0.5"), nil }}
}

// configSeeds are realistic config files (kubeadm's own init-defaults, the
// testbed's init and join files) and a few broken ones.
func configSeeds(f *testing.F) {
	b, err := os.ReadFile("testdata/kubeadm-init-defaults.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	for _, s := range []string{
		"",
		"# only a comment\n---\n",
		"apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nlocalAPIEndpoint:\n  advertiseAddress: 10.201.0.2\nnodeRegistration:\n  name: n1\n" +
			"---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n" +
			"---\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupRoot: /kubeforge-n1\nresolvConf: /etc/kubeforge-resolv.conf\n",
		"apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\nnodeRegistration:\n  name: n2\n  kubeletExtraArgs:\n  - name: cgroup-root\n    value: /kubeforge-n2\n",
		"apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ncontrolPlane:\n  localAPIEndpoint:\n    advertiseAddress: 10.201.0.3\n  certificateKey: " + strings.Repeat("ab", 32) + "\n",
		"apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nnetworking:\n  podSubnet: 10.244.0.0/16,fd00:10:244::/56\n  serviceSubnet: 10.96.0.0/16,fd00:10:96::/112\n" +
			"controlPlaneEndpoint: api.example.test:6443\napiServer:\n  certSANs: [\"*.example.test\", 10.0.0.1]\n  extraArgs:\n  - name: v\n    value: \"2\"\n",
		"apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: iptables\n",
		"apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nbootstrapTokens:\n- token: abcdef.0123456789abcdef\n  ttl: 1h\n  usages: [signing]\n",
		// broken
		"apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nclusterName: a\nclusterName: b\n",
		"apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nnetworking:\n  serviceSubnet: [1, 2]\n",
		"apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\n",
		"apiVersion: v1\nkind: Pod\n",
		"apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n",
		"kind: [\n",
		"\t- - :\n",
	} {
		f.Add([]byte(s))
	}
}

// FuzzDecode feeds arbitrary files to the config loader (kubeforge init
// --config, kubeforge join --config, config validate). Every error names
// the file; a file that loads and validates prints (MarshalDocuments) to a
// file that loads and validates again, to the same documents.
func FuzzDecode(f *testing.F) {
	configSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		c := New()
		c.Source = "fuzz.yaml"
		if err := c.Decode(data); err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yaml: ") {
				t.Fatalf("error does not name the file: %q", err)
			}
			return
		}

		// The join path: node-local part, then the cluster's documents.
		j := New()
		if err := j.Decode(data); err != nil {
			t.Fatalf("second decode of the same data failed: %v", err)
		}
		if err := j.CompleteJoin(fuzzHost(), "10.0.0.9"); err != nil {
			if err.Error() == "" {
				t.Fatal("empty join error")
			}
		} else if j.NodeName() == "" {
			t.Fatal("join completed without a node name")
		}

		if err := c.Complete(fuzzHost()); err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		// A complete config has everything the rest of kubeforge reads
		// without checking again.
		if len(c.ServiceSubnets()) == 0 || len(c.PodSubnets()) == 0 {
			t.Fatalf("validated config without subnets: %q %q", c.Cluster.Networking.ServiceSubnet, c.Cluster.Networking.PodSubnet)
		}
		_ = c.APIServerServiceIP()
		_ = c.DNSServiceIP()
		if net.ParseIP(c.AdvertiseAddress()) == nil {
			t.Fatalf("validated config with advertise address %q", c.AdvertiseAddress())
		}
		_ = c.ControlPlaneEndpoint()
		_ = c.Timeouts()
		_ = c.CRIEndpoint()
		_ = c.String()

		out, err := c.MarshalDocuments()
		if err != nil {
			t.Fatalf("a valid config does not print: %v", err)
		}
		c2 := New()
		if err := c2.Decode(out); err != nil {
			t.Fatalf("a printed valid config does not load: %v\n%s", err, out)
		}
		if err := c2.Complete(fuzzHost()); err != nil {
			t.Fatalf("a printed valid config does not validate: %v\n%s", err, out)
		}
		out2, err := c2.MarshalDocuments()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, out2) {
			t.Fatalf("printing is not a fixed point: %s", firstDiff(out, out2))
		}
	})
}

// FuzzAdoptCluster feeds arbitrary kube-system/kubeadm-config and
// kubelet-config ConfigMap contents (read from the cluster by a joining
// node) to AdoptCluster.
func FuzzAdoptCluster(f *testing.F) {
	f.Add([]byte("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nclusterName: kubernetes\ncertificatesDir: /etc/kubernetes/pki\n"+
		"etcd:\n  local:\n    dataDir: /var/lib/etcd\nnetworking:\n  dnsDomain: cluster.local\n  podSubnet: 10.244.0.0/16\n  serviceSubnet: 10.96.0.0/12\n"),
		[]byte("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupRoot: /first-node\nclusterDNS: [10.96.0.10]\nclusterDomain: cluster.local\n"))
	f.Add([]byte(""), []byte(""))
	f.Add([]byte("certificatesDir: [1]\n"), []byte("cgroupRoot: /a\ncgroupRoot: /b\n"))
	f.Add([]byte("{"), []byte("fooBar: 1\n"))
	f.Fuzz(func(t *testing.T, clusterYAML, kubeletYAML []byte) {
		if len(clusterYAML)+len(kubeletYAML) > 64<<10 {
			return
		}
		c := New()
		if err := c.CompleteJoin(fuzzHost(), "10.0.0.9"); err != nil {
			t.Fatal(err)
		}
		err := c.AdoptCluster(clusterYAML, kubeletYAML, fuzzHost())
		if err != nil {
			if !strings.HasPrefix(err.Error(), "the cluster's ") {
				t.Fatalf("error does not say what failed: %q", err)
			}
			return
		}
		if c.Kubelet.StaticPodPath != c.Paths.ManifestsDir || c.Kubelet.CgroupDriver != "cgroupfs" {
			t.Fatalf("host settings not applied: %q %q", c.Kubelet.StaticPodPath, c.Kubelet.CgroupDriver)
		}
	})
}

// firstDiff describes the first line where a and b differ.
func firstDiff(a, b []byte) string {
	la, lb := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	for i := range max(len(la), len(lb)) {
		var x, y string
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		if x != y {
			return fmt.Sprintf("line %d: %q, reprinted %q", i+1, x, y)
		}
	}
	return "same lines"
}
