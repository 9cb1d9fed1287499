// Package hosttools lets a component running in a container of the
// self-image (which holds only the kubeforge executable) run the host's
// network tools. kube-proxy execs iptables, ip6tables, nft and conntrack;
// its pod mounts the host's root at HostRootDir, and the component puts a
// directory of links named like those tools first on its PATH. Started
// through such a link, a small trampoline program (embedded in kubeforge by
// `make build`, see ./trampoline; kubeforge itself without it) chroots into
// the host root and execs the host's own tool (with the host's own
// libraries), in the pod's network namespace, which for kube-proxy is the
// node's.
package hosttools

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// HostRootEnv names the directory where the host's root is mounted; the
// links only act when it is set.
const HostRootEnv = "KUBEFORGE_HOST_ROOT"

// HostRootDir is where kubeforge's kube-proxy pod mounts the host's root.
const HostRootDir = "/host"

// Tools are the host programs kube-proxy may run.
var Tools = []string{
	"iptables", "iptables-save", "iptables-restore",
	"ip6tables", "ip6tables-save", "ip6tables-restore",
	"iptables-nft", "iptables-nft-save", "iptables-nft-restore",
	"ip6tables-nft", "ip6tables-nft-save", "ip6tables-nft-restore",
	"iptables-legacy", "iptables-legacy-save", "iptables-legacy-restore",
	"ip6tables-legacy", "ip6tables-legacy-save", "ip6tables-legacy-restore",
	"nft", "conntrack", "ipset",
}

// hostPath is where the tools are looked up inside the host root.
var hostPath = []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// IsTool reports whether args[0] names a host tool and a host root is set.
func IsTool(args []string) bool {
	return len(args) > 0 && os.Getenv(HostRootEnv) != "" && slices.Contains(Tools, filepath.Base(args[0]))
}

// Exec chroots into the host root and replaces the process with the
// host's tool; it returns only on failure, with the exit code to use.
func Exec(args []string) int {
	root := os.Getenv(HostRootEnv)
	name := filepath.Base(args[0])
	if err := syscall.Chroot(root); err != nil {
		fmt.Fprintf(os.Stderr, "kubeforge: run the host's %s: chroot %s: %v\n", name, root, err)
		return 127
	}
	_ = os.Chdir("/")
	env := []string{"PATH=" + strings.Join(hostPath, ":")}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "PATH=") && !strings.HasPrefix(e, HostRootEnv+"=") {
			env = append(env, e)
		}
	}
	for _, dir := range hostPath {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			err := syscall.Exec(p, append([]string{name}, args[1:]...), env)
			fmt.Fprintf(os.Stderr, "kubeforge: run the host's %s: %v\n", p, err)
			return 126
		}
	}
	fmt.Fprintf(os.Stderr, "kubeforge: the host has no %s (install it on the node)\n", name)
	return 127
}

// TrampolineName is the file Setup writes the embedded trampoline to.
const TrampolineName = "kubeforge-host-tool"

// Setup makes dir hold links named like every tool and returns a PATH
// value with dir first. Used by the component before it starts. The links
// point at the small trampoline program when kubeforge embeds one (make
// build does; it is written to dir), else at exe, the kubeforge executable.
func Setup(dir, exe, path string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	target, err := Install(dir)
	if err != nil {
		return "", err
	}
	if target == "" {
		target = exe
	}
	for _, t := range Tools {
		link := filepath.Join(dir, t)
		if cur, err := os.Readlink(link); err == nil && cur == target {
			continue
		}
		_ = os.Remove(link)
		if err := os.Symlink(target, link); err != nil {
			return "", err
		}
	}
	return dir + ":" + path, nil
}

// Install writes the embedded trampoline to dir/TrampolineName (left as
// it is when it holds the same bytes; else replaced by a rename, so a run
// of the old one finishes) and returns its path, or "" when kubeforge
// carries no trampoline. The trampoline also runs the pod network's CNI
// IPAM plugin (components/podnet/ipam) when called by that name.
func Install(dir string) (string, error) {
	if len(trampoline) == 0 {
		return "", nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	target := filepath.Join(dir, TrampolineName)
	if cur, err := os.ReadFile(target); err != nil || !bytes.Equal(cur, trampoline) {
		tmp := target + ".tmp"
		if err := os.WriteFile(tmp, trampoline, 0o755); err != nil {
			return "", err
		}
		if err := os.Rename(tmp, target); err != nil {
			return "", err
		}
	}
	return target, nil
}

// Embedded reports whether kubeforge carries the trampoline.
func Embedded() bool { return len(trampoline) > 0 }
