// Package coredns runs CoreDNS (github.com/coredns/coredns/coremain) with
// the plugins a Kubernetes cluster's DNS needs: those of kubeadm's default
// Corefile (errors, health, ready, kubernetes, prometheus, forward, cache,
// loop, reload, loadbalance) plus log.
package coredns

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	// The plugins compiled in: each registers itself in its init.
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

// coremainFlags are the flags coremain registers on the standard flag set
// in its init function.
var coremainFlags = []string{"conf", "plugins", "pidfile", "version", "quiet", "log-format", "dns.port", "p"}

// flags is CoreDNS's own flag set.
var flags = flag.NewFlagSet("coredns", flag.ExitOnError)

// init moves coremain's flags off the process-wide standard flag set. In a
// multicall binary every component shares that set, and kube-proxy merges
// it into its own flags: CoreDNS's -version there would shadow kube-proxy's
// --version (and add -conf, -dns.port, … to its help). CoreDNS gets them
// back, alone, in Main.
func init() {
	rest := flag.NewFlagSet(flag.CommandLine.Name(), flag.CommandLine.ErrorHandling())
	flag.CommandLine.VisitAll(func(f *flag.Flag) {
		if slices.Contains(coremainFlags, f.Name) {
			flags.Var(f.Value, f.Name, f.Usage)
		} else {
			rest.Var(f.Value, f.Name, f.Usage)
		}
	})
	flag.CommandLine = rest
}

// Plugins lists the directives compiled in, in CoreDNS's execution order.
func Plugins() []string {
	registered := map[string]bool{}
	for _, name := range caddy.ListPlugins()["others"] {
		if n, ok := strings.CutPrefix(name, "dns."); ok {
			registered[n] = true
		}
	}
	var out []string
	for _, d := range dnsserver.Directives {
		if registered[d] {
			out = append(out, d)
		}
	}
	return out
}

// Main runs CoreDNS with its upstream flags (-conf, -dns.port, -version,
// -plugins, …; args excludes the program name) and returns its exit code.
// CoreDNS parses the standard flag set from os.Args and exits the process
// itself on errors and after -version.
func Main(args []string) int {
	if err := dnsserver.SetDirectives(Plugins()); err != nil {
		fmt.Fprintf(os.Stderr, "coredns: %v\n", err)
		return 1
	}
	os.Args = append([]string{"coredns"}, args...)
	// coremain.Run parses the standard flag set: make it CoreDNS's alone.
	flag.CommandLine = flags
	coremain.Run()
	return 0
}
