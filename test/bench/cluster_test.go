package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/localcluster"
)

// clusterBench times `kubeforge cluster create --workers 2` (to three nodes
// Ready and CoreDNS answering: the command waits for both), measures the
// idle memory of the three nodes, and deletes the cluster, checking that
// nothing is left. The same machinery makes every other bed of the bench.
func (b *bench) clusterBench(t *testing.T) {
	cr := &ClusterResult{IdleSeconds: b.cfg.idle.Seconds()}
	b.mu.Lock()
	b.res.Cluster = cr
	b.mu.Unlock()
	problem := func(format string, args ...any) {
		msg := "cluster: " + fmt.Sprintf(format, args...)
		b.mu.Lock()
		cr.Errors = append(cr.Errors, msg)
		b.mu.Unlock()
		b.errorf(t, "%s", msg)
	}
	dir := t.TempDir()
	state := filepath.Join(dir, "clusters")
	clusters := &localcluster.Clusters{Root: state}
	cluster := func(ctx context.Context, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, b.cfg.binary, append(append([]string{"cluster"}, args...),
			"--state-dir", state, "--kubeconfig", filepath.Join(dir, "kubeconfig"))...)
		cmd.WaitDelay = 5 * time.Second
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for i := 1; i <= b.cfg.runs; i++ {
		name := fmt.Sprintf("kfbench%d", i)
		b.loadSample(t, "cluster create "+name)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		start := time.Now()
		out, err := cluster(ctx, "create", name, "--workers", "2")
		took := time.Since(start)
		cancel()
		cr.Outputs = append(cr.Outputs, out)
		if err != nil {
			problem("create %s: %v\n%s", name, err, tailLines(out, 20))
			continue
		}
		cr.CreateSeconds = append(cr.CreateSeconds, round3(took.Seconds()))
		t.Logf("cluster create %s --workers 2: %.2f s", name, took.Seconds())
		rec := localcluster.Record{}
		if st, err := clusters.LoadState(name); err == nil {
			rec = st.Bed
		}
		if i == 1 {
			time.Sleep(time.Until(start.Add(took + b.cfg.idle)))
			var pss, rss float64
			bed := localcluster.OpenBed(rec, nil, nil)
			for _, n := range bed.Nodes() {
				for _, p := range n.Processes() {
					if m, err := ReadSmapsRollup(p.PID); err == nil {
						pss += float64(m.PSSKiB) / 1024
						rss += float64(m.RSSKiB) / 1024
					}
				}
			}
			cr.PSSMiB = append(cr.PSSMiB, round3(pss))
			cr.RSSMiB = append(cr.RSSMiB, round3(rss))
			t.Logf("cluster %s, %.0f s idle: PSS %.0f MiB, RSS %.0f MiB", name, b.cfg.idle.Seconds(), pss, rss)
		}
		// Opened while the nodes run, so that it keeps their namespace
		// numbers for the check after the delete.
		before := localcluster.OpenBed(rec, nil, nil)
		start = time.Now()
		if out, err := cluster(context.Background(), "delete", name); err != nil {
			problem("delete %s: %v\n%s", name, err, tailLines(out, 20))
			if _, bed, err := clusters.Open(name); err == nil {
				bed.Destroy(false)
			}
			continue
		}
		cr.DeleteSeconds = append(cr.DeleteSeconds, round3(time.Since(start).Seconds()))
		if left := before.Leftovers(start); len(left) > 0 {
			problem("delete %s left: %s", name, strings.Join(left, "; "))
		}
	}
	if entries, _ := os.ReadDir(state); len(entries) > 0 {
		problem("%d entries left in %s", len(entries), state)
	}
}

func (b *bench) clusterFigures() []Figure {
	cr := b.res.Cluster
	if cr == nil {
		return nil
	}
	const s = "`kubeforge cluster` (no Docker)"
	vals := func(v []float64) []float64 {
		if len(v) == 0 {
			return []float64{math.NaN()}
		}
		return v
	}
	return []Figure{
		NewFigure(s, "cluster.create_3nodes", "`cluster create --workers 2` → 3 nodes Ready, CoreDNS answering", "s", vals(cr.CreateSeconds), "failed"),
		NewFigure(s, "cluster.idle_pss_3nodes", fmt.Sprintf("three-node cluster, PSS %.0f s after create", cr.IdleSeconds), "MiB", vals(cr.PSSMiB), "failed"),
		NewFigure(s, "cluster.idle_rss_3nodes", "the same, sum of RSS", "MiB", vals(cr.RSSMiB), "failed"),
		NewFigure(s, "cluster.delete", "`cluster delete` (host checked clean)", "s", vals(cr.DeleteSeconds), "failed"),
	}
}
