package preflight

import (
	"bufio"
	"bytes"
	"io/fs"
	"net/netip"
	"strings"
)

// System is every fact about the host that the checks read. HostSystem
// answers from the running machine; tests use a fake. Paths given to
// ReadFile, Stat and ReadDir are logical paths (/etc/kubernetes/admin.conf):
// the host implementation redirects them under config.Paths.Root, except
// kernel interfaces under /proc and /sys, which always describe the running
// kernel.
type System interface {
	// EUID is the effective user id of this process.
	EUID() int
	// NumCPU is the number of CPUs this process may use.
	NumCPU() int
	// MemTotal is the total usable RAM in bytes.
	MemTotal() (uint64, error)

	ReadFile(path string) ([]byte, error)
	Stat(path string) (fs.FileInfo, error)
	ReadDir(path string) ([]fs.DirEntry, error)

	// PortFree reports whether a TCP listener can be bound on address:port
	// (address "" means every interface) by binding one and closing it.
	// An error wrapping syscall.EADDRINUSE means the port is taken.
	PortFree(address string, port int) error

	// LookPath finds an executable in PATH.
	LookPath(file string) (string, error)

	// Hostname is the kernel's host name.
	Hostname() (string, error)
	// ResolveLocal resolves name without sending anything over the network:
	// an IP literal is itself, otherwise the entries of /etc/hosts. It
	// returns no addresses (and no error) when the name is unknown locally.
	ResolveLocal(name string) ([]netip.Addr, error)
	// InterfaceAddrs lists the addresses of this node's network interfaces.
	InterfaceAddrs() ([]netip.Addr, error)

	// CgroupLayout tells how cgroups are mounted at /sys/fs/cgroup.
	CgroupLayout() (CgroupLayout, error)
	// PID1IsSystemd reports whether the init process is systemd.
	PID1IsSystemd() bool

	// Getenv reads an environment variable (proxy settings).
	Getenv(key string) string
}

// CgroupLayout is how the cgroup hierarchies are mounted.
type CgroupLayout string

const (
	// CgroupUnknown means no cgroup filesystem was recognised at /sys/fs/cgroup.
	CgroupUnknown CgroupLayout = ""
	// CgroupV1 is the legacy layout: one v1 hierarchy per controller.
	CgroupV1 CgroupLayout = "v1"
	// CgroupHybrid is v1 hierarchies plus cgroup2 at /sys/fs/cgroup/unified.
	CgroupHybrid CgroupLayout = "hybrid"
	// CgroupV2 is the unified hierarchy mounted at /sys/fs/cgroup.
	CgroupV2 CgroupLayout = "v2"
)

// Kernel interface paths the checks read through System.
const (
	procSwaps             = "/proc/swaps"
	procFilesystems       = "/proc/filesystems"
	procCgroups           = "/proc/cgroups"
	procNamespaces        = "/proc/self/ns"
	procBridge            = "/proc/sys/net/bridge"
	bridgeNFCallIptables  = "/proc/sys/net/bridge/bridge-nf-call-iptables"
	ipv4Forward           = "/proc/sys/net/ipv4/ip_forward"
	ipv6DefaultForwarding = "/proc/sys/net/ipv6/conf/default/forwarding"
	cgroupV2Controllers   = "/sys/fs/cgroup/cgroup.controllers"
	cgroupUnifiedCtrls    = "/sys/fs/cgroup/unified/cgroup.controllers"
)

// parseHosts returns the addresses /etc/hosts content gives for name
// (case-insensitive), in file order, without duplicates.
func parseHosts(content []byte, name string) []netip.Addr {
	var out []netip.Addr
	seen := map[netip.Addr]bool{}
	sc := bufio.NewScanner(bytes.NewReader(content))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		addr, err := netip.ParseAddr(fields[0])
		if err != nil {
			continue
		}
		addr = addr.WithZone("")
		for _, h := range fields[1:] {
			if strings.EqualFold(strings.TrimSuffix(h, "."), strings.TrimSuffix(name, ".")) && !seen[addr] {
				seen[addr] = true
				out = append(out, addr)
			}
		}
	}
	return out
}

// parseProcCgroups returns the v1 controllers that are enabled and mounted on
// a v1 hierarchy (hierarchy id not 0), from /proc/cgroups.
func parseProcCgroups(content []byte) map[string]bool {
	out := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(content))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		if f[1] != "0" && f[3] == "1" {
			out[f[0]] = true
		}
	}
	return out
}

// parseControllers reads a cgroup2 cgroup.controllers file.
func parseControllers(content []byte) map[string]bool {
	out := map[string]bool{}
	for _, c := range strings.Fields(string(content)) {
		out[c] = true
	}
	return out
}

// parseSwaps returns the swap devices listed in /proc/swaps (header skipped).
func parseSwaps(content []byte) []string {
	var out []string
	lines := strings.Split(string(content), "\n")
	for i, l := range lines {
		f := strings.Fields(l)
		if i == 0 || len(f) == 0 {
			continue // header, blank
		}
		out = append(out, f[0])
	}
	return out
}

// parseFilesystems returns the filesystem types in /proc/filesystems.
func parseFilesystems(content []byte) map[string]bool {
	out := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(content))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 {
			out[f[len(f)-1]] = true
		}
	}
	return out
}
