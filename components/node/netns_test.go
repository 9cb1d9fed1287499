package node

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kubeforge/kubeforge/config"
)

// A node in a network namespace of its own (hack/up.sh): `node status` run
// from the host asks the kubelet's healthz inside that namespace, where its
// loopback is.
func TestKubeletHealthInAnotherNetNS(t *testing.T) {
	if os.Geteuid() != 0 || testing.Short() {
		t.Skip("needs root (makes a network namespace)")
	}
	name := fmt.Sprintf("kftest-health-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", name).Run() })
	nsPath := "/run/netns/" + name
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}

	// A fake kubelet healthz listening on the namespace's loopback only.
	ln := listenInNetNS(t, nsPath)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			fmt.Fprint(w, "ok")
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	port := ln.Addr().(*net.TCPAddr).Port

	// The "kubelet": a process in that namespace.
	sleeper := exec.Command("nsenter", "--net="+nsPath, "sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	for deadline := time.Now().Add(5 * time.Second); !InOtherNetNS(sleeper.Process.Pid) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond) // nsenter has not entered it yet
	}
	if !InOtherNetNS(sleeper.Process.Pid) {
		t.Fatal("the test's process never entered its network namespace")
	}
	// A process in this test's own namespace.
	local := exec.Command("sleep", "60")
	if err := local.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = local.Process.Kill(); _ = local.Wait() })
	if InOtherNetNS(local.Process.Pid) {
		t.Error("a child in this process's namespace counted as in another one")
	}

	p := config.DefaultPaths().WithRoot(t.TempDir())
	cfg := p.Host(p.KubeletConfigFile())
	if err := os.MkdirAll(filepath.Dir(cfg), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("kind: KubeletConfiguration\nhealthzBindAddress: 127.0.0.1\nhealthzPort: %d\n", port)), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := kubeletHealth(context.Background(), p, sleeper.Process.Pid); got != "ok" {
		t.Errorf("health through the kubelet's namespace: %q, want ok", got)
	}
	// From this process's own namespace the port is not there.
	if got := kubeletHealth(context.Background(), p, local.Process.Pid); got == "ok" || !strings.Contains(got, "refused") {
		t.Errorf("health from the host's loopback: %q, want connection refused", got)
	}
	// A config that is not YAML is named, not grepped.
	if err := os.WriteFile(cfg, []byte("healthzPort: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := kubeletHealth(context.Background(), p, local.Process.Pid); !strings.Contains(got, p.KubeletConfigFile()) {
		t.Errorf("bad config: %q, want its path named", got)
	}
}

// listenInNetNS listens on 127.0.0.1:0 inside the namespace at nsPath.
func listenInNetNS(t *testing.T, nsPath string) net.Listener {
	t.Helper()
	type result struct {
		ln  net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		fd, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			ch <- result{err: err}
			return
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		ch <- result{ln, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.ln
}
