//go:build !embedshim

package containerd

// embeddedShim is empty without the embedshim build tag: the kubeforge
// executable then serves as the shim itself (see IsShim).
var embeddedShim []byte
