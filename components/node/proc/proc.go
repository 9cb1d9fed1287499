// Package proc supervises child processes for the node service: start one,
// restart it with exponential backoff when it dies, stop it with a signal
// and a deadline. It implements the lifecycle contract of DESIGN.md
// (Start returns once running, Stop is safe twice, Ready reports health).
//
// Children get Pdeathsig=SIGTERM: if the supervisor dies, even by SIGKILL,
// the kernel asks its children to stop. The signal follows the thread that
// forked the child, so each child's goroutine stays locked to its thread
// for the child's whole life. Children also get a process group of their
// own, so a Ctrl-C at the terminal reaches only the supervisor, which then
// stops them in order.
//
// The package uses only the standard library (and internal/fsutil): the light node-control code
// (and the phases that import it) can use it without the components.
package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kubeforge/kubeforge/internal/fsutil"
)

// Spec describes a supervised child.
type Spec struct {
	// Name identifies the child in logs ("containerd", "kubelet").
	Name string
	// Args returns the child's argv (Args[0] is the executable's path). It
	// is called before every start, so a restart sees current settings
	// (a rewritten flags file, a new bootstrap kubeconfig).
	Args func() ([]string, error)
	// Env is the child's environment; nil means the supervisor's.
	Env []string
	// Dir is the child's working directory; empty means the supervisor's.
	Dir string
	// LogFile receives the child's stdout and stderr (appended; rotated to
	// LogFile.1 past MaxLogSize). Empty means Output.
	LogFile string
	// Output receives the child's output when LogFile is empty; nil
	// discards it.
	Output io.Writer
	// PIDFile, when set, holds the running child's pid. A new supervisor
	// uses it to find a child its killed predecessor left behind.
	PIDFile string
	// Identity is a run of argv words that marks this child's command line
	// ("component", "kubelet"): a pid from PIDFile counts as this child's
	// only when its /proc cmdline holds them, which guards against pid reuse.
	Identity []string
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL.
	// Zero means 20 s.
	StopTimeout time.Duration
	// Backoff paces restarts; the zero value means DefaultBackoff().
	Backoff Backoff
	// Probe, when set, is Ready's health check beyond "the process runs".
	Probe func(ctx context.Context) error
	// Log receives diagnostics (starts, exits, restarts); nil means slog.Default().
	Log *slog.Logger
}

// MaxLogSize is the size past which a child's log file is rotated at its
// next start.
const MaxLogSize = 64 << 20

// Child is a supervised process.
type Child struct {
	spec Spec
	log  *slog.Logger

	mu         sync.Mutex
	started    bool
	stopping   bool
	proc       *os.Process
	startedAt  time.Time
	restarts   int
	lastExit   string
	restartReq bool
	stopCh     chan struct{}
	done       chan struct{}
}

// New returns a child that is not started yet.
func New(spec Spec) *Child {
	if spec.StopTimeout == 0 {
		spec.StopTimeout = 20 * time.Second
	}
	if spec.Backoff == (Backoff{}) {
		spec.Backoff = DefaultBackoff()
	}
	log := spec.Log
	if log == nil {
		log = slog.Default()
	}
	return &Child{
		spec:   spec,
		log:    log.With("child", spec.Name),
		stopCh: make(chan struct{}),
		done:   make(chan struct{}),
	}
}

// Name is the child's name.
func (c *Child) Name() string { return c.spec.Name }

// Start starts the child and returns once its process runs. Afterwards the
// child is restarted whenever it exits, until Stop. An error means the
// first start failed (the executable could not be run); nothing keeps
// running then. ctx bounds the start only (waiting for a predecessor left
// behind by a killed supervisor to go away).
func (c *Child) Start(ctx context.Context) error {
	c.mu.Lock()
	if c.started {
		c.mu.Unlock()
		return fmt.Errorf("%s: already started", c.spec.Name)
	}
	c.started = true
	c.mu.Unlock()

	if err := c.awaitPredecessor(ctx); err != nil {
		c.finish()
		return err
	}
	first := make(chan error, 1)
	go c.loop(first)
	select {
	case err := <-first:
		return err
	case <-ctx.Done():
		c.Stop()
		return fmt.Errorf("start %s: %w", c.spec.Name, ctx.Err())
	}
}

// Stop stops the child: SIGTERM, then SIGKILL after StopTimeout, and waits
// until it is gone. No restart follows. Safe to call more than once, and
// before Start.
func (c *Child) Stop() error {
	c.stopWithin(c.spec.StopTimeout)
	return nil
}

// Kill stops the child at once (SIGKILL), waits until it is gone, and
// starts it no more. Safe to call more than once, and before Start.
func (c *Child) Kill() { c.stopWithin(0) }

// stopWithin ends the child for good: SIGTERM and SIGKILL d later, or
// SIGKILL at once when d is 0; it returns once the child is gone.
func (c *Child) stopWithin(d time.Duration) {
	c.mu.Lock()
	if !c.started {
		c.started, c.stopping = true, true
		c.mu.Unlock()
		c.finish()
		return
	}
	if !c.stopping {
		c.stopping = true
		close(c.stopCh)
	}
	p := c.proc
	c.mu.Unlock()

	if p != nil && d == 0 {
		_ = p.Kill()
	} else if p != nil {
		c.log.Debug("stopping", "pid", p.Pid)
		_ = p.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
			return
		case <-time.After(d):
			c.log.Warn("did not stop in time; killing", "pid", p.Pid, "timeout", d)
			_ = p.Kill()
		}
	}
	<-c.done
}

// Restart stops the running process and starts it again at once, without
// backoff (for example after its configuration changed).
func (c *Child) Restart() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc == nil || c.stopping {
		return
	}
	c.restartReq = true
	_ = c.proc.Signal(syscall.SIGTERM)
}

// RestartWithin restarts the running process as Restart does, and kills it
// (SIGKILL) if it has not exited d later, as the kubelet does with a
// container its liveness probe failed.
func (c *Child) RestartWithin(d time.Duration) {
	c.mu.Lock()
	p := c.proc
	c.mu.Unlock()
	if p == nil {
		return
	}
	c.Restart()
	time.AfterFunc(d, func() {
		c.mu.Lock()
		same := c.proc == p
		c.mu.Unlock()
		if same {
			c.log.Warn("did not stop in time for its restart; killing", "pid", p.Pid, "timeout", d)
			_ = p.Kill()
		}
	})
}

// Ready reports nil when the process runs and, if the spec has a Probe,
// the probe passes.
func (c *Child) Ready() error {
	c.mu.Lock()
	p, last := c.proc, c.lastExit
	c.mu.Unlock()
	if p == nil {
		if last != "" {
			return fmt.Errorf("%s is not running (last exit: %s)", c.spec.Name, last)
		}
		return fmt.Errorf("%s is not running", c.spec.Name)
	}
	if c.spec.Probe != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := c.spec.Probe(ctx); err != nil {
			return fmt.Errorf("%s: %w", c.spec.Name, err)
		}
	}
	return nil
}

// Pid is the running process's pid, 0 when none runs.
func (c *Child) Pid() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc == nil {
		return 0
	}
	return c.proc.Pid
}

// Restarts counts the restarts so far (requested ones included).
func (c *Child) Restarts() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.restarts
}

// Done is closed once the child is stopped for good.
func (c *Child) Done() <-chan struct{} { return c.done }

func (c *Child) finish() {
	select {
	case <-c.done:
	default:
		close(c.done)
	}
}

// loop runs the child until Stop. It holds its OS thread: Pdeathsig is
// delivered when the thread that forked the child exits, so the thread
// must live as long as the child.
func (c *Child) loop(first chan<- error) {
	runtime.LockOSThread()
	// The goroutine ends locked, which retires the thread: fine, the child
	// is gone by then.
	defer c.finish()

	bo := c.spec.Backoff
	isFirst := true
	for {
		cmd, tail, closeLog, err := c.command()
		if err == nil {
			c.mu.Lock()
			if c.stopping {
				c.mu.Unlock()
				closeLog()
				if isFirst {
					first <- fmt.Errorf("start %s: stopped before it started", c.spec.Name)
				}
				return
			}
			err = cmd.Start()
			if err == nil {
				c.proc = cmd.Process
				c.startedAt = time.Now()
			}
			c.mu.Unlock()
		}
		if err != nil {
			closeLogIfSet(closeLog)
			err = fmt.Errorf("start %s: %w", c.spec.Name, err)
			if isFirst {
				first <- err
				return
			}
			c.log.Error("restart failed", "err", err)
			if !c.sleep(bo.Next(0)) {
				return
			}
			continue
		}
		pid := cmd.Process.Pid
		c.writePID(pid)
		c.log.Info("started", "pid", pid, "args", cmd.Args[1:])
		if isFirst {
			first <- nil
			isFirst = false
		}

		waitErr := cmd.Wait()
		closeLog()

		c.mu.Lock()
		uptime := time.Since(c.startedAt)
		c.proc = nil
		reason := exitReason(waitErr)
		c.lastExit = reason
		stopping, requested := c.stopping, c.restartReq
		c.restartReq = false
		if !stopping {
			c.restarts++
		}
		c.mu.Unlock()
		c.removePID(pid)

		if stopping {
			c.log.Info("stopped", "pid", pid, "exit", reason)
			return
		}
		if requested {
			c.log.Info("restarting on request", "pid", pid, "exit", reason)
			bo.Reset()
			continue
		}
		delay := bo.Next(uptime)
		c.log.Warn("exited; restarting", "pid", pid, "exit", reason,
			"uptime", uptime.Round(time.Millisecond), "backoff", delay,
			"output", tail())
		if !c.sleep(delay) {
			return
		}
	}
}

func closeLogIfSet(f func()) {
	if f != nil {
		f()
	}
}

// sleep waits d, or returns false when Stop comes first.
func (c *Child) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.stopCh:
		return false
	}
}

// command builds the next process. tail returns the end of its output,
// for the restart log; closeLog releases the supervisor's handle on the
// log file.
//
// The output goes to the log file as the child's own descriptor, not
// through a pipe: containerd's shims inherit it and outlive containerd,
// and a pipe would keep Wait from returning until they exit.
func (c *Child) command() (cmd *exec.Cmd, tail func() string, closeLog func(), err error) {
	argv, err := c.spec.Args()
	if err != nil {
		return nil, nil, nil, err
	}
	if len(argv) == 0 {
		return nil, nil, nil, errors.New("empty command")
	}
	cmd = exec.Command(argv[0], argv[1:]...)
	cmd.Env = c.spec.Env
	cmd.Dir = c.spec.Dir
	closeLog = func() {}
	tail = func() string { return "" }
	switch {
	case c.spec.LogFile != "":
		f, err := OpenLog(c.spec.LogFile)
		if err != nil {
			return nil, nil, nil, err
		}
		var from int64
		if st, err := f.Stat(); err == nil {
			from = st.Size()
		}
		cmd.Stdout, cmd.Stderr = f, f
		closeLog = func() { f.Close() }
		path := c.spec.LogFile
		tail = func() string { return readTail(path, from, tailBytes) }
	case c.spec.Output != nil:
		if f, ok := c.spec.Output.(*os.File); ok {
			cmd.Stdout, cmd.Stderr = f, f
			break
		}
		t := NewTail(tailBytes)
		w := io.MultiWriter(c.spec.Output, t)
		cmd.Stdout, cmd.Stderr = w, w
		cmd.WaitDelay = 2 * time.Second
		tail = t.String
	default:
		t := NewTail(tailBytes)
		cmd.Stdout, cmd.Stderr = t, t
		cmd.WaitDelay = 2 * time.Second
		tail = t.String
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	return cmd, tail, closeLog, nil
}

// tailBytes is how much of a dead child's output the restart log quotes.
const tailBytes = 1024

// readTail returns up to max bytes from the end of path, not before offset
// from (where this run's output began), starting at a line boundary.
func readTail(path string, from, max int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() <= from {
		return ""
	}
	start := st.Size() - max
	if start < from {
		start = from
	}
	buf := make([]byte, st.Size()-start)
	n, _ := f.ReadAt(buf, start)
	buf = buf[:n]
	if start > from {
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:]
		}
	}
	return strings.TrimSpace(string(buf))
}

// OpenLog opens path for appending, creating it (and its directory) if
// needed, and first rotates it to path.1 when it grew past MaxLogSize.
func OpenLog(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create log directory: %w", err)
	}
	if st, err := os.Stat(path); err == nil && st.Size() > MaxLogSize {
		_ = os.Rename(path, path+".1")
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	return f, nil
}

// writePID records pid in the spec's PIDFile.
func (c *Child) writePID(pid int) {
	if c.spec.PIDFile == "" {
		return
	}
	if err := WritePIDFile(c.spec.PIDFile, pid); err != nil {
		c.log.Warn("cannot write pid file", "path", c.spec.PIDFile, "err", err)
	}
}

func (c *Child) removePID(pid int) {
	if c.spec.PIDFile == "" {
		return
	}
	if got, err := ReadPIDFile(c.spec.PIDFile); err == nil && got == pid {
		_ = os.Remove(c.spec.PIDFile)
	}
}

// awaitPredecessor deals with a child that a killed supervisor left
// behind (found by PIDFile and Identity): Pdeathsig has asked it to stop,
// so wait for that, and kill it once StopTimeout has passed.
func (c *Child) awaitPredecessor(ctx context.Context) error {
	if c.spec.PIDFile == "" || len(c.spec.Identity) == 0 {
		return nil
	}
	pid, err := ReadPIDFile(c.spec.PIDFile)
	if err != nil || !Matches(pid, c.spec.Identity) {
		return nil
	}
	c.log.Info("waiting for the previous process to exit", "pid", pid)
	if err := Terminate(ctx, pid, c.spec.Identity, c.spec.StopTimeout); err != nil {
		return fmt.Errorf("%s: previous process %d: %w", c.spec.Name, pid, err)
	}
	_ = os.Remove(c.spec.PIDFile)
	return nil
}

// Terminate sends SIGTERM to pid (if it still runs the command identity
// names), waits up to timeout for it to exit, then sends SIGKILL and waits
// for it to be gone.
func Terminate(ctx context.Context, pid int, identity []string, timeout time.Duration) error {
	if !Matches(pid, identity) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	if WaitGone(ctx, pid, identity, timeout) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if WaitGone(ctx, pid, identity, 5*time.Second) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return fmt.Errorf("still running after SIGKILL")
}

// WaitGone polls until pid no longer runs the command identity names, for
// at most timeout. It reports whether the process is gone.
func WaitGone(ctx context.Context, pid int, identity []string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	if !Matches(pid, identity) {
		return true // gone, or another program
	}
	// Ours: wait until it is no live process at all. (An exiting process's
	// command line reads empty before it is a zombie, so identity would
	// let it go too early.)
	for {
		if !Matches(pid, nil) {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Matches reports whether pid is a live process (not a zombie) whose
// command line holds the words of identity in a row. An empty identity
// matches any live process.
func Matches(pid int, identity []string) bool {
	if pid <= 0 {
		return false
	}
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err != nil {
		return false
	} else if i := bytes.LastIndexByte(st, ')'); i > 0 && i+2 < len(st) && st[i+2] == 'Z' {
		return false // a zombie has exited: only its parent's wait is missing
	}
	if len(identity) == 0 {
		return true
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
	for i := 0; i+len(identity) <= len(args); i++ {
		ok := true
		for j, w := range identity {
			if args[i+j] != w {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// WritePIDFile writes pid to path, creating the directory.
func WritePIDFile(path string, pid int) error {
	_, err := fsutil.WriteFile(path, []byte(strconv.Itoa(pid)+"\n"), 0o644)
	return err
}

// ReadPIDFile reads a pid written by WritePIDFile.
func ReadPIDFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s: not a pid: %q", path, strings.TrimSpace(string(b)))
	}
	return pid, nil
}

// exitReason describes how a process ended.
func exitReason(err error) string {
	if err == nil {
		return "exit status 0"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by signal " + ws.Signal().String()
		}
		return ee.Error()
	}
	return err.Error()
}
