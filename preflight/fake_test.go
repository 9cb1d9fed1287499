package preflight

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os/exec"
	"path"
	"strings"
	"syscall"
	"testing/fstest"
	"time"
)

// fakeSystem is a System made of plain data. Its zero value is a bad host;
// goodHost returns one on which every check passes.
type fakeSystem struct {
	euid     int
	ncpu     int
	mem      uint64
	memErr   error
	files    map[string]string // logical path → content; a trailing "/" makes a dir
	busy     map[string]error  // "addr:port" → PortFree error
	bins     map[string]bool
	hostname string
	hosts    map[string][]netip.Addr
	ifaddrs  []netip.Addr
	layout   CgroupLayout
	systemd  bool
	env      map[string]string
}

const (
	v1ProcCgroups = `#subsys_name	hierarchy	num_cgroups	enabled
cpuset	3	1	1
cpu	1	1	1
cpuacct	2	1	1
blkio	7	1	1
memory	4	14	1
devices	5	1	1
freezer	6	1	1
net_cls	0	1	1
pids	8	1	1
`
	procFilesystemsContent = "nodev\tsysfs\nnodev\ttmpfs\nnodev\tcgroup\nnodev\tcgroup2\nnodev\toverlay\n\text4\n"
)

func goodHost() *fakeSystem {
	return &fakeSystem{
		euid: 0,
		ncpu: 2,
		mem:  24 << 30,
		files: map[string]string{
			procSwaps:                    "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n",
			procFilesystems:              procFilesystemsContent,
			procCgroups:                  v1ProcCgroups,
			cgroupUnifiedCtrls:           "hugetlb\n",
			"/proc/self/ns/net":          "",
			"/proc/self/ns/pid":          "",
			"/proc/self/ns/ipc":          "",
			"/proc/self/ns/uts":          "",
			"/proc/self/ns/mnt":          "",
			"/proc/sys/net/bridge/":      "",
			bridgeNFCallIptables:         "1\n",
			ipv4Forward:                  "1\n",
			"/etc/kubernetes/":           "",
			"/etc/kubernetes/manifests/": "",
			"/var/lib/etcd/":             "",
			cgroupV2Controllers:          "cpuset cpu io memory hugetlb pids rdma misc\n",
		},
		busy:     map[string]error{},
		bins:     map[string]bool{"runc": true, "iptables": true, "nft": true},
		hostname: "n1",
		hosts:    map[string][]netip.Addr{"n1": {netip.MustParseAddr("10.201.0.2")}},
		ifaddrs:  []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.201.0.2")},
		layout:   CgroupV2,
		env:      map[string]string{},
	}
}

// hybrid makes f a cgroup v1 hybrid host, like the build machines.
func (f *fakeSystem) hybrid() *fakeSystem {
	f.layout = CgroupHybrid
	delete(f.files, cgroupV2Controllers)
	return f
}

func (f *fakeSystem) EUID() int   { return f.euid }
func (f *fakeSystem) NumCPU() int { return f.ncpu }
func (f *fakeSystem) MemTotal() (uint64, error) {
	return f.mem, f.memErr
}

// fsys builds an fstest.MapFS of the files (paths without the leading "/").
func (f *fakeSystem) fsys() fstest.MapFS {
	m := fstest.MapFS{}
	for p, c := range f.files {
		name := strings.TrimPrefix(p, "/")
		if strings.HasSuffix(name, "/") {
			m[strings.TrimSuffix(name, "/")] = &fstest.MapFile{Mode: fs.ModeDir | 0o755, ModTime: time.Unix(0, 0)}
			continue
		}
		m[name] = &fstest.MapFile{Data: []byte(c), Mode: 0o644}
	}
	return m
}

func rel(p string) string { return strings.TrimPrefix(path.Clean(p), "/") }

func (f *fakeSystem) ReadFile(p string) ([]byte, error) {
	if c, ok := f.files[p]; ok && strings.HasPrefix(c, "!err:") {
		return nil, errors.New(strings.TrimPrefix(c, "!err:"))
	}
	return fs.ReadFile(f.fsys(), rel(p))
}

func (f *fakeSystem) Stat(p string) (fs.FileInfo, error) {
	if c, ok := f.files[p]; ok && strings.HasPrefix(c, "!err:") {
		return nil, &fs.PathError{Op: "stat", Path: p, Err: syscall.EACCES}
	}
	return fs.Stat(f.fsys(), rel(p))
}

func (f *fakeSystem) ReadDir(p string) ([]fs.DirEntry, error) {
	if c, ok := f.files[p+"/"]; ok && strings.HasPrefix(c, "!err:") {
		return nil, &fs.PathError{Op: "open", Path: p, Err: syscall.EACCES}
	}
	return fs.ReadDir(f.fsys(), rel(p))
}

func (f *fakeSystem) PortFree(address string, port int) error {
	if err, ok := f.busy[fmt.Sprintf("%s:%d", address, port)]; ok {
		return err
	}
	return nil
}

func (f *fakeSystem) LookPath(file string) (string, error) {
	if f.bins[file] {
		return "/usr/sbin/" + file, nil
	}
	return "", &exec.Error{Name: file, Err: exec.ErrNotFound}
}

func (f *fakeSystem) Hostname() (string, error) {
	if f.hostname == "" {
		return "", errors.New("no hostname")
	}
	return f.hostname, nil
}

func (f *fakeSystem) ResolveLocal(name string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(name); err == nil {
		return []netip.Addr{a}, nil
	}
	return f.hosts[name], nil
}

func (f *fakeSystem) InterfaceAddrs() ([]netip.Addr, error) { return f.ifaddrs, nil }

func (f *fakeSystem) CgroupLayout() (CgroupLayout, error) { return f.layout, nil }
func (f *fakeSystem) PID1IsSystemd() bool                 { return f.systemd }
func (f *fakeSystem) Getenv(key string) string            { return f.env[key] }

// names lists the check names in order.
func names(checks []Check) []string {
	out := make([]string, len(checks))
	for i, c := range checks {
		out[i] = c.Name()
	}
	return out
}
