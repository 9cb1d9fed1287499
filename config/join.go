package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
)

// IsControlPlaneJoin reports whether the JoinConfiguration joins a control-plane node.
func (c *Config) IsControlPlaneJoin() bool { return c.Join.ControlPlane != nil }

// CompleteJoin defaults and validates the node-local part of a join
// (JoinConfiguration, flags); nodeIP is the address the node reaches the
// cluster from. The cluster-wide part (ClusterConfiguration,
// KubeletConfiguration) comes from the cluster: see AdoptCluster.
func (c *Config) CompleteJoin(h HostFacts, nodeIP string) error {
	if c.Join.Patches != nil {
		return fmt.Errorf("%s: not supported by kubeforge: remove the field", c.where("JoinConfiguration.patches"))
	}
	nr := &c.Join.NodeRegistration
	if nr.Name == "" {
		nr.Name = strings.ToLower(h.Hostname)
	}
	var errs []error
	add := func(path, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", c.where(path), fmt.Sprintf(format, a...)))
	}
	defaultKubeforge(&c.Kubeforge)
	for _, err := range validateKubeforge(&c.Kubeforge) {
		errs = append(errs, fmt.Errorf("%s: %w", c.sourceName(), err))
	}
	if c.Join.ControlPlane == nil && c.Kubeforge.ControlPlane.Processes() {
		if _, ok := c.sources["KubeforgeConfiguration.controlPlane.runtime"]; ok {
			add("KubeforgeConfiguration.controlPlane.runtime", "%s: a worker runs no control plane: join with --control-plane, or leave the flag out", ControlPlaneProcesses)
		}
		// A worker runs no control plane: its kubelet keeps its static pod
		// directory (the same documents may describe every node).
		c.Kubeforge.ControlPlane.Runtime = ControlPlaneStaticPods
	}
	for _, m := range validation.IsDNS1123Subdomain(nr.Name) {
		add("JoinConfiguration.nodeRegistration.name", "%q is not a valid node name: %s", nr.Name, m)
	}
	validateKubeletExtraArgs("JoinConfiguration.nodeRegistration", *nr, add)
	if cp := c.Join.ControlPlane; cp != nil {
		if cp.LocalAPIEndpoint.AdvertiseAddress == "" {
			cp.LocalAPIEndpoint.AdvertiseAddress = nodeIP
		}
		if cp.LocalAPIEndpoint.BindPort == 0 {
			cp.LocalAPIEndpoint.BindPort = DefaultBindPort
		}
		if ip := net.ParseIP(cp.LocalAPIEndpoint.AdvertiseAddress); ip == nil || ip.IsUnspecified() {
			add("JoinConfiguration.controlPlane.localAPIEndpoint.advertiseAddress", "%q is not a usable IP address", cp.LocalAPIEndpoint.AdvertiseAddress)
		}
		// Without a certificate key the cluster's shared certificates and
		// keys must already be on the node, copied by hand (kubeadm's manual
		// certificate distribution); the join checks them once it knows the
		// cluster (phases.JoinData.checkSharedFiles).
		if k := cp.CertificateKey; k != "" {
			if b, err := hex.DecodeString(k); err != nil || len(b) != 32 {
				add("JoinConfiguration.controlPlane.certificateKey", "must be 64 hexadecimal characters (32 bytes), the key `kubeforge init --upload-certs` or `kubeforge init phase upload-certs --upload-certs` printed; or leave it empty to use the shared certificates copied to this node by hand")
			}
		}
	}
	if net.ParseIP(nodeIP) == nil {
		add("--node-ip", "%q is not an IP address", nodeIP)
	}
	c.ThisNode = joinNode(c, nodeIP)
	return errors.Join(errs...)
}

// AdoptCluster takes the cluster's ClusterConfiguration (kubeadm-config) and
// KubeletConfiguration (kubelet-config), as downloaded by a joining node,
// and adapts the kubelet's to this host.
func (c *Config) AdoptCluster(clusterYAML, kubeletYAML []byte, h HostFacts) error {
	if len(clusterYAML) > 0 {
		if err := decodeStrict(clusterYAML, &c.Cluster); err != nil {
			return fmt.Errorf("the cluster's kubeadm-config ConfigMap: %w", err)
		}
		// This node owns these directories (reset empties them): the
		// cluster's values are checked as init checks its own.
		var errs []error
		if dir := c.Cluster.CertificatesDir; dir != "" {
			if err := CheckOwnedDir(dir, DefaultPaths().CertDir); err != nil {
				errs = append(errs, fmt.Errorf("the cluster's kubeadm-config ConfigMap: ClusterConfiguration.certificatesDir: %w (edit it in the ConfigMap kube-system/kubeadm-config)", err))
			}
			c.Paths.CertDir = filepath.Clean(dir)
		}
		if c.Cluster.Etcd.Local != nil && c.Cluster.Etcd.Local.DataDir != "" {
			dir := c.Cluster.Etcd.Local.DataDir
			if err := CheckOwnedDir(dir, DefaultPaths().EtcdDataDir); err != nil {
				errs = append(errs, fmt.Errorf("the cluster's kubeadm-config ConfigMap: ClusterConfiguration.etcd.local.dataDir: %w (edit it in the ConfigMap kube-system/kubeadm-config)", err))
			}
			c.Paths.EtcdDataDir = filepath.Clean(dir)
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
	}
	if len(kubeletYAML) > 0 {
		if err := decodeStrict(kubeletYAML, &c.Kubelet); err != nil {
			return fmt.Errorf("the cluster's kubelet-config ConfigMap: %w", err)
		}
	}
	// Per-host settings: this node's runtime, its init system and cgroups.
	c.Kubelet.ContainerRuntimeEndpoint = c.CRIEndpoint()
	// The cluster's KubeletConfiguration carries the first node's
	// cgroupRoot; a node that sets its own with kubeletExtraArgs (the flag
	// wins in the kubelet) keeps config.yaml in agreement, so that whatever
	// reads the file (reset removing the pod cgroups) sees this node's.
	for _, a := range c.ThisNode.KubeletExtraArgs {
		if a.Name == "cgroup-root" {
			c.Kubelet.CgroupRoot = a.Value
		}
	}
	if h.SystemdInit {
		c.Kubelet.CgroupDriver = "systemd"
	} else {
		c.Kubelet.CgroupDriver = "cgroupfs"
	}
	if h.CgroupV1 {
		c.Kubelet.FailCgroupV1 = ptr.To(false)
	}
	c.Kubelet.StaticPodPath = c.Paths.ManifestsDir
	c.Kubelet.Authentication.X509.ClientCAFile = c.Paths.Cert("ca.crt")
	return nil
}
