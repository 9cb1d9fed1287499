package config

import (
	"fmt"
	"path/filepath"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Defaults of the scheduled etcd snapshots (k3s's policy: twice a day, the
// last five kept).
const (
	DefaultEtcdSnapshotInterval  = 12 * time.Hour
	DefaultEtcdSnapshotRetention = 5
	// MinEtcdSnapshotInterval keeps a typo from snapshotting etcd in a loop.
	MinEtcdSnapshotInterval = 10 * time.Second
)

// EtcdSnapshots configures the scheduled etcd snapshots that the node
// service takes on each control-plane node (KubeforgeConfiguration field
// etcdSnapshots). Snapshots taken by hand (`kubeforge etcd snapshot save`)
// are never pruned.
type EtcdSnapshots struct {
	// Disabled turns the scheduled snapshots off.
	Disabled bool `json:"disabled,omitempty"`
	// Interval is the time between two scheduled snapshots (12h by
	// default, at least 10s).
	Interval metav1.Duration `json:"interval,omitempty"`
	// Retention is how many scheduled snapshots are kept (5 by default);
	// older ones are deleted after each new one.
	Retention int32 `json:"retention,omitempty"`
}

// EtcdSnapshotDir is where a node keeps its etcd snapshots (each NAME.db
// with its metadata NAME.json).
func (p Paths) EtcdSnapshotDir() string { return filepath.Join(p.StateDir, "etcd-snapshots") }

func defaultEtcdSnapshots(s *EtcdSnapshots) {
	if s.Interval.Duration == 0 {
		s.Interval.Duration = DefaultEtcdSnapshotInterval
	}
	if s.Retention == 0 {
		s.Retention = DefaultEtcdSnapshotRetention
	}
}

func validateEtcdSnapshots(s *EtcdSnapshots) []error {
	const where = KubeforgeKind + ".etcdSnapshots"
	var errs []error
	if s.Interval.Duration < MinEtcdSnapshotInterval {
		errs = append(errs, fmt.Errorf("%s.interval: %s is shorter than %s: set a longer interval (such as 12h), or disabled: true to turn scheduled snapshots off",
			where, s.Interval.Duration, MinEtcdSnapshotInterval))
	}
	if s.Retention < 1 {
		errs = append(errs, fmt.Errorf("%s.retention: %d: keep at least 1 scheduled snapshot (default %d), or set disabled: true", where, s.Retention, DefaultEtcdSnapshotRetention))
	}
	return errs
}
