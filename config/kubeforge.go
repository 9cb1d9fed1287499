package config

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// KubeforgeAPIVersion is the group of kubeforge's own settings, the ones
// kubeadm's documents have no field for.
const KubeforgeAPIVersion = "kubeforge.io/v1alpha1"

// KubeforgeConfiguration holds one node's kubeforge-only settings. It is one
// more document in the --config file of init or join:
//
//	apiVersion: kubeforge.io/v1alpha1
//	kind: KubeforgeConfiguration
//	airGapped: true
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
}
