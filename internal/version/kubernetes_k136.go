//go:build k8s136

package version

// The build against the previous Kubernetes minor (hack/build-k136.sh,
// build tag k8s136), made to test upgrades from it.
const (
	// Kubernetes is the version of k8s.io/kubernetes compiled in.
	Kubernetes = "v1.36.3"
	// Containerd is the version of github.com/containerd/containerd/v2
	// compiled in: the release built against Kubernetes v1.36's CRI API
	// (containerd v2.4's CRI plugin needs v1.37's k8s.io/cri-api, whose
	// Signal names the v1.36 kubelet does not know).
	Containerd = "v2.3.7"
)
