// Package etcd runs the etcd server compiled in from
// go.etcd.io/etcd/server/v3 (etcdmain), with exactly etcd's flags.
package etcd

import (
	"os"
	"runtime/debug"
	"strings"

	etcdversion "go.etcd.io/etcd/api/v3/version"
	"go.etcd.io/etcd/server/v3/etcdmain"
)

// Main runs etcd with its upstream flags (args excludes the program name)
// and returns its exit code. etcd exits the process itself on most paths
// (flag errors, --version, shutdown); Main returns 0 only if it returns.
func Main(args []string) int {
	stampVersion()
	argv := append([]string{"etcd"}, args...)
	// etcd's gateway and grpc-proxy subcommands parse os.Args themselves.
	os.Args = argv
	etcdmain.Main(argv)
	return 0
}

// stampVersion makes etcd report the version of its server module. The
// version string lives in go.etcd.io/etcd/api/v3, which the Kubernetes
// client libraries pull to a newer patch release than the server compiled
// in; the server is what runs, so report it (the minor version, which etcd
// uses for cluster compatibility, is the same).
func stampVersion() {
	if v := serverVersion(); v != "" {
		etcdversion.Version = v
	}
}

func serverVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, m := range bi.Deps {
		if m.Path != "go.etcd.io/etcd/server/v3" {
			continue
		}
		v := m.Version
		// A replace by a directory (make build's patched copy, see
		// hack/patches) reports "(devel)": the required version stands.
		if m.Replace != nil && m.Replace.Version != "" && m.Replace.Version != "(devel)" {
			v = m.Replace.Version
		}
		v = strings.TrimPrefix(v, "v")
		// Keep the API module's version if the server's is a pseudo-version
		// or has another minor: only patch levels may differ.
		if strings.Count(v, ".") != 2 || strings.Contains(v, "-") {
			return ""
		}
		if !strings.HasPrefix(v, etcdversion.APIVersion+".") {
			return ""
		}
		return v
	}
	return ""
}
