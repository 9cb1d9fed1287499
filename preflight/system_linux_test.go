package preflight

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/kubeforge/kubeforge/config"
)

// TestHostSystemRuns runs the init, join and reset checks against this
// machine. Outcomes depend on the host, so it only asserts that every check
// runs (no panic) and that the set of checks is the expected one. Files are
// looked up under a temporary root and every port check binds on 127.0.0.1.
func TestHostSystemRuns(t *testing.T) {
	p := config.DefaultPaths().WithRoot(t.TempDir())
	sys := HostSystem(p)

	init := InitChecks(InitOptions{Paths: p, AdvertiseAddress: "127.0.0.1", BindAddress: "127.0.0.1"}, sys)
	sameNames(t, init, wantInitNames)
	join := JoinChecks(JoinOptions{Paths: p, APIServerEndpoint: "127.0.0.1:6443", BindAddress: "127.0.0.1",
		ControlPlane: true, AdvertiseAddress: "127.0.0.1"}, sys)
	sameNames(t, join, wantJoinControlPlane)
	reset := ResetChecks(sys)
	sameNames(t, reset, []string{"IsPrivilegedUser"})

	for _, checks := range [][]Check{init, join, reset} {
		for _, c := range checks {
			if pc, ok := c.(PortCheck); ok {
				for _, a := range pc.Addresses {
					if a != "127.0.0.1" {
						t.Fatalf("%s would bind on %q; tests bind on 127.0.0.1 only", pc.Name(), a)
					}
				}
			}
		}
		warnings, err := Run(checks, nil)
		for _, w := range warnings {
			t.Logf("%v", w)
			if strings.Contains(w.Err.Error(), "panicked") {
				t.Error(w)
			}
		}
		var perr *Error
		if err != nil && !errors.As(err, &perr) {
			t.Fatalf("err = %v (%T), want *Error or nil", err, err)
		}
		if perr != nil {
			t.Logf("%v", perr)
			for _, f := range perr.Failures {
				if strings.Contains(f.Err.Error(), "panicked") {
					t.Error(f)
				}
			}
		}
	}
}

// HostSystem redirects file lookups under Paths.Root, but never /proc or /sys.
func TestHostSystemPaths(t *testing.T) {
	root := t.TempDir()
	p := config.DefaultPaths().WithRoot(root)
	if err := os.MkdirAll(filepath.Join(root, "etc/kubernetes"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/kubernetes/admin.conf"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "var/lib/etcd/member"), 0o700); err != nil {
		t.Fatal(err)
	}
	sys := HostSystem(p)

	_, errs := FileAvailableCheck{Sys: sys, Path: p.Kubeconfig("admin.conf")}.Check()
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "/etc/kubernetes/admin.conf already exists") {
		t.Errorf("FileAvailable admin.conf under root = %v", errs)
	}
	if _, errs := (FileAvailableCheck{Sys: sys, Path: p.Kubeconfig("kubelet.conf")}).Check(); len(errs) != 0 {
		t.Errorf("FileAvailable kubelet.conf under root = %v", errs)
	}
	if _, errs := (DirAvailableCheck{Sys: sys, Path: p.EtcdDataDir}).Check(); len(errs) != 1 {
		t.Errorf("DirAvailable /var/lib/etcd under root = %v", errs)
	}
	if _, err := sys.ReadFile("/proc/self/status"); err != nil {
		t.Errorf("/proc must not be redirected: %v", err)
	}
	if _, err := sys.Stat("/sys/fs"); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat /sys/fs: %v", err)
	}
	for path, kernel := range map[string]bool{"/proc": true, "/proc/swaps": true, "/sys/fs/cgroup": true, "/processes": false, "/system": false, "/etc/hosts": false} {
		if isKernelPath(path) != kernel {
			t.Errorf("isKernelPath(%q) = %v", path, !kernel)
		}
	}
}

// PortFree reports a port held by a listener as in use (loopback only).
func TestHostSystemPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	sys := HostSystem(config.DefaultPaths())
	if err := sys.PortFree("127.0.0.1", port); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("PortFree(127.0.0.1:%d) = %v, want EADDRINUSE", port, err)
	}
	_, errs := PortCheck{Sys: sys, Port: port, Addresses: []string{"127.0.0.1"}}.Check()
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "Port "+strconv.Itoa(port)+" is in use") {
		t.Errorf("PortCheck = %v", errs)
	}
}

func TestHostSystemResolveLocal(t *testing.T) {
	sys := HostSystem(config.DefaultPaths())
	addrs, err := sys.ResolveLocal("10.1.2.3")
	if err != nil || len(addrs) != 1 || addrs[0].String() != "10.1.2.3" {
		t.Errorf("ResolveLocal(IP) = %v, %v", addrs, err)
	}
	// A name that is in no /etc/hosts: no addresses and, above all, no DNS query.
	addrs, err = sys.ResolveLocal("kubeforge-preflight-test.invalid")
	if err != nil || len(addrs) != 0 {
		t.Errorf("ResolveLocal(unknown) = %v, %v", addrs, err)
	}
	own, err := sys.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range own {
		if !a.IsValid() {
			t.Errorf("invalid interface address in %v", own)
		}
	}
}
