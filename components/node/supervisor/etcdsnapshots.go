package supervisor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kubeforge/kubeforge/components/node/duty"
	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/etcdsnapshot"
	"github.com/kubeforge/kubeforge/manifests"
)

const (
	// etcdSnapshotAwait is how often a node without an etcd member looks
	// again: init and a control-plane join write the etcd manifest after
	// the node service started, and `node status` should say the schedule
	// within seconds of that (a stat of one file; a worker stays without).
	etcdSnapshotAwait = 2 * time.Second
	// etcdSnapshotRecheck is how often a node with a member looks again
	// while it waits for the next snapshot (the member may have gone).
	etcdSnapshotRecheck = 30 * time.Second
)

// runEtcdSnapshots takes the scheduled etcd snapshots on a control-plane
// node (KubeforgeConfiguration etcdSnapshots): one every interval after
// the last scheduled one (or after the service started, when there is
// none), the oldest scheduled ones beyond the retention count deleted.
func (s *supervisor) runEtcdSnapshots(ctx context.Context, h *duty.Health) error {
	kf, err := config.LoadKubeforge(s.p)
	if err != nil {
		return err
	}
	sc := kf.EtcdSnapshots
	if sc.Disabled {
		h.Disabled("turned off (%s etcdSnapshots.disabled in %s)", config.KubeforgeKind, s.p.KubeforgeConfigFile())
		<-ctx.Done()
		return nil
	}
	return runSnapshotSchedule(ctx, h, s.etcdSnapshotSchedule(sc))
}

// etcdSnapshotSchedule is the schedule runEtcdSnapshots follows. Its start
// (when the first snapshot is due, with none taken yet) is the duty's first
// run, kept when the duty runs again after a failure: otherwise a node
// whose first snapshot failed would put the next try a whole interval
// later and say "ok" meanwhile. (The duty's runs follow one another, so
// the field needs no lock.)
func (s *supervisor) etcdSnapshotSchedule(sc config.EtcdSnapshots) snapshotSchedule {
	if s.etcdSnapshotsFrom.IsZero() {
		s.etcdSnapshotsFrom = time.Now()
	}
	return snapshotSchedule{
		paths:    s.p,
		store:    etcdsnapshot.NewStore(s.p),
		interval: sc.Interval.Duration,
		keep:     int(sc.Retention),
		started:  s.etcdSnapshotsFrom,
		await:    etcdSnapshotAwait,
		recheck:  etcdSnapshotRecheck,
		log:      func(msg string, args ...any) { s.log.Info(msg, append([]any{"duty", "etcd-snapshots"}, args...)...) },
	}
}

type snapshotSchedule struct {
	paths    config.Paths
	store    etcdsnapshot.Store
	interval time.Duration
	keep     int
	started  time.Time
	await    time.Duration // how often to look for a member while there is none
	recheck  time.Duration // how often to look again while waiting for the next snapshot
	log      func(msg string, args ...any)
	// save takes one snapshot (Store.Save from the local member by default).
	save func(ctx context.Context, node string) (etcdsnapshot.Meta, error)
}

// next is when the next scheduled snapshot is due.
func (sc snapshotSchedule) next() (time.Time, error) {
	last, err := sc.store.LastScheduled()
	if err != nil {
		return time.Time{}, fmt.Errorf("list the snapshots in %s: %w", sc.store.Dir, err)
	}
	if last.IsZero() {
		return sc.started.Add(sc.interval), nil
	}
	return last.Add(sc.interval), nil
}

func runSnapshotSchedule(ctx context.Context, h *duty.Health, sc snapshotSchedule) error {
	if sc.save == nil {
		sc.save = func(ctx context.Context, node string) (etcdsnapshot.Meta, error) {
			return sc.store.Save(ctx, sc.paths, etcdsnapshot.SaveOptions{Node: node, Scheduled: true, Endpoint: etcdsnapshot.LocalClientURL})
		}
	}
	lastMsg := ""
	say := func(msg string) {
		if msg != lastMsg {
			h.OK("%s", msg)
			lastMsg = msg
		}
	}
	var lastTaken string
	for {
		mem, err := etcdsnapshot.ReadMember(sc.paths)
		var wait time.Duration
		switch {
		case errors.Is(err, etcdsnapshot.ErrNoEtcd):
			h.Disabled("not a control-plane node: no local etcd member (%s)", sc.paths.Manifest(manifests.Etcd))
			lastMsg = ""
			wait = sc.await
		case err != nil:
			return err
		default:
			next, err := sc.next()
			if err != nil {
				return err
			}
			if wait = time.Until(next); wait <= 0 {
				sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
				m, err := sc.save(sctx, mem.Name)
				cancel()
				if err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return fmt.Errorf("scheduled etcd snapshot: %w", err)
				}
				lastTaken = fmt.Sprintf("; last %s (revision %d, %d bytes)", m.Name, m.Revision, m.Size)
				sc.log("saved a scheduled etcd snapshot", "name", m.Name, "revision", m.Revision, "size", m.Size)
				removed, err := sc.store.Prune(sc.keep)
				if len(removed) > 0 {
					sc.log("pruned scheduled etcd snapshots", "names", removed)
				}
				if err != nil {
					return fmt.Errorf("prune scheduled etcd snapshots: %w", err)
				}
				continue
			}
			say(fmt.Sprintf("next snapshot at %s (every %s, keeping the last %d scheduled) in %s%s",
				next.UTC().Format(time.RFC3339), sc.interval, sc.keep, sc.store.Dir, lastTaken))
			wait = min(wait, sc.recheck)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}
