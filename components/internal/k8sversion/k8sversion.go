// Package k8sversion stamps the Kubernetes version into
// k8s.io/component-base/version at program start, the way the upstream build
// does with -ldflags -X. Without it a plain `go build` reports
// "v0.0.0-master+$Format:%H$", and the components derive their binary
// version (feature gates, emulation version) from that string.
//
// The package must stay tiny: Go initializes packages in import-path order
// once their dependencies are ready, so this one (github.com/…) runs before
// every k8s.io/… package that could read the version during its own init.
package k8sversion

import (
	"runtime/debug"
	"strings"
	_ "unsafe" // for go:linkname

	"k8s.io/component-base/version"
)

// Fallback is used when the build carries no module information (for
// example a test binary built outside module mode).
const Fallback = "v1.37.2"

//go:linkname gitVersion k8s.io/component-base/version.gitVersion
var gitVersion string

//go:linkname gitMajor k8s.io/component-base/version.gitMajor
var gitMajor string

//go:linkname gitMinor k8s.io/component-base/version.gitMinor
var gitMinor string

//go:linkname gitCommit k8s.io/component-base/version.gitCommit
var gitCommit string

//go:linkname gitTreeState k8s.io/component-base/version.gitTreeState
var gitTreeState string

func init() { stamp(Kubernetes()) }

// Kubernetes returns the version of k8s.io/kubernetes compiled into the
// running binary, read from its build information.
func Kubernetes() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "k8s.io/kubernetes" {
				if m.Replace != nil && strings.HasPrefix(m.Replace.Version, "v1.") {
					return m.Replace.Version
				}
				if strings.HasPrefix(m.Version, "v1.") {
					return m.Version
				}
			}
		}
	}
	return Fallback
}

func stamp(v string) {
	if !strings.HasPrefix(gitVersion, "v0.0.0-master") {
		return // stamped at build time with -ldflags: keep it
	}
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return
	}
	gitVersion = v
	gitMajor, gitMinor = parts[0], parts[1]
	gitCommit = ""
	gitTreeState = "clean"
	// Get() reads the dynamic copy, which component-base's init already
	// took from the placeholder.
	_ = version.SetDynamicVersion(v)
}
