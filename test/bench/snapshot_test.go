package bench

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubeforge/kubeforge/test/testbed"
)

// snapshotBench brings up a single node, stores the ConfigMaps, and times
// a snapshot save and a restore of it (until the API server is ready; the
// restore waits for that itself).
func (b *bench) snapshotBench(t *testing.T) {
	sr := &SnapshotResult{ConfigMaps: SnapshotConfigMaps}
	b.mu.Lock()
	b.res.Snapshot = sr
	b.mu.Unlock()
	problem := func(format string, args ...any) {
		msg := "snapshot: " + fmt.Sprintf(format, args...)
		b.mu.Lock()
		sr.Errors = append(sr.Errors, msg)
		b.mu.Unlock()
		b.errorf(t, "%s", msg)
	}
	tb := testbed.New(t, testbed.WithBinary(b.cfg.binary))
	n := tb.AddNode("snapbench")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	if res := run(ctx, n, n.Binary, "init", "--config", n.InitConfigFile(), "--single-node"); res.Err != nil {
		problem("init: %v\n%s", res.Err, tailLines(res.Output, 20))
		return
	}
	kc, err := n.ReadFile("/etc/kubernetes/admin.conf")
	if err != nil {
		problem("%v", err)
		return
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kc)
	if err != nil {
		problem("%v", err)
		return
	}
	cfg.QPS, cfg.Burst = 2000, 2000
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		problem("%v", err)
		return
	}
	if err := waitAPI(ctx, cs); err != nil {
		problem("the API server did not come up: %v", err)
		return
	}

	// The ConfigMaps, 16 writers at a time.
	start := time.Now()
	var next atomic.Int64
	var failed atomic.Int64
	var firstErr sync.Once
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > SnapshotConfigMaps {
					return
				}
				cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%05d", i), Namespace: "default"},
					Data: map[string]string{"data": strings.Repeat("x", 512)}}
				if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
					failed.Add(1)
					firstErr.Do(func() { problem("create %s: %v", cm.Name, err) })
				}
			}
		}()
	}
	wg.Wait()
	sr.CreateWall = time.Since(start).Seconds()
	if failed.Load() > 0 {
		problem("%d ConfigMaps were not created", failed.Load())
		return
	}

	start = time.Now()
	if res := run(ctx, n, n.Binary, "etcd", "snapshot", "save", "bench"); res.Err != nil {
		problem("snapshot save: %v\n%s", res.Err, tailLines(res.Output, 20))
		return
	}
	sr.SaveSeconds = time.Since(start).Seconds()
	if fi, err := n.ReadFile("/var/lib/kubeforge/etcd-snapshots/bench.db"); err == nil {
		sr.Bytes = int64(len(fi))
	}
	if err := cs.CoreV1().ConfigMaps("default").Delete(ctx, "bench-00001", metav1.DeleteOptions{}); err != nil {
		problem("delete a ConfigMap: %v", err)
	}

	start = time.Now()
	if res := run(ctx, n, n.Binary, "etcd", "snapshot", "restore", "bench"); res.Err != nil {
		problem("snapshot restore: %v\n%s", res.Err, tailLines(res.Output, 20))
		return
	}
	sr.RestoreWall = time.Since(start).Seconds()
	for range 60 {
		if _, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "bench-00001", metav1.GetOptions{}); err == nil {
			sr.RestoredBack = true
			break
		}
		time.Sleep(time.Second)
	}
	if !sr.RestoredBack {
		problem("the ConfigMap deleted after the snapshot is not back after the restore")
	}
	t.Logf("snapshot: %d ConfigMaps created in %.1fs; save %.2fs (%d bytes), restore %.2fs",
		SnapshotConfigMaps, sr.CreateWall, sr.SaveSeconds, sr.Bytes, sr.RestoreWall)
}

func waitAPI(ctx context.Context, cs kubernetes.Interface) error {
	var err error
	for range 120 {
		if _, err = cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err == nil {
			return nil
		}
		time.Sleep(time.Second)
	}
	return err
}

func (b *bench) snapshotFigures() []Figure {
	sr := b.res.Snapshot
	if sr == nil {
		return nil
	}
	s := fmt.Sprintf("etcd snapshots, single node with %d ConfigMaps", sr.ConfigMaps)
	val := func(v float64) []float64 {
		if v == 0 {
			return []float64{math.NaN()}
		}
		return []float64{v}
	}
	return []Figure{
		NewFigure(s, "snapshot.save", "`etcd snapshot save`", "s", val(sr.SaveSeconds), "failed"),
		NewFigure(s, "snapshot.restore", "`etcd snapshot restore` (until the API server is ready)", "s", val(sr.RestoreWall), "failed"),
		NewFigure(s, "snapshot.size", "snapshot size", "MB", val(float64(sr.Bytes)/1e6), "failed"),
	}
}
