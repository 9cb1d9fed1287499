package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/internal/progress"
	"github.com/kubeforge/kubeforge/internal/testutil"
	"github.com/kubeforge/kubeforge/test/testbed"
)

// config is the bench's settings (see the package documentation).
type config struct {
	runs       int
	idle       time.Duration
	settle     time.Duration
	requests   int
	busyLoad   float64
	waitQuiet  time.Duration
	skip       map[string]bool
	out        string
	interval   time.Duration
	binary     string
	netperfBin string
}

func loadConfig(t *testing.T) config {
	c := config{runs: 3, idle: 60 * time.Second, settle: 20 * time.Second, requests: 500, busyLoad: 1.5,
		skip: map[string]bool{}, out: filepath.Join(testutil.RepoRoot(), "bench"), interval: 50 * time.Millisecond}
	intEnv := func(name string, p *int) {
		if v := os.Getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				t.Fatalf("%s=%q: want a positive number", name, v)
			}
			*p = n
		}
	}
	durEnv := func(name string, p *time.Duration) {
		if v := os.Getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				if s, err2 := strconv.ParseFloat(v, 64); err2 == nil {
					d, err = time.Duration(s*float64(time.Second)), nil
				}
			}
			if err != nil || d < 0 {
				t.Fatalf("%s=%q: want a duration (60s)", name, v)
			}
			*p = d
		}
	}
	intEnv("BENCH_RUNS", &c.runs)
	intEnv("BENCH_REQUESTS", &c.requests)
	durEnv("BENCH_IDLE", &c.idle)
	durEnv("BENCH_SETTLE", &c.settle)
	durEnv("BENCH_WAIT_QUIET", &c.waitQuiet)
	if v := os.Getenv("BENCH_BUSY_LOAD"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			t.Fatalf("BENCH_BUSY_LOAD=%q: %v", v, err)
		}
		c.busyLoad = f
	}
	for _, s := range strings.Split(os.Getenv("BENCH_SKIP"), ",") {
		if s = strings.TrimSpace(s); s != "" {
			switch s {
			case "single", "processes", "restart", "join", "network", "logging", "external", "snapshot", "cluster", "upgrade", "kubeadm", "addons-off", "pull":
				c.skip[s] = true
			default:
				t.Fatalf("BENCH_SKIP: unknown part %q (single, processes, restart, join, network, logging, external, snapshot, cluster, upgrade, kubeadm, addons-off, pull)", s)
			}
		}
	}
	if v := os.Getenv("BENCH_OUT"); v != "" {
		c.out = v
	}
	return c
}

// Samples is bench/samples.json: the raw samples behind results.json.
type Samples struct {
	Single []*RunSamples `json:"single_node_runs"`
	// Processes: the single-node runs with the control plane as processes.
	Processes []*RunSamples     `json:"processes_runs,omitempty"`
	Kubeadm   []*KubeadmSamples `json:"kubeadm_runs,omitempty"`
	Join      *JoinSamples      `json:"join,omitempty"`
	Network   *NetworkSamples   `json:"network,omitempty"`
	Upgrade   *UpgradeSamples   `json:"upgrade,omitempty"`
	// AddonsOff: the run with every optional addon off (addons_test.go).
	AddonsOff *RunSamples `json:"addons_off,omitempty"`
}

// RunSamples are one single-node run's raw samples.
type RunSamples struct {
	Run        int            `json:"run"`
	InitEvents []TimedEvent   `json:"init_events"`
	InitStderr string         `json:"init_stderr,omitempty"`
	InitWatch  WatchResult    `json:"init_watch"`
	Memory     *MemSnapshot   `json:"memory,omitempty"`
	Restart    *RestartSample `json:"restart,omitempty"`
	Kill9      *RestartSample `json:"kill9,omitempty"`
	Reset      string         `json:"reset_output,omitempty"`
	// KubectlTop is `kubectl top nodes` once the metrics API answered.
	KubectlTop string `json:"kubectl_top,omitempty"`
}

// RestartSample are a restart's raw samples.
type RestartSample struct {
	Watch  WatchResult  `json:"watch"`
	Output string       `json:"output"`
	Memory *MemSnapshot `json:"memory,omitempty"`
}

// JoinSamples are the multi-node part's raw samples.
type JoinSamples struct {
	InitEvents []TimedEvent            `json:"init_events"`
	Joins      map[string][]TimedEvent `json:"join_events"`
	Outputs    map[string]string       `json:"join_outputs"`
	Watches    map[string]WatchResult  `json:"watches"`
}

// NetworkSamples are every request's latency (µs) per client and mode.
type NetworkSamples struct {
	Latencies map[string][]int64 `json:"latencies_us"`
}

// TimedEvent is a line of `-o json` output and when the bench read it
// (seconds after the command started).
type TimedEvent struct {
	T float64 `json:"t"`
	progress.Event
	Raw string `json:"raw,omitempty"`
}

// bench holds one TestBench's state.
type bench struct {
	cfg     config
	res     *Results
	samples *Samples
	mu      sync.Mutex
	// kubeadm is kubeadm and its images (kubeadmPrepare; nil: none).
	kubeadm *kubeadmSetup
	// tmp is a directory for the whole bench.
	tmp string
}

func (b *bench) errorf(t testing.TB, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	t.Log("PROBLEM: " + msg)
	b.mu.Lock()
	b.res.Errors = append(b.res.Errors, msg)
	b.mu.Unlock()
}

// TestBench is `make bench`.
func TestBench(t *testing.T) {
	if os.Getenv("KUBEFORGE_BENCH") != "1" {
		t.Skip("the bench runs with KUBEFORGE_BENCH=1 (make bench)")
	}
	testbed.RequireHost(t)
	cfg := loadConfig(t)
	// One private copy for the whole bench: bin/kubeforge may be rebuilt
	// while it runs (each testbed copies this copy again).
	src := testutil.Binary(t)
	cfg.binary = filepath.Join(t.TempDir(), "kubeforge")
	if err := testbed.CopyFile(src, cfg.binary, 0o755); err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
	b := &bench{cfg: cfg, samples: &Samples{}, res: &Results{Schema: 1, Started: time.Now(), Host: hostInfo(),
		Settings: Settings{Runs: cfg.runs, IdleSeconds: cfg.idle.Seconds(), SettleSeconds: cfg.settle.Seconds(),
			Requests: cfg.requests, PollIntervalMS: float64(cfg.interval.Milliseconds()), BusyLoad: cfg.busyLoad,
			WaitQuietSecond: cfg.waitQuiet.Seconds()}}}
	for k := range cfg.skip {
		b.res.Settings.Skip = append(b.res.Settings.Skip, k)
	}
	b.tmp = t.TempDir()
	b.res.Kubeforge = binaryInfo(t, cfg.binary)
	b.res.Kubeforge.Path = src
	t.Logf("bench: %s (%s), %d runs, results in %s", b.res.Kubeforge.Version, cfg.binary, cfg.runs, cfg.out)

	defer b.finish(t)

	// kubeadm init on the same machine (the day-1 ratios' denominators),
	// each run right after kubeforge's run of the same number, so that
	// both see the machine alike.
	if !cfg.skip["kubeadm"] {
		t.Run("kubeadm-prepare", b.kubeadmPrepare)
	}
	for i := 1; i <= cfg.runs; i++ {
		if !cfg.skip["single"] {
			t.Run(fmt.Sprintf("single-%d", i), func(t *testing.T) { b.singleRun(t, i) })
		}
		if !cfg.skip["kubeadm"] && b.kubeadm != nil {
			t.Run(fmt.Sprintf("kubeadm-%d", i), func(t *testing.T) { b.kubeadmRun(t, i) })
		}
		if !cfg.skip["processes"] { // --control-plane-runtime=Processes
			t.Run(fmt.Sprintf("processes-%d", i), func(t *testing.T) { b.processesRun(t, i) })
		}
	}
	if !cfg.skip["addons-off"] { // one single node with every optional addon off: their memory
		t.Run("addons-off", b.addonsOffRun)
	}
	if !cfg.skip["pull"] { // a 50 MB image from a registry on the test bridge
		t.Run("pull", b.pullBench)
	}
	if !cfg.skip["external"] { // init on the host's containerd (--cri-socket): 1.6 and the v2 line
		for _, l := range externalLines {
			for i := 1; i <= cfg.runs; i++ {
				t.Run(fmt.Sprintf("external-%s-%d", l.line, i), func(t *testing.T) { b.externalRun(t, i, l.line) })
			}
		}
	}
	if !cfg.skip["join"] {
		t.Run("join", b.joinBench)
	}
	if !cfg.skip["snapshot"] {
		t.Run("snapshot", b.snapshotBench)
	}
	if !cfg.skip["cluster"] { // `kubeforge cluster create --workers 2`
		t.Run("cluster", b.clusterBench)
	}
	if !cfg.skip["upgrade"] { // `upgrade apply` / `upgrade node` from an older build
		t.Run("upgrade", b.upgradeBench)
	}
}

// finish computes the figures, prints the table and writes the JSON files.
func (b *bench) finish(t *testing.T) {
	r := b.res
	r.Finished = time.Now()
	r.DurationSeconds = round3(r.Finished.Sub(r.Started).Seconds())
	r.Figures = b.figures()
	for _, l := range r.Load {
		r.Busy = r.Busy || l.Busy
	}
	var table bytes.Buffer
	r.PrintTable(&table)
	fmt.Print(table.String())
	if p, err := WriteJSON(b.cfg.out, "results.json", r); err != nil {
		t.Errorf("write results: %v", err)
	} else {
		fmt.Printf("results: %s\n", p)
	}
	if p, err := WriteJSON(b.cfg.out, "samples.json", b.samples); err != nil {
		t.Errorf("write samples: %v", err)
	} else {
		fmt.Printf("raw samples: %s\n", p)
	}
	_ = os.WriteFile(filepath.Join(b.cfg.out, "table.txt"), table.Bytes(), 0o644)
}

// loadSample reads the load average, waiting (up to BENCH_WAIT_QUIET) for
// the machine to be quiet, and prints it.
func (b *bench) loadSample(t testing.TB, before string) LoadSample {
	start := time.Now()
	var l LoadSample
	for {
		l = readLoad()
		l.Before = before
		l.Busy = l.Load1 > b.cfg.busyLoad
		if !l.Busy || time.Since(start) >= b.cfg.waitQuiet {
			break
		}
		time.Sleep(5 * time.Second)
	}
	if w := time.Since(start); w > time.Second {
		l.WaitedSeconds = math.Round(w.Seconds())
	}
	l.OtherNodes = otherTestbedNodes()
	fmt.Printf("bench: before %s: %s\n", before, l)
	b.mu.Lock()
	b.res.Load = append(b.res.Load, l)
	b.mu.Unlock()
	return l
}

func readLoad() LoadSample {
	var l LoadSample
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			l.Load1, _ = strconv.ParseFloat(f[0], 64)
			l.Load5, _ = strconv.ParseFloat(f[1], 64)
			l.Load15, _ = strconv.ParseFloat(f[2], 64)
		}
	}
	l.MemoryCgroups = memoryCgroups()
	return l
}

// memoryCgroups is the num_cgroups column of /proc/cgroups for the memory
// controller (0 when unknown).
func memoryCgroups() int {
	b, err := os.ReadFile("/proc/cgroups")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "memory" {
			n, _ := strconv.Atoi(f[2])
			return n
		}
	}
	return 0
}

// otherTestbedNodes counts the test bed network namespaces on the host
// (the bench's own are counted before they exist).
func otherTestbedNodes() int {
	entries, _ := os.ReadDir("/run/netns")
	n := 0
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "kftb-") {
			n++
		}
	}
	return n
}

func hostInfo() Host {
	h := Host{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	h.Hostname, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				h.MemMiB = kb / 1024
			}
		}
	}
	return h
}

func binaryInfo(t testing.TB, path string) Binary {
	bi := Binary{Path: path}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	n, _ := io.Copy(h, f)
	bi.Size = n
	bi.SHA256 = hex.EncodeToString(h.Sum(nil))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, path, "version").Output(); err == nil {
		bi.Version = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	return bi
}

// cmdResult is a kubeforge command run in a node.
type cmdResult struct {
	Start  time.Time
	Wall   float64
	Events []TimedEvent
	Output string // stdout lines that are not JSON events, and stderr
	Err    error
}

// run runs a command in the node, reading its `-o json` events as they
// come.
func run(ctx context.Context, n *testbed.Node, name string, args ...string) cmdResult {
	return runCmd(n.Command(ctx, name, args...))
}

// runCmd runs cmd (a command in a node), reading its `-o json` events as
// they come; other lines go to Output.
func runCmd(cmd *exec.Cmd) cmdResult {
	name, args := cmd.Args[0], cmd.Args[1:]
	if i := slices.Index(cmd.Args, "--"); filepath.Base(cmd.Args[0]) == "nsenter" && i >= 0 && i+1 < len(cmd.Args) {
		name, args = cmd.Args[i+1], cmd.Args[i+2:]
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return cmdResult{Err: err}
	}
	r := cmdResult{Start: time.Now()}
	if err := cmd.Start(); err != nil {
		r.Err = err
		return r
	}
	var other strings.Builder
	s := bufio.NewScanner(stdout)
	s.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for s.Scan() {
		line := s.Text()
		ev := TimedEvent{T: round3(time.Since(r.Start).Seconds())}
		if err := json.Unmarshal([]byte(line), &ev.Event); err != nil || ev.Event.Message == "" && ev.Event.Action == "" {
			other.WriteString(line + "\n")
			if strings.TrimSpace(line) == "" {
				continue
			}
			ev = TimedEvent{T: ev.T, Raw: line}
		}
		r.Events = append(r.Events, ev)
	}
	r.Err = cmd.Wait()
	r.Wall = round3(time.Since(r.Start).Seconds())
	other.WriteString(stderr.String())
	r.Output = other.String()
	if r.Err != nil {
		r.Err = fmt.Errorf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), r.Err, tailLines(eventText(r.Events)+r.Output, 40))
	}
	return r
}

func eventText(evs []TimedEvent) string {
	var b strings.Builder
	for _, e := range evs {
		if e.Raw != "" {
			continue
		}
		fmt.Fprintf(&b, "[%s] %s %s\n", e.Phase, e.Level, e.Message)
	}
	return b.String()
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// phases returns the phase-done events' durations, in order.
func phases(evs []TimedEvent) []PhaseTime {
	var out []PhaseTime
	for _, e := range evs {
		if e.Action == "phase-done" {
			out = append(out, PhaseTime{Phase: e.Phase, Seconds: e.Seconds})
		}
	}
	return out
}

// eventSeconds returns the seconds of the first event with this action
// (and phase, when not empty); NaN when there is none.
func eventSeconds(evs []TimedEvent, phase, action string) float64 {
	for _, e := range evs {
		if e.Action == action && (phase == "" || e.Phase == phase) {
			return e.Seconds
		}
	}
	return math.NaN()
}

// memory samples the memory of every process of the node.
func memory(n *testbed.Node, when string) *MemSnapshot {
	snap := &MemSnapshot{When: when}
	for _, p := range n.Processes() {
		pm, err := ReadSmapsRollup(p.PID)
		if err != nil {
			continue
		}
		pm.Component, pm.Cmdline = Classify(p.Cmdline, p.Exe), shortCmd(p.Cmdline)
		pm.PPID, _ = ReadPPID(p.PID)
		pm.PodUID = ReadPodUID(p.PID)
		snap.Processes = append(snap.Processes, pm)
	}
	AssignPods(snap.Processes)
	snap.Sum()
	return snap
}

func shortCmd(args []string) string {
	s := strings.Join(args, " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// lite is a snapshot without its processes (for results.json).
func (m *MemSnapshot) lite() *MemSnapshot {
	if m == nil {
		return nil
	}
	c := *m
	c.Processes = nil
	return &c
}

// startWatch runs w until it is done or timeout; the returned function
// waits for it.
func startWatch(w *Watcher, timeout time.Duration) (wait func() WatchResult, stop func()) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	return func() WatchResult { <-done; cancel(); return w.Result() },
		func() { cancel(); <-done }
}

// killAndWait sends SIGKILL to pid and waits until it is gone (or a zombie).
func killAndWait(pid int, timeout time.Duration) error {
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return nil
		}
		if i := bytes.LastIndexByte(b, ')'); i > 0 && i+2 < len(b) && b[i+2] == 'Z' {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("pid %d still runs %v after SIGKILL", pid, timeout)
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
