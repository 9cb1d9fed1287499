package config

import (
	"fmt"

	kubeproxyv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"

	"github.com/kubeforge/kubeforge/internal/version"
)

// AdoptForUpgrade builds an upgrade's configuration from what the cluster
// and this node store: the cluster's ClusterConfiguration (kubeadm-config),
// KubeletConfiguration (kubelet-config) and KubeProxyConfiguration (the
// kube-proxy ConfigMap's config.conf), and this node's own kubelet
// configuration file (nodeKubelet: the per-host fields it keeps). c must be
// Complete()d with this node's name and local API endpoint. It returns the
// Kubernetes version the ClusterConfiguration named, and sets the one this
// binary carries.
func (c *Config) AdoptForUpgrade(clusterYAML, kubeletYAML, kubeProxyYAML, nodeKubelet []byte, h HostFacts) (string, error) {
	if len(clusterYAML) == 0 {
		return "", fmt.Errorf("the cluster's kubeadm-config ConfigMap has no ClusterConfiguration: is this a cluster made by kubeforge or kubeadm?")
	}
	if err := c.AdoptCluster(clusterYAML, kubeletYAML, h); err != nil {
		return "", err
	}
	old := c.Cluster.KubernetesVersion
	c.Cluster.KubernetesVersion = version.Kubernetes
	if len(kubeProxyYAML) > 0 {
		var kp kubeproxyv1alpha1.KubeProxyConfiguration
		if err := decodeStrict(kubeProxyYAML, &kp); err != nil {
			return "", fmt.Errorf("the cluster's kube-proxy ConfigMap (config.conf): %w", err)
		}
		c.KubeProxy = kp
	}
	if len(nodeKubelet) > 0 {
		var own kubeletv1beta1.KubeletConfiguration
		if err := decodeStrict(nodeKubelet, &own); err != nil {
			return "", fmt.Errorf("%s: %w", c.Paths.KubeletConfigFile(), err)
		}
		// The fields init or join set for this host rather than for the
		// cluster: keep this node's.
		k := &c.Kubelet
		k.CgroupRoot = own.CgroupRoot
		if own.ContainerRuntimeEndpoint != "" {
			k.ContainerRuntimeEndpoint = own.ContainerRuntimeEndpoint
		}
		if own.ResolverConfig != nil {
			k.ResolverConfig = own.ResolverConfig
		}
		if own.CgroupDriver != "" {
			k.CgroupDriver = own.CgroupDriver
		}
	}
	return old, nil
}
