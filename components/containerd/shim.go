package containerd

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/manager"
	"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/task"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/containerd/v2/plugins"
	"github.com/containerd/plugin"
	"github.com/containerd/plugin/registry"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/fsutil"
)

// ShimName is the executable name containerd looks for to run
// io.containerd.runc.v2 tasks. kubeforge serves it itself, through a link
// of that name to its own executable.
const ShimName = "containerd-shim-runc-v2"

// runtimeName is the runtime the shim serves.
const runtimeName = "io.containerd.runc.v2"

// IsShim reports whether args (a full argv) ask the executable to act as
// the runc v2 shim. containerd starts the shim through its link (argv[0]
// ends in containerd-shim-runc-v2) for the start and delete actions; the
// start action then re-executes the real executable, which the kernel
// names by its resolved path, with the shim's own flags
// ("-namespace NS -id ID -address ADDR"). Both forms are recognised: no
// kubeforge command starts with the single-dash -namespace flag.
func IsShim(args []string) bool {
	if len(args) == 0 {
		return false
	}
	if filepath.Base(args[0]) == ShimName {
		return true
	}
	return len(args) >= 3 && args[1] == "-namespace"
}

// ShimMain serves as containerd's runc v2 shim and returns the exit code.
// args is the full argv. Call it before anything else initialises: it
// replaces the process-wide plugin registry (which holds the daemon's
// plugins in a multicall binary) with the shim's task plugin, and parses
// the shim flags with a fresh standard flag set.
func ShimMain(args []string) int {
	registry.Reset()
	registerTaskPlugin()

	// The shim library parses os.Args with the global flag set; other
	// packages of this binary may have registered flags there (-v…).
	os.Args = args
	flag.CommandLine = flag.NewFlagSet(args[0], flag.ExitOnError)

	// RunShim exits the process itself on failure.
	shim.RunShim(context.Background(), manager.NewShimManager(runtimeName))
	return 0
}

// registerTaskPlugin is what the upstream shim gets from importing
// cmd/containerd-shim-runc-v2/task/plugin. That package registers the
// plugin in its init function, which would put a shim task service into
// the daemon's registry too, so kubeforge registers it only in shim mode.
func registerTaskPlugin() {
	registry.Register(&plugin.Registration{
		Type: plugins.TTRPCPlugin,
		ID:   "task",
		Requires: []plugin.Type{
			plugins.EventPlugin,
			plugins.InternalPlugin,
		},
		InitFn: func(ic *plugin.InitContext) (any, error) {
			pp, err := ic.GetByID(plugins.EventPlugin, "publisher")
			if err != nil {
				return nil, err
			}
			ss, err := ic.GetByID(plugins.InternalPlugin, "shutdown")
			if err != nil {
				return nil, err
			}
			return task.NewTaskService(ic.Context, pp.(shim.Publisher), ss.(shutdown.Service))
		},
	})
}

// ShimLinkPath is the logical path of the shim link: <StateDir>/bin/containerd-shim-runc-v2.
func ShimLinkPath(p config.Paths) string {
	return filepath.Join(p.StateDir, "bin", ShimName)
}

// EnsureShimLink puts the runc v2 shim at ShimLinkPath(p) and returns that
// logical path, which is Options.ShimPath: the small standalone shim when
// the binary embeds one (make build does), written only when it differs;
// otherwise a symlink to the running executable, which then serves as the
// shim (replacing a link to anything else, atomically).
func EnsureShimLink(p config.Paths) (string, error) {
	logical := ShimLinkPath(p)
	if len(embeddedShim) > 0 {
		if _, err := fsutil.WriteFile(p.Host(logical), embeddedShim, 0o755); err != nil {
			return "", fmt.Errorf("runc shim: %w", err)
		}
		return logical, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("runc shim link: find own executable: %w", err)
	}
	if self, err = filepath.EvalSymlinks(self); err != nil {
		return "", fmt.Errorf("runc shim link: %w", err)
	}
	if err := ensureSymlink(p.Host(logical), self); err != nil {
		return "", fmt.Errorf("runc shim link: %w", err)
	}
	return logical, nil
}

// ensureSymlink makes link point at target: unchanged when it already
// does, else a new link renamed over the old path.
func ensureSymlink(link, target string) error {
	// Missing, stale, or not a link at all (a copied file): replaced below.
	if cur, err := os.Readlink(link); err == nil && cur == target {
		return nil
	}
	dir := filepath.Dir(link)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+filepath.Base(link)+".tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, link); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}
