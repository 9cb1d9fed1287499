package preflight

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/kubeforge/kubeforge/config"
)

// Filesystem magic numbers (linux/magic.h).
const (
	tmpfsMagic   = 0x01021994
	cgroupMagic  = 0x0027e0eb
	cgroup2Magic = 0x63677270
)

// HostSystem is the running Linux host. File paths go through p.Host,
// except /proc and /sys, which are always the running kernel's. Nothing it
// does sends a packet: ports are tested by binding a listener, names are
// resolved from /etc/hosts only.
func HostSystem(p config.Paths) System { return hostSystem{paths: p} }

type hostSystem struct{ paths config.Paths }

func (h hostSystem) path(p string) string {
	if isKernelPath(p) {
		return p
	}
	return h.paths.Host(p)
}

func isKernelPath(p string) bool {
	return p == "/proc" || p == "/sys" || strings.HasPrefix(p, "/proc/") || strings.HasPrefix(p, "/sys/")
}

func (hostSystem) EUID() int   { return os.Geteuid() }
func (hostSystem) NumCPU() int { return runtime.NumCPU() }

func (hostSystem) MemTotal() (uint64, error) {
	var info syscall.Sysinfo_t
	if err := syscall.Sysinfo(&info); err != nil {
		return 0, fmt.Errorf("sysinfo: %w", err)
	}
	return uint64(info.Totalram) * uint64(info.Unit), nil
}

func (h hostSystem) ReadFile(p string) ([]byte, error)       { return os.ReadFile(h.path(p)) }
func (h hostSystem) Stat(p string) (fs.FileInfo, error)      { return os.Stat(h.path(p)) }
func (h hostSystem) ReadDir(p string) ([]fs.DirEntry, error) { return os.ReadDir(h.path(p)) }

func (hostSystem) PortFree(address string, port int) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(address, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	return ln.Close()
}

func (hostSystem) LookPath(file string) (string, error) { return exec.LookPath(file) }
func (hostSystem) Hostname() (string, error)            { return os.Hostname() }
func (hostSystem) Getenv(key string) string             { return os.Getenv(key) }

func (hostSystem) ResolveLocal(name string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(name); err == nil {
		return []netip.Addr{a}, nil
	}
	b, err := os.ReadFile("/etc/hosts")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return parseHosts(b, name), nil
}

func (hostSystem) InterfaceAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out, nil
}

func (hostSystem) CgroupLayout() (CgroupLayout, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs("/sys/fs/cgroup", &st); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return CgroupUnknown, nil
		}
		return CgroupUnknown, fmt.Errorf("statfs /sys/fs/cgroup: %w", err)
	}
	switch st.Type {
	case cgroup2Magic:
		return CgroupV2, nil
	case tmpfsMagic:
		var u syscall.Statfs_t
		if err := syscall.Statfs("/sys/fs/cgroup/unified", &u); err == nil && u.Type == cgroup2Magic {
			return CgroupHybrid, nil
		}
		entries, err := os.ReadDir("/sys/fs/cgroup")
		if err != nil {
			return CgroupUnknown, err
		}
		for _, e := range entries {
			var s syscall.Statfs_t
			if syscall.Statfs("/sys/fs/cgroup/"+e.Name(), &s) == nil && s.Type == cgroupMagic {
				return CgroupV1, nil
			}
		}
	}
	return CgroupUnknown, nil
}

func (hostSystem) PID1IsSystemd() bool {
	if b, err := os.ReadFile("/proc/1/comm"); err == nil {
		return strings.TrimSpace(string(b)) == "systemd"
	}
	fi, err := os.Stat("/run/systemd/system") // sd_booted(3)
	return err == nil && fi.IsDir()
}
