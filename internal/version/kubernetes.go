//go:build !k8s136

package version

const (
	// Kubernetes is the version of k8s.io/kubernetes compiled in.
	Kubernetes = "v1.37.2"
	// Containerd is the version of github.com/containerd/containerd/v2 compiled in.
	Containerd = "v2.4.2"
)
