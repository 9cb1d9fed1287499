package staticproc

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/components/node"
	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/fsutil"
)

// fakeKubeforge stands for the kubeforge executable: it records its pid
// and arguments in $TESTLOG (from the manifest's env) and sleeps.
const fakeKubeforge = "#!/bin/sh\necho \"$$ $*\" >> \"$TESTLOG\"\nexec sleep 600\n"

type published struct {
	mu  sync.Mutex
	all []node.DutyState
}

func (p *published) add(d node.DutyState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.all = append(p.all, d)
}

func (p *published) has(status, text string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range p.all {
		if d.Name == DutyPrefix+"etcd" && d.Status == status && strings.Contains(d.Message, text) {
			return true
		}
	}
	return false
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func manifest(testLog, probePort, flag, probe string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: etcd
  namespace: kube-system
spec:
  hostNetwork: true
  containers:
  - name: etcd
    image: kubeforge.local/kubeforge:test
    command: [kubeforge, component, etcd, %s]
    env:
    - name: TESTLOG
      value: %s
    livenessProbe:
      %s
      periodSeconds: 1
      failureThreshold: 2
`, flag, testLog, strings.ReplaceAll(probe, "PORT", probePort))
}

const httpProbe = "httpGet: {host: 127.0.0.1, port: PORT, path: /livez}"

// The runner follows the manifest as the kubelet follows a static pod: it
// starts the process when the file appears, restarts it when the file
// changes or the liveness probe keeps failing, stops it when the file
// goes, and refuses a manifest it cannot run as written.
func TestRunnerFollowsTheManifest(t *testing.T) {
	dir := t.TempDir()
	self := filepath.Join(dir, "kubeforge")
	if err := os.WriteFile(self, []byte(fakeKubeforge), 0o755); err != nil {
		t.Fatal(err)
	}
	testLog := filepath.Join(dir, "runs.log")
	var healthy atomic.Bool
	healthy.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !healthy.Load() {
			http.Error(w, "sick", http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	port := u.Port()

	p := config.DefaultPaths().WithRoot(filepath.Join(dir, "root"))
	var pub published
	r := New(Options{Paths: p, Executable: self, Env: os.Environ(), StopTimeout: 2 * time.Second, Publish: pub.add})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	write := func(content string) {
		t.Helper()
		if _, err := fsutil.WriteFile(p.Host(p.Manifest("etcd")), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	runs := func() []string {
		b, _ := os.ReadFile(testLog)
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	pidOf := func(run string) int {
		var pid int
		fmt.Sscan(run, &pid)
		return pid
	}
	alive := func(pid int) bool { return syscall.Kill(pid, 0) == nil }

	write(manifest(testLog, port, "--v=1", httpProbe))
	eventually(t, "the first start", func() bool { return strings.HasSuffix(runs()[0], "component etcd --v=1") })
	first := pidOf(runs()[0])
	eventually(t, "its health published", func() bool { return pub.has(node.DutyOK, fmt.Sprintf("pid %d", r.Pids()["etcd"])) })

	write(manifest(testLog, port, "--v=2", httpProbe))
	eventually(t, "the restart on the changed manifest", func() bool { return len(runs()) == 2 && strings.HasSuffix(runs()[1], "--v=2") })
	eventually(t, "the old process gone", func() bool { return !alive(first) })
	second := pidOf(runs()[1])

	healthy.Store(false)
	eventually(t, "the restart by the liveness probe", func() bool { return len(runs()) == 3 })
	if !pub.has(node.DutyFailing, "liveness probe failed 2 times") {
		t.Errorf("no failing report of the liveness probe in %+v", pub.all)
	}
	eventually(t, "the unhealthy process gone", func() bool { return !alive(second) })
	healthy.Store(true)

	// A manifest it cannot run: the running process stays, the reason is published.
	write(manifest(testLog, port, "--v=3", "exec: {command: [\"true\"]}\n      httpGet: null"))
	eventually(t, "the refusal", func() bool { return pub.has(node.DutyFailing, "only httpGet probes") })
	if !pub.has(node.DutyFailing, "the process of its previous manifest keeps running") || len(runs()) != 3 {
		t.Errorf("the refused manifest's process: %d runs, published %+v", len(runs()), pub.all)
	}

	third := pidOf(runs()[2])
	if err := os.Remove(p.Host(p.Manifest("etcd"))); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the stop on the removed manifest", func() bool { return !alive(third) })
	eventually(t, "the stop published", func() bool { return pub.has(node.DutyStopped, "was removed") })
	if len(r.Pids()) != 0 {
		t.Errorf("still running: %v", r.Pids())
	}
}
