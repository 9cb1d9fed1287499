// Package node controls the node service: the supervisor (`kubeforge node
// run`) that keeps containerd and the kubelet running on a host. It starts
// the service (a systemd unit when systemd is PID 1, otherwise a detached
// daemon), stops it, and reports its state.
//
// This package is light on purpose: standard library, config and internal
// helpers only, so that init/join/reset phases can import it. It never
// imports the components; it runs `<self> node run`, whose code lives in
// components/node/supervisor.
package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/components/node/proc"
	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/progress"
)

// Phase is the progress prefix of the node service's lines.
const Phase = "node"

// Mode says how the node service runs.
type Mode string

const (
	// ModeAuto picks ModeSystemd when systemd is PID 1, else ModeDaemon.
	ModeAuto Mode = ""
	// ModeSystemd runs the supervisor as the kubeforge-node.service unit.
	ModeSystemd Mode = "systemd"
	// ModeDaemon runs the supervisor as a detached process.
	ModeDaemon Mode = "daemon"
)

// StartOptions tune Start.
type StartOptions struct {
	// CRISocket is an external container runtime's socket (for example
	// unix:///run/containerd/containerd.sock). Empty: the bundled containerd
	// at p.ContainerdSocket().
	CRISocket string
	// Mode is how to run the supervisor; ModeAuto by default.
	Mode Mode
	// Executable is the kubeforge binary to run; empty means the running
	// executable (tests of other packages must set it).
	Executable string
	// Timeout bounds the wait for the container runtime; 0 means 2 minutes.
	Timeout time.Duration
	// Progress receives lines for people; nil discards them.
	Progress *progress.Reporter
}

// Start starts the node service unless it already runs, and returns once
// its container runtime is ready (the kubelet follows by itself as soon as
// p.KubeletConfigFile() exists). It is what `kubeforge node start` does.
func Start(ctx context.Context, p config.Paths, o StartOptions) error {
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	begin := time.Now()

	if pid, ok := Running(p); ok {
		if pid == 0 || proc.Matches(pid, SupervisorIdentity) {
			// Running, or starting (locked, pid not written yet).
			if err := waitReady(ctx, p, pid, nil); err != nil {
				return err
			}
			pid, _ = Running(p)
			o.Progress.Printf(Phase, "The node service is already running (pid %d)", pid)
			return nil
		}
		// The lock outlives a killed supervisor by a moment.
		waitUnlocked(ctx, p, 2*time.Second)
	}
	if err := CheckConfig(p); err != nil {
		return err
	}
	exe := o.Executable
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return fmt.Errorf("find the kubeforge executable: %w", err)
		}
	}
	args := append([]string{"node", "run"}, PathArgs(p)...)
	if o.CRISocket != "" {
		args = append(args, "--cri-socket="+o.CRISocket)
	}

	mode := o.Mode
	if mode == ModeAuto {
		mode = ModeDaemon
		if SystemdRunning() {
			mode = ModeSystemd
		}
	}
	var exited <-chan error
	var pid int
	switch mode {
	case ModeSystemd:
		if err := startUnit(ctx, p, exe, args); err != nil {
			return err
		}
	case ModeDaemon:
		var err error
		if pid, exited, err = spawnDaemon(p, exe, args); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown node service mode %q", mode)
	}
	if err := waitReady(ctx, p, pid, exited); err != nil {
		return err
	}
	if pid == 0 {
		pid, _ = Running(p)
	}
	o.Progress.Done(Phase, "start", "", begin, "Started the node service (%s, pid %d); the container runtime is ready", mode, pid)
	return nil
}

// spawnDaemon starts `exe args…` in a new session, detached from the
// caller: stdin from /dev/null, stdout and stderr appended to
// p.NodeLogFile(). The supervisor writes p.NodePIDFile() itself, once it
// holds the lock. exited reports the daemon's end while the caller lives.
func spawnDaemon(p config.Paths, exe string, args []string) (int, <-chan error, error) {
	logf, err := proc.OpenLog(p.Host(p.NodeLogFile()))
	if err != nil {
		return 0, nil, fmt.Errorf("node service log %s: %w", p.NodeLogFile(), err)
	}
	defer logf.Close()
	cmd := exec.Command(exe, args...)
	cmd.Stdin = nil // /dev/null
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = withDefaultPath(os.Environ())
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, nil, fmt.Errorf("start the node service (%s node run): %w", exe, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	return cmd.Process.Pid, exited, nil
}

// waitReady waits until the supervisor with pid publishes that its
// container runtime is ready; pid 0 means whichever supervisor holds the
// lock. exited, when set, reports that the daemon we spawned ended;
// without it, the supervisor's lock going away means it ended.
func waitReady(ctx context.Context, p config.Paths, pid int, exited <-chan error) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	seen := pid != 0 // a systemd unit's supervisor may not be up yet
	for {
		cur, running := Running(p)
		if pid == 0 {
			pid = cur
		}
		seen = seen || running
		if running && pid > 0 && cur == pid {
			if s, err := ReadState(p); err == nil && s.PID == pid && s.Containerd.Ready {
				return nil
			}
		}
		if exited == nil && seen && !running {
			return fmt.Errorf("the node service stopped before the container runtime was ready; %s ends with:\n%s",
				p.NodeLogFile(), lastLines(p.Host(p.NodeLogFile()), 15))
		}
		select {
		case err := <-exited:
			// Lost a race with another `node start`? Then wait for that one.
			if other, ok := Running(p); ok && other != pid {
				pid, exited = other, nil
				continue
			}
			return fmt.Errorf("the node service exited (%v) before the container runtime was ready; %s ends with:\n%s",
				err, p.NodeLogFile(), lastLines(p.Host(p.NodeLogFile()), 15))
		case <-ctx.Done():
			s, _ := ReadState(p)
			return fmt.Errorf("the node service did not get the container runtime ready (phase %q): %w; see %s",
				s.Phase, ctx.Err(), p.NodeLogFile())
		case <-tick.C:
		}
	}
}

// Stop stops the node service: the kubelet, then containerd (containers
// keep running, as with `systemctl stop kubelet containerd`). It waits for
// them to exit, kills what is left after 30 s (or ctx's deadline if
// sooner), and succeeds when nothing ran.
func Stop(ctx context.Context, p config.Paths) error { return stop(ctx, p, syscall.SIGTERM) }

// StopNow stops the node service as Stop does, but the service kills the
// control-plane components it runs as processes instead of letting them
// stop gracefully: for reset, which deletes what they would save. A
// service under systemd is stopped by its unit, gracefully.
func StopNow(ctx context.Context, p config.Paths) error { return stop(ctx, p, syscall.SIGUSR2) }

func stop(ctx context.Context, p config.Paths, sig syscall.Signal) error {
	timeout := 30 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	if SystemdRunning() && unitInstalled(p) {
		if err := stopUnit(ctx); err != nil {
			return err
		}
	}
	if pid, ok := Running(p); ok && pid > 0 {
		_ = syscall.Kill(pid, sig)
		if !waitUnlocked(ctx, p, timeout) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			waitUnlocked(context.Background(), p, 5*time.Second)
		}
		// The lock goes just before the process: wait for the rest.
		proc.WaitGone(context.Background(), pid, SupervisorIdentity, 5*time.Second)
	} else if ok {
		// Locked but no pid (written right after locking): give it a moment.
		if !waitUnlocked(ctx, p, 2*time.Second) {
			return fmt.Errorf("the node service holds %s but wrote no pid to %s", LockFile(p), p.NodePIDFile())
		}
	}
	// Children a killed supervisor left behind (they got SIGTERM from
	// Pdeathsig; make sure they are gone).
	var errs []error
	type child struct {
		file string
		id   []string
	}
	children := []child{{KubeletPIDFile(p), KubeletIdentity}}
	for _, c := range slices.Backward(ControlPlaneComponents) {
		children = append(children, child{ControlPlanePIDFile(p, c), []string{"component", c}})
	}
	children = append(children, child{ContainerdPIDFile(p), ContainerdIdentity})
	for _, c := range children {
		pid, err := readPID(p.Host(c.file))
		if err != nil {
			continue
		}
		if err := proc.Terminate(context.Background(), pid, c.id, 10*time.Second); err != nil {
			errs = append(errs, fmt.Errorf("stop %s (pid %d): %w", c.id[1], pid, err))
			continue
		}
		_ = os.Remove(p.Host(c.file))
	}
	if len(errs) == 0 {
		removeRuntimeFiles(p)
	}
	return errors.Join(errs...)
}

// WaitImages waits until the running node service has the kubeforge and
// pause images in its container runtime (Start returns before that: the
// import overlaps with the rest of init).
func WaitImages(ctx context.Context, p config.Paths) error {
	for {
		pid, running := Running(p)
		if !running {
			return errors.New("the node service is not running")
		}
		s, err := ReadState(p)
		if err == nil && (pid == 0 || s.PID == pid) && s.ImagesReady {
			return nil
		}
		select {
		case <-ctx.Done():
			msg := ""
			if s.ImagesError != "" {
				msg = " (last error: " + s.ImagesError + ")"
			}
			return fmt.Errorf("the images are not in the container runtime yet%s: %w", msg, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// StopKubelet stops the kubelet and keeps it stopped while containerd
// keeps running, until the node service restarts: what `systemctl stop
// kubelet` is to kubeadm's reset, so that reset can then remove the pods
// through the CRI. It succeeds when no kubelet runs.
func StopKubelet(ctx context.Context, p config.Paths) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	kubelet, _ := readPID(p.Host(KubeletPIDFile(p)))
	if pid, ok := Running(p); ok && pid > 0 {
		if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
			return fmt.Errorf("ask the node service (pid %d) to stop the kubelet: %w", pid, err)
		}
		for {
			s, err := ReadState(p)
			if err == nil && s.KubeletHeld && !proc.Matches(kubelet, KubeletIdentity) {
				break
			}
			if _, ok := Running(p); !ok {
				break // the whole service went away meanwhile
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("the kubelet did not stop: %w", ctx.Err())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	// A kubelet left behind by a killed supervisor.
	if err := proc.Terminate(ctx, kubelet, KubeletIdentity, 10*time.Second); err != nil {
		return fmt.Errorf("stop the kubelet (pid %d): %w", kubelet, err)
	}
	return nil
}

func waitUnlocked(ctx context.Context, p config.Paths, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for locked(p) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// Status is the node service's state as `kubeforge node status` shows it.
type Status struct {
	Running bool
	PID     int
	Mode    Mode
	State   State // as last published by the supervisor
	// ContainerdPID and KubeletPID are the live children (0: not running).
	ContainerdPID int
	KubeletPID    int
	// RuntimeReady: the container runtime's socket accepts connections.
	RuntimeReady bool
	// KubeletHealthy: the kubelet's /healthz answered ok.
	KubeletHealthy bool
	KubeletHealth  string
}

// GetStatus inspects the node service.
func GetStatus(ctx context.Context, p config.Paths) Status {
	var st Status
	st.PID, st.Running = Running(p)
	st.Mode = ModeDaemon
	if SystemdRunning() && unitInstalled(p) {
		st.Mode = ModeSystemd
	}
	if s, err := ReadState(p); err == nil && st.Running {
		st.State = s
	}
	if pid, err := readPID(p.Host(ContainerdPIDFile(p))); err == nil && proc.Matches(pid, ContainerdIdentity) {
		st.ContainerdPID = pid
	}
	if pid, err := readPID(p.Host(KubeletPIDFile(p))); err == nil && proc.Matches(pid, KubeletIdentity) {
		st.KubeletPID = pid
	}
	sock := st.State.CRISocket
	if sock == "" {
		sock = p.ContainerdSocket()
	}
	if c, err := net.DialTimeout("unix", p.Host(strings.TrimPrefix(sock, "unix://")), time.Second); err == nil {
		c.Close()
		st.RuntimeReady = true
	}
	if st.KubeletPID != 0 {
		st.KubeletHealth = kubeletHealth(ctx, p, st.KubeletPID)
		st.KubeletHealthy = st.KubeletHealth == "ok"
	}
	return st
}

// Problems lists what fails in a running node service: the container
// runtime not answering, the kubelet not running (unless it was stopped on
// request or waits for its configuration), and every duty whose status is
// failing. Warnings, a kubelet whose healthz does not answer yet and a
// service that is not running are not counted (the last has its own exit
// code).
func (st Status) Problems() []string {
	if !st.Running {
		return nil
	}
	var out []string
	if !st.RuntimeReady {
		out = append(out, "the container runtime does not answer")
	}
	if st.KubeletPID == 0 && !st.State.KubeletHeld && st.State.Phase == PhaseRunning {
		out = append(out, "the kubelet is not running")
	}
	for _, d := range st.State.Duties {
		if d.Status == DutyFailing {
			out = append(out, d.Name+" is failing")
		}
	}
	return out
}

// kubeletHealth asks the kubelet's healthz endpoint at the address and
// port of its config file (the defaults when it sets none), from inside the
// kubelet's own network namespace: a node can run in a namespace of its own
// (hack/up.sh), where this shell's loopback is not the kubelet's.
func kubeletHealth(ctx context.Context, p config.Paths, pid int) string {
	addr, port := "127.0.0.1", config.DefaultKubeletHealthzPort
	if b, err := os.ReadFile(p.Host(p.KubeletConfigFile())); err == nil {
		var kc struct {
			HealthzPort        *int   `json:"healthzPort"`
			HealthzBindAddress string `json:"healthzBindAddress"`
		}
		if err := yaml.Unmarshal(b, &kc); err != nil {
			return fmt.Sprintf("cannot read %s: %v", p.KubeletConfigFile(), err)
		}
		if kc.HealthzPort != nil {
			port = *kc.HealthzPort
		}
		if v := kc.HealthzBindAddress; v != "" && v != "0.0.0.0" && v != "::" {
			addr = v
		}
	}
	if port == 0 {
		return "disabled (healthzPort: 0)"
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(addr, strconv.Itoa(port))+"/healthz", nil)
	if err != nil {
		return err.Error()
	}
	nsPath := fmt.Sprintf("/proc/%d/ns/net", pid)
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
			return dialInNetNS(ctx, nsPath, network, address)
		},
	}}
	resp, err := client.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	if resp.StatusCode == http.StatusOK {
		return strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
}

// InOtherNetNS reports whether pid runs in another network namespace than
// this process. (The calling thread's namespace is this process's: the only
// threads that enter another one are dialInNetNS's, and they never run
// anything else. /proc/self/ns/net would be the main thread's, which can be
// such a thread.)
func InOtherNetNS(pid int) bool {
	if pid <= 0 {
		return false
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return !sameFile(fmt.Sprintf("/proc/%d/ns/net", pid), "/proc/thread-self/ns/net")
}

func sameFile(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

// dialInNetNS connects to address from inside the network namespace at
// nsPath: the socket is made by a thread that entered it. That thread stays
// locked and is ended with its goroutine, so no other goroutine ever runs
// in the foreign namespace.
func dialInNetNS(ctx context.Context, nsPath, network, address string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		fd, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{err: fmt.Errorf("open the kubelet's network namespace: %w", err)}
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("enter the kubelet's network namespace %s: %w", nsPath, err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, address)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// PathArgs are the `node run` flags that carry p's node-service paths to
// the supervisor (see BindPathFlags' names).
func PathArgs(p config.Paths) []string {
	return []string{
		"--kubernetes-dir=" + p.KubernetesDir,
		"--kubelet-dir=" + p.KubeletDir,
		"--state-dir=" + p.StateDir,
		"--run-dir=" + p.RunDir,
		"--log-dir=" + p.LogDir,
	}
}

// PathFlag names a Paths field that the node commands take as a flag.
type PathFlag struct {
	Name  string
	Field *string
	Usage string
}

// PathFlags lists the node commands' path flags, bound to p's fields.
func PathFlags(p *config.Paths) []PathFlag {
	return []PathFlag{
		{"kubernetes-dir", &p.KubernetesDir, "directory of the kubeconfigs (kubelet.conf, bootstrap-kubelet.conf)"},
		{"kubelet-dir", &p.KubeletDir, "the kubelet's directory (config.yaml, kubeadm-flags.env)"},
		{"state-dir", &p.StateDir, "kubeforge's state (containerd root and config, images)"},
		{"run-dir", &p.RunDir, "runtime files (pid, lock and state files, containerd sockets)"},
		{"log-dir", &p.LogDir, "logs of the node service, containerd and the kubelet"},
	}
}

// withDefaultPath makes sure PATH holds the usual system directories: the
// kubelet and containerd exec mount, iptables, runc and CNI plugins.
func withDefaultPath(env []string) []string {
	const std = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for i, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			if v == "" {
				env[i] = "PATH=" + std
			}
			return env
		}
	}
	return append(env, "PATH="+std)
}

// WithDefaultPath is withDefaultPath for the supervisor's children.
func WithDefaultPath(env []string) []string { return withDefaultPath(env) }

// PrependPath returns env with dir first on its PATH.
func PrependPath(env []string, dir string) []string {
	out := make([]string, 0, len(env)+1)
	found := false
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok && !found {
			found = true
			kv = "PATH=" + dir
			if v != "" {
				kv += ":" + v
			}
		}
		out = append(out, kv)
	}
	if !found {
		out = append(out, "PATH="+dir)
	}
	return out
}

// lastLines returns up to n last lines of the file at path (reading at
// most its last 16 KiB).
func lastLines(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return "  (" + err.Error() + ")"
	}
	defer f.Close()
	const max = 16 << 10
	var off int64
	if st, err := f.Stat(); err == nil && st.Size() > max {
		off = st.Size() - max
	}
	b := make([]byte, max)
	k, _ := f.ReadAt(b, off)
	lines := strings.Split(strings.TrimRight(string(b[:k]), "\n"), "\n")
	if off > 0 && len(lines) > 1 {
		lines = lines[1:] // partial first line
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// RestartKubelet asks the running node service to restart the kubelet
// (SIGHUP to the supervisor); containers keep running.
func RestartKubelet(p config.Paths) error {
	pid, ok := Running(p)
	if !ok || pid <= 0 {
		return fmt.Errorf("the node service is not running (no lock on %s)", LockFile(p))
	}
	return syscall.Kill(pid, syscall.SIGHUP)
}
