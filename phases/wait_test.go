package phases

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/progress"
)

// fakeEndpoint answers 503 until ok is set, counting requests and new
// connections.
type fakeEndpoint struct {
	srv             *httptest.Server
	requests, conns atomic.Int32
	okAfter         int32 // answer 200 from this request on (0: never)
}

func newFakeEndpoint(t *testing.T, okAfter int32) *fakeEndpoint {
	t.Helper()
	f := &fakeEndpoint{okAfter: okAfter}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := f.requests.Add(1)
		if f.okAfter > 0 && n >= f.okAfter {
			fmt.Fprint(w, "ok")
			return
		}
		http.Error(w, "not yet", http.StatusServiceUnavailable)
	}))
	f.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			f.conns.Add(1)
		}
	}
	f.srv.Start()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeEndpoint) health(name string) health {
	return health{name: name, url: f.srv.URL + "/healthz"}
}

func testWaiter(out *bytes.Buffer) *liveWaiter {
	return &liveWaiter{out: progress.New(out, false), interval: time.Millisecond}
}

// The live waiter polls until the endpoint answers 200, on one connection.
func TestLiveWaiterHealthyKeepsTheConnection(t *testing.T) {
	f := newFakeEndpoint(t, 5)
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := testWaiter(&out).Healthy(ctx, f.health("x")); err != nil {
		t.Fatal(err)
	}
	if n := f.requests.Load(); n != 5 {
		t.Errorf("%d requests, want 5 (4 refusals, then ok)", n)
	}
	if n := f.conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1: the connection is not kept between polls", n)
	}
}

// On timeout, the live waiter returns the endpoint's last answer.
func TestLiveWaiterHealthyTimeoutReturnsLastError(t *testing.T) {
	f := newFakeEndpoint(t, 0)
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	err := testWaiter(&out).Healthy(ctx, f.health("x"))
	if err == nil || !strings.Contains(err.Error(), "answered 503") {
		t.Fatalf("err %v, want the last answer (503)", err)
	}
	if f.requests.Load() < 2 {
		t.Errorf("%d requests: it did not poll", f.requests.Load())
	}
	// Nothing listening: the dial error.
	gone := httptest.NewServer(http.NotFoundHandler())
	url := gone.URL
	gone.Close()
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	err = testWaiter(&out).Healthy(ctx, health{name: "y", url: url})
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("err %v, want connection refused", err)
	}
}

func TestLiveWaiterPoll(t *testing.T) {
	var out bytes.Buffer
	w := testWaiter(&out)
	ctx := context.Background()

	calls := 0
	err := w.Poll(ctx, time.Millisecond, 10*time.Second, func(context.Context) (bool, error) {
		calls++
		if calls < 3 {
			return false, fmt.Errorf("attempt %d", calls)
		}
		return true, nil
	})
	if err != nil || calls != 3 {
		t.Errorf("done on the third call: err %v after %d calls", err, calls)
	}

	// A timeout returns the condition's last error, not the context's.
	calls = 0
	err = w.Poll(ctx, time.Millisecond, 20*time.Millisecond, func(context.Context) (bool, error) {
		calls++
		return false, fmt.Errorf("attempt %d", calls)
	})
	if want := fmt.Sprintf("attempt %d", calls); err == nil || err.Error() != want || calls < 2 {
		t.Errorf("err %v after %d calls, want %q", err, calls, want)
	}

	// No error from the condition: the context's.
	err = w.Poll(ctx, time.Millisecond, 5*time.Millisecond, func(context.Context) (bool, error) { return false, nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err %v, want the deadline", err)
	}
}

// Endpoints polls every endpoint at once, reports each healthy one, and
// says the ready message only when all are.
func TestLiveWaiterEndpoints(t *testing.T) {
	up, down := newFakeEndpoint(t, 2), newFakeEndpoint(t, 0)
	var out bytes.Buffer
	errs, werr := testWaiter(&out).Endpoints(context.Background(), healthWait{phase: "wait", waiting: "Waiting for two",
		checks: []health{up.health("up"), down.health("down")}, timeout: 40 * time.Millisecond, ready: "All healthy"})
	if werr != nil || len(errs) != 2 || errs[0] != nil || errs[1] == nil || !strings.Contains(errs[1].Error(), "503") {
		t.Fatalf("errs %v, watch %v", errs, werr)
	}
	s := out.String()
	if !strings.Contains(s, "Waiting for two") || !strings.Contains(s, "up is healthy") || strings.Contains(s, "down is healthy") || strings.Contains(s, "All healthy") {
		t.Errorf("output:\n%s", s)
	}

	out.Reset()
	errs, _ = testWaiter(&out).Endpoints(context.Background(), healthWait{phase: "wait",
		checks: []health{up.health("up")}, timeout: 10 * time.Second, ready: "All healthy"})
	if errs[0] != nil || !strings.Contains(out.String(), "All healthy") {
		t.Errorf("errs %v, output:\n%s", errs, out.String())
	}

	// The watch's error ends the wait at once.
	out.Reset()
	start := time.Now()
	boom := errors.New("the runtime failed")
	_, werr = testWaiter(&out).Endpoints(context.Background(), healthWait{phase: "wait",
		checks: []health{down.health("down")}, timeout: time.Minute, ready: "All healthy",
		watch: func(context.Context) error { return boom }})
	if !errors.Is(werr, boom) || time.Since(start) > 10*time.Second || strings.Contains(out.String(), "All healthy") {
		t.Errorf("watch error %v after %s, output:\n%s", werr, time.Since(start), out.String())
	}
}

// A dry run's waiter contacts nothing and calls nothing; it says what it
// would wait for.
func TestDryRunWaiterDoesNothing(t *testing.T) {
	f := newFakeEndpoint(t, 0)
	var out bytes.Buffer
	n := &Node{Out: progress.New(&out, false), DryRun: true}
	w := n.waiter()
	if _, ok := w.(dryRunWaiter); !ok {
		t.Fatalf("a dry run's waiter is %T", w)
	}
	errs, werr := w.Endpoints(context.Background(), healthWait{phase: "wait-control-plane", waiting: "Waiting", ready: "All healthy",
		checks: []health{f.health("etcd")}, timeout: time.Minute,
		watch: func(context.Context) error { t.Error("the watch ran"); return nil }})
	if werr != nil || len(errs) != 1 || errs[0] != nil {
		t.Errorf("errs %v, watch %v", errs, werr)
	}
	if err := w.Healthy(context.Background(), f.health("etcd")); err != nil {
		t.Error(err)
	}
	if err := w.Poll(context.Background(), time.Millisecond, time.Minute, func(context.Context) (bool, error) {
		t.Error("the condition was called")
		return false, nil
	}); err != nil {
		t.Error(err)
	}
	if n := f.requests.Load(); n != 0 {
		t.Errorf("%d requests in a dry run", n)
	}
	want := "Would wait for etcd to answer ok at " + f.srv.URL + "/healthz"
	if s := out.String(); !strings.Contains(s, want) || strings.Contains(s, "Waiting") || strings.Contains(s, "All healthy") {
		t.Errorf("output:\n%s\nwant %q and no live messages", s, want)
	}
	if _, ok := (&Node{Out: n.Out}).waiter().(*liveWaiter); !ok {
		t.Error("a real run's waiter is not the live one")
	}
}

// healthChecks reads each endpoint from the manifest as written: a port
// the user moved with extraArgs (or the bind port) moves the health check,
// even when the configuration at hand no longer says so.
func TestHealthChecksFollowTheWrittenManifests(t *testing.T) {
	cfg := config.New()
	cfg.Paths = cfg.Paths.WithRoot(t.TempDir())
	cfg.Init.NodeRegistration.Name = "cp1"
	cfg.Init.LocalAPIEndpoint.AdvertiseAddress = "10.201.0.2"
	cfg.Init.LocalAPIEndpoint.BindPort = 7443
	cfg.Cluster.Networking.PodSubnet = "10.244.0.0/16"
	cfg.Cluster.ControllerManager.ExtraArgs = append(cfg.Cluster.ControllerManager.ExtraArgs, v1beta4.Arg{Name: "secure-port", Value: "10999"})
	cfg.Cluster.Scheduler.ExtraArgs = append(cfg.Cluster.Scheduler.ExtraArgs, v1beta4.Arg{Name: "secure-port", Value: "10998"})
	if err := cfg.Complete(upgradeHost); err != nil {
		t.Fatal(err)
	}
	cfg.Cluster.Etcd.Local.ExtraArgs = append(cfg.Cluster.Etcd.Local.ExtraArgs, v1beta4.Arg{Name: "listen-metrics-urls", Value: "http://127.0.0.1:2391"})
	var out bytes.Buffer
	n := &Node{Cfg: cfg, Paths: cfg.Paths, Out: progress.New(&out, false)}
	writeTestFile(t, cfg.Paths, "ca.crt", []byte("not PEM: the pool stays empty"))
	for _, c := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		if err := writeNodeManifest(n, "control-plane", c); err != nil {
			t.Fatal(err)
		}
	}
	// The configuration changes afterwards; the manifests on disk rule.
	cfg.Cluster.ControllerManager.ExtraArgs = nil
	cfg.Cluster.Etcd.Local.ExtraArgs = nil
	// The scheduler's manifest is gone: rendered from the configuration.
	if err := os.Remove(cfg.Paths.Host(cfg.Paths.Manifest("kube-scheduler"))); err != nil {
		t.Fatal(err)
	}
	cfg.Cluster.Scheduler.ExtraArgs = []v1beta4.Arg{{Name: "secure-port", Value: "10997"}}

	checks, err := n.healthChecks()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"kubelet":                 "http://127.0.0.1:10248/healthz",
		"etcd":                    "http://127.0.0.1:2391/readyz",
		"kube-apiserver":          "https://10.201.0.2:7443/readyz",
		"kube-controller-manager": "https://127.0.0.1:10999/healthz",
		"kube-scheduler":          "https://127.0.0.1:10997/livez",
	}
	if len(checks) != len(want) {
		t.Errorf("%d checks, want %d", len(checks), len(want))
	}
	for _, h := range checks {
		if h.url != want[h.name] {
			t.Errorf("%s: %s, want %s", h.name, h.url, want[h.name])
		}
		switch {
		case h.name == "kube-apiserver" && (h.tls == nil || h.tls.InsecureSkipVerify || h.tls.RootCAs == nil):
			t.Errorf("the API server's certificate must be verified against the cluster CA: %+v", h.tls)
		case strings.HasPrefix(h.url, "http:") && h.tls != nil:
			t.Errorf("%s: TLS config for plain HTTP", h.name)
		case h.name != "kube-apiserver" && strings.HasPrefix(h.url, "https:") && (h.tls == nil || !h.tls.InsecureSkipVerify):
			t.Errorf("%s: self-signed loopback certificate not accepted", h.name)
		}
	}
}
