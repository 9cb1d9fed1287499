package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// KubeforgeAPIVersion is the API group of kubeforge's own document.
const (
	KubeforgeAPIVersion = "kubeforge.io/v1alpha1"
	KubeforgeKind       = "KubeforgeConfiguration"
)

// KubeforgeConfiguration holds kubeforge's own settings: the ones kubeadm's
// documents have no field for (what the node service does besides running
// containerd and the kubelet, registries, ...). It is an optional document in
// the same config file as kubeadm's:
//
//	apiVersion: kubeforge.io/v1alpha1
//	kind: KubeforgeConfiguration
//
// init and join write the effective value (defaults filled in) to the
// node's KubeforgeConfigFile, which the node service reads at start.
// Each feature adds its settings as one field holding a struct of its own.
type KubeforgeConfiguration struct {
	metav1.TypeMeta `json:",inline"`

	// AirGapped keeps the node's container runtime from pulling any image:
	// every registry resolves to a dead loopback port, and images come
	// from `kubeforge images import` or the import directory. By default
	// (false) workloads pull from registries as on any distribution,
	// configured by /etc/kubeforge/registries.yaml. kubeforge's own images
	// (the control plane, the addons, pause) are never pulled either way.
	// The flag --air-gapped of init and join sets it.
	AirGapped bool `json:"airGapped,omitempty"`

	// EtcdSnapshots: the scheduled etcd snapshots (see EtcdSnapshots).
	EtcdSnapshots EtcdSnapshots `json:"etcdSnapshots,omitempty"`

	// CertificateRenewal: the node service's automatic renewal of the
	// certificates and kubeconfig files (control-plane nodes).
	CertificateRenewal CertificateRenewal `json:"certificateRenewal"`

	// Addons turns kubeforge's optional cluster addons on and off.
	Addons Addons `json:"addons"`

	// PodNetwork: the built-in pod network, its backend or none at all.
	PodNetwork PodNetwork `json:"podNetwork"`

	// ControlPlane: how a control-plane node runs its control plane.
	ControlPlane ControlPlane `json:"controlPlane"`
}

// KubeforgeConfigFile is the node's effective KubeforgeConfiguration.
func (p Paths) KubeforgeConfigFile() string { return filepath.Join(p.StateDir, "config.yaml") }

// defaultKubeforge fills in k's unset fields.
func defaultKubeforge(k *KubeforgeConfiguration) {
	k.APIVersion, k.Kind = KubeforgeAPIVersion, KubeforgeKind
	defaultEtcdSnapshots(&k.EtcdSnapshots)
	defaultCertificateRenewal(&k.CertificateRenewal)
	defaultAddons(&k.Addons)
	defaultPodNetwork(&k.PodNetwork)
	defaultControlPlane(&k.ControlPlane)
}

// validateKubeforge checks k; errors name the field (kind.field) and the fix.
func validateKubeforge(k *KubeforgeConfiguration) []error {
	var errs []error
	errs = append(errs, validateEtcdSnapshots(&k.EtcdSnapshots)...)
	errs = append(errs, validateCertificateRenewal(&k.CertificateRenewal)...)
	errs = append(errs, validateLocalPath(&k.Addons.LocalPath)...)
	errs = append(errs, validateCloudController(&k.Addons.CloudController)...)
	errs = append(errs, validateLogStore(&k.Addons.LogStore)...)
	errs = append(errs, validatePodNetwork(&k.PodNetwork)...)
	errs = append(errs, validateControlPlane(&k.ControlPlane)...)
	return errs
}

// MarshalKubeforge renders k as the YAML document of KubeforgeConfigFile.
func MarshalKubeforge(k KubeforgeConfiguration) ([]byte, error) {
	defaultKubeforge(&k)
	return yaml.Marshal(k)
}

// LoadKubeforge reads the node's KubeforgeConfigFile (p.Host applied), with
// defaults filled in. A node without the file (made by an older kubeforge)
// gets the defaults; a file that does not decode or validate is an error
// naming it.
func LoadKubeforge(p Paths) (KubeforgeConfiguration, error) {
	var k KubeforgeConfiguration
	path := p.KubeforgeConfigFile()
	data, err := os.ReadFile(p.Host(path))
	if os.IsNotExist(err) {
		defaultKubeforge(&k)
		return k, nil
	}
	if err != nil {
		return k, err
	}
	if err := decodeStrict(data, &k); err != nil {
		return k, fmt.Errorf("%s: %w", path, err)
	}
	if k.APIVersion != KubeforgeAPIVersion || k.Kind != KubeforgeKind {
		return k, fmt.Errorf("%s: apiVersion %q kind %q, want %s %s", path, k.APIVersion, k.Kind, KubeforgeAPIVersion, KubeforgeKind)
	}
	defaultKubeforge(&k)
	if errs := validateKubeforge(&k); len(errs) > 0 {
		return k, fmt.Errorf("%s: %w", path, errors.Join(errs...))
	}
	return k, nil
}
