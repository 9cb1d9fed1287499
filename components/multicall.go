// Package components holds the upstream programs compiled into kubeforge
// (etcd, the Kubernetes control plane, the kubelet, kube-proxy, containerd,
// CoreDNS), the node service that supervises them, and the self-image. It is
// the only package that imports the heavy component code.
package components

// Multicall runs the executable in one of its non-CLI roles when args ask for
// it (for example as containerd's runc shim, which containerd starts with its
// own fixed arguments). It reports whether it handled the call.
func Multicall(args []string) (code int, handled bool) {
	return 0, false
}
