package supervisor

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeforge/kubeforge/components/node"
	"github.com/kubeforge/kubeforge/components/node/duty"
	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/etcdsnapshot"
)

// TestSnapshotSchedule runs the schedule with a fake save on a short
// interval: snapshots come every interval, are pruned to the retention
// count, the health says when the next is due, and a node without etcd
// reports the duty disabled.
func TestSnapshotSchedule(t *testing.T) {
	root := t.TempDir()
	p := config.DefaultPaths().WithRoot(root)
	store := etcdsnapshot.NewStore(p)
	golden, err := os.ReadFile("../../../testdata/etcd.yaml.golden")
	if err != nil {
		t.Fatal(err)
	}

	var states []node.DutyState
	statesCh := make(chan node.DutyState, 1000)

	saved := make(chan string, 100)
	n := 0
	sc := snapshotSchedule{
		paths: p, store: store, interval: 150 * time.Millisecond, keep: 2, started: time.Now(), await: 20 * time.Millisecond, recheck: 20 * time.Millisecond,
		log: func(string, ...any) {},
		save: func(_ context.Context, nodeName string) (etcdsnapshot.Meta, error) {
			n++
			name := etcdsnapshot.DefaultName(nodeName, true, time.Now()) + "-" + string(rune('a'+n))
			if err := os.MkdirAll(store.Dir, 0o700); err != nil {
				return etcdsnapshot.Meta{}, err
			}
			data := make([]byte, 512)
			sum := sha256.Sum256(data)
			if err := os.WriteFile(store.DBPath(name), append(data, sum[:]...), 0o600); err != nil {
				return etcdsnapshot.Meta{}, err
			}
			meta := `{"name":"` + name + `","scheduled":true,"createdAt":"` + time.Now().UTC().Format(time.RFC3339Nano) + `"}`
			if err := os.WriteFile(store.MetaPath(name), []byte(meta), 0o600); err != nil {
				return etcdsnapshot.Meta{}, err
			}
			saved <- name
			return etcdsnapshot.Meta{Name: name}, nil
		},
	}
	// A manual snapshot, never pruned.
	if err := os.MkdirAll(store.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(store.MetaPath("manual"), []byte(`{"name":"manual","createdAt":"2020-01-01T00:00:00Z"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(store.DBPath("manual"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	m := duty.NewManager(duty.Options{Publish: func(d node.DutyState) { statesCh <- d }, RestartDelay: time.Hour},
		duty.Duty{Name: "etcd-snapshots", Run: func(ctx context.Context, h *duty.Health) error {
			err := runSnapshotSchedule(ctx, h, sc)
			done <- err
			return err
		}})
	m.Start(context.Background())
	defer m.Stop()

	// No etcd manifest yet: disabled.
	waitState(t, statesCh, &states, func(d node.DutyState) bool {
		return d.Status == node.DutyDisabled && strings.Contains(d.Message, "not a control-plane node")
	})
	manifest := p.Host(p.Manifest("etcd"))
	if err := os.MkdirAll(filepath.Dir(manifest), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(manifest, golden, 0o600); err != nil {
		t.Fatal(err)
	}
	waitState(t, statesCh, &states, func(d node.DutyState) bool {
		return d.Status == node.DutyOK && strings.Contains(d.Message, "next snapshot at") && strings.Contains(d.Message, "keeping the last 2")
	})
	first := time.Now()
	for i := 0; i < 4; i++ {
		select {
		case <-saved:
		case <-time.After(5 * time.Second):
			t.Fatalf("snapshot %d was not taken", i+1)
		}
	}
	if took := time.Since(first); took < 300*time.Millisecond {
		t.Errorf("4 snapshots every 150ms came within %v: the interval is not kept", took)
	}
	time.Sleep(50 * time.Millisecond) // the prune after the 4th
	m.Stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	all, err := store.List()
	if err != nil {
		t.Fatal(err)
	}
	var sched, manual int
	for _, m := range all {
		if m.Scheduled {
			sched++
		} else if m.Name == "manual" {
			manual++
		}
	}
	if sched != 2 || manual != 1 {
		t.Errorf("after 4 scheduled snapshots with retention 2: %d scheduled, %d manual kept; want 2 and 1", sched, manual)
	}

	// A failing save is an error for the duty manager to report and retry.
	sc.save = func(context.Context, string) (etcdsnapshot.Meta, error) {
		return etcdsnapshot.Meta{}, errors.New("etcd is down")
	}
	sc.started = time.Now().Add(-time.Hour)
	if err := store.Delete("manual"); err != nil {
		t.Fatal(err)
	}
	for _, m := range all {
		_ = store.Delete(m.Name)
	}
	err = runSnapshotSchedule(context.Background(), &duty.Health{}, sc)
	if err == nil || !strings.Contains(err.Error(), "etcd is down") {
		t.Errorf("failing save: %v", err)
	}
}

func waitState(t *testing.T, ch <-chan node.DutyState, seen *[]node.DutyState, ok func(node.DutyState) bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case d := <-ch:
			*seen = append(*seen, d)
			if ok(d) {
				return
			}
		case <-deadline:
			t.Fatalf("no such duty state; seen %+v", *seen)
		}
	}
}

// TestSnapshotScheduleKeepsItsStartAcrossFailures: the first scheduled
// snapshot fails (etcd down), and the duty manager runs the duty again.
// The rerun must try again at once and stay failing, not start the
// interval over and say "ok, next snapshot at …" with no snapshot taken.
func TestSnapshotScheduleKeepsItsStartAcrossFailures(t *testing.T) {
	p := config.DefaultPaths().WithRoot(t.TempDir())
	golden, err := os.ReadFile("../../../testdata/etcd.yaml.golden")
	if err != nil {
		t.Fatal(err)
	}
	manifest := p.Host(p.Manifest("etcd"))
	if err := os.MkdirAll(filepath.Dir(manifest), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(manifest, golden, 0o600); err != nil {
		t.Fatal(err)
	}
	s := &supervisor{p: p, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	var tries atomic.Int32
	statesCh := make(chan node.DutyState, 1000)
	m := duty.NewManager(duty.Options{Publish: func(d node.DutyState) { statesCh <- d }, Log: s.log,
		RestartDelay: 20 * time.Millisecond, MaxRestartDelay: 20 * time.Millisecond},
		duty.Duty{Name: "etcd-snapshots", Run: func(ctx context.Context, h *duty.Health) error {
			sc := s.etcdSnapshotSchedule(config.EtcdSnapshots{Interval: metav1.Duration{Duration: 200 * time.Millisecond}, Retention: 2})
			sc.save = func(context.Context, string) (etcdsnapshot.Meta, error) {
				tries.Add(1)
				return etcdsnapshot.Meta{}, errors.New("etcd is down")
			}
			return runSnapshotSchedule(ctx, h, sc)
		}})
	m.Start(context.Background())
	defer m.Stop()

	var states []node.DutyState
	waitState(t, statesCh, &states, func(d node.DutyState) bool {
		return d.Status == node.DutyFailing && strings.Contains(d.Message, "etcd is down")
	})
	deadline := time.After(600 * time.Millisecond)
	for done := false; !done; {
		select {
		case d := <-statesCh:
			if d.Status == node.DutyOK {
				t.Fatalf("after a failed first snapshot the duty says %q (try %d)", d.Message, tries.Load())
			}
		case <-deadline:
			done = true
		}
	}
	// Retried every 20 ms, not every 200 ms.
	if n := tries.Load(); n < 5 {
		t.Errorf("%d tries in 600 ms after the first failure, want the failed snapshot retried at each rerun", n)
	}
}
