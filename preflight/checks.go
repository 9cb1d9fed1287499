package preflight

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Minimums for a control-plane node (kubeadm's ControlPlaneNumCPU and ControlPlaneMem).
const (
	ControlPlaneNumCPU = 2
	ControlPlaneMemMB  = 1700
)

// resetFix is what to do about leftovers of a previous cluster.
const resetFix = "this host already runs a cluster or holds the leftovers of one: run `kubeforge reset` first"

func pathName(prefix, path string) string {
	return prefix + "-" + strings.ReplaceAll(path, "/", "-")
}

// IsPrivilegedUserCheck requires root.
type IsPrivilegedUserCheck struct{ Sys System }

func (IsPrivilegedUserCheck) Name() string { return "IsPrivilegedUser" }

func (c IsPrivilegedUserCheck) Check() (warnings, errs []error) {
	if uid := c.Sys.EUID(); uid != 0 {
		return nil, []error{fmt.Errorf("user is not running as root (effective uid %d); run kubeforge as root, e.g. with sudo", uid)}
	}
	return nil, nil
}

// NumCPUCheck requires at least Min CPUs.
type NumCPUCheck struct {
	Sys System
	Min int
}

func (NumCPUCheck) Name() string { return "NumCPU" }

func (c NumCPUCheck) Check() (warnings, errs []error) {
	if n := c.Sys.NumCPU(); n < c.Min {
		return nil, []error{fmt.Errorf("the number of available CPUs %d is less than the required %d; give the machine at least %d CPUs", n, c.Min, c.Min)}
	}
	return nil, nil
}

// MemCheck requires at least MinMB megabytes (MiB) of RAM.
type MemCheck struct {
	Sys   System
	MinMB uint64
}

func (MemCheck) Name() string { return "Mem" }

func (c MemCheck) Check() (warnings, errs []error) {
	total, err := c.Sys.MemTotal()
	if err != nil {
		return nil, []error{fmt.Errorf("failed to get the system RAM: %w", err)}
	}
	if mb := total / 1024 / 1024; mb < c.MinMB {
		return nil, []error{fmt.Errorf("the system RAM (%d MB) is less than the minimum %d MB; give the machine more memory", mb, c.MinMB)}
	}
	return nil, nil
}

// PortCheck requires TCP Port to be free on every address in Addresses
// ("" is every interface; no addresses means "").
type PortCheck struct {
	Sys       System
	Port      int
	Addresses []string
}

func (c PortCheck) Name() string { return fmt.Sprintf("Port-%d", c.Port) }

func (c PortCheck) Check() (warnings, errs []error) {
	addrs := c.Addresses
	if len(addrs) == 0 {
		addrs = []string{""}
	}
	for _, a := range addrs {
		err := c.Sys.PortFree(a, c.Port)
		switch {
		case err == nil:
		case errors.Is(err, syscall.EADDRINUSE):
			errs = append(errs, fmt.Errorf("Port %d is in use (on %s); stop the process listening there (`ss -ltnp 'sport = :%d'` shows it), or run `kubeforge reset` if it belongs to a previous cluster",
				c.Port, displayAddr(a), c.Port))
		default:
			errs = append(errs, fmt.Errorf("cannot check port %d: cannot listen on %s: %v; make sure the address belongs to this node",
				c.Port, net.JoinHostPort(a, strconv.Itoa(c.Port)), err))
		}
	}
	return nil, errs
}

func displayAddr(a string) string {
	if a == "" {
		return "all interfaces"
	}
	return a
}

// FileAvailableCheck requires Path not to exist. Fix is appended to the error.
type FileAvailableCheck struct {
	Sys  System
	Path string
	Fix  string
}

func (c FileAvailableCheck) Name() string { return pathName("FileAvailable", c.Path) }

func (c FileAvailableCheck) Check() (warnings, errs []error) {
	_, err := c.Sys.Stat(c.Path)
	switch {
	case err == nil:
		return nil, []error{withFix(fmt.Errorf("%s already exists", c.Path), c.Fix)}
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	default:
		return nil, []error{fmt.Errorf("unable to check whether %s exists: %w", c.Path, err)}
	}
}

// DirAvailableCheck requires Path to be missing or empty.
type DirAvailableCheck struct {
	Sys  System
	Path string
	Fix  string
}

func (c DirAvailableCheck) Name() string { return pathName("DirAvailable", c.Path) }

func (c DirAvailableCheck) Check() (warnings, errs []error) {
	entries, err := c.Sys.ReadDir(c.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, []error{fmt.Errorf("unable to check if %s is empty: %w", c.Path, err)}
	case len(entries) > 0:
		return nil, []error{withFix(fmt.Errorf("%s is not empty", c.Path), c.Fix)}
	}
	return nil, nil
}

// FileContentCheck requires Path to start with Content (a sysctl value).
type FileContentCheck struct {
	Sys     System
	Path    string
	Content string
	Fix     string
}

func (c FileContentCheck) Name() string { return pathName("FileContent", c.Path) }

func (c FileContentCheck) Check() (warnings, errs []error) {
	b, err := c.Sys.ReadFile(c.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, []error{withFix(fmt.Errorf("%s does not exist", c.Path), c.Fix)}
	case err != nil:
		return nil, []error{fmt.Errorf("%s could not be read: %w", c.Path, err)}
	case !strings.HasPrefix(string(b), c.Content):
		return nil, []error{withFix(fmt.Errorf("%s contents are not set to %s", c.Path, c.Content), c.Fix)}
	}
	return nil, nil
}

// InPathCheck requires one of Executables in PATH: an error when Mandatory,
// otherwise a warning. Its name is FileExisting-<first executable> unless
// Label is set.
type InPathCheck struct {
	Sys         System
	Executables []string
	Mandatory   bool
	Label       string
	Fix         string
}

func (c InPathCheck) Name() string {
	if c.Label != "" {
		return c.Label
	}
	if len(c.Executables) == 0 {
		return "FileExisting"
	}
	return pathName("FileExisting", c.Executables[0])
}

func (c InPathCheck) Check() (warnings, errs []error) {
	for _, e := range c.Executables {
		if _, err := c.Sys.LookPath(e); err == nil {
			return nil, nil
		}
	}
	var msg string
	switch len(c.Executables) {
	case 1:
		msg = c.Executables[0] + " not found in system path"
	case 2:
		msg = "neither " + c.Executables[0] + " nor " + c.Executables[1] + " found in system path"
	default:
		msg = "none of " + strings.Join(c.Executables, ", ") + " found in system path"
	}
	err := withFix(errors.New(msg), c.Fix)
	if c.Mandatory {
		return nil, []error{err}
	}
	return []error{err}, nil
}

// SwapCheck warns when swap is on.
type SwapCheck struct{ Sys System }

func (SwapCheck) Name() string { return "Swap" }

func (c SwapCheck) Check() (warnings, errs []error) {
	b, err := c.Sys.ReadFile(procSwaps)
	if err != nil {
		return nil, nil // no /proc/swaps: no swap support, nothing to warn about
	}
	if devs := parseSwaps(b); len(devs) > 0 {
		return []error{fmt.Errorf("swap is on (%s): the kubelet refuses to start with swap unless configured for it, and swap is supported for cgroup v2 only; "+
			"turn it off with `swapoff -a` and remove the swap entries from /etc/fstab", strings.Join(devs, ", "))}, nil
	}
	return nil, nil
}

// Controllers the kubelet and runc need, by cgroup version (as the kubelet's
// system validators require them).
var (
	requiredV1Controllers = []string{"cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids"}
	requiredV2Controllers = []string{"cpu", "cpuset", "memory", "pids"}
)

// SystemVerificationCheck verifies the cgroup setup: the layout (v1 and
// hybrid work, with a warning about how the kubelet will be configured) and
// the controllers the kubelet needs.
type SystemVerificationCheck struct{ Sys System }

func (SystemVerificationCheck) Name() string { return "SystemVerification" }

func (c SystemVerificationCheck) Check() (warnings, errs []error) {
	layout, err := c.Sys.CgroupLayout()
	if err != nil {
		return nil, []error{fmt.Errorf("cannot tell how cgroups are mounted: %w", err)}
	}
	driver, why := "cgroupfs", "PID 1 is not systemd"
	if c.Sys.PID1IsSystemd() {
		driver, why = "systemd", "PID 1 is systemd"
	}
	var have map[string]bool
	required := requiredV1Controllers
	switch layout {
	case CgroupV2:
		required = requiredV2Controllers
		b, err := c.Sys.ReadFile(cgroupV2Controllers)
		if err != nil {
			return nil, []error{fmt.Errorf("cannot read the cgroup v2 controllers: %w", err)}
		}
		have = parseControllers(b)
	case CgroupV1, CgroupHybrid:
		desc := "cgroup v1"
		if layout == CgroupHybrid {
			desc = "cgroup v1 hybrid (cgroup2 only at /sys/fs/cgroup/unified)"
		}
		warnings = append(warnings, fmt.Errorf("this host uses %s, which the kubelet deprecates and refuses by default; "+
			"kubeforge will configure the kubelet with failCgroupV1: false and cgroupDriver: %s (%s). "+
			"To move to cgroup v2, boot with systemd.unified_cgroup_hierarchy=1 or cgroup_no_v1=all", desc, driver, why))
		b, err := c.Sys.ReadFile(procCgroups)
		if err != nil {
			return warnings, []error{fmt.Errorf("cannot read the cgroup v1 controllers: %w", err)}
		}
		have = parseProcCgroups(b)
		if layout == CgroupHybrid {
			if b, err := c.Sys.ReadFile(cgroupUnifiedCtrls); err == nil {
				for k := range parseControllers(b) {
					have[k] = true
				}
			}
		}
	default:
		return nil, []error{errors.New("no cgroup filesystem is mounted at /sys/fs/cgroup; mount cgroups (cgroup2, or the v1 hierarchies, e.g. with cgroupfs-mount) and retry")}
	}
	var missing []string
	for _, r := range required {
		if !have[r] {
			missing = append(missing, r)
		}
	}
	if len(missing) > 0 {
		errs = append(errs, fmt.Errorf("missing required cgroups: %s (cgroup %s); enable these controllers in the kernel (CONFIG_CGROUP_*, cgroup_enable=) and mount them",
			strings.Join(missing, " "), layout))
	}
	return warnings, errs
}

var requiredNamespaces = []string{"net", "pid", "ipc", "uts", "mnt"}

// KernelFeaturesCheck verifies what containers need from the kernel: the
// overlay filesystem, the namespaces, and bridge netfilter (a warning).
type KernelFeaturesCheck struct{ Sys System }

func (KernelFeaturesCheck) Name() string { return "KernelFeatures" }

func (c KernelFeaturesCheck) Check() (warnings, errs []error) {
	if b, err := c.Sys.ReadFile(procFilesystems); err != nil {
		errs = append(errs, fmt.Errorf("cannot read %s: %w", procFilesystems, err))
	} else if !parseFilesystems(b)["overlay"] {
		errs = append(errs, fmt.Errorf("the overlay filesystem is not available (not in %s); containerd's overlayfs snapshotter needs it: `modprobe overlay`, or use a kernel with CONFIG_OVERLAY_FS", procFilesystems))
	}

	var missing []string
	for _, ns := range requiredNamespaces {
		if _, err := c.Sys.Stat(procNamespaces + "/" + ns); err != nil {
			missing = append(missing, ns)
		}
	}
	if len(missing) > 0 {
		errs = append(errs, fmt.Errorf("the kernel lacks namespaces containers need: %s (no %s/{%s}); use a kernel built with CONFIG_NAMESPACES and the matching CONFIG_*_NS options",
			strings.Join(missing, ", "), procNamespaces, strings.Join(missing, ",")))
	}

	if _, err := c.Sys.Stat(procBridge); err != nil {
		warnings = append(warnings, fmt.Errorf("bridge netfilter is not available (%s is missing): traffic between pods on a bridge bypasses iptables and Services break; "+
			"`modprobe br_netfilter` and add br_netfilter to /etc/modules-load.d/k8s.conf", procBridge))
	} else if b, err := c.Sys.ReadFile(bridgeNFCallIptables); err == nil && !strings.HasPrefix(string(b), "1") {
		warnings = append(warnings, fmt.Errorf("%s is not set to 1: bridged pod traffic bypasses iptables and Services break; run `sysctl -w net.bridge.bridge-nf-call-iptables=1` and persist it in /etc/sysctl.d/k8s.conf", bridgeNFCallIptables))
	}
	return warnings, errs
}

// HostnameCheck warns when the node name is not a valid node name or does
// not resolve, locally, to an address of this node. NodeName "" means the
// host name (lower case, as the kubelet registers it).
type HostnameCheck struct {
	Sys      System
	NodeName string
}

func (HostnameCheck) Name() string { return "Hostname" }

func (c HostnameCheck) Check() (warnings, errs []error) {
	name := c.NodeName
	if name == "" {
		h, err := c.Sys.Hostname()
		if err != nil {
			return []error{fmt.Errorf("cannot get the host name: %w; pass the node name explicitly", err)}, nil
		}
		name = strings.ToLower(h)
	}
	for _, msg := range validateNodeName(name) {
		warnings = append(warnings, fmt.Errorf("invalid node name format %q: %s", name, msg))
	}
	addrs, err := c.Sys.ResolveLocal(name)
	if err != nil {
		return append(warnings, fmt.Errorf("hostname %q: %w", name, err)), nil
	}
	if len(addrs) == 0 {
		return append(warnings, fmt.Errorf("hostname %q could not be resolved locally (it is not in /etc/hosts); add a line \"<node address> %s\" to /etc/hosts", name, name)), nil
	}
	own, err := c.Sys.InterfaceAddrs()
	if err != nil {
		return append(warnings, fmt.Errorf("cannot list this node's addresses: %w", err)), nil
	}
	for _, a := range addrs {
		if a.IsLoopback() || slices.Contains(own, a) {
			return warnings, nil
		}
	}
	return append(warnings, fmt.Errorf("hostname %q resolves to %s, which is not an address of this node; fix its entry in /etc/hosts", name, joinAddrs(addrs))), nil
}

func joinAddrs(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// validateNodeName checks a node name as a DNS-1123 subdomain.
func validateNodeName(name string) []string {
	var out []string
	if len(name) > 253 {
		out = append(out, "must be no more than 253 characters")
	}
	for _, label := range strings.Split(name, ".") {
		if !isDNS1123Label(label) {
			out = append(out, "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character")
			break
		}
	}
	return out
}

func isDNS1123Label(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		alnum := ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9'
		if !alnum && (ch != '-' || i == 0 || i == len(s)-1) {
			return false
		}
	}
	return true
}

// HTTPProxyCheck warns when an HTTPS connection to Host would go through a
// proxy from the environment (HTTPS_PROXY without a matching NO_PROXY).
type HTTPProxyCheck struct {
	Sys  System
	Host string
}

func (HTTPProxyCheck) Name() string { return "HTTPProxy" }

func (c HTTPProxyCheck) Check() (warnings, errs []error) {
	if c.Host == "" {
		return nil, nil
	}
	if proxy, from := proxyFor(c.Sys, c.Host); proxy != "" {
		return []error{fmt.Errorf("connection to %q uses proxy %q (from %s); if that is not intended, add %s to NO_PROXY",
			"https://"+hostForURL(c.Host), proxy, from, c.Host)}, nil
	}
	return nil, nil
}

// HTTPProxyCIDRCheck warns when HTTPS connections into CIDR (a Service or
// Pod subnet) would go through a proxy from the environment.
type HTTPProxyCIDRCheck struct {
	Sys  System
	CIDR string
}

func (HTTPProxyCIDRCheck) Name() string { return "HTTPProxyCIDR" }

func (c HTTPProxyCIDRCheck) Check() (warnings, errs []error) {
	if c.CIDR == "" {
		return nil, nil
	}
	p, err := netip.ParsePrefix(c.CIDR)
	if err != nil {
		return nil, []error{fmt.Errorf("error parsing CIDR %q: %w", c.CIDR, err)}
	}
	ip := p.Masked().Addr().Next()
	if !ip.IsValid() || !p.Contains(ip) {
		return nil, []error{fmt.Errorf("CIDR %q has no usable address", c.CIDR)}
	}
	if proxy, from := proxyFor(c.Sys, ip.String()); proxy != "" {
		return []error{fmt.Errorf("connection to %q uses proxy %q (from %s); this breaks in-cluster connections: add %s to NO_PROXY",
			c.CIDR, proxy, from, c.CIDR)}, nil
	}
	return nil, nil
}

func hostForURL(h string) string {
	if a, err := netip.ParseAddr(h); err == nil && a.Is6() {
		return "[" + h + "]"
	}
	return h
}

// proxyFor returns the (redacted) proxy an HTTPS request to host would use,
// following Go's rules (golang.org/x/net/http/httpproxy): HTTPS_PROXY,
// then https_proxy; none for localhost and loopback; NO_PROXY / no_proxy
// entries "*", IP addresses, CIDRs and domain suffixes exclude hosts.
func proxyFor(sys System, host string) (proxy, from string) {
	for _, k := range []string{"HTTPS_PROXY", "https_proxy"} {
		if v := sys.Getenv(k); v != "" {
			proxy, from = v, k
			break
		}
	}
	if proxy == "" {
		return "", ""
	}
	host = strings.ToLower(strings.Trim(host, "[]"))
	ip, ipErr := netip.ParseAddr(host)
	if host == "localhost" || ipErr == nil && ip.IsLoopback() {
		return "", ""
	}
	noProxy := sys.Getenv("NO_PROXY")
	if noProxy == "" {
		noProxy = sys.Getenv("no_proxy")
	}
	for _, e := range strings.Split(noProxy, ",") {
		e = strings.ToLower(strings.TrimSpace(e))
		if e == "" {
			continue
		}
		if e == "*" {
			return "", ""
		}
		if p, err := netip.ParsePrefix(e); err == nil {
			if ipErr == nil && p.Contains(ip) {
				return "", ""
			}
			continue
		}
		if h, _, err := net.SplitHostPort(e); err == nil {
			e = h // a port in NO_PROXY: compare hosts only
		}
		if a, err := netip.ParseAddr(strings.Trim(e, "[]")); err == nil {
			if ipErr == nil && a == ip {
				return "", ""
			}
			continue
		}
		if ipErr == nil {
			continue // a domain never matches an IP address
		}
		e = strings.TrimPrefix(strings.TrimPrefix(e, "*"), ".")
		if host == e || strings.HasSuffix(host, "."+e) {
			return "", ""
		}
	}
	return redactProxy(proxy), from
}

// redactProxy hides a password in a proxy URL.
func redactProxy(p string) string {
	u, err := url.Parse(p)
	if err != nil || u.User == nil {
		return p
	}
	return u.Redacted()
}

func withFix(err error, fix string) error {
	if fix == "" {
		return err
	}
	return fmt.Errorf("%w; %s", err, fix)
}
