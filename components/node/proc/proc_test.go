package proc

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Helper mode: the test binary doubles as a tiny supervisor, so a test can
// SIGKILL it and watch what happens to its child.
func TestMain(m *testing.M) {
	if os.Getenv("PROC_TEST_HELPER") == "supervise-sleep" {
		c := New(Spec{Name: "sleep", Args: func() ([]string, error) { return []string{"/bin/sleep", "300"}, nil }})
		if err := c.Start(context.Background()); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		// Give the runtime a chance to park this goroutine's thread
		// elsewhere: the child must survive as long as we do.
		for i := 0; i < 50; i++ {
			go func() { time.Sleep(time.Millisecond) }()
		}
		fmt.Println(c.Pid())
		select {}
	}
	os.Exit(m.Run())
}

func TestBackoff(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name    string
		uptimes []time.Duration
		want    []time.Duration
	}{
		{"doubles while dying young", []time.Duration{0, 0, 0, 0}, []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms}},
		{"capped", []time.Duration{0, 0, 0, 0, 0, 0, 0}, []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, time.Second, time.Second, time.Second}},
		{"reset after a long run", []time.Duration{0, 0, 0, 5 * time.Second, 0}, []time.Duration{100 * ms, 200 * ms, 400 * ms, 100 * ms, 200 * ms}},
		{"just below reset keeps growing", []time.Duration{0, 2*time.Second - ms}, []time.Duration{100 * ms, 200 * ms}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := Backoff{Initial: 100 * ms, Max: time.Second, ResetAfter: 2 * time.Second}
			for i, up := range tt.uptimes {
				if got := b.Next(up); got != tt.want[i] {
					t.Fatalf("step %d (uptime %v): got %v, want %v", i, up, got, tt.want[i])
				}
			}
		})
	}
	b := DefaultBackoff()
	if b.Initial <= 0 || b.Max < b.Initial || b.ResetAfter <= b.Max {
		t.Fatalf("DefaultBackoff is inconsistent: %+v", b)
	}
}

// logBuffer collects slog records.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func newLogger() (*slog.Logger, *logBuffer) {
	lb := &logBuffer{}
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

func alive(pid int) bool { return Matches(pid, nil) }

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStartStop(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "run", "sleep.pid")
	log, _ := newLogger()
	c := New(Spec{
		Name:     "sleep",
		Args:     func() ([]string, error) { return []string{"/bin/sleep", "300"}, nil },
		PIDFile:  pidFile,
		Identity: []string{"/bin/sleep", "300"},
		Log:      log,
	})
	if err := c.Ready(); err == nil {
		t.Fatal("Ready before Start: want an error")
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	pid := c.Pid()
	if pid <= 0 || !alive(pid) {
		t.Fatalf("pid %d not running after Start", pid)
	}
	if err := c.Ready(); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if got, err := ReadPIDFile(pidFile); err != nil || got != pid {
		t.Fatalf("pid file: %d, %v; want %d", got, err, pid)
	}
	if err := c.Start(context.Background()); err == nil {
		t.Fatal("second Start: want an error")
	}
	// Its own process group: a terminal's Ctrl-C reaches the supervisor only.
	if pgid, _ := syscall.Getpgid(pid); pgid != pid {
		t.Errorf("child pgid %d, want its own (%d)", pgid, pid)
	}
	begin := time.Now()
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Fatalf("pid %d still running after Stop", pid)
	}
	if d := time.Since(begin); d > 2*time.Second {
		t.Errorf("Stop took %v; SIGTERM should end sleep at once", d)
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Errorf("pid file left after Stop: %v", err)
	}
	if c.Restarts() != 0 {
		t.Errorf("Restarts = %d after a clean stop, want 0", c.Restarts())
	}
	select {
	case <-c.Done():
	default:
		t.Error("Done not closed after Stop")
	}
}

func TestStopBeforeStart(t *testing.T) {
	c := New(Spec{Name: "x", Args: func() ([]string, error) { return []string{"/bin/true"}, nil }})
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err == nil {
		t.Fatal("Start after Stop: want an error")
	}
}

func TestFirstStartFails(t *testing.T) {
	c := New(Spec{Name: "missing", Args: func() ([]string, error) { return []string{"/nonexistent/kubeforge"}, nil }})
	err := c.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "start missing") {
		t.Fatalf("got %v, want a start error", err)
	}
	c.Stop()
}

func TestRestartsWithBackoffAndReason(t *testing.T) {
	dir := t.TempDir()
	logFile := filepath.Join(dir, "child.log")
	log, logs := newLogger()
	var starts int
	var mu sync.Mutex
	c := New(Spec{
		Name: "crasher",
		Args: func() ([]string, error) {
			mu.Lock()
			starts++
			n := starts
			mu.Unlock()
			return []string{"/bin/sh", "-c", fmt.Sprintf("echo run %d failed: boom >&2; exit 3", n)}, nil
		},
		LogFile: logFile,
		Backoff: Backoff{Initial: 20 * time.Millisecond, Max: 80 * time.Millisecond, ResetAfter: time.Minute},
		Log:     log,
	})
	begin := time.Now()
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "4 restarts", 5*time.Second, func() bool { return c.Restarts() >= 4 })
	elapsed := time.Since(begin)
	c.Stop()
	// The fourth exit comes after delays of 20+40+80 ms at least.
	if elapsed < 140*time.Millisecond {
		t.Errorf("4 restarts took %v: backoff not applied", elapsed)
	}
	out := logs.String()
	for _, want := range []string{"exited; restarting", "exit status 3", "run 1 failed: boom", "backoff=20ms", "backoff=40ms", "backoff=80ms"} {
		if !strings.Contains(out, want) {
			t.Errorf("restart log lacks %q:\n%s", want, out)
		}
	}
	data, _ := os.ReadFile(logFile)
	if !strings.Contains(string(data), "run 1 failed") || !strings.Contains(string(data), "run 4 failed") {
		t.Errorf("child log file lacks the runs' output:\n%s", data)
	}
	if err := c.Ready(); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("Ready after Stop: %v", err)
	}
}

func TestBackoffResetsAfterLongRun(t *testing.T) {
	log, logs := newLogger()
	c := New(Spec{
		Name:    "flaky",
		Args:    func() ([]string, error) { return []string{"/bin/sh", "-c", "sleep 0.15; exit 1"}, nil },
		Backoff: Backoff{Initial: 10 * time.Millisecond, Max: time.Second, ResetAfter: 100 * time.Millisecond},
		Log:     log,
	})
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "3 restarts", 5*time.Second, func() bool { return c.Restarts() >= 3 })
	c.Stop()
	if out := logs.String(); strings.Contains(out, "backoff=20ms") || !strings.Contains(out, "backoff=10ms") {
		t.Errorf("runs longer than ResetAfter should always wait Initial:\n%s", out)
	}
}

func TestRestartOnRequest(t *testing.T) {
	log, logs := newLogger()
	c := New(Spec{Name: "sleep", Args: func() ([]string, error) { return []string{"/bin/sleep", "300"}, nil }, Log: log})
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	old := c.Pid()
	c.Restart()
	waitFor(t, "a new pid", 5*time.Second, func() bool { p := c.Pid(); return p != 0 && p != old })
	if alive(old) {
		t.Errorf("old pid %d still running", old)
	}
	if !strings.Contains(logs.String(), "restarting on request") {
		t.Errorf("log: %s", logs.String())
	}
}

func TestStopKillsAfterTimeout(t *testing.T) {
	log, _ := newLogger()
	c := New(Spec{
		Name: "stubborn",
		Args: func() ([]string, error) {
			return []string{"/bin/sh", "-c", "trap '' TERM; echo ready; sleep 300 & wait"}, nil
		},
		StopTimeout: 200 * time.Millisecond,
		Log:         log,
	})
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let the shell install its trap
	pid := c.Pid()
	begin := time.Now()
	c.Stop()
	if d := time.Since(begin); d < 200*time.Millisecond || d > 3*time.Second {
		t.Errorf("Stop took %v, want about StopTimeout", d)
	}
	if alive(pid) {
		t.Errorf("pid %d survived SIGKILL", pid)
	}
}

// Kill does not wait for a graceful stop (reset's quick stop), nor does
// RestartWithin wait past its bound for one.
func TestKillAndRestartWithin(t *testing.T) {
	log, _ := newLogger()
	c := New(Spec{
		Name: "stubborn",
		Args: func() ([]string, error) {
			return []string{"/bin/sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"}, nil
		},
		StopTimeout: time.Minute,
		Log:         log,
	})
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let the shell install its trap
	first := c.Pid()
	c.RestartWithin(200 * time.Millisecond)
	deadline := time.Now().Add(5 * time.Second)
	for c.Pid() == first || c.Pid() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d not replaced 5 s after RestartWithin(200ms)", first)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if alive(first) {
		t.Errorf("pid %d survived its restart", first)
	}
	time.Sleep(100 * time.Millisecond)
	second := c.Pid()
	begin := time.Now()
	c.Kill()
	if d := time.Since(begin); d > 2*time.Second {
		t.Errorf("Kill took %v", d)
	}
	if alive(second) {
		t.Errorf("pid %d survived Kill", second)
	}
	c.Kill() // twice is fine
}

// A SIGKILLed supervisor takes its children down (Pdeathsig), even though
// the Go runtime moves goroutines between threads.
func TestChildDiesWithSupervisor(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PROC_TEST_HELPER=supervise-sleep")
	out := &logBuffer{}
	cmd.Stdout = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var child int
	waitFor(t, "the helper's child pid", 10*time.Second, func() bool {
		child, _ = strconv.Atoi(strings.TrimSpace(out.String()))
		return child > 0
	})
	time.Sleep(200 * time.Millisecond)
	if !alive(child) {
		t.Fatalf("child %d died while its supervisor lives (Pdeathsig fired early?)", child)
	}
	cmd.Process.Kill()
	cmd.Wait()
	waitFor(t, "the child to die with its supervisor", 5*time.Second, func() bool { return !alive(child) })
}

// A child left behind by a killed supervisor is waited for (and stopped)
// before its successor starts.
func TestPredecessorStoppedFirst(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "sleep.pid")
	old := exec.Command("/bin/sleep", "301")
	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	go old.Wait() // reap, or it stays a zombie
	if err := WritePIDFile(pidFile, old.Process.Pid); err != nil {
		t.Fatal(err)
	}
	log, logs := newLogger()
	c := New(Spec{
		Name:     "sleep",
		Args:     func() ([]string, error) { return []string{"/bin/sleep", "301"}, nil },
		PIDFile:  pidFile,
		Identity: []string{"/bin/sleep", "301"},
		Log:      log,
	})
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if alive(old.Process.Pid) {
		t.Errorf("predecessor %d still running", old.Process.Pid)
	}
	if c.Pid() == old.Process.Pid || c.Pid() == 0 {
		t.Errorf("new pid %d", c.Pid())
	}
	if !strings.Contains(logs.String(), "waiting for the previous process") {
		t.Errorf("log: %s", logs.String())
	}
}

func TestMatches(t *testing.T) {
	cmd := exec.Command("/bin/sleep", "302")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	// Start returns after fork; until the child's exec, its command line is
	// still this test binary's.
	waitFor(t, "exec of /bin/sleep", 5*time.Second, func() bool { return Matches(pid, []string{"/bin/sleep", "302"}) })
	tests := []struct {
		id   []string
		want bool
	}{
		{nil, true},
		{[]string{"/bin/sleep"}, true},
		{[]string{"/bin/sleep", "302"}, true},
		{[]string{"302"}, true},
		{[]string{"/bin/sleep", "303"}, false},
		{[]string{"component", "kubelet"}, false},
	}
	for _, tt := range tests {
		if got := Matches(pid, tt.id); got != tt.want {
			t.Errorf("Matches(%v) = %v, want %v", tt.id, got, tt.want)
		}
	}
	cmd.Process.Kill()
	// Not yet reaped: a zombie does not count as running.
	waitFor(t, "zombie not matching", 2*time.Second, func() bool { return !Matches(pid, nil) })
	cmd.Wait()
	if Matches(0, nil) || Matches(-1, nil) {
		t.Error("pid <= 0 must not match")
	}
}

func TestTail(t *testing.T) {
	tl := NewTail(8)
	fmt.Fprint(tl, "hello ")
	fmt.Fprint(tl, "world, again")
	if got := tl.String(); got != "d, again" {
		t.Errorf("got %q", got)
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "log")
	os.WriteFile(f, []byte("old run\nline a\nline b\nline c\n"), 0o600)
	if got := readTail(f, 8, 1024); got != "line a\nline b\nline c" {
		t.Errorf("readTail from offset: %q", got)
	}
	if got := readTail(f, 0, 10); got != "line c" {
		t.Errorf("readTail bounded: %q", got)
	}
}
