// Command trampoline runs one of the host's network tools for kube-proxy
// (see package hosttools), or, called as kubeforge-ipam, the pod network's
// CNI IPAM plugin (package ipam), which containerd execs for every pod
// sandbox made and removed. `make build` compiles it first and embeds it in
// kubeforge (build tag embedhosttools): kube-proxy execs iptables/nft tens
// of times at start and on every sync, and a process of the full kubeforge
// binary pays ~0.3 s of package initialisation (k8s API schemes, registries)
// before it can chroot, which delayed kube-proxy's first rules, and with
// them every Service (the kubernetes one CoreDNS needs), by 8–10 s. This
// program imports only the standard library, hosttools and ipam.
package main

import (
	"fmt"
	"os"

	"github.com/kubeforge/kubeforge/components/hosttools"
	"github.com/kubeforge/kubeforge/components/podnet/ipam"
)

func main() {
	if ipam.Is(os.Args) {
		os.Exit(ipam.Main(os.Args))
	}
	if !hosttools.IsTool(os.Args) {
		fmt.Fprintf(os.Stderr, "kubeforge host tool trampoline: run as one of %v with %s set\n", hosttools.Tools, hosttools.HostRootEnv)
		os.Exit(127)
	}
	os.Exit(hosttools.Exec(os.Args))
}
