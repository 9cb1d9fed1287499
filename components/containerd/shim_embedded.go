//go:build embedshim

package containerd

import _ "embed"

// embeddedShim is the standalone runc v2 shim (components/containerd/shimcmd),
// built by `make build` into shim.bin before kubeforge itself.
//
//go:embed shim.bin
var embeddedShim []byte
