package containerd

import (
	"fmt"
	"os"
)

// Main runs the containerd daemon with containerd's own command line: args
// is a full argv, for example {"containerd", "--config", path}. It returns
// the process exit code once the daemon has shut down (on SIGTERM/SIGINT).
func Main(args []string) int {
	if len(args) == 0 {
		args = []string{"containerd"}
	}
	if err := runDaemon(args); err != nil {
		fmt.Fprintln(os.Stderr, "containerd:", err)
		return 1
	}
	return 0
}
