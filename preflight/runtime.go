package preflight

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kubeforge/kubeforge/internal/cri"
)

// ContainerRuntimeCheck checks a container runtime that kubeforge does not
// start (--cri-socket, nodeRegistration.criSocket) before anything is
// written: that it answers CRI v1 and is ready, its version, its cgroup
// driver against the kubelet's, whether it can start containers here (the
// oom_score_adj restriction), and which pause image pod sandboxes will use.
// The name is kubeadm's ("CRI").
type ContainerRuntimeCheck struct {
	// Endpoint is the runtime's CRI endpoint; Host its socket's path on
	// this host (Endpoint's path when empty).
	Endpoint, Host string
	// CgroupDriver is the kubelet's (KubeletConfiguration.cgroupDriver).
	CgroupDriver string
	// OwnPause is kubeforge's pause image.
	OwnPause string
	// AllowPulls lets the check pull the runtime's sandbox image when the
	// runtime lacks it (the node is not air-gapped), as kubeadm's preflight
	// pulls its images; when the pull fails kubeforge's own pause image is
	// stored under that name.
	AllowPulls bool
	// CNIBinDir is where the node service links the pod network's CNI
	// plugins for this runtime (node.ExternalCNIBinDir).
	CNIBinDir string
	// Query asks the runtime (cri.Dial, Info and, with AllowPulls,
	// PullSandbox when nil).
	Query func(ctx context.Context) (cri.Info, error)
	// CanRaiseOOMScore reports whether this process may set a negative
	// oom_score_adj (CAP_SYS_RESOURCE); read from /proc when nil.
	CanRaiseOOMScore func() bool
}

func (ContainerRuntimeCheck) Name() string { return "CRI" }

func (c ContainerRuntimeCheck) Check() (warnings, errs []error) {
	query := c.Query
	if query == nil {
		query = func(ctx context.Context) (cri.Info, error) {
			rt, err := cri.Dial(ctx, c.Endpoint, c.Host)
			if err != nil {
				return cri.Info{}, err
			}
			defer rt.Close()
			info, err := rt.Info(ctx)
			if err == nil && c.AllowPulls {
				rt.PullSandbox(ctx, &info, sandboxPullTimeout)
			}
			return info, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second+sandboxPullTimeout)
	defer cancel()
	info, err := query(ctx)
	if err != nil {
		return nil, []error{fmt.Errorf("%v; start the runtime (for containerd: `containerd &` or `systemctl start containerd`), "+
			"or give the right socket with --cri-socket / nodeRegistration.criSocket (or leave it empty to use the bundled containerd)", err)}
	}
	name := strings.TrimSpace(info.RuntimeName + " " + info.RuntimeVersion)
	if info.APIVersion != "v1" {
		errs = append(errs, fmt.Errorf("%s at %s speaks CRI %q; the kubelet needs CRI v1: upgrade the runtime (containerd 1.6 or later)", name, c.Endpoint, info.APIVersion))
	}
	if info.RuntimeName == "containerd" && !atLeast(info.RuntimeVersion, 1, 6) {
		errs = append(errs, fmt.Errorf("%s at %s is too old: kubeforge supports containerd 1.6 and later (Debian 12's package is 1.6.20); upgrade it", name, c.Endpoint))
	}
	if !info.Ready {
		errs = append(errs, fmt.Errorf("%s at %s is not ready: %s; see the runtime's log", name, c.Endpoint, info.NotReady))
	}
	switch {
	case info.CgroupDriver == "":
		warnings = append(warnings, fmt.Errorf("%s at %s does not say which cgroup driver it uses; make sure it is %q, the kubelet's", name, c.Endpoint, c.CgroupDriver))
	case info.CgroupDriver != c.CgroupDriver:
		fix := "set KubeletConfiguration.cgroupDriver to match"
		if info.CgroupDriver == cri.Systemd {
			fix = "this host has no systemd, so the runtime must use cgroupfs: for containerd set SystemdCgroup = false in " +
				"[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options] (2.x: [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]) and restart it"
		}
		errs = append(errs, fmt.Errorf("%s at %s uses the %s cgroup driver (%s) but the kubelet uses %s: %s",
			name, c.Endpoint, info.CgroupDriver, info.CgroupDriverFrom, c.CgroupDriver, fix))
	}
	canRaise := c.CanRaiseOOMScore
	if canRaise == nil {
		canRaise = hasCapSysResource
	}
	if info.RestrictOOMScoreAdj != nil && !*info.RestrictOOMScoreAdj && !canRaise() {
		errs = append(errs, fmt.Errorf("%s at %s would fail every pod sandbox here: this host's root lacks CAP_SYS_RESOURCE (a container or restricted VM), "+
			"so a negative oom_score_adj cannot be set; set restrict_oom_score_adj = true in the runtime's CRI config and restart it", name, c.Endpoint))
	}
	plan := cri.PlanSandbox(info, c.OwnPause)
	if plan.Alias || plan.Unknown {
		warnings = append(warnings, fmt.Errorf("sandbox image: %s", plan.Why))
	}
	if info.CNIBinDirs != nil && c.CNIBinDir != "" && !slices.Contains(info.CNIBinDirs, c.CNIBinDir) {
		warnings = append(warnings, fmt.Errorf("%s looks for CNI plugins in %s, where kubeforge's pod network plugin (kubeforge-ipam) is not: "+
			"pods without host networking (CoreDNS) will not start; set the runtime's CNI bin_dir to %s (kubeforge links the plugins it needs there) and restart it",
			name, strings.Join(info.CNIBinDirs, ", "), c.CNIBinDir))
	}
	return warnings, errs
}

// sandboxPullTimeout bounds the pull of the runtime's sandbox image (a
// pause image is a few hundred kilobytes).
const sandboxPullTimeout = 30 * time.Second

// atLeast compares a version like "1.6.20~ds1" or "v2.1.0" with major.minor.
func atLeast(v string, major, minor int) bool {
	v = strings.TrimPrefix(v, "v")
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return true // unknown: not refused
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil {
		return true
	}
	return ma > major || (ma == major && mi >= minor)
}

// hasCapSysResource reads CapEff of this process (CAP_SYS_RESOURCE is bit 24).
func hasCapSysResource() bool {
	b, err := os.ReadFile(filepath.Join("/proc", "self", "status"))
	if err != nil {
		return true
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err != nil || caps&(1<<24) != 0
		}
	}
	return true
}
