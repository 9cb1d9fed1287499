package node

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kubeforge/kubeforge/components/node/proc"
	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/fsutil"
)

// The test binary doubles as a fake `kubeforge`: `node run` is a fake
// supervisor (lock, pid file, state, one child), `component containerd` a
// child that sleeps. That tests Start, Stop and Running without the
// components.
const fakeEnv = "NODE_TEST_FAKE"

func TestMain(m *testing.M) {
	switch mode := os.Getenv(fakeEnv); {
	case mode == "":
		os.Exit(m.Run())
	case len(os.Args) >= 3 && os.Args[1] == "component":
		for { // a child: run until a signal
			time.Sleep(time.Hour)
		}
	case len(os.Args) >= 3 && os.Args[1] == "node" && os.Args[2] == "run":
		os.Exit(fakeSupervisor(mode, os.Args[3:]))
	default:
		fmt.Fprintln(os.Stderr, "fake kubeforge: unexpected args", os.Args)
		os.Exit(2)
	}
}

func fakeSupervisor(mode string, args []string) int {
	p := config.DefaultPaths()
	for _, a := range args {
		name, val, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		for _, f := range PathFlags(&p) {
			if f.Name == name {
				*f.Field = val
			}
		}
	}
	if p.RunDir == config.DefaultPaths().RunDir {
		fmt.Fprintln(os.Stderr, "fake supervisor: refusing the real run dir")
		return 2
	}
	lock, err := AcquireLock(p)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake supervisor:", err)
		return 1
	}
	defer lock.Release()
	fsutil.WriteFile(p.NodePIDFile(), []byte(strconv.Itoa(os.Getpid())), 0o644)
	if mode == "fail" {
		fmt.Fprintln(os.Stderr, "fake supervisor: containerd config is broken")
		return 1
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	child := proc.New(proc.Spec{
		Name:     "containerd",
		Args:     func() ([]string, error) { return []string{os.Args[0], "component", "containerd"}, nil },
		PIDFile:  ContainerdPIDFile(p),
		Identity: ContainerdIdentity,
	})
	kubelet := proc.New(proc.Spec{
		Name:     "kubelet",
		Args:     func() ([]string, error) { return []string{os.Args[0], "component", "kubelet"}, nil },
		PIDFile:  KubeletPIDFile(p),
		Identity: KubeletIdentity,
	})
	if err := child.Start(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "fake supervisor:", err)
		return 1
	}
	WriteState(p, State{PID: os.Getpid(), Phase: "starting containerd"})
	time.Sleep(300 * time.Millisecond) // containerd "gets ready"
	state := State{PID: os.Getpid(), Phase: "importing images", Containerd: ChildState{PID: child.Pid(), Ready: true}}
	WriteState(p, state)
	time.Sleep(200 * time.Millisecond)
	state.Phase, state.ImagesReady = "running", true
	WriteState(p, state)
	kubelet.Start(context.Background())
	if mode == "ignore-term" {
		signal.Ignore(syscall.SIGTERM)
		for {
			time.Sleep(time.Hour)
		}
	}
	for {
		select {
		case <-usr1:
			kubelet.Stop()
			state.KubeletHeld = true
			WriteState(p, state)
			continue
		case <-term:
		}
		break
	}
	kubelet.Stop()
	child.Stop()
	os.Remove(p.NodePIDFile())
	os.Remove(StateFile(p))
	return 0
}

func startOpts() StartOptions {
	return StartOptions{Mode: ModeDaemon, Executable: os.Args[0], Timeout: 20 * time.Second}
}

func alive(pid int) bool { return proc.Matches(pid, nil) }

func TestStartStopDaemon(t *testing.T) {
	t.Setenv(fakeEnv, "ok")
	p := testPaths(t)
	ctx := context.Background()

	if _, ok := Running(p); ok {
		t.Fatal("running before start")
	}
	if err := Stop(ctx, p); err != nil {
		t.Fatalf("Stop when not running: %v", err)
	}
	if err := WaitImages(ctx, p); err == nil {
		t.Fatal("WaitImages when not running: want an error")
	}

	begin := time.Now()
	if err := Start(ctx, p, startOpts()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d < 300*time.Millisecond {
		t.Errorf("Start returned after %v, before the runtime was ready", d)
	}
	pid, ok := Running(p)
	if !ok || !alive(pid) {
		t.Fatalf("Running = %d, %v after Start", pid, ok)
	}
	if !proc.Matches(pid, SupervisorIdentity) {
		t.Errorf("pid %d is not a `node run`", pid)
	}
	// Detached: its own session, stdin /dev/null, output in the node log.
	if sid, _ := unix.Getsid(pid); sid != pid {
		t.Errorf("daemon sid %d, want its own session %d", sid, pid)
	}
	if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/0", pid)); target != "/dev/null" {
		t.Errorf("daemon stdin is %q", target)
	}
	if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/2", pid)); target != p.NodeLogFile() {
		t.Errorf("daemon stderr is %q, want %s", target, p.NodeLogFile())
	}
	st := GetStatus(ctx, p)
	if !st.Running || st.PID != pid || st.ContainerdPID == 0 || !st.State.Containerd.Ready {
		t.Errorf("status: %+v", st)
	}
	child := st.ContainerdPID
	if st.State.ImagesReady {
		t.Error("images ready before the fake imported them: the test proves nothing")
	}
	if err := WaitImages(ctx, p); err != nil {
		t.Fatal(err)
	}
	if !GetStatus(ctx, p).State.ImagesReady {
		t.Error("WaitImages returned before the images were ready")
	}

	// Idempotent.
	if err := Start(ctx, p, startOpts()); err != nil {
		t.Fatal(err)
	}
	if again, _ := Running(p); again != pid {
		t.Fatalf("second Start: pid %d, want %d", again, pid)
	}

	if err := Stop(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, ok := Running(p); ok {
		t.Fatal("running after Stop")
	}
	if alive(pid) || proc.Matches(child, ContainerdIdentity) {
		t.Fatalf("left behind: supervisor %v, child %v", alive(pid), alive(child))
	}
	for _, f := range []string{p.NodePIDFile(), StateFile(p), ContainerdPIDFile(p)} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s left behind", f)
		}
	}
	if err := Stop(ctx, p); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestConcurrentStarts(t *testing.T) {
	t.Setenv(fakeEnv, "ok")
	p := testPaths(t)
	ctx := context.Background()
	defer Stop(ctx, p)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = Start(ctx, p, startOpts()) }()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("start %d: %v", i, err)
		}
	}
	if _, ok := Running(p); !ok {
		t.Fatal("not running")
	}
}

func TestStartReportsEarlyExit(t *testing.T) {
	t.Setenv(fakeEnv, "fail")
	p := testPaths(t)
	err := Start(context.Background(), p, startOpts())
	if err == nil || !strings.Contains(err.Error(), "containerd config is broken") {
		t.Fatalf("got %v, want the daemon's last log lines", err)
	}
}

// A supervisor killed with SIGKILL leaves its child to Pdeathsig; Stop
// then cleans up, and a new Start works.
func TestStopAfterSupervisorKilled(t *testing.T) {
	t.Setenv(fakeEnv, "ok")
	p := testPaths(t)
	ctx := context.Background()
	if err := Start(ctx, p, startOpts()); err != nil {
		t.Fatal(err)
	}
	pid, _ := Running(p)
	child := GetStatus(ctx, p).ContainerdPID
	syscall.Kill(pid, syscall.SIGKILL)
	deadline := time.Now().Add(5 * time.Second)
	for (proc.Matches(child, ContainerdIdentity) || locked(p)) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if proc.Matches(child, ContainerdIdentity) {
		t.Fatal("child survived its supervisor's SIGKILL")
	}
	if _, ok := Running(p); ok {
		t.Fatal("still running after SIGKILL")
	}
	if err := Start(ctx, p, startOpts()); err != nil {
		t.Fatal(err)
	}
	if err := Stop(ctx, p); err != nil {
		t.Fatal(err)
	}
}

func TestStopKillsAStuckSupervisor(t *testing.T) {
	t.Setenv(fakeEnv, "ignore-term")
	p := testPaths(t)
	if err := Start(context.Background(), p, startOpts()); err != nil {
		t.Fatal(err)
	}
	pid, _ := Running(p)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	begin := time.Now()
	if err := Stop(ctx, p); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("Stop took %v", d)
	}
	if alive(pid) {
		t.Fatal("stuck supervisor survived")
	}
	if _, ok := Running(p); ok {
		t.Fatal("still running")
	}
}

func TestLock(t *testing.T) {
	p := testPaths(t)
	l, err := AcquireLock(p)
	if err != nil {
		t.Fatal(err)
	}
	if !locked(p) {
		t.Fatal("lock not visible")
	}
	if _, err := AcquireLock(p); err == nil {
		t.Fatal("second lock: want ErrRunning")
	}
	l.Release()
	l.Release()
	if locked(p) {
		t.Fatal("still locked after Release")
	}
	if _, err := os.Stat(filepath.Join(p.RunDir, "node.lock")); err != nil {
		t.Fatal(err)
	}
}

func TestStopKubelet(t *testing.T) {
	t.Setenv(fakeEnv, "ok")
	p := testPaths(t)
	ctx := context.Background()
	if err := StopKubelet(ctx, p); err != nil {
		t.Fatalf("StopKubelet when nothing runs: %v", err)
	}
	if err := Start(ctx, p, startOpts()); err != nil {
		t.Fatal(err)
	}
	defer Stop(ctx, p)
	var st Status
	deadline := time.Now().Add(5 * time.Second)
	for st = GetStatus(ctx, p); st.KubeletPID == 0 && time.Now().Before(deadline); st = GetStatus(ctx, p) {
		time.Sleep(10 * time.Millisecond)
	}
	if st.KubeletPID == 0 || st.ContainerdPID == 0 {
		t.Fatalf("status: %+v", st)
	}
	if err := StopKubelet(ctx, p); err != nil {
		t.Fatal(err)
	}
	if proc.Matches(st.KubeletPID, KubeletIdentity) {
		t.Error("kubelet still running")
	}
	if !proc.Matches(st.ContainerdPID, ContainerdIdentity) {
		t.Error("containerd stopped too")
	}
	after := GetStatus(ctx, p)
	if !after.Running || !after.State.KubeletHeld || after.KubeletPID != 0 {
		t.Errorf("status after StopKubelet: %+v", after)
	}
	if err := StopKubelet(ctx, p); err != nil {
		t.Fatalf("second StopKubelet: %v", err)
	}
}

func TestStatusProblems(t *testing.T) {
	healthy := Status{Running: true, RuntimeReady: true, KubeletPID: 42,
		State: State{Phase: PhaseRunning, Duties: []DutyState{{Name: "certificate-renewal", Status: DutyWarning}, {Name: "log-shipping", Status: DutyOK}}}}
	for _, c := range []struct {
		name string
		edit func(*Status)
		want []string
	}{
		{"healthy, a warning", func(*Status) {}, nil},
		{"not running: its own exit code", func(s *Status) { *s = Status{} }, nil},
		{"runtime down", func(s *Status) { s.RuntimeReady = false }, []string{"the container runtime does not answer"}},
		{"kubelet down", func(s *Status) { s.KubeletPID = 0 }, []string{"the kubelet is not running"}},
		{"kubelet stopped on request", func(s *Status) { s.KubeletPID, s.State.KubeletHeld = 0, true }, nil},
		{"kubelet not started yet", func(s *Status) { s.KubeletPID, s.State.Phase = 0, "waiting for the kubelet config" }, nil},
		{"a duty failing", func(s *Status) {
			s.State.Duties = append(s.State.Duties, DutyState{Name: "etcd-snapshots", Status: DutyFailing})
		}, []string{"etcd-snapshots is failing"}},
	} {
		st := healthy
		st.State.Duties = slices.Clone(healthy.State.Duties)
		c.edit(&st)
		if got := st.Problems(); !slices.Equal(got, c.want) {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}
