// Command kubeforge bootstraps and manages Kubernetes nodes. It is also every
// node component: see `kubeforge component --help`.
package main

import (
	"os"

	"github.com/kubeforge/kubeforge/cmd/cli"
)

func main() {
	os.Exit(cli.Main(os.Args))
}
