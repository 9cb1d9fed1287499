package duty

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/components/node"
)

// recorder keeps every published state, in order.
type recorder struct {
	mu     sync.Mutex
	states []node.DutyState
	ch     chan node.DutyState
}

func newRecorder() *recorder { return &recorder{ch: make(chan node.DutyState, 100)} }

func (r *recorder) publish(s node.DutyState) {
	r.mu.Lock()
	r.states = append(r.states, s)
	r.mu.Unlock()
	r.ch <- s
}

// await returns the first published state of name with status, looking at
// every state published so far, then at the new ones.
func (r *recorder) await(t *testing.T, name, status string) node.DutyState {
	t.Helper()
	return r.awaitMsg(t, name, status, "")
}

// awaitMsg is await for a state whose message contains sub.
func (r *recorder) awaitMsg(t *testing.T, name, status, sub string) node.DutyState {
	t.Helper()
	deadline := time.After(10 * time.Second)
	seen := 0
	for {
		r.mu.Lock()
		states := append([]node.DutyState(nil), r.states...)
		r.mu.Unlock()
		for ; seen < len(states); seen++ {
			if s := states[seen]; s.Name == name && s.Status == status && strings.Contains(s.Message, sub) {
				return s
			}
		}
		select {
		case <-r.ch:
		case <-deadline:
			t.Fatalf("duty %s never reported %s %q; saw %+v", name, status, sub, states)
		}
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestStartStopOrderAndHealth(t *testing.T) {
	rec := newRecorder()
	var mu sync.Mutex
	var order []string
	mark := func(s string) {
		mu.Lock()
		order = append(order, s)
		mu.Unlock()
	}
	mk := func(name string) Duty {
		return Duty{Name: name, Run: func(ctx context.Context, h *Health) error {
			h.OK("working")
			<-ctx.Done()
			mark("stop " + name)
			return nil
		}}
	}
	m := NewManager(Options{Publish: rec.publish, Log: quiet()}, mk("a"), mk("b"))
	NewManager(Options{Log: quiet()}, mk("c")).Stop() // before Start: nothing to do
	m.Start(context.Background())
	m.Start(context.Background()) // a second Start does nothing
	rec.await(t, "a", node.DutyOK)
	rec.await(t, "b", node.DutyOK)
	m.Stop()
	m.Stop()
	if len(order) != 2 || order[0] != "stop b" || order[1] != "stop a" {
		t.Errorf("stop order %v, want b then a", order)
	}
	for _, s := range m.States() {
		if s.Status != node.DutyStopped {
			t.Errorf("%s: %s after Stop, want stopped", s.Name, s.Status)
		}
	}
}

func TestFailureIsReportedAndRetried(t *testing.T) {
	rec := newRecorder()
	var runs int
	d := Duty{Name: "flaky", Run: func(ctx context.Context, h *Health) error {
		runs++
		switch runs {
		case 1:
			return errors.New("etcd unreachable")
		case 2:
			panic("boom")
		}
		h.Warn("certificate apiserver cannot be renewed: no CA key")
		<-ctx.Done()
		return nil
	}}
	m := NewManager(Options{Publish: rec.publish, Log: quiet(), RestartDelay: time.Millisecond, MaxRestartDelay: 2 * time.Millisecond}, d)
	m.Start(context.Background())
	defer m.Stop()
	rec.awaitMsg(t, "flaky", node.DutyFailing, "etcd unreachable")
	rec.awaitMsg(t, "flaky", node.DutyFailing, "panic: boom")
	s := rec.await(t, "flaky", node.DutyWarning)
	if !contains(s.Message, "no CA key") || s.Since.IsZero() {
		t.Errorf("warning: %+v", s)
	}
}

func TestDisabledDutyStaysDisabled(t *testing.T) {
	rec := newRecorder()
	d := Duty{Name: "snapshots", Run: func(ctx context.Context, h *Health) error {
		h.Disabled("not a control-plane node")
		return nil
	}}
	m := NewManager(Options{Publish: rec.publish, Log: quiet()}, d)
	m.Start(context.Background())
	rec.await(t, "snapshots", node.DutyDisabled)
	m.Stop()
	if s := m.States()[0]; s.Status != node.DutyDisabled || s.Message != "not a control-plane node" {
		t.Errorf("state %+v, want disabled with its reason", s)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
