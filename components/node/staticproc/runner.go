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
	"sync/atomic"
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

// OtherManifestsDuty is where the runner says that the directory holds
// manifests it does not run.
const OtherManifestsDuty = "control-plane-other-manifests"

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
	// KillOnStop, when it says so as the runner stops, kills the components
	// instead of asking them to stop: for a reset, which deletes what they
	// would save.
	KillOnStop func() bool
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
	// others lists the manifests of the directory the runner does not run.
	others string
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
	// retryAt, when set, is when a start that failed (the content is
	// fine) is tried again; failures counts them, for the backoff.
	retryAt  time.Time
	failures int
}

// startRetry is the wait before trying a failed start again, doubling up
// to startRetryMax (the node service's backoff for its children).
const (
	startRetry    = time.Second
	startRetryMax = 10 * time.Second
)

type running struct {
	hash   string
	child  *proc.Child
	cancel context.CancelFunc
	probed chan struct{}
	// republish makes the prober publish its state again (after a
	// refused manifest's report, once the manifest is back to this one).
	republish atomic.Bool
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

// Run follows the manifests until ctx ends, then stops every component
// (the reverse of Components) and returns.
func (r *Runner) Run(ctx context.Context) {
	r.o.Log.Info("running the control plane as processes", "manifests", r.o.Paths.ManifestsDir)
	tick := time.NewTicker(r.o.Poll)
	defer tick.Stop()
	var others time.Time
	for {
		for _, c := range Components {
			r.sync(ctx, c)
		}
		if time.Since(others) >= otherManifestsEvery {
			others = time.Now()
			r.otherManifests()
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
	sig, statErr := statSig(r.o.Paths.Host(logical))
	r.mu.Lock()
	last, looked := r.seen[component]
	unchanged := statErr == nil && r.sigs[component] == sig
	r.mu.Unlock()
	retryDue := !last.retryAt.IsZero() && !time.Now().Before(last.retryAt)
	if unchanged && !retryDue {
		return // the file is as last read: no need to read it
	}
	data, err := os.ReadFile(r.o.Paths.Host(logical))
	if errors.Is(err, fs.ErrNotExist) {
		stopped := r.stop(component)
		if stopped || (looked && last.err != nil) {
			r.o.Log.Info("manifest removed", "component", component, "manifest", logical, "stopped", stopped)
			r.publish(component, node.DutyStopped, "its manifest "+logical+" was removed")
		}
		r.mu.Lock()
		delete(r.seen, component)
		delete(r.sigs, component)
		r.mu.Unlock()
		return
	}
	r.mu.Lock()
	r.sigs[component] = sig // read once per version of the file, even when it fails
	r.mu.Unlock()
	if err != nil {
		r.report(component, "", fmt.Errorf("read %s: %w", logical, err), false)
		return
	}
	sum := sha256.Sum256(data)
	hash := hex.EncodeToString(sum[:8])
	if looked && last.hash == hash && !retryDue {
		return // the same content: a touch, or a rename of the same bytes
	}
	r.mu.Lock()
	run := r.procs[component]
	r.mu.Unlock()
	if run != nil && run.hash == hash {
		// Back to the content that runs (after a refused one): keep it.
		r.mu.Lock()
		r.seen[component] = seenManifest{hash: hash}
		r.mu.Unlock()
		run.republish.Store(true)
		return
	}
	pod, err := manifests.UnmarshalPod(data)
	if err != nil {
		r.report(component, hash, fmt.Errorf("%s: %w", logical, err), false)
		return
	}
	p, err := FromPod(pod, r.o.Executable)
	if err != nil {
		r.report(component, hash, fmt.Errorf("%s: %w", logical, err), false)
		return
	}
	if err := p.Prepare(r.o.Paths.Host); err != nil {
		r.report(component, hash, fmt.Errorf("%s: %w", logical, err), true)
		return
	}
	if r.stop(component) {
		r.o.Log.Info("manifest changed: restarting", "component", component, "manifest", logical)
	}
	if err := r.start(ctx, component, hash, p); err != nil {
		r.report(component, hash, err, true)
		return
	}
	r.mu.Lock()
	r.seen[component] = seenManifest{hash: hash}
	r.mu.Unlock()
}

// report records a manifest that cannot run and publishes why. A manifest
// that cannot run as written waits for its next content; a start that
// failed (retry: the host, not the manifest) is tried again with backoff.
// What ran from an earlier content keeps running.
func (r *Runner) report(component, hash string, err error, retry bool) {
	r.mu.Lock()
	seen := seenManifest{hash: hash, err: err}
	if retry {
		seen.failures = r.seen[component].failures + 1
		wait := startRetry << min(seen.failures-1, 4)
		seen.retryAt = time.Now().Add(min(wait, startRetryMax))
	}
	r.seen[component] = seen
	_, runs := r.procs[component]
	r.mu.Unlock()
	r.o.Log.Error("cannot run a control-plane manifest", "component", component, "err", err, "retry", retry)
	msg := err.Error()
	if retry {
		msg += fmt.Sprintf("; trying again at %s", seen.retryAt.UTC().Format(time.TimeOnly))
	}
	if runs {
		msg += "; the process of its previous manifest keeps running"
	}
	r.publish(component, node.DutyFailing, msg)
}

// otherManifestsEvery is how often the manifests directory is listed for
// files the runner does not run.
const otherManifestsEvery = 5 * time.Second

// otherManifests warns about manifests in the directory other than the
// control plane's: with the control plane run as processes the kubelet has
// no static pod directory, so nothing runs them.
func (r *Runner) otherManifests() {
	entries, err := os.ReadDir(r.o.Paths.Host(r.o.Paths.ManifestsDir))
	if err != nil {
		return
	}
	var other []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || slices.Contains(Components, strings.TrimSuffix(name, ".yaml")) {
			continue
		}
		other = append(other, name)
	}
	r.mu.Lock()
	was := r.others
	r.others = strings.Join(other, ", ")
	now := r.others
	r.mu.Unlock()
	say := func(status, msg string) {
		t := time.Now().UTC()
		r.o.Publish(node.DutyState{Name: OtherManifestsDuty, Status: status, Message: msg, Since: t.Truncate(time.Second), Updated: t})
	}
	switch {
	case now == was:
	case now != "":
		say(node.DutyWarning, fmt.Sprintf("not run: %s in %s (the node service runs only the control plane's manifests, and this node's kubelet has no static pod directory)",
			now, r.o.Paths.ManifestsDir))
	default:
		say(node.DutyOK, "no other manifests in "+r.o.Paths.ManifestsDir)
	}
}

func (r *Runner) start(ctx context.Context, component, hash string, p Process) error {
	env := append(slices.Clone(r.o.Env), p.Env...)
	child := proc.New(proc.Spec{
		Name:        component,
		Args:        func() ([]string, error) { return p.Args, nil },
		Env:         env,
		Dir:         p.Dir,
		LogFile:     r.o.Paths.Host(node.ControlPlaneLogFile(r.o.Paths, component)),
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
		r.probe(pctx, component, run, p)
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
	if r.o.KillOnStop != nil && r.o.KillOnStop() {
		run.child.Kill()
	} else {
		_ = run.child.Stop()
	}
	return true
}

// stopAll stops the components in the reverse of their start, the
// controller-manager and the scheduler together, then the API server (which
// still reaches etcd to take its endpoint out of the kubernetes Service),
// then etcd. Each stop is bounded by the stop timeout.
func (r *Runner) stopAll() {
	for _, group := range [][]string{{manifests.KubeControllerMgr, manifests.KubeScheduler}, {manifests.KubeAPIServer}, {manifests.Etcd}} {
		var wg sync.WaitGroup
		for _, c := range group {
			wg.Go(func() {
				if r.stop(c) {
					r.publish(c, node.DutyStopped, "the node service stopped")
				}
			})
		}
		wg.Wait()
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
func (r *Runner) probe(ctx context.Context, component string, run *running, p Process) {
	child := run.child
	logName := node.ControlPlaneLogFile(r.o.Paths, component)
	var (
		lastPid, fails   int
		started          bool
		startedAt        time.Time
		nextLive, nextRd time.Time
		status, msg      string
		since            time.Time
		// restarting is the pid the prober asked to restart: it is not
		// probed (nor asked again) until another process runs.
		restarting int
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
	restart := func(pid int, why string) {
		r.o.Log.Warn(why+": restarting", "component", component, "pid", pid)
		say(node.DutyFailing, "restarted: "+why)
		restarting = pid
		child.RestartWithin(r.o.StopTimeout)
	}
	// check runs a probe; false when the prober is being stopped (a
	// cancelled probe is not a failure).
	check := func(pr *Probe) (live bool, err error) {
		err = pr.Check(ctx)
		return ctx.Err() == nil, err
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		now := time.Now()
		pid := child.Pid()
		if pid != lastPid {
			lastPid, fails, started, startedAt, restarting = pid, 0, p.Startup == nil, now, 0
			nextLive, nextRd = now, now
			if p.Liveness != nil {
				nextLive = now.Add(p.Liveness.InitialDelay)
			}
		}
		if run.republish.Swap(false) {
			status, msg = "", ""
		}
		where := fmt.Sprintf("pid %d, %d restarts, log %s", pid, child.Restarts(), logName)
		switch {
		case pid == 0:
			say(node.DutyFailing, fmt.Sprintf("not running (%v); restarted with backoff; log %s", child.Ready(), logName))
		case pid == restarting:
			// Asked to stop; the supervisor starts it again once it has.
		case !started:
			live, err := check(p.Startup)
			switch {
			case !live:
			case err == nil:
				started, fails = true, 0
				if p.Liveness != nil {
					nextLive = now.Add(p.Liveness.InitialDelay)
				}
			case now.Sub(startedAt) > time.Duration(p.Startup.FailureThreshold)*p.Startup.Period:
				restart(pid, fmt.Sprintf("its startup probe still fails after %v: %v", now.Sub(startedAt).Round(time.Second), err))
			default:
				say(node.DutyStarting, "starting ("+where+")")
			}
		default:
			if p.Liveness != nil && !now.Before(nextLive) {
				nextLive = now.Add(p.Liveness.Period)
				live, err := check(p.Liveness)
				switch {
				case !live:
				case err == nil:
					fails = 0
				default:
					if fails++; fails >= p.Liveness.FailureThreshold {
						restart(pid, fmt.Sprintf("its liveness probe failed %d times: %v", fails, err))
						break
					}
				}
			}
			if pid == restarting {
				break
			}
			if p.Readiness == nil {
				say(node.DutyOK, "running ("+where+")")
			} else if !now.Before(nextRd) {
				nextRd = now.Add(p.Readiness.Period)
				if live, err := check(p.Readiness); !live {
				} else if err != nil {
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
