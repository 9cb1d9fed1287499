package preflight

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
)

// inUse is what net.Listen returns for a taken port.
func inUse() error {
	return &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", syscall.EADDRINUSE)}
}

type checkCase struct {
	name     string
	mutate   func(f *fakeSystem)
	check    func(f *fakeSystem) Check
	wantWarn [][]string // per warning: substrings it must contain
	wantErr  [][]string // per error: substrings it must contain
}

func w(s ...string) []string { return s }

func runCases(t *testing.T, cases []checkCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := goodHost()
			if tc.mutate != nil {
				tc.mutate(f)
			}
			c := tc.check(f)
			warns, errs := c.Check()
			match(t, "warning", warns, tc.wantWarn)
			match(t, "error", errs, tc.wantErr)
		})
	}
}

func match(t *testing.T, kind string, got []error, want [][]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d %ss %q, want %d", len(got), kind, got, len(want))
	}
	for i, subs := range want {
		for _, s := range subs {
			if !strings.Contains(got[i].Error(), s) {
				t.Errorf("%s %d = %q, want it to contain %q", kind, i, got[i], s)
			}
		}
	}
}

func TestIsPrivilegedUserCheck(t *testing.T) {
	chk := func(f *fakeSystem) Check { return IsPrivilegedUserCheck{Sys: f} }
	runCases(t, []checkCase{
		{name: "root", check: chk},
		{name: "not root", mutate: func(f *fakeSystem) { f.euid = 1000 }, check: chk,
			wantErr: [][]string{w("user is not running as root", "uid 1000", "sudo")}},
	})
}

func TestNumCPUCheck(t *testing.T) {
	chk := func(f *fakeSystem) Check { return NumCPUCheck{Sys: f, Min: 2} }
	runCases(t, []checkCase{
		{name: "two", check: chk},
		{name: "one", mutate: func(f *fakeSystem) { f.ncpu = 1 }, check: chk,
			wantErr: [][]string{w("the number of available CPUs 1 is less than the required 2", "at least 2 CPUs")}},
	})
}

func TestMemCheck(t *testing.T) {
	chk := func(f *fakeSystem) Check { return MemCheck{Sys: f, MinMB: ControlPlaneMemMB} }
	runCases(t, []checkCase{
		{name: "enough", check: chk},
		{name: "exactly the minimum", mutate: func(f *fakeSystem) { f.mem = 1700 << 20 }, check: chk},
		{name: "too little", mutate: func(f *fakeSystem) { f.mem = 1 << 30 }, check: chk,
			wantErr: [][]string{w("the system RAM (1024 MB) is less than the minimum 1700 MB", "more memory")}},
		{name: "unknown", mutate: func(f *fakeSystem) { f.memErr = errors.New("sysinfo: boom") }, check: chk,
			wantErr: [][]string{w("failed to get the system RAM", "boom")}},
	})
}

func TestPortCheck(t *testing.T) {
	runCases(t, []checkCase{
		{name: "free", check: func(f *fakeSystem) Check { return PortCheck{Sys: f, Port: 6443} }},
		{name: "in use on all interfaces",
			mutate:  func(f *fakeSystem) { f.busy[":6443"] = inUse() },
			check:   func(f *fakeSystem) Check { return PortCheck{Sys: f, Port: 6443, Addresses: []string{""}} },
			wantErr: [][]string{w("Port 6443 is in use", "all interfaces", "ss -ltnp 'sport = :6443'", "kubeforge reset")}},
		{name: "in use on loopback only",
			mutate: func(f *fakeSystem) { f.busy["127.0.0.1:2379"] = inUse() },
			check: func(f *fakeSystem) Check {
				return PortCheck{Sys: f, Port: 2379, Addresses: []string{"10.201.0.2", "127.0.0.1"}}
			},
			wantErr: [][]string{w("Port 2379 is in use (on 127.0.0.1)")}},
		{name: "address not on this node",
			mutate: func(f *fakeSystem) {
				f.busy["10.9.9.9:2380"] = &net.OpError{Op: "listen", Err: os.NewSyscallError("bind", syscall.EADDRNOTAVAIL)}
			},
			check:   func(f *fakeSystem) Check { return PortCheck{Sys: f, Port: 2380, Addresses: []string{"10.9.9.9"}} },
			wantErr: [][]string{w("cannot check port 2380", "10.9.9.9:2380", "belongs to this node")}},
	})
	if n := (PortCheck{Port: 10250}).Name(); n != "Port-10250" {
		t.Errorf("Name() = %q", n)
	}
}

func TestFileAvailableCheck(t *testing.T) {
	const admin = "/etc/kubernetes/admin.conf"
	chk := func(f *fakeSystem) Check { return FileAvailableCheck{Sys: f, Path: admin, Fix: resetFix} }
	runCases(t, []checkCase{
		{name: "missing", check: chk},
		{name: "exists", mutate: func(f *fakeSystem) { f.files[admin] = "x" }, check: chk,
			wantErr: [][]string{w(admin+" already exists", "kubeforge reset")}},
		{name: "unreadable dir", mutate: func(f *fakeSystem) { f.files[admin] = "!err:" }, check: chk,
			wantErr: [][]string{w("unable to check whether "+admin+" exists", "permission denied")}},
	})
	if n := (FileAvailableCheck{Path: "/etc/kubernetes/manifests/etcd.yaml"}).Name(); n != "FileAvailable--etc-kubernetes-manifests-etcd.yaml" {
		t.Errorf("Name() = %q", n)
	}
}

func TestDirAvailableCheck(t *testing.T) {
	chk := func(f *fakeSystem) Check {
		return DirAvailableCheck{Sys: f, Path: "/var/lib/etcd", Fix: "run `kubeforge reset`"}
	}
	runCases(t, []checkCase{
		{name: "empty", check: chk},
		{name: "missing", mutate: func(f *fakeSystem) { delete(f.files, "/var/lib/etcd/") }, check: chk},
		{name: "not empty", mutate: func(f *fakeSystem) { f.files["/var/lib/etcd/member/snap/db"] = "x" }, check: chk,
			wantErr: [][]string{w("/var/lib/etcd is not empty", "kubeforge reset")}},
		{name: "unreadable", mutate: func(f *fakeSystem) { f.files["/var/lib/etcd/"] = "!err:" }, check: chk,
			wantErr: [][]string{w("unable to check if /var/lib/etcd is empty")}},
	})
	if n := (DirAvailableCheck{Path: "/var/lib/etcd"}).Name(); n != "DirAvailable--var-lib-etcd" {
		t.Errorf("Name() = %q", n)
	}
}

func TestFileContentCheck(t *testing.T) {
	chk := func(f *fakeSystem) Check { return forwardingCheck(f, "10.201.0.2") }
	fix := "sysctl -w net.ipv4.ip_forward=1"
	runCases(t, []checkCase{
		{name: "on", check: chk},
		{name: "off", mutate: func(f *fakeSystem) { f.files[ipv4Forward] = "0\n" }, check: chk,
			wantErr: [][]string{w("/proc/sys/net/ipv4/ip_forward contents are not set to 1", fix)}},
		{name: "missing", mutate: func(f *fakeSystem) { delete(f.files, ipv4Forward) }, check: chk,
			wantErr: [][]string{w("/proc/sys/net/ipv4/ip_forward does not exist", fix)}},
		{name: "unreadable", mutate: func(f *fakeSystem) { f.files[ipv4Forward] = "!err:EIO" }, check: chk,
			wantErr: [][]string{w("could not be read", "EIO")}},
		{name: "ipv6 off", mutate: func(f *fakeSystem) { f.files[ipv6DefaultForwarding] = "0" },
			check:   func(f *fakeSystem) Check { return forwardingCheck(f, "fd00::2") },
			wantErr: [][]string{w(ipv6DefaultForwarding, "sysctl -w net.ipv6.conf.default.forwarding=1")}},
	})
	if n := chk(goodHost()).Name(); n != "FileContent--proc-sys-net-ipv4-ip_forward" {
		t.Errorf("Name() = %q", n)
	}
}

func TestInPathCheck(t *testing.T) {
	runc := func(f *fakeSystem) Check {
		return InPathCheck{Sys: f, Executables: []string{"runc"}, Mandatory: true, Fix: "`apt-get install runc`"}
	}
	ipt := func(f *fakeSystem) Check {
		return InPathCheck{Sys: f, Executables: []string{"iptables", "nft"}, Fix: "`apt-get install iptables`"}
	}
	runCases(t, []checkCase{
		{name: "runc present", check: runc},
		{name: "runc missing", mutate: func(f *fakeSystem) { delete(f.bins, "runc") }, check: runc,
			wantErr: [][]string{w("runc not found in system path", "apt-get install runc")}},
		{name: "nft only", mutate: func(f *fakeSystem) { delete(f.bins, "iptables") }, check: ipt},
		{name: "no packet filter", mutate: func(f *fakeSystem) { f.bins = nil }, check: ipt,
			wantWarn: [][]string{w("neither iptables nor nft found in system path", "apt-get install iptables")}},
	})
	if n := ipt(goodHost()).Name(); n != "FileExisting-iptables" {
		t.Errorf("Name() = %q", n)
	}
	if n := runc(goodHost()).Name(); n != "FileExisting-runc" {
		t.Errorf("Name() = %q", n)
	}
}

func TestSwapCheck(t *testing.T) {
	chk := func(f *fakeSystem) Check { return SwapCheck{Sys: f} }
	runCases(t, []checkCase{
		{name: "off", check: chk},
		{name: "no /proc/swaps", mutate: func(f *fakeSystem) { delete(f.files, procSwaps) }, check: chk},
		{name: "on", mutate: func(f *fakeSystem) {
			f.files[procSwaps] += "/dev/sda2                               partition\t1998844\t\t0\t\t-2\n"
		}, check: chk,
			wantWarn: [][]string{w("swap is on (/dev/sda2)", "swapoff -a", "/etc/fstab")}},
	})
}

func TestSystemVerificationCheck(t *testing.T) {
	chk := func(f *fakeSystem) Check { return SystemVerificationCheck{Sys: f} }
	v1Warn := w("cgroup v1 hybrid (cgroup2 only at /sys/fs/cgroup/unified)", "failCgroupV1: false", "cgroupDriver: cgroupfs", "PID 1 is not systemd")
	runCases(t, []checkCase{
		{name: "v2", check: chk},
		{name: "v2 without pids", mutate: func(f *fakeSystem) { f.files[cgroupV2Controllers] = "cpuset cpu io memory\n" }, check: chk,
			wantErr: [][]string{w("missing required cgroups: pids", "cgroup v2")}},
		{name: "hybrid", mutate: func(f *fakeSystem) { f.hybrid() }, check: chk,
			wantWarn: [][]string{v1Warn}},
		{name: "hybrid with systemd", mutate: func(f *fakeSystem) { f.hybrid().systemd = true }, check: chk,
			wantWarn: [][]string{w("failCgroupV1: false", "cgroupDriver: systemd")}},
		{name: "hybrid, pids only on the unified hierarchy", mutate: func(f *fakeSystem) {
			f.hybrid()
			f.files[procCgroups] = strings.Replace(v1ProcCgroups, "pids\t8\t1\t1", "pids\t0\t1\t1", 1)
			f.files[cgroupUnifiedCtrls] = "pids\n"
		}, check: chk, wantWarn: [][]string{v1Warn}},
		{name: "v1 without memory", mutate: func(f *fakeSystem) {
			f.hybrid().layout = CgroupV1
			f.files[procCgroups] = strings.Replace(v1ProcCgroups, "memory\t4\t14\t1", "memory\t4\t14\t0", 1)
		}, check: chk,
			wantWarn: [][]string{w("this host uses cgroup v1,", "failCgroupV1: false")},
			wantErr:  [][]string{w("missing required cgroups: memory", "cgroup v1")}},
		{name: "no cgroups", mutate: func(f *fakeSystem) { f.layout = CgroupUnknown }, check: chk,
			wantErr: [][]string{w("no cgroup filesystem is mounted at /sys/fs/cgroup", "mount cgroups")}},
	})
}

func TestKernelFeaturesCheck(t *testing.T) {
	chk := func(f *fakeSystem) Check { return KernelFeaturesCheck{Sys: f} }
	runCases(t, []checkCase{
		{name: "all there", check: chk},
		{name: "no overlay", mutate: func(f *fakeSystem) {
			f.files[procFilesystems] = strings.Replace(procFilesystemsContent, "overlay", "fuse", 1)
		}, check: chk,
			wantErr: [][]string{w("the overlay filesystem is not available", "modprobe overlay")}},
		{name: "no pid and ipc namespaces", mutate: func(f *fakeSystem) {
			delete(f.files, "/proc/self/ns/pid")
			delete(f.files, "/proc/self/ns/ipc")
		}, check: chk,
			wantErr: [][]string{w("namespaces containers need: pid, ipc", "CONFIG_NAMESPACES")}},
		{name: "no br_netfilter", mutate: func(f *fakeSystem) {
			delete(f.files, "/proc/sys/net/bridge/")
			delete(f.files, bridgeNFCallIptables)
		}, check: chk,
			wantWarn: [][]string{w("bridge netfilter is not available", "modprobe br_netfilter")}},
		{name: "bridge-nf-call-iptables off", mutate: func(f *fakeSystem) { f.files[bridgeNFCallIptables] = "0\n" }, check: chk,
			wantWarn: [][]string{w("bridge-nf-call-iptables is not set to 1", "sysctl -w net.bridge.bridge-nf-call-iptables=1")}},
	})
}

func TestHostnameCheck(t *testing.T) {
	named := func(n string) func(f *fakeSystem) Check {
		return func(f *fakeSystem) Check { return HostnameCheck{Sys: f, NodeName: n} }
	}
	runCases(t, []checkCase{
		{name: "resolves to own address", check: named("n1")},
		{name: "host name, lower-cased", mutate: func(f *fakeSystem) { f.hostname = "N1" }, check: named("")},
		{name: "resolves to loopback", mutate: func(f *fakeSystem) {
			f.hosts["n2"] = []netip.Addr{netip.MustParseAddr("127.0.1.1")}
		}, check: named("n2")},
		{name: "IP literal of this node", check: named("10.201.0.2")},
		{name: "not in /etc/hosts", check: named("n9"),
			wantWarn: [][]string{w(`hostname "n9" could not be resolved locally`, "/etc/hosts", "<node address> n9")}},
		{name: "resolves elsewhere", mutate: func(f *fakeSystem) {
			f.hosts["n3"] = []netip.Addr{netip.MustParseAddr("10.201.0.3")}
		}, check: named("n3"),
			wantWarn: [][]string{w(`hostname "n3" resolves to 10.201.0.3, which is not an address of this node`, "/etc/hosts")}},
		{name: "invalid name", check: named("My_Node"),
			wantWarn: [][]string{w(`invalid node name format "My_Node"`, "RFC 1123"), w("could not be resolved locally")}},
		{name: "no host name", mutate: func(f *fakeSystem) { f.hostname = "" }, check: named(""),
			wantWarn: [][]string{w("cannot get the host name", "pass the node name")}},
	})
}

func TestValidateNodeName(t *testing.T) {
	for name, ok := range map[string]bool{
		"n1": true, "node-1.example.com": true, "a": true,
		"N1": false, "-n": false, "n-": false, "n..1": false, "n_1": false, "": false,
		strings.Repeat("a", 64): false, strings.Repeat("a.", 127) + "a": false, strings.Repeat("a.", 126) + "a": true,
	} {
		if got := len(validateNodeName(name)) == 0; got != ok {
			t.Errorf("validateNodeName(%q) ok = %v, want %v", name, got, ok)
		}
	}
}

func TestHTTPProxyCheck(t *testing.T) {
	chk := func(host string) func(f *fakeSystem) Check {
		return func(f *fakeSystem) Check { return HTTPProxyCheck{Sys: f, Host: host} }
	}
	env := func(kv ...string) func(f *fakeSystem) {
		return func(f *fakeSystem) {
			for i := 0; i < len(kv); i += 2 {
				f.env[kv[i]] = kv[i+1]
			}
		}
	}
	proxied := [][]string{w(`connection to "https://10.201.0.2" uses proxy "http://proxy:3128" (from HTTPS_PROXY)`, "add 10.201.0.2 to NO_PROXY")}
	runCases(t, []checkCase{
		{name: "no proxy", check: chk("10.201.0.2")},
		{name: "empty host", mutate: env("HTTPS_PROXY", "http://proxy:3128"), check: chk("")},
		{name: "proxied", mutate: env("HTTPS_PROXY", "http://proxy:3128"), check: chk("10.201.0.2"), wantWarn: proxied},
		{name: "lower case variable", mutate: env("https_proxy", "http://proxy:3128"), check: chk("10.201.0.2"),
			wantWarn: [][]string{w("(from https_proxy)")}},
		{name: "http_proxy does not apply to https", mutate: env("HTTP_PROXY", "http://proxy:3128"), check: chk("10.201.0.2")},
		{name: "NO_PROXY address", mutate: env("HTTPS_PROXY", "http://proxy:3128", "NO_PROXY", "example.com, 10.201.0.2"), check: chk("10.201.0.2")},
		{name: "no_proxy CIDR", mutate: env("HTTPS_PROXY", "http://proxy:3128", "no_proxy", "10.201.0.0/16"), check: chk("10.201.0.2")},
		{name: "NO_PROXY star", mutate: env("HTTPS_PROXY", "http://proxy:3128", "NO_PROXY", "*"), check: chk("10.201.0.2")},
		{name: "NO_PROXY other CIDR", mutate: env("HTTPS_PROXY", "http://proxy:3128", "NO_PROXY", "10.0.0.0/16,10.201.0.2.nip.io"), check: chk("10.201.0.2"), wantWarn: proxied},
		{name: "NO_PROXY domain", mutate: env("HTTPS_PROXY", "http://proxy:3128", "NO_PROXY", ".example.com"), check: chk("cp.example.com")},
		{name: "loopback never proxied", mutate: env("HTTPS_PROXY", "http://proxy:3128"), check: chk("127.0.0.1")},
		{name: "IPv6", mutate: env("HTTPS_PROXY", "http://proxy:3128"), check: chk("fd00::2"),
			wantWarn: [][]string{w(`"https://[fd00::2]"`)}},
		{name: "password redacted", mutate: env("HTTPS_PROXY", "http://me:secret@proxy:3128"), check: chk("10.201.0.2"),
			wantWarn: [][]string{w("http://me:xxxxx@proxy:3128")}},
	})
}

func TestHTTPProxyCIDRCheck(t *testing.T) {
	chk := func(cidr string) func(f *fakeSystem) Check {
		return func(f *fakeSystem) Check { return HTTPProxyCIDRCheck{Sys: f, CIDR: cidr} }
	}
	proxy := func(f *fakeSystem) { f.env["HTTPS_PROXY"] = "http://proxy:3128" }
	runCases(t, []checkCase{
		{name: "no proxy", check: chk("10.96.0.0/12")},
		{name: "excluded", mutate: func(f *fakeSystem) { proxy(f); f.env["NO_PROXY"] = "10.96.0.0/12" }, check: chk("10.96.0.0/12")},
		{name: "proxied", mutate: proxy, check: chk("10.96.0.0/12"),
			wantWarn: [][]string{w(`connection to "10.96.0.0/12" uses proxy`, "add 10.96.0.0/12 to NO_PROXY")}},
		{name: "invalid", check: chk("10.96.0.0"), wantErr: [][]string{w(`error parsing CIDR "10.96.0.0"`)}},
	})
}

func TestParsers(t *testing.T) {
	hosts := []byte("127.0.0.1 localhost\n# 10.0.0.1 n1\n10.201.0.2 N1.example.com n1 # the node\n::1 localhost n1\n10.201.0.2 n1\nbogus n1\n")
	if got := fmt.Sprint(parseHosts(hosts, "n1")); got != "[10.201.0.2 ::1]" {
		t.Errorf("parseHosts(n1) = %s", got)
	}
	if got := fmt.Sprint(parseHosts(hosts, "n1.example.com.")); got != "[10.201.0.2]" {
		t.Errorf("parseHosts(n1.example.com.) = %s", got)
	}
	if got := parseHosts(hosts, "n2"); len(got) != 0 {
		t.Errorf("parseHosts(n2) = %s", got)
	}
	got := parseProcCgroups([]byte(v1ProcCgroups))
	if !got["memory"] || got["net_cls"] || !got["pids"] {
		t.Errorf("parseProcCgroups = %v", got)
	}
	if s := parseSwaps([]byte("Filename Type Size Used Priority\n/swapfile file 10 0 -2\n/dev/sdb1 partition 10 0 -3\n\n")); fmt.Sprint(s) != "[/swapfile /dev/sdb1]" {
		t.Errorf("parseSwaps = %v", s)
	}
	if fsys := parseFilesystems([]byte(procFilesystemsContent)); !fsys["overlay"] || !fsys["ext4"] || fsys["nodev"] {
		t.Errorf("parseFilesystems = %v", fsys)
	}
}
