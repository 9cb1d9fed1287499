package encryption

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

type recordedHealth struct {
	mu     sync.Mutex
	states []string
}

func (h *recordedHealth) add(s string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.states = append(h.states, s)
}
func (h *recordedHealth) OK(f string, a ...any)   { h.add("ok: " + fmt.Sprintf(f, a...)) }
func (h *recordedHealth) Warn(f string, a ...any) { h.add("warning: " + fmt.Sprintf(f, a...)) }
func (h *recordedHealth) Fail(err error)          { h.add("failing: " + err.Error()) }
func (h *recordedHealth) all() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.states...)
}

// syncRounds runs RunSync on c until it has reported n rounds (or 10 s
// have passed) and returns what it reported.
func syncRounds(t *testing.T, c *fake.Clientset, interval time.Duration, n int) []string {
	h := &recordedHealth{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = RunSync(ctx, SyncOptions{Client: c, File: filepath.Join(t.TempDir(), "enc.yaml"), Interval: interval}, h)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && len(h.all()) < n {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	return h.all()
}

// An API server that does not serve yet, at the node's start, is a warning
// asked again soon; once the duty has read, losing the API server fails it.
func TestRunSyncWaitsForTheAPIServer(t *testing.T) {
	c := fake.NewSimpleClientset()
	var mu sync.Mutex
	refuse := 2 // the first read is refused, the second forbidden, then served, then refused again
	c.PrependReactor("get", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		if refuse > 0 {
			refuse--
			if refuse == 0 {
				return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, StateSecret, errors.New("no binding yet"))
			}
			return true, nil, fmt.Errorf("dial tcp 10.0.0.1:6443: %w", syscall.ECONNREFUSED)
		}
		if refuse == 0 {
			refuse = -1
			return false, nil, nil // the fake's own: not found
		}
		return true, nil, fmt.Errorf("dial tcp 10.0.0.1:6443: %w", syscall.ECONNREFUSED)
	})
	got := syncRounds(t, c, 1500*time.Millisecond, 4)
	if len(got) < 4 {
		t.Fatalf("want 4 rounds in 10 s (two waits of 1 s, then the interval), got %q", got)
	}
	for i, prefix := range []string{"warning: waiting for the API server to serve", "warning: waiting for the API server to authorize admin.conf", "ok: no key rotation published", "failing: read kube-system/"} {
		if len(got[i]) < len(prefix) || got[i][:len(prefix)] != prefix {
			t.Errorf("round %d: %q, want it to start with %q", i+1, got[i], prefix)
		}
	}
}

// A published configuration that is refused counts as read: losing the
// API server afterwards is a failure, not a wait.
func TestRunSyncRefusedConfigCountsAsRead(t *testing.T) {
	bad := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: StateSecret, Namespace: metav1.NamespaceSystem},
		Data: map[string][]byte{ConfigDataKey: []byte("not: [an encryption configuration")}}
	c := fake.NewSimpleClientset(bad)
	var mu sync.Mutex
	calls := 0
	c.PrependReactor("get", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			return false, nil, nil // the fake serves the bad Secret
		}
		return true, nil, fmt.Errorf("dial tcp 10.0.0.1:6443: %w", syscall.ECONNREFUSED)
	})
	got := syncRounds(t, c, 100*time.Millisecond, 2)
	if len(got) < 2 || !strings.HasPrefix(got[0], "failing: refusing the published encryption configuration") || !strings.HasPrefix(got[1], "failing: read kube-system/") {
		t.Errorf("rounds %q: want the refusal, then a failure (not a wait) once the API server is gone", got)
	}
}
