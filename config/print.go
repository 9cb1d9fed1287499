package config

import (
	"bytes"
	"fmt"
	"net"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	bootstraptokenv1 "k8s.io/kubernetes/cmd/kubeadm/app/apis/bootstraptoken/v1"
	"sigs.k8s.io/yaml"
)

// InitDefaults returns a complete, valid configuration as kubeadm's
// `config print init-defaults` does: placeholder node name, address and token.
func InitDefaults(h HostFacts) (*Config, error) {
	c := New()
	c.Init.NodeRegistration.Name = "node"
	c.Init.LocalAPIEndpoint.AdvertiseAddress = "1.2.3.4"
	tok, err := bootstraptokenv1.NewBootstrapTokenString("abcdef.0123456789abcdef")
	if err != nil {
		return nil, err
	}
	t := defaultToken()
	t.Token = tok
	c.Init.BootstrapTokens = []bootstraptokenv1.BootstrapToken{t}
	c.Init.Timeouts = nil
	h.DefaultAddress = func() (net.IP, error) { return net.ParseIP("1.2.3.4"), nil }
	if err := c.Complete(h); err != nil {
		return nil, err
	}
	c.KubeProxy.ClusterCIDR = c.Cluster.Networking.PodSubnet
	return c, nil
}

// MarshalDocuments renders the InitConfiguration, ClusterConfiguration,
// KubeletConfiguration and KubeProxyConfiguration as one multi-document YAML.
func (c *Config) MarshalDocuments() ([]byte, error) {
	var buf bytes.Buffer
	for i, obj := range []any{&c.Init, &c.Cluster, &c.Kubelet, &c.KubeProxy} {
		b, err := yaml.Marshal(obj)
		if err != nil {
			return nil, fmt.Errorf("marshal config document %d: %w", i+1, err)
		}
		if obj == any(&c.Kubelet) && !c.Kubelet.ServerTLSBootstrap {
			// omitempty drops a false that loading the printed file would
			// default back to true (see defaultKubelet).
			b = append(b, "serverTLSBootstrap: false\n"...)
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		buf.Write(b)
	}
	return buf.Bytes(), nil
}

// ClusterConfigurationYAML is the ClusterConfiguration document alone, as
// stored in the kube-system/kubeadm-config ConfigMap.
func (c *Config) ClusterConfigurationYAML() ([]byte, error) { return yaml.Marshal(&c.Cluster) }

// KubeletConfigurationYAML is the KubeletConfiguration document.
func (c *Config) KubeletConfigurationYAML() ([]byte, error) { return yaml.Marshal(&c.Kubelet) }

// Duration is a helper for building metav1.Duration values.
func Duration(d metav1.Duration) *metav1.Duration { return &d }
