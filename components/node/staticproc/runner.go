package staticproc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kubeforge/kubeforge/components/node"
	"github.com/kubeforge/kubeforge/components/node/proc"
	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/manifests"
)

// Components are the manifests the runner reads, in start order (all start
// at once; the order is that of the status and, reversed, of the stop).
var Components = node.ControlPlaneComponents

// DutyPrefix starts the name under which each component's health is
// published with the node service's duties ("control-plane/etcd").
const DutyPrefix = "control-plane/"

// Options configure a Runner.
type Options struct {
	Paths config.Paths
	// Executable is the kubeforge executable the components run from.
	Executable string
	// Env is the environment every component starts with (the manifest's
	// env is added to it).
	Env []string
	// Poll is how often the manifests are looked at (a stat each); 50 ms
	// by default.
	Poll time.Duration
	// StopTimeout bounds each component's stop before SIGKILL; 20 s by default.
	StopTimeout time.Duration
	// Publish receives each component's health.
	Publish func(node.DutyState)
	Log     *slog.Logger
}

// Runner runs the control-plane manifests as processes.
type Runner struct {
	o Options

	mu    sync.Mutex
	procs map[string]*running
	// seen is the last manifest content looked at, per component, with
	// the error that kept it from running (nil when it runs).
	seen map[string]seenManifest
	// sigs is the file's identity when it was last read: a poll that
	// finds it unchanged reads nothing.
	sigs map[string]fileSig
}

// fileSig tells a file apart from its next version: every manifest write
// renames a new file into place (a new inode).
type fileSig struct {
	ino, size int64
	mtime     time.Time
}

func statSig(path string) (fileSig, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileSig{}, err
	}
	sig := fileSig{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		sig.ino = int64(st.Ino)
	}
	return sig, nil
}

type seenManifest struct {
	hash string
	err  error
}

type running struct {
	hash   string
	child  *proc.Child
	cancel context.CancelFunc
	probed chan struct{}
}

// New returns a runner; Run runs it.
func New(o Options) *Runner {
	if o.Poll == 0 {
		o.Poll = 50 * time.Millisecond
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = 20 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Publish == nil {
		o.Publish = func(node.DutyState) {}
	}
	return &Runner{o: o, procs: map[string]*running{}, seen: map[string]seenManifest{}, sigs: map[string]fileSig{}}
}

// LogFile is where a component's output goes.
func LogFile(p config.Paths, component string) string { return node.ControlPlaneLogFile(p, component) }

// Run follows the manifests until ctx ends, then stops every component
// (the reverse of Components) and returns.
func (r *Runner) Run(ctx context.Context) {
	r.o.Log.Info("running the control plane as processes", "manifests", r.o.Paths.ManifestsDir)
	tick := time.NewTicker(r.o.Poll)
	defer tick.Stop()
	for {
		for _, c := range Components {
			r.sync(ctx, c)
		}
		select {
		case <-ctx.Done():
			r.stopAll()
			return
		case <-tick.C:
		}
	}
}

// sync makes what runs for component match its manifest.
func (r *Runner) sync(ctx context.Context, component string) {
	logical := r.o.Paths.Manifest(component)
	sig, err := statSig(r.o.Paths.Host(logical))
	r.mu.Lock()
	unchanged := err == nil && r.sigs[component] == sig
	r.mu.Unlock()
	if unchanged {
		return // the file is as last read: no need to read it
	}
	data, err := os.ReadFile(r.o.Paths.Host(logical))
	if errors.Is(err, fs.ErrNotExist) {
		if r.stop(component) {
			r.o.Log.Info("manifest removed: stopped", "component", component, "manifest", logical)
			r.publish(component, node.DutyStopped, "its manifest "+logical+" was removed")
		}
		r.mu.Lock()
		delete(r.seen, component)
		delete(r.sigs, component)
		r.mu.Unlock()
		return
	}
	if err != nil {
		r.report(component, "", fmt.Errorf("read %s: %w", logical, err))
		return
	}
	sum := sha256.Sum256(data)
	hash := hex.EncodeToString(sum[:8])
	r.mu.Lock()
	r.sigs[component] = sig
	last, looked := r.seen[component]
	r.mu.Unlock()
	if looked && last.hash == hash {
		return
	}
	pod, err := manifests.UnmarshalPod(data)
	if err != nil {
		r.report(component, hash, fmt.Errorf("%s: %w", logical, err))
		return
	}
	p, err := FromPod(pod, r.o.Executable)
	if err == nil {
		err = p.Prepare(r.o.Paths.Host)
	}
	if err != nil {
		r.report(component, hash, fmt.Errorf("%s: %w", logical, err))
		return
	}
	if r.stop(component) {
		r.o.Log.Info("manifest changed: restarting", "component", component, "manifest", logical)
	}
	if err := r.start(ctx, component, hash, p); err != nil {
		r.report(component, hash, err)
		return
	}
	r.mu.Lock()
	r.seen[component] = seenManifest{hash: hash}
	r.mu.Unlock()
}

// report records a manifest that cannot run (once per content) and
// publishes why; what ran from an earlier content keeps running.
func (r *Runner) report(component, hash string, err error) {
	r.mu.Lock()
	r.seen[component] = seenManifest{hash: hash, err: err}
	_, runs := r.procs[component]
	r.mu.Unlock()
	r.o.Log.Error("cannot run a control-plane manifest", "component", component, "err", err)
	msg := err.Error()
	if runs {
		msg += "; the process of its previous manifest keeps running"
	}
	r.publish(component, node.DutyFailing, msg)
}

func (r *Runner) start(ctx context.Context, component, hash string, p Process) error {
	env := append(slices.Clone(r.o.Env), p.Env...)
	child := proc.New(proc.Spec{
		Name:        component,
		Args:        func() ([]string, error) { return p.Args, nil },
		Env:         env,
		Dir:         p.Dir,
		LogFile:     r.o.Paths.Host(LogFile(r.o.Paths, component)),
		PIDFile:     r.o.Paths.Host(node.ControlPlanePIDFile(r.o.Paths, component)),
		Identity:    []string{componentCommand, component},
		StopTimeout: r.o.StopTimeout,
		Log:         r.o.Log,
	})
	if err := child.Start(ctx); err != nil {
		return err
	}
	pctx, cancel := context.WithCancel(context.Background())
	run := &running{hash: hash, child: child, cancel: cancel, probed: make(chan struct{})}
	r.mu.Lock()
	r.procs[component] = run
	r.mu.Unlock()
	go func() {
		defer close(run.probed)
		r.probe(pctx, component, child, p)
	}()
	return nil
}

// stop stops component's process, if one runs, and reports whether one did.
func (r *Runner) stop(component string) bool {
	r.mu.Lock()
	run := r.procs[component]
	delete(r.procs, component)
	r.mu.Unlock()
	if run == nil {
		return false
	}
	run.cancel()
	<-run.probed
	_ = run.child.Stop()
	return true
}

func (r *Runner) stopAll() {
	for _, c := range slices.Backward(Components) {
		if r.stop(c) {
			r.publish(c, node.DutyStopped, "the node service stopped")
		}
	}
}

// Pids returns the pid of each running component.
func (r *Runner) Pids() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for c, run := range r.procs {
		if pid := run.child.Pid(); pid != 0 {
			out[c] = pid
		}
	}
	return out
}

func (r *Runner) publish(component, status, msg string) {
	r.publishSince(component, status, msg, time.Now())
}

func (r *Runner) publishSince(component, status, msg string, since time.Time) {
	r.o.Publish(node.DutyState{Name: DutyPrefix + component, Status: status, Message: msg,
		Since: since.UTC().Truncate(time.Second), Updated: time.Now().UTC()})
}

// probe runs the component's probes while it runs, as the kubelet does: the
// startup probe until it passes, then the liveness probe (a component that
// fails it FailureThreshold times in a row is restarted) and the readiness
// probe (what `node status` shows).
func (r *Runner) probe(ctx context.Context, component string, child *proc.Child, p Process) {
	logName := LogFile(r.o.Paths, component)
	var (
		lastPid, fails   int
		started          bool
		startedAt        time.Time
		nextLive, nextRd time.Time
		status, msg      string
		since            time.Time
	)
	say := func(st, m string) {
		if st != status {
			since = time.Now()
		}
		if st != status || m != msg {
			status, msg = st, m
			r.publishSince(component, st, m, since)
		}
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		now := time.Now()
		pid := child.Pid()
		if pid != lastPid {
			lastPid, fails, started, startedAt = pid, 0, p.Startup == nil, now
			nextLive, nextRd = now, now
			if p.Liveness != nil {
				nextLive = now.Add(p.Liveness.InitialDelay)
			}
		}
		where := fmt.Sprintf("pid %d, %d restarts, log %s", pid, child.Restarts(), logName)
		switch {
		case pid == 0:
			say(node.DutyFailing, fmt.Sprintf("not running (%v); restarted with backoff; log %s", child.Ready(), logName))
		case !started:
			if err := p.Startup.Check(ctx); err == nil {
				started, fails = true, 0
				if p.Liveness != nil {
					nextLive = now.Add(p.Liveness.InitialDelay)
				}
			} else if now.Sub(startedAt) > time.Duration(p.Startup.FailureThreshold)*p.Startup.Period {
				r.o.Log.Warn("startup probe failed for too long: restarting", "component", component, "pid", pid, "err", err)
				say(node.DutyFailing, fmt.Sprintf("restarted: its startup probe still fails after %v: %v", now.Sub(startedAt).Round(time.Second), err))
				child.Restart()
			} else {
				say(node.DutyStarting, "starting ("+where+")")
			}
		default:
			if p.Liveness != nil && !now.Before(nextLive) {
				nextLive = now.Add(p.Liveness.Period)
				if err := p.Liveness.Check(ctx); err != nil {
					fails++
					if fails >= p.Liveness.FailureThreshold {
						r.o.Log.Warn("liveness probe failed: restarting", "component", component, "pid", pid, "failures", fails, "err", err)
						say(node.DutyFailing, fmt.Sprintf("restarted: its liveness probe failed %d times: %v", fails, err))
						child.Restart()
						break
					}
				} else {
					fails = 0
				}
			}
			if p.Readiness == nil {
				say(node.DutyOK, "running ("+where+")")
			} else if !now.Before(nextRd) {
				nextRd = now.Add(p.Readiness.Period)
				if err := p.Readiness.Check(ctx); err != nil {
					say(node.DutyWarning, fmt.Sprintf("not ready (%s): %v", where, firstLine(err.Error())))
				} else {
					say(node.DutyOK, "ready ("+where+")")
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}
