package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// changed is a Changed for the flags the user "typed".
func changed(flags ...string) Changed {
	return func(name string) bool { return slices.Contains(flags, name) }
}

const (
	tokA = "abcdef.0123456789abcdef"
	tokB = "bbbbbb.0123456789bbbbbb"
	tokC = "cccccc.0123456789cccccc"
)

func TestLoadInitFlags(t *testing.T) {
	file := "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nlocalAPIEndpoint:\n  advertiseAddress: 10.0.0.7\n  bindPort: 6444\n" +
		"nodeRegistration:\n  name: from-file\n---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\napiServer:\n  certSANs: [file.example.test]\n"
	for _, tc := range []struct {
		name    string
		file    bool
		flags   InitFlags
		changed []string
		check   func(t *testing.T, c *Config)
		wantErr []string
	}{
		{name: "defaults", check: func(t *testing.T, c *Config) {
			want := ThisNode{Name: "node1", IP: "10.0.0.5", API: Endpoint{"10.0.0.5", DefaultBindPort}, Taints: []corev1.Taint{ControlPlaneTaint}}
			if fmt.Sprint(c.ThisNode) != fmt.Sprint(want) {
				t.Errorf("this node %+v, want %+v", c.ThisNode, want)
			}
		}},
		{name: "the file's values", file: true, flags: InitFlags{BindPort: DefaultBindPort}, check: func(t *testing.T, c *Config) {
			// --apiserver-bind-port has a default (6443) but was not typed: the file's 6444 stays.
			if c.ThisNode.Name != "from-file" || c.ThisNode.API != (Endpoint{"10.0.0.7", 6444}) || c.ThisNode.IP != "10.0.0.7" {
				t.Errorf("this node %+v", c.ThisNode)
			}
		}},
		{name: "flags win over the file", file: true,
			flags:   InitFlags{AdvertiseAddress: "10.0.0.8", BindPort: 7443, NodeName: "from-flag", CertSANs: []string{"flag.example.test"}, CRISocket: "/run/crio/crio.sock"},
			changed: []string{"advertise-address", "apiserver-bind-port", "node-name", "apiserver-cert-extra-sans", "cri-socket"},
			check: func(t *testing.T, c *Config) {
				if c.ThisNode.Name != "from-flag" || c.ThisNode.API != (Endpoint{"10.0.0.8", 7443}) || c.ThisNode.CRISocket != "/run/crio/crio.sock" {
					t.Errorf("this node %+v", c.ThisNode)
				}
				if !slices.Equal(c.Cluster.APIServer.CertSANs, []string{"file.example.test", "flag.example.test"}) {
					t.Errorf("extra SANs add to the file's: %v", c.Cluster.APIServer.CertSANs)
				}
				if c.LocalAPIEndpoint() != "https://10.0.0.8:7443" {
					t.Errorf("local endpoint %s", c.LocalAPIEndpoint())
				}
			}},
		{name: "single node: no taint", flags: InitFlags{SingleNode: true}, check: func(t *testing.T, c *Config) {
			if c.ThisNode.Taints == nil || len(c.ThisNode.Taints) != 0 {
				t.Errorf("taints %v", c.ThisNode.Taints)
			}
		}},
		{name: "cluster flags", flags: InitFlags{ControlPlaneEndpoint: "[fd00::10]", PodNetworkCIDR: "10.250.0.0/16", ServiceCIDR: "10.97.0.0/16", ServiceDNSDomain: "k.test"},
			changed: []string{"control-plane-endpoint", "pod-network-cidr", "service-cidr", "service-dns-domain"},
			check: func(t *testing.T, c *Config) {
				if c.ControlPlaneEndpoint() != "https://[fd00::10]:6443" || c.Cluster.Networking.PodSubnet != "10.250.0.0/16" ||
					c.Cluster.Networking.ServiceSubnet != "10.97.0.0/16" || c.Cluster.Networking.DNSDomain != "k.test" {
					t.Errorf("cluster %+v, endpoint %s", c.Cluster.Networking, c.ControlPlaneEndpoint())
				}
			}},
		{name: "an extra SAN from the flag is named by the flag", file: true, flags: InitFlags{CertSANs: []string{"bad name"}}, changed: []string{"apiserver-cert-extra-sans"},
			wantErr: []string{"--apiserver-cert-extra-sans: \"bad name\""}},
		{name: "a bad flag is named by the flag", flags: InitFlags{AdvertiseAddress: "not-an-ip", BindPort: 0, ControlPlaneEndpoint: "cp.example.test:0"},
			changed: []string{"advertise-address", "apiserver-bind-port", "control-plane-endpoint"},
			wantErr: []string{`--advertise-address: "not-an-ip" is not an IP address`, "--control-plane-endpoint: ", `port "0"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.flags
			if tc.file {
				f.ConfigFile = writeFile(t, file)
			}
			c, err := LoadInit(f, changed(tc.changed...), testHost())
			if tc.wantErr != nil {
				if err == nil {
					t.Fatal("accepted")
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("the error does not say %q: %v", w, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

// joinHost is testHost with a route to the cluster from 10.0.0.5; it
// records where the route was asked for.
func joinHost(asked *[]string) HostFacts {
	h := testHost()
	h.SourceAddress = func(target string) (string, error) {
		*asked = append(*asked, target)
		if target == "" {
			return "", errors.New("no target")
		}
		return "10.0.0.5", nil
	}
	return h
}

func TestLoadJoinFlags(t *testing.T) {
	tokenFile := "apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ndiscovery:\n  bootstrapToken:\n    apiServerEndpoint: 10.0.0.1:6443\n" +
		"    token: " + tokA + "\n    caCertHashes: [sha256:aaaa]\n  tlsBootstrapToken: " + tokA + "\nnodeRegistration:\n  name: from-file\n"
	cpFile := "apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ndiscovery:\n  tlsBootstrapToken: " + tokA +
		"\n  bootstrapToken:\n    apiServerEndpoint: 10.0.0.1:6443\n    token: " + tokA + "\ncontrolPlane:\n  localAPIEndpoint:\n    advertiseAddress: 10.0.0.7\n    bindPort: 6444\n"
	kubeconfig := "apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster:\n    server: https://10.0.0.2:6443\n"
	worker := ThisNode{Name: "node1", IP: "10.0.0.5", API: Endpoint{"10.0.0.5", DefaultBindPort}}
	for _, tc := range []struct {
		name    string
		file    string
		args    []string
		flags   JoinFlags
		changed []string
		// asked is where the node's address was looked up ("-": not at all).
		asked   string
		check   func(t *testing.T, c *Config)
		wantErr []string
	}{
		{name: "worker from flags", args: []string{"10.0.0.1:6443"}, flags: JoinFlags{Token: tokA, CACertHashes: []string{"sha256:bbbb"}},
			asked: "10.0.0.1:6443", check: func(t *testing.T, c *Config) {
				bt := c.Join.Discovery.BootstrapToken
				if bt.APIServerEndpoint != "10.0.0.1:6443" || bt.Token != tokA || c.Join.Discovery.TLSBootstrapToken != tokA ||
					!slices.Equal(bt.CACertHashes, []string{"sha256:bbbb"}) {
					t.Errorf("discovery %+v, tls %q", bt, c.Join.Discovery.TLSBootstrapToken)
				}
				if fmt.Sprint(c.ThisNode) != fmt.Sprint(worker) || c.IsControlPlaneJoin() {
					t.Errorf("this node %+v, want %+v", c.ThisNode, worker)
				}
			}},
		{name: "the file alone", file: tokenFile, asked: "10.0.0.1:6443", check: func(t *testing.T, c *Config) {
			if c.ThisNode.Name != "from-file" || c.Join.Discovery.TLSBootstrapToken != tokA {
				t.Errorf("this node %+v", c.ThisNode)
			}
		}},
		{name: "flags over the file", file: tokenFile, args: []string{"10.0.0.3:6443"},
			flags: JoinFlags{Token: tokB, CACertHashes: []string{"sha256:bbbb"}, NodeName: "from-flag"}, changed: []string{"node-name"},
			asked: "10.0.0.3:6443", check: func(t *testing.T, c *Config) {
				bt := c.Join.Discovery.BootstrapToken
				if bt.APIServerEndpoint != "10.0.0.3:6443" || bt.Token != tokB || c.Join.Discovery.TLSBootstrapToken != tokB {
					t.Errorf("--token replaces both tokens, the argument the endpoint: %+v, tls %q", bt, c.Join.Discovery.TLSBootstrapToken)
				}
				if !slices.Equal(bt.CACertHashes, []string{"sha256:aaaa", "sha256:bbbb"}) {
					t.Errorf("hashes add to the file's: %v", bt.CACertHashes)
				}
				if c.ThisNode.Name != "from-flag" {
					t.Errorf("name %q", c.ThisNode.Name)
				}
			}},
		{name: "discovery token and TLS token apart", args: []string{"10.0.0.1:6443"}, flags: JoinFlags{Token: tokA, DiscoveryToken: tokB, TLSBootstrapToken: tokC},
			asked: "10.0.0.1:6443", check: func(t *testing.T, c *Config) {
				if c.Join.Discovery.BootstrapToken.Token != tokB || c.Join.Discovery.TLSBootstrapToken != tokC {
					t.Errorf("discovery %q, tls %q", c.Join.Discovery.BootstrapToken.Token, c.Join.Discovery.TLSBootstrapToken)
				}
			}},
		{name: "the TLS token defaults to the discovery token", args: []string{"10.0.0.1:6443"}, flags: JoinFlags{DiscoveryToken: tokB},
			asked: "10.0.0.1:6443", check: func(t *testing.T, c *Config) {
				if c.Join.Discovery.TLSBootstrapToken != tokB {
					t.Errorf("tls %q", c.Join.Discovery.TLSBootstrapToken)
				}
			}},
		{name: "a discovery file replaces token discovery", file: tokenFile, flags: JoinFlags{DiscoveryFile: "KUBECONFIG", TLSBootstrapToken: tokC, DiscoveryTimeout: time.Minute},
			asked: "https://10.0.0.2:6443", check: func(t *testing.T, c *Config) {
				if c.Join.Discovery.BootstrapToken != nil || c.Join.Discovery.File == nil || c.Join.Discovery.TLSBootstrapToken != tokC {
					t.Errorf("discovery %+v", c.Join.Discovery)
				}
				if got := Timeout(c.JoinTimeouts().Discovery, 0); got != time.Minute {
					t.Errorf("discovery timeout %v", got)
				}
			}},
		{name: "control plane: the advertise address is the node's", file: cpFile, asked: "-", check: func(t *testing.T, c *Config) {
			want := ThisNode{Name: "node1", IP: "10.0.0.7", API: Endpoint{"10.0.0.7", 6444}, Taints: []corev1.Taint{ControlPlaneTaint}}
			if fmt.Sprint(c.ThisNode) != fmt.Sprint(want) || !c.IsControlPlaneJoin() {
				t.Errorf("this node %+v, want %+v", c.ThisNode, want)
			}
			if c.LocalAPIEndpoint() != "https://10.0.0.7:6444" {
				t.Errorf("local endpoint %s", c.LocalAPIEndpoint())
			}
		}},
		{name: "control plane from flags, node IP apart", args: []string{"10.0.0.1:6443"},
			flags:   JoinFlags{Token: tokA, ControlPlane: true, NodeIP: "10.0.1.5", AdvertiseAddress: "10.0.0.9", BindPort: 7443, CertificateKey: strings.Repeat("ab", 32), CRISocket: "/run/crio/crio.sock"},
			changed: []string{"control-plane", "node-ip", "apiserver-advertise-address", "apiserver-bind-port", "certificate-key", "cri-socket"},
			asked:   "-", check: func(t *testing.T, c *Config) {
				want := ThisNode{Name: "node1", IP: "10.0.1.5", API: Endpoint{"10.0.0.9", 7443}, CRISocket: "/run/crio/crio.sock", Taints: []corev1.Taint{ControlPlaneTaint}}
				if fmt.Sprint(c.ThisNode) != fmt.Sprint(want) {
					t.Errorf("this node %+v, want %+v", c.ThisNode, want)
				}
				if c.Join.ControlPlane.CertificateKey != strings.Repeat("ab", 32) || !c.ExternalCRI() {
					t.Errorf("key %q, external CRI %v", c.Join.ControlPlane.CertificateKey, c.ExternalCRI())
				}
			}},
		{name: "control plane: advertise defaults to the node IP", args: []string{"10.0.0.1:6443"}, flags: JoinFlags{Token: tokA, ControlPlane: true, BindPort: DefaultBindPort},
			changed: []string{"control-plane"}, asked: "10.0.0.1:6443", check: func(t *testing.T, c *Config) {
				if c.ThisNode.API != (Endpoint{"10.0.0.5", DefaultBindPort}) || c.ThisNode.IP != "10.0.0.5" {
					t.Errorf("this node %+v", c.ThisNode)
				}
			}},
		{name: "a bind port alone makes no control-plane join", args: []string{"10.0.0.1:6443"}, flags: JoinFlags{Token: tokA, BindPort: 7443},
			changed: []string{"apiserver-bind-port"}, asked: "10.0.0.1:6443", check: func(t *testing.T, c *Config) {
				if c.IsControlPlaneJoin() || c.ThisNode.Taints != nil {
					t.Errorf("a worker: %+v", c.ThisNode)
				}
			}},
		{name: "no endpoint", flags: JoinFlags{Token: tokA}, asked: "-", wantErr: []string{"no API server endpoint"}},
		{name: "no token", args: []string{"10.0.0.1:6443"}, asked: "-", wantErr: []string{"no bootstrap token"}},
		{name: "no TLS token with a discovery file", flags: JoinFlags{DiscoveryFile: "KUBECONFIG"}, asked: "-", wantErr: []string{"no TLS bootstrap token"}},
		{name: "a missing discovery file is named by the flag", flags: JoinFlags{DiscoveryFile: "/nonexistent/kubeconfig", TLSBootstrapToken: tokA},
			asked: "-", wantErr: []string{"--discovery-file: ", "/nonexistent/kubeconfig"}},
		{name: "a bad node IP is named by the flag", args: []string{"10.0.0.1:6443"}, flags: JoinFlags{Token: tokA, NodeIP: "nonsense"},
			asked: "-", wantErr: []string{`--node-ip: "nonsense" is not an IP address`}},
		{name: "a bad advertise address is named by the flag", args: []string{"10.0.0.1:6443"}, flags: JoinFlags{Token: tokA, AdvertiseAddress: "0.0.0.0"},
			changed: []string{"apiserver-advertise-address"}, asked: "-",
			wantErr: []string{`--apiserver-advertise-address: "0.0.0.0" is not a usable IP address`}},
		{name: "a bad key from the file is named by its field", file: cpFile + "  certificateKey: abcd\n", asked: "-",
			wantErr: []string{"JoinConfiguration.controlPlane.certificateKey: must be 64 hexadecimal characters"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.flags
			if tc.file != "" {
				f.ConfigFile = writeFile(t, tc.file)
			}
			if f.DiscoveryFile == "KUBECONFIG" {
				f.DiscoveryFile = writeFile(t, kubeconfig)
			}
			var asked []string
			c, err := LoadJoin(f, tc.args, changed(tc.changed...), joinHost(&asked))
			if want := tc.asked; want == "-" && len(asked) > 0 || want != "-" && !slices.Equal(asked, []string{want}) {
				t.Errorf("looked up the node's address towards %q, want %q", asked, want)
			}
			if tc.wantErr != nil {
				if err == nil {
					t.Fatal("accepted")
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("the error does not say %q: %v", w, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}
