package kubescheduler

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

func kubeconfig(t *testing.T, server string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "scheduler.conf")
	conf := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`, server)
	if err := os.WriteFile(p, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// apiServer answers /readyz with each status of answers in turn, then with
// the last one; it counts the requests.
func apiServer(t *testing.T, answers ...int) (*httptest.Server, *atomic.Int32) {
	var n atomic.Int32
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			t.Errorf("asked for %s", r.URL.Path)
		}
		i := int(n.Add(1)) - 1
		code := answers[min(i, len(answers)-1)]
		switch code {
		case http.StatusOK:
			fmt.Fprint(w, "ok")
		case http.StatusInternalServerError: // as the API server says "not ready"
			http.Error(w, "[-]poststarthook/rbac/bootstrap-roles failed: reason withheld\nreadyz check failed", code)
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","code":%d,"reason":%q}`, code, map[int]string{403: "Forbidden", 401: "Unauthorized", 503: "ServiceUnavailable"}[code])
		}
	}))
	t.Cleanup(s.Close)
	return s, &n
}

func TestWaitReady(t *testing.T) {
	t.Run("refused, then not ready, then ready", func(t *testing.T) {
		s, n := apiServer(t, 403, 403, 503, 500, 200)
		start := time.Now()
		waitReady(kubeconfig(t, s.URL), 10*time.Second)
		if got := n.Load(); got != 5 {
			t.Errorf("%d requests, want 5 (four not ok, then ok)", got)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("took %v", d)
		}
	})
	t.Run("another error is the scheduler's to report", func(t *testing.T) {
		s, n := apiServer(t, 401)
		waitReady(kubeconfig(t, s.URL), 10*time.Second)
		if got := n.Load(); got != 1 {
			t.Errorf("%d requests for an Unauthorized answer, want 1", got)
		}
	})
	t.Run("bounded", func(t *testing.T) {
		s, _ := apiServer(t, 403)
		start := time.Now()
		waitReady(kubeconfig(t, s.URL), 300*time.Millisecond)
		if d := time.Since(start); d < 300*time.Millisecond || d > 3*time.Second {
			t.Errorf("a refusal that never ends was waited for %v, want about 300ms", d)
		}
	})
	t.Run("no API server yet", func(t *testing.T) {
		s, _ := apiServer(t, 200)
		url := s.URL
		s.Close() // a port nothing listens on
		start := time.Now()
		waitReady(kubeconfig(t, url), 300*time.Millisecond)
		if d := time.Since(start); d < 300*time.Millisecond {
			t.Errorf("a refused connection was not waited out (%v)", d)
		}
	})
}

func TestSchedulerKubeconfig(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nclientConnection:\n  kubeconfig: /etc/kubernetes/scheduler.conf\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--config=" + cfg, "--profiling=false"}, "/etc/kubernetes/scheduler.conf"},
		{[]string{"--config", cfg}, "/etc/kubernetes/scheduler.conf"},
		{[]string{"--kubeconfig=/other.conf", "--config=" + cfg}, "/other.conf"},
		{[]string{"--config=" + filepath.Join(dir, "missing.yaml")}, ""},
		{nil, ""},
	} {
		if got := schedulerKubeconfig(c.args); got != c.want {
			t.Errorf("%q: got %q, want %q", c.args, got, c.want)
		}
	}
}
