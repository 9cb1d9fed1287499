// Package supervisor is the node service itself, `kubeforge node run`: it
// runs containerd and the kubelet as child processes of this executable
// (`kubeforge component containerd|kubelet`), in dependency order and gated
// on readiness, restarts them when they die, and stops them in reverse
// order on SIGTERM or SIGINT. It imports the containerd and image packages;
// code that only needs to start, stop or inspect the service uses the
// light package components/node.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubeforge/kubeforge/components/containerd"
	"github.com/kubeforge/kubeforge/components/hosttools"
	"github.com/kubeforge/kubeforge/components/image"
	"github.com/kubeforge/kubeforge/components/lbspeaker"
	"github.com/kubeforge/kubeforge/components/node"
	"github.com/kubeforge/kubeforge/components/node/certrenew"
	"github.com/kubeforge/kubeforge/components/node/duty"
	"github.com/kubeforge/kubeforge/components/node/logship"
	"github.com/kubeforge/kubeforge/components/node/proc"
	"github.com/kubeforge/kubeforge/components/podnet"
	"github.com/kubeforge/kubeforge/components/podnet/ipam"
	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/encryption"
	"github.com/kubeforge/kubeforge/internal/cri"
	"github.com/kubeforge/kubeforge/internal/fsutil"
	"github.com/kubeforge/kubeforge/internal/progress"
	"github.com/kubeforge/kubeforge/internal/version"
	"github.com/kubeforge/kubeforge/manifests"
)

// Options configure Run.
type Options struct {
	Paths config.Paths
	// CRISocket is an external container runtime to use instead of the
	// bundled containerd ("unix://" prefix optional). Empty, or the bundled
	// socket itself, means run the bundled containerd.
	CRISocket string
	// Executable is this binary (os.Executable by default); the children
	// run `<Executable> component NAME`.
	Executable string
	// ConfigPoll is how often to look for the kubelet config; 50 ms by default.
	ConfigPoll time.Duration
	// StopTimeout bounds each child's stop before SIGKILL; 20 s by default.
	StopTimeout time.Duration
	// Progress receives lines for people; Log receives diagnostics.
	Progress *progress.Reporter
	Log      *slog.Logger
}

// Run runs the node service until ctx ends or the process gets SIGTERM,
// SIGINT or SIGUSR2, then stops the kubelet, the control plane's processes
// (when it runs them; SIGUSR2 kills them) and containerd (containers keep
// running) and returns nil. SIGHUP restarts the kubelet (to pick up a changed flags
// file or kubeconfig); SIGUSR1 stops the kubelet and keeps it stopped,
// containerd running (node.StopKubelet). It fails at once when another
// supervisor runs.
func Run(ctx context.Context, o Options) error {
	s, err := newSupervisor(o)
	if err != nil {
		return err
	}
	lock, err := node.AcquireLock(s.p)
	if err != nil {
		return err
	}
	defer lock.Release()

	ctx, stopSignals := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stopSignals()
	// SIGUSR2 (node.StopNow, for reset): stop as on SIGTERM, but kill the
	// control-plane processes instead of waiting for their graceful stop.
	ctx, stopNow := context.WithCancel(ctx)
	defer stopNow()
	usr2 := make(chan os.Signal, 1)
	signal.Notify(usr2, syscall.SIGUSR2)
	defer signal.Stop(usr2)
	go func() {
		select {
		case <-usr2:
			s.log.Info("SIGUSR2: stopping, the control plane's processes at once")
			s.killControlPlane.Store(true)
			stopNow()
		case <-ctx.Done():
		}
	}()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	go s.holdKubeletOn(ctx, usr1)

	if _, err := fsutil.WriteFile(s.p.Host(s.p.NodePIDFile()), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	defer s.cleanup()

	runErr := s.run(ctx, hup)
	s.shutdown()
	if runErr != nil && ctx.Err() == nil {
		return runErr
	}
	return nil
}

type supervisor struct {
	o      Options
	p      config.Paths
	log    *slog.Logger
	out    *progress.Reporter
	self   string
	socket string // logical path of the CRI socket the kubelet uses
	extern bool   // external container runtime

	mu          sync.Mutex
	state       node.State
	containerd  *proc.Child
	kubelet     *proc.Child
	kubeletHeld bool // stopped on request (SIGUSR1): never started again
	// duties run once the kubelet has started (see duties()).
	duties     *duty.Manager
	dutiesOnce sync.Once
	ctrdOpts   containerd.Options // what the bundled containerd was configured with
	// etcdSnapshotsFrom is when the etcd-snapshots duty first ran (see
	// etcdSnapshotSchedule).
	etcdSnapshotsFrom time.Time
	// controlPlane runs the control plane's manifests when the node's
	// settings say Processes (runControlPlane); stopControlPlane ends it
	// and cpDone is closed once it has stopped every component.
	stopControlPlane context.CancelFunc
	cpDone           chan struct{}
	cpRan            bool // runControlPlane started a runner
	// killControlPlane: the stop kills the control plane's processes
	// (SIGUSR2, for reset).
	killControlPlane atomic.Bool
}

func newSupervisor(o Options) (*supervisor, error) {
	s := &supervisor{o: o, p: o.Paths, log: o.Log, out: o.Progress}
	if s.log == nil {
		s.log = slog.Default()
	}
	if o.ConfigPoll == 0 {
		s.o.ConfigPoll = 50 * time.Millisecond
	}
	if o.StopTimeout == 0 {
		s.o.StopTimeout = 20 * time.Second
	}
	s.self = o.Executable
	if s.self == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find own executable: %w", err)
		}
		s.self = exe
	}
	s.socket = s.p.ContainerdSocket()
	if ext := strings.TrimPrefix(o.CRISocket, "unix://"); ext != "" && ext != s.socket {
		s.socket, s.extern = ext, true
	}
	s.state = node.State{
		PID:             os.Getpid(),
		StartedAt:       time.Now().UTC().Truncate(time.Second),
		CRISocket:       "unix://" + s.socket,
		ExternalRuntime: s.extern,
	}
	s.duties = duty.NewManager(duty.Options{
		Log: s.log,
		Publish: func(d node.DutyState) {
			s.update(func(st *node.State) { st.Duties = setDuty(st.Duties, d) })
		},
	}, s.dutyList()...)
	return s, nil
}

// update changes the published state.
func (s *supervisor) update(f func(*node.State)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.state)
	if s.containerd != nil {
		s.state.Containerd.PID = s.containerd.Pid()
		s.state.Containerd.Restarts = s.containerd.Restarts()
	}
	if s.kubelet != nil {
		s.state.Kubelet.PID = s.kubelet.Pid()
		s.state.Kubelet.Restarts = s.kubelet.Restarts()
	}
	if err := node.WriteState(s.p, s.state); err != nil {
		s.log.Warn("cannot publish the node service state", "err", err)
	}
}

// setDuty replaces d's entry in list (by name) or appends it.
func setDuty(list []node.DutyState, d node.DutyState) []node.DutyState {
	for i := range list {
		if list[i].Name == d.Name {
			list[i] = d
			return list
		}
	}
	return append(list, d)
}

func (s *supervisor) phase(name string) { s.update(func(st *node.State) { st.Phase = name }) }

func (s *supervisor) run(ctx context.Context, hup <-chan os.Signal) error {
	begin := time.Now()
	s.log.Info("node service starting", "pid", os.Getpid(), "executable", s.self, "criSocket", s.socket)

	// 0. The control plane, when it runs as processes: from the moment
	// its manifests are written, beside everything below.
	cpCtx, stopCP := context.WithCancel(context.WithoutCancel(ctx))
	s.mu.Lock()
	s.stopControlPlane, s.cpDone = stopCP, make(chan struct{})
	s.mu.Unlock()
	go s.runControlPlane(cpCtx)

	// 1. The container runtime.
	if s.extern {
		s.phase("waiting for the container runtime")
		s.out.Printf(node.Phase, "Using the container runtime at %s", s.socket)
	} else {
		s.phase("starting containerd")
		if err := s.startContainerd(ctx); err != nil {
			return err
		}
	}
	if err := s.waitRuntime(ctx); err != nil {
		return err
	}
	s.update(func(st *node.State) { st.Containerd.Ready = true })
	s.out.Done(node.Phase, "containerd", s.socket, begin, "The container runtime is ready at %s", s.socket)

	// 2. The images (self-image and pause), in the background.
	imagesDone := make(chan error, 1) // buffered: unread when the kubelet did not wait
	go func() { imagesDone <- s.ensureImages(ctx) }()

	// 3. The kubelet, once init (or join) has written its config, and the
	// images are in: the kubelet runs pods at once and must not find the
	// pause image missing (containerd would try to pull it). A kubelet
	// with no pod to run for a second or more starts without waiting: a
	// worker's (no static pods: its first pods come once its Node is
	// registered, seen by the DaemonSet controller and scheduled, ~1.5 s
	// after the kubelet starts, by then the import of ~0.7 s is done), one
	// that first bootstraps its client certificate, or one with no static
	// pod yet (init writes the manifests once the images are in, while
	// the kubelet starts).
	s.phase("waiting for the kubelet config")
	if err := s.waitKubeletConfig(ctx); err != nil {
		return err
	}
	if !s.kubeletWithoutPodsYet() && s.hasStaticPods() {
		if err := <-imagesDone; err != nil {
			return err
		}
	}
	if !s.extern {
		s.refreshAirGap(s.ctrdOpts)
	}
	if err := s.startKubelet(ctx); err != nil {
		return err
	}
	s.phase(node.PhaseRunning)
	s.mu.Lock()
	k := s.kubelet
	s.mu.Unlock()
	if k != nil && k.Pid() != 0 {
		s.out.Done(node.Phase, "kubelet", "", begin, "The kubelet is running (pid %d)", k.Pid())
	}

	// 4. Watch.
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			s.log.Info("SIGHUP: restarting the kubelet")
			if k != nil {
				k.Restart()
			}
		case <-tick.C:
			s.update(func(*node.State) {}) // refresh pids and restart counts
		}
	}
}

func (s *supervisor) startContainerd(ctx context.Context) error {
	shim, err := containerd.EnsureShimLink(s.p)
	if err != nil {
		return err
	}
	opts := containerd.DefaultOptions(s.p)
	opts.ShimPath = shim
	// The pod network's IPAM plugin (see podnet/ipam) sits next to the
	// shim, and that directory is one of the CNI plugin dirs.
	if err := s.ensureIPAM(s.p.Host(filepath.Dir(shim))); err != nil {
		return err
	}
	opts.CNIBinDirs = append(opts.CNIBinDirs, filepath.Dir(shim))
	s.applyRegistries(&opts)
	s.ctrdOpts = opts
	cfg, err := containerd.WriteConfig(s.p, opts)
	if err != nil {
		return err
	}
	// The shim's directory goes first on containerd's PATH: the CRI starts
	// shims by the configured path, but a restarted containerd reloads the
	// running ones by runtime name (io.containerd.runc.v2 →
	// containerd-shim-runc-v2, looked up on PATH), and one it cannot find
	// is deleted, container and all.
	env := node.PrependPath(node.WithDefaultPath(os.Environ()), filepath.Dir(s.p.Host(shim)))
	c := proc.New(proc.Spec{
		Name: "containerd",
		Args: func() ([]string, error) {
			return []string{s.self, "component", "containerd", "--config", cfg}, nil
		},
		Env:         env,
		LogFile:     s.p.Host(node.ContainerdLogFile(s.p)),
		PIDFile:     s.p.Host(node.ContainerdPIDFile(s.p)),
		Identity:    node.ContainerdIdentity,
		StopTimeout: s.o.StopTimeout,
		Log:         s.log,
	})
	s.mu.Lock()
	s.containerd = c
	s.mu.Unlock()
	if err := c.Start(ctx); err != nil {
		return err
	}
	s.update(func(*node.State) {})
	s.log.Info("containerd started", "pid", c.Pid(), "config", cfg, "log", node.ContainerdLogFile(s.p))
	return nil
}

// waitRuntime waits for the CRI to answer. A bundled containerd that keeps
// dying is restarted by its Child meanwhile; the wait goes on until ctx ends.
func (s *supervisor) waitRuntime(ctx context.Context) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := containerd.WaitReady(wctx, s.p.Host(s.socket))
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.log.Warn("the container runtime is not ready yet", "socket", s.socket, "err", err)
		s.out.Warnf(node.Phase, "The container runtime at %s is not ready after 30s: %v (see %s)",
			s.socket, err, node.ContainerdLogFile(s.p))
	}
}

// ensureImages imports the self-image and the pause image, retrying with
// backoff: the kubelet cannot run a static pod without them.
func (s *supervisor) ensureImages(ctx context.Context) error {
	begin := time.Now()
	bo := proc.Backoff{Initial: 500 * time.Millisecond, Max: 15 * time.Second}
	for {
		var err error
		if s.extern {
			err = s.ensureRuntimeImages(ctx)
		} else {
			err = image.EnsureImages(ctx, s.p, s.p.Host(s.socket))
		}
		if err == nil {
			s.update(func(st *node.State) { st.ImagesReady, st.ImagesError = true, "" })
			s.out.Done(node.Phase, "images", "", begin, "The kubeforge and pause images are in the container runtime")
			s.importArchives(ctx)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d := bo.Next(0)
		s.update(func(st *node.State) { st.ImagesError = err.Error() })
		s.log.Error("importing the images failed; retrying", "err", err, "backoff", d)
		s.out.Warnf(node.Phase, "Importing the images failed: %v; retrying in %s", err, d)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
	}
}

// ensureRuntimeImages puts the self-image and the pause image into a
// runtime kubeforge did not start, and makes sure pod sandboxes find a
// pause image there (cri.PlanSandbox); it records what it put there, for
// reset.
func (s *supervisor) ensureRuntimeImages(ctx context.Context) error {
	endpoint := "unix://" + s.socket
	rt, err := cri.Dial(ctx, endpoint, s.p.Host(s.socket))
	if err != nil {
		return err
	}
	info, err := rt.Info(ctx)
	rt.Close()
	if err != nil {
		return err
	}
	if info.RuntimeName != "containerd" {
		return fmt.Errorf("the runtime at %s is %s %s, not containerd: kubeforge imports its images only into containerd; "+
			"load %s and %s with the runtime's own tools (README: \"A node on the host's container runtime\")",
			endpoint, info.RuntimeName, info.RuntimeVersion, version.Image(), version.PauseImage())
	}
	plan := cri.PlanSandbox(info, version.PauseImage())
	alias := ""
	if plan.Alias {
		alias = plan.Image
	}
	if err := cri.AddOwned(s.p, endpoint, version.Image(), version.PauseImage()); err != nil {
		return err
	}
	if err := s.ensureCNIBinDir(); err != nil {
		return err
	}
	names, err := image.EnsureInRuntime(ctx, s.p, s.p.Host(s.socket), alias)
	if err != nil {
		return err
	}
	if err := cri.AddOwned(s.p, endpoint, names...); err != nil {
		return err
	}
	s.log.Info("images in the external runtime", "runtime", info.RuntimeName+" "+info.RuntimeVersion, "images", names, "sandbox", plan.Why)
	s.out.Printf(node.Phase, "Sandbox image: %s", plan.Why)
	return nil
}

// ensureIPAM links dir/kubeforge-ipam, the pod network's IPAM plugin, to
// the small trampoline program written into dir when kubeforge embeds one
// (make build), else to this executable, which pays its whole package
// initialisation on each of the runtime's calls.
func (s *supervisor) ensureIPAM(dir string) error {
	target, err := hosttools.Install(dir)
	if err != nil {
		return fmt.Errorf("CNI IPAM plugin: %w", err)
	}
	if target == "" {
		target = s.self
	}
	if err := ensureLink(filepath.Join(dir, ipam.Name), target); err != nil {
		return fmt.Errorf("CNI IPAM plugin link: %w", err)
	}
	return nil
}

// ensureCNIBinDir fills node.ExternalCNIBinDir with the CNI plugins the
// pod network's config names : kubeforge's IPAM plugin
// (ensureIPAM) and the host's bridge, portmap and loopback. A runtime
// kubeforge did not start finds them there when its CNI bin_dir is that
// directory (preflight says so when it is not).
func (s *supervisor) ensureCNIBinDir() error {
	dir := s.p.Host(node.ExternalCNIBinDir(s.p))
	if err := s.ensureIPAM(dir); err != nil {
		return err
	}
	for _, name := range []string{"bridge", "portmap", "loopback", "host-local"} {
		for _, from := range containerd.DefaultCNIBinDirs {
			if target := filepath.Join(from, name); fsutil.Exists(target) {
				if err := ensureLink(filepath.Join(dir, name), target); err != nil {
					return fmt.Errorf("CNI plugin link: %w", err)
				}
				break
			}
		}
	}
	return nil
}

// kubeletWithoutPodsYet reports whether the kubelet has no pod to run for
// a second or more after it starts: on a node that join recorded as a
// worker, or when it first bootstraps its client certificate.
func (s *supervisor) kubeletWithoutPodsYet() bool {
	if i, err := node.ReadInfo(s.p); err == nil && i.Worker {
		return true
	}
	return s.kubeletBootstrapping()
}

// hasStaticPods reports whether the kubelet's static pod directory holds a
// manifest that the kubelet runs (a file the kubelet reads: one whose name does not start with
// a dot), or cannot be read.
func (s *supervisor) hasStaticPods() bool {
	if s.controlPlaneProcesses() {
		return false // the kubelet has no static pod directory then
	}
	entries, err := os.ReadDir(s.p.Host(s.p.ManifestsDir))
	if errors.Is(err, fs.ErrNotExist) {
		return false
	}
	if err != nil {
		return true
	}
	for _, e := range entries {
		if !e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			return true
		}
	}
	return false
}

// kubeletBootstrapping reports whether the kubelet will first get its
// client certificate through TLS bootstrap (bootstrap-kubelet.conf, and no
// kubelet.conf yet).
func (s *supervisor) kubeletBootstrapping() bool {
	_, errBoot := os.Stat(s.p.Host(s.p.Kubeconfig("bootstrap-kubelet.conf")))
	_, errConf := os.Stat(s.p.Host(s.p.Kubeconfig("kubelet.conf")))
	return errBoot == nil && errConf != nil
}

// waitKubeletConfig polls for the kubelet config file (init writes it after
// the service started, so that image import overlaps certificate work).
func (s *supervisor) waitKubeletConfig(ctx context.Context) error {
	path := s.p.Host(s.p.KubeletConfigFile())
	logged := false
	tick := time.NewTicker(s.o.ConfigPoll)
	defer tick.Stop()
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if !logged {
			s.log.Info("waiting for the kubelet config", "path", s.p.KubeletConfigFile())
			s.out.Printf(node.Phase, "Waiting for %s to start the kubelet", s.p.KubeletConfigFile())
			logged = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// holdKubeletOn stops the kubelet for good (until the service restarts)
// on each signal, leaving containerd running: `kubeforge reset` then
// removes the pods through the CRI, as kubeadm's reset does after
// `systemctl stop kubelet`.
func (s *supervisor) holdKubeletOn(ctx context.Context, sig <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-sig:
		}
		s.mu.Lock()
		s.kubeletHeld = true
		k := s.kubelet
		s.mu.Unlock()
		s.log.Info("SIGUSR1: stopping the kubelet; it stays stopped until the node service restarts")
		if k != nil {
			_ = k.Stop()
		}
		s.update(func(st *node.State) { st.KubeletHeld, st.Kubelet.Ready = true, false })
		s.out.Printf(node.Phase, "Stopped the kubelet on request; containerd keeps running")
	}
}

func (s *supervisor) startKubelet(ctx context.Context) error {
	c := proc.New(proc.Spec{
		Name: "kubelet",
		Args: func() ([]string, error) {
			args, err := node.KubeletArgs(s.p)
			if err != nil {
				return nil, err
			}
			return append([]string{s.self, "component", "kubelet"}, args...), nil
		},
		Env:         node.WithDefaultPath(os.Environ()),
		LogFile:     s.p.Host(node.KubeletLogFile(s.p)),
		PIDFile:     s.p.Host(node.KubeletPIDFile(s.p)),
		Identity:    node.KubeletIdentity,
		StopTimeout: s.o.StopTimeout,
		Log:         s.log,
	})
	s.mu.Lock()
	if s.kubeletHeld {
		s.mu.Unlock()
		s.log.Info("the kubelet is held stopped; not starting it")
		return nil
	}
	s.kubelet = c
	s.mu.Unlock()
	if err := c.Start(ctx); err != nil {
		s.mu.Lock()
		held := s.kubeletHeld
		s.mu.Unlock()
		if held { // stopped on request while starting
			return nil
		}
		return err
	}
	s.update(func(st *node.State) { st.Kubelet.Ready = true })
	s.log.Info("kubelet started", "pid", c.Pid(), "log", node.KubeletLogFile(s.p))
	s.dutiesOnce.Do(func() { s.duties.Start(ctx) })
	return nil
}

// dutyList is the node service's long-running duties, in start order. They
// start once the kubelet runs (its credentials exist then) and stop before
// it. Add a duty here; it reports its health through duty.Health and shows
// in `kubeforge node status`.
func (s *supervisor) dutyList() []duty.Duty {
	return []duty.Duty{
		{Name: "pod-network", Run: s.runPodNetworkAgent},
		{Name: "etcd-snapshots", Run: s.runEtcdSnapshots},
		{Name: "secrets-encryption-config", Run: s.runEncryptionConfigSync},
		certrenew.Duty(certrenew.Options{Paths: s.p, Log: s.log.With("duty", certrenew.Name)}),
		{Name: "lb-speaker", Run: s.runLBSpeaker},
		{Name: logship.Name, Run: s.runLogShipping},
	}
}

// runLBSpeaker announces the LoadBalancer pool addresses this node is
// chosen for on the node network (ARP, see lbspeaker), with the kubelet's
// credentials.
func (s *supervisor) runLBSpeaker(ctx context.Context, h *duty.Health) error {
	name := node.NodeName(s.p)
	if name == "" {
		return errors.New("no node name recorded by init or join (" + node.InfoFile(s.p) + ") nor --hostname-override in the kubelet flags")
	}
	kc := s.p.Kubeconfig("kubelet.conf")
	cfg, err := clientcmd.BuildConfigFromFlags("", s.p.Host(kc))
	if err != nil {
		return fmt.Errorf("load %s: %w", kc, err)
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("client from %s: %w", kc, err)
	}
	h.OK("starting for node %s", name)
	return lbspeaker.Run(ctx, lbspeaker.Options{Client: c, NodeName: name, Health: h, Log: s.log.With("duty", "lb-speaker")})
}

// runPodNetworkAgent keeps the node's pod CIDR, its routes (and VXLAN
// overlay) to the other nodes' pods and its masquerading up to date (see
// podnet), with the kubelet's credentials. It does nothing when the
// built-in pod network is off (podNetwork.enabled false, or the
// pod-network phase skipped: no kubeforge CNI configuration).
func (s *supervisor) runPodNetworkAgent(ctx context.Context, h *duty.Health) error {
	name := node.NodeName(s.p)
	if name == "" {
		return errors.New("no node name recorded by init or join (" + node.InfoFile(s.p) + ") nor --hostname-override in the kubelet flags")
	}
	kf, err := config.LoadKubeforge(s.p)
	if err != nil {
		return err
	}
	cni := filepath.Join(s.p.CNIConfDir, manifests.CNIConfigName)
	switch {
	case !kf.PodNetwork.On():
		h.Disabled("turned off (%s podNetwork.enabled in %s): the pod network is your CNI's", config.KubeforgeKind, s.p.KubeforgeConfigFile())
	case !fsutil.Exists(s.p.Host(cni)):
		h.Disabled("no %s (the pod-network phase was skipped): the pod network is your CNI's", cni)
	default:
		h.OK("running for node %s (backend %s): keeps this node's pod CIDR and the routes to the other nodes' pods", name, kf.PodNetwork.Backend)
		return podnet.RunAgent(ctx, podnet.AgentOptions{
			Kubeconfig: s.p.Host(s.p.Kubeconfig("kubelet.conf")),
			NodeName:   name,
			CIDRFile:   s.p.Host(s.p.PodCIDRFile()),
			Backend:    kf.PodNetwork.Backend,
			Health:     h,
			Log:        s.log.With("component", "podnet"),
		})
	}
	<-ctx.Done()
	return nil
}

// runLogShipping ships this node's container logs and its own logs
// (node service, containerd, kubelet) to the cluster's log store, with the
// kubelet's credentials (see logship).
func (s *supervisor) runLogShipping(ctx context.Context, h *duty.Health) error {
	return logship.Run(ctx, logship.Options{
		NodeName:   node.NodeName(s.p),
		Kubeconfig: s.p.Host(s.p.Kubeconfig("kubelet.conf")),
		PodLogDir:  s.p.Host(s.p.PodLogDir),
		OwnLogs: map[string]string{
			s.p.Host(s.p.NodeLogFile()):           "node-service",
			s.p.Host(node.ContainerdLogFile(s.p)): "containerd",
			s.p.Host(node.KubeletLogFile(s.p)):    "kubelet",
		},
		StateDir: s.p.Host(filepath.Join(s.p.StateDir, "logship")),
		Log:      s.log.With("duty", logship.Name),
	}, h)
}

// runEncryptionConfigSync keeps a control-plane node's secrets encryption
// configuration equal to the one `kubeforge secrets rotate-key` published
// in kube-system (see encryption.RunSync), with the node's admin.conf: a
// kubelet's credentials cannot read that Secret. Workers have no API server
// and no admin.conf: the duty is disabled there. It looks for the API
// server's manifest every 2 s: init writes it after the node service
// starts.
func (s *supervisor) runEncryptionConfigSync(ctx context.Context, h *duty.Health) error {
	for !fsutil.Exists(s.p.Host(s.p.Manifest(manifests.KubeAPIServer))) {
		h.Disabled("not a control-plane node (no %s)", s.p.Manifest(manifests.KubeAPIServer))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}
	admin := s.p.Kubeconfig("admin.conf")
	cfg, err := clientcmd.BuildConfigFromFlags("", s.p.Host(admin))
	if err != nil {
		return fmt.Errorf("load %s: %w", admin, err)
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("client from %s: %w", admin, err)
	}
	return encryption.RunSync(ctx, encryption.SyncOptions{
		Client: c,
		File:   s.p.Host(s.p.EncryptionConfigFile()),
		Log:    s.log.With("duty", "secrets-encryption-config"),
	}, h)
}

// ensureLink makes link a symlink to target.
func ensureLink(link, target string) error {
	if cur, err := os.Readlink(link); err == nil && cur == target {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return err
	}
	tmp := link + ".tmp"
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, link)
}

// shutdown stops the kubelet, then containerd. Containers keep running:
// their shims are not our children, and `kubeforge reset` removes them.
func (s *supervisor) shutdown() {
	s.phase("stopping")
	s.duties.Stop()
	s.mu.Lock()
	kubelet, ctrd := s.kubelet, s.containerd
	s.mu.Unlock()
	begin := time.Now()
	var stopped []string
	if kubelet != nil {
		_ = kubelet.Stop()
		stopped = append(stopped, "kubelet")
	}
	if s.stopControlPlaneProcesses() {
		stopped = append(stopped, "the control plane's processes")
	}
	if ctrd != nil {
		_ = ctrd.Stop()
		stopped = append(stopped, "containerd")
	}
	if len(stopped) > 0 {
		s.out.Done(node.Phase, "stop", "", begin, "Stopped %s (containers keep running)", strings.Join(stopped, " and "))
	}
	s.log.Info("node service stopped")
}

// cleanup removes the pid and state files (the lock goes with the process).
func (s *supervisor) cleanup() {
	for _, f := range []string{s.p.NodePIDFile(), node.StateFile(s.p)} {
		if err := os.Remove(s.p.Host(f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("cannot remove", "path", f, "err", err)
		}
	}
}
