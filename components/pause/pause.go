// Package pause is the pod sandbox process, as `kubeforge component pause`:
// the fallback of the pause image on architectures for which the image
// package has no tiny pause program. Like upstream's pause.c it waits
// forever, reaps orphans (it is PID 1 of a pod that shares its PID
// namespace) and exits 0 on SIGINT or SIGTERM.
package pause

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// Main runs the pause loop. It takes no flags but -v (print the version).
func Main(args []string) int {
	if len(args) > 0 {
		if args[0] == "-v" {
			fmt.Println("pause (kubeforge)")
			return 0
		}
		fmt.Fprintln(os.Stderr, "pause takes no arguments but -v")
		return 1
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			return 0
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
	return 0
}
