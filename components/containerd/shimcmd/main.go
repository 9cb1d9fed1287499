// Command shimcmd is containerd's runc v2 shim on its own, without the rest
// of kubeforge. `make build` compiles it first and embeds it in kubeforge
// (build tag embedshim): a shim runs per pod, and a process of the full
// kubeforge binary pays ~130 ms and ~14 MB for the init functions of its
// ~1,400 packages, which a shim does not need.
package main

import (
	"context"

	"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/manager"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/task/plugin"
	"github.com/containerd/containerd/v2/pkg/shim"
)

func main() {
	shim.RunShim(context.Background(), manager.NewShimManager("io.containerd.runc.v2"))
}
