package bench

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/test/testbed"
)

// externalRun brings up a single-node cluster on a Debian containerd whose
// sandbox image cannot be pulled (kubeforge imports its own images into it)
// and measures init the way singleRun does.
func (b *bench) externalRun(t *testing.T, i int) {
	er := ExternalRun{Run: i, Milestones: map[string]float64{}}
	defer func() {
		b.mu.Lock()
		b.res.External = append(b.res.External, er)
		b.mu.Unlock()
	}()
	problem := func(format string, args ...any) {
		msg := fmt.Sprintf("external containerd run %d: ", i) + fmt.Sprintf(format, args...)
		er.Errors = append(er.Errors, msg)
		b.errorf(t, "%s", msg)
	}
	er.Load = b.loadSample(t, fmt.Sprintf("external containerd run %d", i))
	tb := testbed.New(t, testbed.WithBinary(b.cfg.binary))
	n := tb.AddNode("benchext")
	c, err := n.StartContainerd("ext-containerd", testbed.ContainerdConfig(testbed.ContainerdOptions{Name: "ext-containerd"}))
	if err != nil {
		problem("%v", err)
		t.Fatal(err)
	}
	if v, err := c.Ctr("version"); err == nil {
		er.Runtime = strings.Join(strings.Fields(v), " ")
	}
	admin := func() ([]byte, error) { return n.ReadFile("/etc/kubernetes/admin.conf") }
	w := &Watcher{Interval: b.cfg.interval, Kubeconfig: admin, Node: n.Name, Pods: true,
		ControlPlanes: []string{n.Name}, Nodes: 1, Start: time.Now()}
	wait, stop := startWatch(w, 3*time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res := run(ctx, n, n.Binary, "init", "--config", n.InitConfigFile(), "--single-node", "-o", "json", "--cri-socket", c.Endpoint)
	if res.Err != nil {
		stop()
		problem("init failed: %v\n%s", res.Err, tailLines(res.Output, 30))
		t.Fatal(res.Err)
	}
	er.InitWall = res.Wall
	wr := wait()
	offset := res.Start.Sub(w.Start).Seconds()
	for k, v := range wr.First {
		er.Milestones[k] = round3(v - offset)
	}
	if missing := w.Missing(); len(missing) > 0 {
		problem("not reached within 3 minutes of init: %s", strings.Join(missing, "; "))
	}
	t.Logf("init on %s: %.2f s; /readyz ok %.2f s, Node Ready %.2f s, every kube-system pod Ready %.2f s", er.Runtime, res.Wall,
		get(er.Milestones, CheckReadyz), get(er.Milestones, CheckNodeReady), get(er.Milestones, CheckAllPodsReady))
}

// externalFigures are the external containerd runs' rows.
func (b *bench) externalFigures() []Figure {
	if len(b.res.External) == 0 {
		return nil
	}
	const s = "single-node init on the host's containerd 1.6 (`--cri-socket`, from `init` start)"
	vals := func(f func(ExternalRun) float64) []float64 {
		var v []float64
		for _, r := range b.res.External {
			v = append(v, f(r))
		}
		return v
	}
	note := "Debian's containerd; includes importing the self-image over containerd's API"
	return []Figure{
		NewFigure(s, "external.init.wall", "`init` wall time", "s", vals(func(r ExternalRun) float64 { return nz(r.InitWall) }), note),
		NewFigure(s, "external.init.readyz", "→ apiserver /readyz ok", "s", vals(func(r ExternalRun) float64 { return get(r.Milestones, CheckReadyz) }), ""),
		NewFigure(s, "external.init.node_ready", "→ Node Ready", "s", vals(func(r ExternalRun) float64 { return get(r.Milestones, CheckNodeReady) }), ""),
		NewFigure(s, "external.init.all_pods_ready", "→ every kube-system pod Ready", "s", vals(func(r ExternalRun) float64 { return get(r.Milestones, CheckAllPodsReady) }), ""),
	}
}
