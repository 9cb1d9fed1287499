// Package gctune sets the Go garbage collector of kubeforge's long-running
// processes (the components and the node service) for a node's steady state.
//
// Go's default (GOGC=100) lets a heap grow to twice its live data before
// collecting. That is right while a component starts (few collections, so a
// faster start) but, on an idle node, most of that headroom stays resident:
// a dozen Go processes each keep up to their live heap again in garbage.
// Once the start-up is over, Steady lowers the target to SteadyPercent and
// hands the pages freed by one collection back to the kernel. Under load the
// collector then runs more often (more CPU for less memory); a process whose
// environment sets GOGC (a static pod's extraEnvs, say) keeps that value and
// is left alone.
package gctune

import (
	"os"
	"runtime/debug"
	"time"
)

const (
	// SteadyPercent is the GOGC value once started.
	SteadyPercent = 50
	// StartupGrace is how long a process keeps Go's default first.
	StartupGrace = 30 * time.Second
)

// Steady schedules the switch to SteadyPercent after StartupGrace, unless
// the environment sets GOGC. It returns at once.
func Steady() {
	schedule(os.LookupEnv, time.AfterFunc, apply)
}

func apply() {
	debug.SetGCPercent(SteadyPercent)
	debug.FreeOSMemory()
}

// schedule is Steady with its environment, timer and effect passed in.
func schedule(lookupEnv func(string) (string, bool), afterFunc func(time.Duration, func()) *time.Timer, effect func()) bool {
	if _, set := lookupEnv("GOGC"); set {
		return false
	}
	afterFunc(StartupGrace, effect)
	return true
}
