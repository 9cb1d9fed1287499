// Package components holds the upstream programs compiled into kubeforge
// (etcd, the Kubernetes control plane, the kubelet, kube-proxy, containerd,
// CoreDNS), the node service that supervises them, and the self-image. It is
// the only package that imports the heavy component code.
package components

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/kubeforge/kubeforge/components/containerd"
	"github.com/kubeforge/kubeforge/components/hosttools"
	"github.com/kubeforge/kubeforge/components/podnet/ipam"
	"github.com/kubeforge/kubeforge/internal/gctune"
	"github.com/kubeforge/kubeforge/internal/version"
)

// ComponentCommand is the CLI word that introduces a component:
// `kubeforge component NAME [upstream flags…]`.
const ComponentCommand = "component"

// Multicall runs the executable in one of its non-CLI roles when args ask for
// it, before any kubeforge flag parsing, so that upstream flags pass through
// untouched. It reports whether it handled the call; when it did not, it
// clears pflag's process-wide flag set, where the components' packages
// register flags the kubeforge CLI must not show. The roles:
//
//   - containerd's runc shim: containerd starts it through a link named
//     containerd-shim-runc-v2, with its own fixed arguments;
//   - `kubeforge component NAME [args…]` for a registered NAME: runs that
//     component with args (`kubeforge component` alone, --help or an unknown
//     NAME fall through to the CLI, which lists the components);
//   - an executable (link) named like a component, busybox style:
//     `etcd --version` when argv[0] is …/etcd.
func Multicall(args []string) (code int, handled bool) {
	if len(args) == 0 {
		return 0, false
	}
	if containerd.IsShim(args) {
		return containerd.ShimMain(args), true
	}
	if ipam.Is(args) {
		return ipam.Main(args), true
	}
	if hosttools.IsTool(args) {
		return hosttools.Exec(args), true
	}
	if c, rest, ok := componentCall(args); ok {
		// Upstream code that reads os.Args (etcd's gateway, CoreDNS's flag
		// set, cobra's fallback) sees the component's own command line.
		os.Args = append([]string{c.Name}, rest...)
		ProfileStartup(c.Name)
		if len(args) > 1 && args[1] == ComponentCommand {
			// Not for the busybox-style links: the bench's kubeadm images
			// run them and stand for upstream's own binaries.
			gctune.Steady()
		}
		if slices.Contains(rest, "--version") || slices.Contains(rest, "-version") {
			// Upstream prints its own version (and may exit right after):
			// first say which of kubeforge's patches this component
			// carries, on stderr (scripts parse the upstream line).
			if ids := version.PatchesOf(c.Name); len(ids) > 0 {
				fmt.Fprintf(os.Stderr, "kubeforge: %s carries kubeforge's patches to upstream code: %s (README \"Upstream patches\")\n", c.Name, strings.Join(ids, ", "))
			}
		}
		return c.Main(rest), true
	}
	// The CLI proper: the components' packages registered their global
	// flags (verflag's --version, …) on pflag's process-wide set, which
	// cobra would merge into every kubeforge command. They belong to the
	// components alone.
	pflag.CommandLine = pflag.NewFlagSet(args[0], pflag.ExitOnError)
	return 0, false
}

// ProfileStartup writes a CPU profile of a component's (or the node
// service's) first seconds to $KUBEFORGE_CPUPROFILE/<name>-<pid>.pprof when
// that variable names a directory (for `go tool pprof`; seconds from
// $KUBEFORGE_CPUPROFILE_SECONDS, default 15; $KUBEFORGE_CPUPROFILE_DELAY
// seconds after the start, default 0, for a profile of the idle process).
// A debugging aid: nothing sets it. The node service passes its
// environment on to containerd and the kubelet, so one variable profiles
// all three.
func ProfileStartup(name string) {
	dir := os.Getenv("KUBEFORGE_CPUPROFILE")
	if dir == "" {
		return
	}
	secs, err := strconv.Atoi(os.Getenv("KUBEFORGE_CPUPROFILE_SECONDS"))
	if err != nil || secs <= 0 {
		secs = 15
	}
	delay, _ := strconv.Atoi(os.Getenv("KUBEFORGE_CPUPROFILE_DELAY"))
	start := func() {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d.pprof", name, os.Getpid())))
		if err != nil {
			fmt.Fprintf(os.Stderr, "KUBEFORGE_CPUPROFILE: %v\n", err)
			return
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(os.Stderr, "KUBEFORGE_CPUPROFILE: %v\n", err)
			f.Close()
			return
		}
		time.AfterFunc(time.Duration(secs)*time.Second, func() {
			pprof.StopCPUProfile()
			f.Close()
		})
	}
	if delay <= 0 {
		start()
		return
	}
	time.AfterFunc(time.Duration(delay)*time.Second, start)
}

// componentCall finds the component args ask for, and its arguments.
func componentCall(args []string) (Component, []string, bool) {
	if len(args) >= 3 && args[1] == ComponentCommand {
		if c, ok := Lookup(args[2]); ok {
			return c, args[3:], true
		}
		return Component{}, nil, false
	}
	if base := filepath.Base(args[0]); base != "kubeforge" {
		if c, ok := Lookup(base); ok {
			return c, args[1:], true
		}
	}
	return Component{}, nil, false
}
