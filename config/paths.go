package config

import (
	"path/filepath"
)

// Paths holds every host path kubeforge reads or writes. The fields are the
// logical paths, the ones written into manifests, kubeconfigs and messages
// (for example /etc/kubernetes/pki). Root, when set, is a directory that all
// file I/O is redirected under: tests use a temporary root, dry runs a
// scratch one. Use Host to turn a logical path into the path to open.
type Paths struct {
	// Root prefixes every path for I/O. Empty means the real host ("/").
	Root string

	KubernetesDir   string // /etc/kubernetes: kubeconfigs
	ManifestsDir    string // /etc/kubernetes/manifests: static pods
	CertDir         string // /etc/kubernetes/pki
	KubeletDir      string // /var/lib/kubelet
	EtcdDataDir     string // /var/lib/etcd
	StateDir        string // /var/lib/kubeforge
	RunDir          string // /run/kubeforge
	LogDir          string // /var/log/kubeforge
	CNIConfDir      string // /etc/cni/net.d
	CNIStateDir     string // /var/lib/cni
	PodLogDir       string // /var/log/pods
	ContainerLogDir string // /var/log/containers
}

// DefaultPaths returns the standard host layout, the same as kubeadm's where
// kubeadm defines one.
func DefaultPaths() Paths {
	return Paths{
		KubernetesDir:   "/etc/kubernetes",
		ManifestsDir:    "/etc/kubernetes/manifests",
		CertDir:         "/etc/kubernetes/pki",
		KubeletDir:      "/var/lib/kubelet",
		EtcdDataDir:     "/var/lib/etcd",
		StateDir:        "/var/lib/kubeforge",
		RunDir:          "/run/kubeforge",
		LogDir:          "/var/log/kubeforge",
		CNIConfDir:      "/etc/cni/net.d",
		CNIStateDir:     "/var/lib/cni",
		PodLogDir:       "/var/log/pods",
		ContainerLogDir: "/var/log/containers",
	}
}

// Host returns the path to use for I/O on the logical path p.
func (p Paths) Host(logical string) string {
	if p.Root == "" || p.Root == "/" {
		return logical
	}
	return filepath.Join(p.Root, logical)
}

// WithRoot returns a copy of p whose I/O goes under root.
func (p Paths) WithRoot(root string) Paths {
	p.Root = root
	return p
}

// Kubeconfig returns the logical path of a kubeconfig file in the Kubernetes dir (admin.conf, …).
func (p Paths) Kubeconfig(name string) string { return filepath.Join(p.KubernetesDir, name) }

// Manifest returns the logical path of a static pod manifest.
func (p Paths) Manifest(component string) string {
	return filepath.Join(p.ManifestsDir, component+".yaml")
}

// Cert returns the logical path of a file in the certificate dir ("etcd/ca.crt").
func (p Paths) Cert(name string) string { return filepath.Join(p.CertDir, name) }

// KubeletConfigFile is the kubelet's KubeletConfiguration.
func (p Paths) KubeletConfigFile() string { return filepath.Join(p.KubeletDir, "config.yaml") }

// KubeletFlagsFile holds extra kubelet flags, as kubeadm's kubeadm-flags.env.
func (p Paths) KubeletFlagsFile() string { return filepath.Join(p.KubeletDir, "kubeadm-flags.env") }

// KubeletPKIDir holds the kubelet's client and serving certificates.
func (p Paths) KubeletPKIDir() string { return filepath.Join(p.KubeletDir, "pki") }

// EncryptionConfigFile is the apiserver's EncryptionConfiguration (secrets at rest).
func (p Paths) EncryptionConfigFile() string {
	return filepath.Join(p.CertDir, "encryption-config.yaml")
}

// AuthnConfigFile is the apiserver's AuthenticationConfiguration.
func (p Paths) AuthnConfigFile() string {
	return filepath.Join(p.KubernetesDir, "apiserver", "authentication-config.yaml")
}

// AdmissionConfigFile is the apiserver's AdmissionConfiguration (Pod Security).
func (p Paths) AdmissionConfigFile() string {
	return filepath.Join(p.KubernetesDir, "apiserver", "admission-config.yaml")
}

// AuditPolicyFile is the apiserver's audit policy.
func (p Paths) AuditPolicyFile() string {
	return filepath.Join(p.KubernetesDir, "apiserver", "audit-policy.yaml")
}

// SchedulerConfigDir holds the scheduler's KubeSchedulerConfiguration
// files (kubeforge's own; a user's scheduler extraArgs config replaces
// them), each named by its content's hash, so that the manifest an
// upgrade rolls back to finds its own file.
func (p Paths) SchedulerConfigDir() string {
	return filepath.Join(p.KubernetesDir, "scheduler")
}

// AuditLogDir is where the apiserver writes its audit log.
func (p Paths) AuditLogDir() string { return filepath.Join(p.LogDir, "audit") }

// ContainerdRoot is the bundled containerd's persistent root.
func (p Paths) ContainerdRoot() string { return filepath.Join(p.StateDir, "containerd") }

// ContainerdState is the bundled containerd's state dir (sockets, pod netns).
func (p Paths) ContainerdState() string { return filepath.Join(p.RunDir, "containerd") }

// ContainerdSocket is the bundled containerd's gRPC (and CRI) socket.
func (p Paths) ContainerdSocket() string {
	return filepath.Join(p.ContainerdState(), "containerd.sock")
}

// RuncRoot is where runc keeps the state of the bundled containerd's
// containers, one directory per containerd namespace (runc's default,
// /run/containerd/runc, is shared by every containerd on the host).
func (p Paths) RuncRoot() string { return filepath.Join(p.RunDir, "runc") }

// ContainerdConfig is the bundled containerd's generated config.toml.
func (p Paths) ContainerdConfig() string { return filepath.Join(p.StateDir, "containerd-config.toml") }

// PodCIDRFile holds this node's pod CIDRs (JSON list) for the CNI IPAM
// plugin. It survives reboots, so pods restart before the node agent can
// reach the API server.
func (p Paths) PodCIDRFile() string { return filepath.Join(p.StateDir, "pod-cidrs.json") }

// NodePIDFile is the node service's pid file when it runs as a daemon.
func (p Paths) NodePIDFile() string { return filepath.Join(p.RunDir, "node.pid") }

// NodeLogFile is the node service's log when it runs as a daemon.
func (p Paths) NodeLogFile() string { return filepath.Join(p.LogDir, "node.log") }

// ImagesDir holds the generated OCI archives (self-image, pause).
func (p Paths) ImagesDir() string { return filepath.Join(p.StateDir, "images") }
