package bench

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/test/testbed"
)

// externalLines are the containerd lines the external runs use: Debian's
// 1.6 and the v2 line (the containerd of the binary under test, run as
// the host's own).
var externalLines = []struct {
	line, section, note, prefix string
	start                       func(n *testbed.Node) (*testbed.Containerd, error)
}{
	{"1.6", "single-node init on the host's containerd 1.6 (`--cri-socket`, from `init` start)",
		"Debian's containerd; includes importing the self-image over containerd's API", "external",
		func(n *testbed.Node) (*testbed.Containerd, error) {
			return n.StartContainerd("ext-containerd", testbed.ContainerdConfig(testbed.ContainerdOptions{Name: "ext-containerd"}))
		}},
	{"2", "single-node init on the host's containerd v2 (`--cri-socket`, from `init` start)",
		"upstream containerd 2.4 run as the host's (config version 3); includes importing the self-image", "external2",
		func(n *testbed.Node) (*testbed.Containerd, error) {
			return n.StartContainerd2("ext-containerd", testbed.Containerd2Config(testbed.ContainerdOptions{Name: "ext-containerd"}))
		}},
}

// externalRun brings up a single-node cluster on a containerd of the line
// line (externalLines) whose sandbox image cannot be pulled (kubeforge
// imports its own images into it) and measures init the way singleRun does.
func (b *bench) externalRun(t *testing.T, i int, line string) {
	er := ExternalRun{Run: i, Line: line, Milestones: map[string]float64{}}
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
	var c *testbed.Containerd
	err := fmt.Errorf("no containerd line %q", line)
	for _, l := range externalLines {
		if l.line == line {
			c, err = l.start(n)
		}
	}
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

// externalFigures are the external containerd runs' rows, a section per
// containerd line (runs without a line are 1.6's, from before there were
// two).
func (b *bench) externalFigures() []Figure {
	var out []Figure
	for _, l := range externalLines {
		var runs []ExternalRun
		for _, r := range b.res.External {
			if r.Line == l.line || (r.Line == "" && l.line == "1.6") {
				runs = append(runs, r)
			}
		}
		if len(runs) == 0 {
			continue
		}
		vals := func(f func(ExternalRun) float64) []float64 {
			var v []float64
			for _, r := range runs {
				v = append(v, f(r))
			}
			return v
		}
		s, k := l.section, l.prefix
		out = append(out,
			NewFigure(s, k+".init.wall", "`init` wall time", "s", vals(func(r ExternalRun) float64 { return nz(r.InitWall) }), l.note),
			NewFigure(s, k+".init.readyz", "→ apiserver /readyz ok", "s", vals(func(r ExternalRun) float64 { return get(r.Milestones, CheckReadyz) }), ""),
			NewFigure(s, k+".init.node_ready", "→ Node Ready", "s", vals(func(r ExternalRun) float64 { return get(r.Milestones, CheckNodeReady) }), ""),
			NewFigure(s, k+".init.all_pods_ready", "→ every kube-system pod Ready", "s", vals(func(r ExternalRun) float64 { return get(r.Milestones, CheckAllPodsReady) }), ""))
	}
	return out
}
