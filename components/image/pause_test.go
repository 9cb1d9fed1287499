package image

import (
	"bufio"
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestPauseELFHeaders(t *testing.T) {
	for goarch, machine := range map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64} {
		b, ok := PauseELF(goarch)
		if !ok {
			t.Fatalf("no pause program for %s", goarch)
		}
		f, err := elf.NewFile(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: not an ELF file: %v", goarch, err)
		}
		if f.Class != elf.ELFCLASS64 || f.Type != elf.ET_EXEC || f.Machine != machine {
			t.Errorf("%s: class %v type %v machine %v", goarch, f.Class, f.Type, f.Machine)
		}
		if len(f.Progs) != 1 || f.Progs[0].Type != elf.PT_LOAD || f.Progs[0].Flags != elf.PF_R|elf.PF_X {
			t.Fatalf("%s: program headers %+v", goarch, f.Progs)
		}
		ph := f.Progs[0]
		if f.Entry < ph.Vaddr || f.Entry >= ph.Vaddr+ph.Filesz {
			t.Errorf("%s: entry %#x outside the loaded segment", goarch, f.Entry)
		}
		if len(b) > 512 {
			t.Errorf("%s: pause program is %d bytes", goarch, len(b))
		}
	}
	if _, ok := PauseELF("mips"); ok {
		t.Error("a pause program for mips")
	}
}

// The pause program runs, stays asleep, ignores SIGCHLD (so the kernel
// reaps its children itself) and dies on SIGKILL.
func TestPauseELFRuns(t *testing.T) {
	b, ok := PauseELF(runtime.GOARCH)
	if !ok {
		t.Skipf("no pause program for %s", runtime.GOARCH)
	}
	path := filepath.Join(t.TempDir(), "pause")
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })

	select {
	case err := <-done:
		t.Fatalf("pause exited at once: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	status := procStatus(t, cmd.Process.Pid)
	if status["State"][0] != 'S' {
		t.Errorf("pause is not sleeping: State %s", status["State"])
	}
	ign, err := strconv.ParseUint(status["SigIgn"], 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	if ign&(1<<(syscall.SIGCHLD-1)) == 0 {
		t.Errorf("SIGCHLD not ignored: SigIgn %s", status["SigIgn"])
	}
	if kb, _ := strconv.Atoi(strings.Fields(status["VmRSS"])[0]); kb > 64 {
		t.Errorf("pause uses %d kB RSS", kb)
	}
	t.Logf("pause: %d bytes, RSS %s", len(b), status["VmRSS"])

	// SIGCHLD itself does not wake it up into anything harmful.
	cmd.Process.Signal(syscall.SIGCHLD)
	time.Sleep(50 * time.Millisecond)
	if procStatus(t, cmd.Process.Pid)["State"][0] != 'S' {
		t.Error("pause is not sleeping after SIGCHLD")
	}

	cmd.Process.Signal(syscall.SIGKILL)
	select {
	case err := <-done:
		ws, _ := err.(*exec.ExitError)
		if ws == nil || ws.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("pause ended with %v, want killed by SIGKILL", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pause survived SIGKILL")
	}
}

func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// As PID 1 of a PID namespace (as in a pod), pause survives SIGTERM, and
// the orphans reparented to it do not stay zombies. The control, the same
// loop without the SIGCHLD disposition, shows that the test can tell.
func TestPauseAsPID1(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a PID namespace")
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		t.Skip("no nsenter")
	}
	b, ok := PauseELF(runtime.GOARCH)
	if !ok {
		t.Skipf("no pause program for %s", runtime.GOARCH)
	}
	t.Run("pause", func(t *testing.T) {
		if zombies := orphanZombies(t, b); zombies != 0 {
			t.Errorf("%d orphan(s) left as zombies under pause", zombies)
		}
	})
	if runtime.GOARCH == "amd64" {
		t.Run("control without SIG_IGN", func(t *testing.T) {
			const loop = 31 // offset of the pause loop in the amd64 code
			control := elf64Exec(62, pauseCode["amd64"].code[loop:])
			if zombies := orphanZombies(t, control); zombies != 1 {
				t.Errorf("control left %d zombies, want 1", zombies)
			}
		})
	}
}

// orphanZombies runs prog as PID 1 of a new PID namespace, makes it adopt
// an orphan that exits, checks SIGTERM leaves it running, and returns how
// many zombie children it has afterwards.
func orphanZombies(t *testing.T, prog []byte) int {
	path := filepath.Join(t.TempDir(), "pause")
	if err := os.WriteFile(path, prog, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGKILL)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("pause survived SIGKILL")
		}
	}()

	// sh starts a short sleep in the background and exits: the sleep is
	// orphaned to PID 1, pause, and exits 300 ms later.
	out, err := exec.Command("nsenter", "--pid=/proc/"+strconv.Itoa(pid)+"/ns/pid", "--",
		"/bin/sh", "-c", "sleep 0.3 >/dev/null 2>&1 </dev/null &").CombinedOutput()
	if err != nil {
		t.Fatalf("nsenter: %v: %s", err, out)
	}
	time.Sleep(100 * time.Millisecond)
	if kids := children(t, pid); len(kids) != 1 {
		t.Fatalf("pause has children %v, want the orphaned sleep", kids)
	}
	time.Sleep(700 * time.Millisecond)
	zombies := 0
	for _, k := range children(t, pid) {
		if st := procStatus(t, k)["State"]; strings.HasPrefix(st, "Z") {
			zombies++
		} else {
			t.Errorf("child %d of pause still running: %s", k, st)
		}
	}

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		t.Fatalf("pause (PID 1) ended on SIGTERM: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	return zombies
}

// children lists the PIDs whose parent is pid.
func children(t *testing.T, pid int) []int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(pid) + "/children")
	if err != nil {
		t.Fatal(err)
	}
	var kids []int
	for _, f := range strings.Fields(string(b)) {
		n, _ := strconv.Atoi(f)
		kids = append(kids, n)
	}
	return kids
}
