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

// harness runs a Runner over a temporary root, with script as the
// kubeforge executable and a probe endpoint whose health the test sets.
type harness struct {
	r       *Runner
	p       config.Paths
	pub     *published
	testLog string
	port    string
	healthy *atomic.Bool
	dir     string
}

func newHarness(t *testing.T, script string, stopTimeout time.Duration) *harness {
	t.Helper()
	dir := t.TempDir()
	self := filepath.Join(dir, "kubeforge")
	if err := os.WriteFile(self, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	h := &harness{dir: dir, testLog: filepath.Join(dir, "runs.log"), healthy: &atomic.Bool{}, pub: &published{}}
	h.healthy.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !h.healthy.Load() {
			http.Error(w, "sick", http.StatusInternalServerError)
		}
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	h.port = u.Port()
	h.p = config.DefaultPaths().WithRoot(filepath.Join(dir, "root"))
	h.r = New(Options{Paths: h.p, Executable: self, Env: os.Environ(), StopTimeout: stopTimeout, Publish: h.pub.add})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return h
}

// write writes the etcd manifest.
func (h *harness) write(t *testing.T, content string) {
	t.Helper()
	if _, err := fsutil.WriteFile(h.p.Host(h.p.Manifest("etcd")), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// runs are the fake executable's starts: "PID ARGS…" each.
func (h *harness) runs() []string {
	b, _ := os.ReadFile(h.testLog)
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// The runner follows the manifest as the kubelet follows a static pod: it
// starts the process when the file appears, restarts it when the file
// changes or the liveness probe keeps failing, stops it when the file
// goes, and refuses a manifest it cannot run as written.
func TestRunnerFollowsTheManifest(t *testing.T) {
	h := newHarness(t, fakeKubeforge, 2*time.Second)
	r, p, pub, testLog, port, healthy := h.r, h.p, h.pub, h.testLog, h.port, h.healthy
	write := func(content string) { t.Helper(); h.write(t, content) }
	runs := h.runs
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

// stubbornKubeforge ignores SIGTERM, as a hung component would.
const stubbornKubeforge = "#!/bin/sh\necho \"$$ $*\" >> \"$TESTLOG\"\ntrap '' TERM\nwhile :; do sleep 0.1; done\n"

// What the kubelet also does: a start that failed for a reason of the
// host is tried again; a manifest put back to the content that runs after
// a refused one leaves the process alone; a component that ignores the
// restart its liveness probe asked for is killed; manifests the runner
// does not run are reported.
func TestRunnerRetriesKillsAndReports(t *testing.T) {
	h := newHarness(t, stubbornKubeforge, time.Second)
	r, p, pub, testLog, healthy, dir := h.r, h.p, h.pub, h.testLog, h.healthy, h.dir
	write := func(content string) { t.Helper(); h.write(t, content) }
	runs := h.runs
	// A hostPath directory that cannot be made (a file is in the way):
	// refused, then started once the way is clear, with no new manifest.
	blocker := filepath.Join(dir, "root", "var", "lib", "etcd")
	if err := os.MkdirAll(filepath.Dir(blocker), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	good := strings.Replace(manifest(testLog, h.port, "--v=1", httpProbe), "    livenessProbe:",
		"    volumeMounts:\n    - {name: data, mountPath: /var/lib/etcd}\n    livenessProbe:", 1) +
		"  volumes:\n  - name: data\n    hostPath: {path: /var/lib/etcd, type: DirectoryOrCreate}\n"
	write(good)
	eventually(t, "the failed start reported", func() bool { return pub.has(node.DutyFailing, "trying again at") })
	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the start retried", func() bool { return strings.HasSuffix(runs()[0], "component etcd --v=1") && r.Pids()["etcd"] != 0 })
	pid := r.Pids()["etcd"]

	// A refused manifest, then the running one back: the process stays.
	write(manifest(testLog, h.port, "--v=2", "exec: {command: [\"true\"]}\n      httpGet: null"))
	eventually(t, "the refusal", func() bool { return pub.has(node.DutyFailing, "only httpGet probes") })
	write(good)
	eventually(t, "the state published again", func() bool {
		pub.mu.Lock()
		defer pub.mu.Unlock()
		last := pub.all[len(pub.all)-1]
		return last.Name == DutyPrefix+"etcd" && last.Status == node.DutyOK
	})
	if got := r.Pids()["etcd"]; got != pid || len(runs()) != 1 {
		t.Errorf("the manifest put back restarted the component: pid %d → %d, %d runs", pid, got, len(runs()))
	}

	// A hung component: SIGTERM is not enough, SIGKILL follows.
	healthy.Store(false)
	eventually(t, "the hung component killed and started again", func() bool { return len(runs()) == 2 })
	healthy.Store(true)
	if syscall.Kill(pid, 0) == nil {
		t.Errorf("pid %d still runs", pid)
	}

	// Another manifest in the directory: nothing runs it, and it is said.
	if _, err := fsutil.WriteFile(p.Host(filepath.Join(p.ManifestsDir, "kube-vip.yaml")), []byte("kind: Pod\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the other manifest reported", func() bool {
		pub.mu.Lock()
		defer pub.mu.Unlock()
		for _, d := range pub.all {
			if d.Name == OtherManifestsDuty && d.Status == node.DutyWarning && strings.Contains(d.Message, "kube-vip.yaml") {
				return true
			}
		}
		return false
	})
}
