package etcdwait

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestServers(t *testing.T) {
	got := Servers([]string{"--advertise-address=10.0.0.1", "--etcd-servers=https://127.0.0.1:2379,https://[::1]:2379,https://etcd.example,unix:///run/etcd.sock", "--x"})
	want := []string{"127.0.0.1:2379", "[::1]:2379", "etcd.example:2379"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Servers = %v, want %v", got, want)
	}
	if got := Servers([]string{"--etcd-servers", "http://10.0.0.2:12379"}); !reflect.DeepEqual(got, []string{"10.0.0.2:12379"}) {
		t.Fatalf("separate value: %v", got)
	}
	if got := Servers(nil); len(got) != 0 {
		t.Fatalf("no flag: %v", got)
	}
}

// fake is a clock that moves only when the waiter sleeps, and a dialer
// that answers from the time: etcd listens on up from upAt.
type fake struct {
	now   time.Time
	upAt  time.Time
	up    string
	dials []string
}

func (f *fake) waiter() Waiter {
	return Waiter{
		Dial: func(ep string) error {
			f.dials = append(f.dials, ep)
			if ep == f.up && !f.now.Before(f.upAt) {
				return nil
			}
			return errors.New("connection refused")
		},
		Now:      func() time.Time { return f.now },
		Sleep:    func(d time.Duration) { f.now = f.now.Add(d) },
		Interval: 20 * time.Millisecond,
	}
}

func TestWait(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	eps := []string{"a:2379", "b:2379"}

	// Nothing ever listens: every endpoint is tried each round until max,
	// then it gives up (the API server starts anyway).
	f := &fake{now: t0, upAt: t0.Add(time.Hour), up: "b:2379"}
	if f.waiter().Wait(eps, 100*time.Millisecond) {
		t.Fatal("Wait reported etcd up when nothing listened")
	}
	if got := f.now.Sub(t0); got != 100*time.Millisecond {
		t.Errorf("gave up after %v, want 100ms", got)
	}
	if want := strings.Repeat("a:2379 b:2379 ", 5); strings.Join(f.dials, " ")+" " != want {
		t.Errorf("dials %v, want 5 rounds over both endpoints", f.dials)
	}

	// The second endpoint comes up at 50 ms: the round after returns at
	// once, without sleeping again, and without trying past it.
	f = &fake{now: t0, upAt: t0.Add(50 * time.Millisecond), up: "b:2379"}
	if !f.waiter().Wait(eps, 5*time.Second) {
		t.Fatal("Wait did not see etcd come up")
	}
	if got := f.now.Sub(t0); got != 60*time.Millisecond {
		t.Errorf("returned at %v, want 60ms (the first round after 50ms)", got)
	}
	if last := f.dials[len(f.dials)-1]; last != "b:2379" {
		t.Errorf("last dial %s", last)
	}

	// No endpoints (--etcd-servers absent or only unix sockets): no wait.
	f = &fake{now: t0}
	if f.waiter().Wait(nil, time.Minute) || len(f.dials) != 0 || !f.now.Equal(t0) {
		t.Errorf("without endpoints: dials %v, clock moved %v", f.dials, f.now.Sub(t0))
	}
}
