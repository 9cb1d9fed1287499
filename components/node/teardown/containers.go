// Package teardown undoes, on a host, what the node service and what it
// runs leave there: containers and their runtime shims, pod cgroups,
// mounts below the kubelet's and containerd's directories, the pod
// network's bridge, routes and packet-filter rules. `kubeforge reset`
// (phases/reset.go) decides what to tear down and reports it; this
// package finds what is there and removes it. Every function works on
// the real host paths it is given.
package teardown

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/components/node/proc"
)

// Container is a container in runc's state: its namespace's state
// directory and its ID.
type Container struct {
	Root, ID string
}

// Containers lists the containers in the runc state below root (one
// directory per containerd namespace).
func Containers(root string) []Container {
	var out []Container
	namespaces, _ := os.ReadDir(root)
	for _, ns := range namespaces {
		entries, _ := os.ReadDir(filepath.Join(root, ns.Name()))
		for _, e := range entries {
			out = append(out, Container{Root: filepath.Join(root, ns.Name()), ID: e.Name()})
		}
	}
	return out
}

// ShimPIDs lists the runc shims serving the containerd at socket (their
// command line names it after -address). Only shims in this process's
// mount namespace count: another node on the same machine (its own mount
// namespace, the same socket path) has shims of its own.
func ShimPIDs(socket string) []int {
	mountNS, _ := os.Readlink("/proc/self/ns/mnt")
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ns, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "mnt")); err != nil || ns != mountNS {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if isShim(strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"), socket) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// isShim reports whether a command line is a containerd shim's serving
// the containerd at socket.
func isShim(args []string, socket string) bool {
	i := slices.Index(args, "-address")
	return i > 0 && i+1 < len(args) && args[i+1] == socket && slices.Contains(args, "-namespace")
}

// CgroupRoot is the kubelet's cgroup root: the --cgroup-root flag when
// given (the flag wins in the kubelet: a joined node's config.yaml may
// carry the first node's cgroupRoot, from the cluster's kubelet-config,
// while kubeletExtraArgs gave this node its own), else cgroupRoot of its
// configuration file (config, YAML), else "/".
func CgroupRoot(config []byte, flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	var kc kubeletv1beta1.KubeletConfiguration
	if err := yaml.Unmarshal(config, &kc); err != nil {
		return "", fmt.Errorf("read the kubelet's configuration: %w", err)
	}
	if kc.CgroupRoot != "" {
		return kc.CgroupRoot, nil
	}
	return "/", nil
}

// PodCgroups lists the kubelet's pod cgroup trees below the cgroup root:
// <root>/kubepods in every mounted hierarchy below cgroupFS
// (/sys/fs/cgroup).
func PodCgroups(cgroupFS, root string) []string {
	var out []string
	hierarchies, _ := filepath.Glob(filepath.Join(cgroupFS, "*"))
	hierarchies = append(hierarchies, cgroupFS)
	for _, h := range hierarchies {
		dir := filepath.Join(h, root, "kubepods")
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			out = append(out, dir)
		}
	}
	return out
}

// StopContainers kills and deletes the containers with runc, kills the
// shims of the containerd at socket, then kills whatever still runs in
// the pod cgroups and removes them.
func StopContainers(containers []Container, socket string, cgroups []string) error {
	var errs []error
	if len(containers) > 0 {
		runc, err := exec.LookPath("runc")
		if err != nil {
			errs = append(errs, fmt.Errorf("runc is not installed to delete the containers' state: %w", err))
		}
		for _, c := range containers {
			if runc == "" {
				break
			}
			_ = exec.Command(runc, "--root", c.Root, "kill", "--all", c.ID, "KILL").Run()
			_ = exec.Command(runc, "--root", c.Root, "delete", "--force", c.ID).Run()
		}
	}
	for _, pid := range ShimPIDs(socket) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		proc.WaitGone(context.Background(), pid, nil, 5*time.Second)
	}
	errs = append(errs, RemoveCgroups(cgroups))
	return errors.Join(errs...)
}

// RemoveCgroups kills whatever still runs in the trees, then removes them
// bottom-up, retrying while the kernel finishes tearing processes down.
func RemoveCgroups(trees []string) error {
	var dirs []string
	for _, t := range trees {
		filepath.WalkDir(t, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	for _, dir := range dirs {
		if b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil {
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	}
	slices.SortFunc(dirs, func(a, b string) int { return len(b) - len(a) })
	var last error
	for attempt := 0; attempt < 50; attempt++ {
		last = nil
		for _, dir := range dirs {
			if err := syscall.Rmdir(dir); err != nil && !errors.Is(err, syscall.ENOENT) {
				last = fmt.Errorf("remove cgroup %s: %w", dir, err)
			}
		}
		if last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return last
}
