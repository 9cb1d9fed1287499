// Package storeflags takes VictoriaLogs' flags off the process-wide
// standard flag set onto a set of their own (Set), for `kubeforge
// component log-store` alone.
//
// VictoriaMetrics' libraries declare their flags as package variables, so
// they land on the standard set in every kubeforge process. There they
// clash: lib/buildinfo's -version and CoreDNS's coremain -version (the
// second registration panics at start), and kube-proxy merges the whole
// standard set into its own flags. This package has almost no imports, so
// the Go runtime initializes it right after lib/buildinfo and before
// coremain (whose dependencies initialize later); its init moves -version
// off at once. The logstore package's init calls Move again for the flags
// the other VictoriaLogs packages declared meanwhile.
package storeflags

import (
	"flag"
	"slices"

	// Initialized first, so that init finds its -version.
	_ "github.com/VictoriaMetrics/VictoriaMetrics/lib/buildinfo"
)

// Set holds VictoriaLogs' flags.
var Set = flag.NewFlagSet("log-store", flag.ExitOnError)

func init() { Move() }

// Move moves the flags named in Names from the standard set to Set,
// leaving a name Set already has (another program's flag of that name,
// registered after VictoriaLogs' moved) where it is.
func Move() {
	rest := flag.NewFlagSet(flag.CommandLine.Name(), flag.CommandLine.ErrorHandling())
	moved := false
	flag.CommandLine.VisitAll(func(f *flag.Flag) {
		if _, ok := slices.BinarySearch(Names, f.Name); ok && Set.Lookup(f.Name) == nil {
			Set.Var(f.Value, f.Name, f.Usage)
			moved = true
		} else {
			rest.Var(f.Value, f.Name, f.Usage)
		}
	})
	if !moved {
		return
	}
	rest.Usage = flag.CommandLine.Usage
	rest.SetOutput(flag.CommandLine.Output())
	flag.CommandLine = rest
}
