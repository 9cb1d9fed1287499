package restore

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/config"
)

const apiServerManifest = `apiVersion: v1
kind: Pod
metadata:
  name: kube-apiserver
  namespace: kube-system
spec:
  containers:
  - command:
    - kubeforge
    - component
    - kube-apiserver
    - --advertise-address=10.0.0.5
    - --secure-port=7443
    name: kube-apiserver
`

// The companions' manifests go aside and come back as they were; a rerun
// (manifest already aside) and a manifest put back by hand both work.
func TestCompanionStopStart(t *testing.T) {
	root := t.TempDir()
	p := config.DefaultPaths()
	p.Root = root
	work := filepath.Join(root, "work")
	if err := os.MkdirAll(filepath.Join(root, p.ManifestsDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(work, 0o700); err != nil {
		t.Fatal(err)
	}
	cs := companionsOf(p, work)
	if len(cs) != 3 || cs[0].name != "kube-apiserver" {
		t.Fatalf("companions: %+v", cs)
	}
	for _, c := range cs {
		if err := os.WriteFile(c.manifest, []byte(apiServerManifest), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cs {
		moved, err := c.stop()
		if err != nil || !moved {
			t.Fatalf("stop %s: %v %v", c.name, moved, err)
		}
		if _, err := os.Stat(c.manifest); !os.IsNotExist(err) {
			t.Errorf("%s: the manifest is still there: %v", c.name, err)
		}
		// A rerun: nothing left to move, the copy aside stays.
		if moved, err := c.stop(); err != nil || moved {
			t.Errorf("second stop of %s: %v %v", c.name, moved, err)
		}
		if b, err := os.ReadFile(c.aside); err != nil || string(b) != apiServerManifest {
			t.Errorf("%s aside: %q %v", c.name, b, err)
		}
	}
	if got := cs[0].apiServerAddr(); got != "10.0.0.5:7443" {
		t.Errorf("apiServerAddr = %q, want 10.0.0.5:7443", got)
	}
	// Put back by hand meanwhile: that one wins.
	if err := os.WriteFile(cs[2].manifest, []byte("by hand"), 0o600); err != nil {
		t.Fatal(err)
	}
	for i, c := range cs {
		wrote, err := c.start()
		if err != nil || wrote != (i != 2) {
			t.Errorf("start %s: wrote %v, err %v", c.name, wrote, err)
		}
		if _, err := os.Stat(c.aside); !os.IsNotExist(err) {
			t.Errorf("%s: the copy aside is still there: %v", c.name, err)
		}
		if wrote, err := c.start(); err != nil || wrote {
			t.Errorf("second start of %s: %v %v", c.name, wrote, err)
		}
	}
	if b, _ := os.ReadFile(cs[0].manifest); string(b) != apiServerManifest {
		t.Errorf("the API server manifest came back as %q", b)
	}
	if b, _ := os.ReadFile(cs[2].manifest); string(b) != "by hand" {
		t.Errorf("the manifest put back by hand was overwritten: %q", b)
	}
	if got := cs[0].apiServerAddr(); got != "" {
		t.Errorf("apiServerAddr with no manifest aside = %q, want empty", got)
	}
}

func TestWaitClosed(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if err := waitClosed(context.Background(), addr, 300*time.Millisecond); err == nil {
		t.Error("waitClosed returned while the port was open")
	}
	l.Close()
	if err := waitClosed(context.Background(), addr, 5*time.Second); err != nil {
		t.Errorf("after the close: %v", err)
	}
}

// The old pod's cgroup, as either cgroup driver names it, is waited for
// until the kubelet removes it; an unknown UID costs nothing.
func TestWaitPodReleased(t *testing.T) {
	const uid = "0123456789abcdef0123456789abcdef"
	for _, tc := range []struct{ root, dir string }{
		{"/kftb-x-snap1", "kftb-x-snap1/kubepods/burstable/pod" + uid},
		{"/kftb-x-snap1", "kftb-x-snap1/kubepods/pod" + uid},
		{"", "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uid + ".slice"},
	} {
		fs := t.TempDir()
		if err := os.WriteFile(filepath.Join(fs, "cgroup.controllers"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		pod := filepath.Join(fs, tc.dir)
		if err := os.MkdirAll(filepath.Join(pod, "container"), 0o755); err != nil {
			t.Fatal(err)
		}
		if waited, err := waitPodReleased(context.Background(), fs, tc.root, "no-such-uid", "the old etcd pod", time.Second); err != nil || waited {
			t.Errorf("%s: an unknown UID: waited %v, %v", tc.dir, waited, err)
		}
		if _, err := waitPodReleased(context.Background(), fs, tc.root, uid, "the old etcd pod", 300*time.Millisecond); err == nil {
			t.Errorf("%s: returned while the pod's cgroup was there", tc.dir)
		}
		go func() {
			time.Sleep(300 * time.Millisecond)
			os.RemoveAll(pod)
		}()
		if waited, err := waitPodReleased(context.Background(), fs, tc.root, uid, "the old etcd pod", 10*time.Second); err != nil || !waited {
			t.Errorf("%s: waited %v, %v", tc.dir, waited, err)
		}
	}
}

func TestNotReady(t *testing.T) {
	body := "[+]ping ok\n[+]log ok\n[-]etcd failed: reason withheld\n[+]informer-sync ok\n[-]poststarthook/rbac/bootstrap-roles failed: reason withheld\nreadyz check failed\n"
	if got, want := notReady([]byte(body)), "not ready: etcd, poststarthook/rbac/bootstrap-roles"; got != want {
		t.Errorf("notReady = %q, want %q", got, want)
	}
	if got := notReady([]byte("ok")); got != "" {
		t.Errorf("notReady(ok) = %q, want \"\"", got)
	}
}
