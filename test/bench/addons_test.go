package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/test/testbed"
)

// initWatched runs `init --single-node` on n with the config file
// content (watched from the bench as the single-node runs are) and waits
// until every kube-system pod is Ready. It returns init's result and the
// milestones in seconds from init start; missing lists what was not
// reached within 3 minutes.
func (b *bench) initWatched(t *testing.T, n *testbed.Node, file, content string) (res cmdResult, milestones map[string]float64, wr WatchResult, missing []string) {
	admin := func() ([]byte, error) { return n.ReadFile("/etc/kubernetes/admin.conf") }
	w := &Watcher{Interval: b.cfg.interval, Kubeconfig: admin, Node: n.Name, Pods: true,
		ControlPlanes: []string{n.Name}, Nodes: 1, Start: time.Now()}
	wait, stop := startWatch(w, 3*time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res = run(ctx, n, n.Binary, "init", "--config", n.WriteConfigFile(file, content), "--single-node", "-o", "json")
	if res.Err != nil {
		stop()
		return res, nil, w.Result(), nil
	}
	wr = wait()
	milestones = map[string]float64{}
	offset := res.Start.Sub(w.Start).Seconds()
	for k, v := range wr.First {
		milestones[k] = round3(v - offset)
	}
	return res, milestones, wr, w.Missing()
}

// addonsOffRun is part addons-off: one single node with every optional
// addon turned off in its KubeforgeConfiguration, idle as long as the
// single-node runs (BENCH_IDLE after init), then its memory: the baseline
// the single-node runs' memory (every addon on) is held against.
func (b *bench) addonsOffRun(t *testing.T) {
	ar := &AddonsOffResult{Milestones: map[string]float64{}}
	raw := &RunSamples{}
	defer func() {
		b.mu.Lock()
		b.res.AddonsOff, b.samples.AddonsOff = ar, raw
		b.mu.Unlock()
	}()
	problem := func(format string, args ...any) {
		msg := "addons-off run: " + fmt.Sprintf(format, args...)
		ar.Errors = append(ar.Errors, msg)
		b.errorf(t, "%s", msg)
	}
	off, err := AddonsOffConfig()
	if err != nil {
		problem("%v", err)
		t.Fatal(err)
	}
	ar.Load = b.loadSample(t, "the run with every optional addon off")
	tb := testbed.New(t, testbed.WithBinary(b.cfg.binary))
	n := tb.AddNode("benchoff")
	ar.Node = n.Name
	content := strings.TrimRight(n.InitConfigYAML(), "\n") + "\n---\n" + off
	res, ms, wr, missing := b.initWatched(t, n, "init-addons-off.yaml", content)
	raw.InitEvents, raw.InitStderr, raw.InitWatch = res.Events, res.Output, wr
	if res.Err != nil {
		problem("init failed: %v", res.Err)
		t.Fatal(res.Err)
	}
	ar.InitWall, ar.Milestones = res.Wall, ms
	if len(missing) > 0 {
		problem("not reached within 3 minutes of init: %s", strings.Join(missing, "; "))
	}
	t.Logf("init (addons off): %.2f s; from init start: /readyz ok %.2f s, Node Ready %.2f s, every kube-system pod Ready %.2f s",
		res.Wall, get(ms, CheckReadyz), get(ms, CheckNodeReady), get(ms, CheckAllPodsReady))

	initEnd := res.Start.Add(time.Duration(res.Wall * float64(time.Second)))
	time.Sleep(time.Until(initEnd.Add(b.cfg.idle)))
	snap := memory(n, fmt.Sprintf("%.0f s after init, every optional addon off", b.cfg.idle.Seconds()))
	raw.Memory, ar.Memory = snap, snap.lite()
	t.Logf("idle memory, addons off: PSS %.0f MiB, RSS %.0f MiB in %d processes", snap.Total.PSSMiB, snap.Total.RSSMiB, snap.Total.Processes)
	for _, g := range orderGroups(mapKeys(snap.Groups)) {
		cm := snap.Groups[g]
		t.Logf("  %-28s %2d  PSS %6.1f  RSS %6.1f MiB", g, cm.Processes, cm.PSSMiB, cm.RSSMiB)
	}
	// Nothing of an addon may run: its switch is off.
	missingAddons, unnamed := MissingAddons(snap)
	if running := len(OptionalAddons) - len(missingAddons); running > 0 {
		var names []string
		for _, a := range OptionalAddons {
			if snap.Groups[a.Component].Processes > 0 {
				names = append(names, a.Component)
			}
		}
		problem("addons run although every switch is off: %s", strings.Join(names, ", "))
	}
	if len(unnamed) > 0 {
		t.Logf("processes the bench cannot name: %s", strings.Join(unnamed, "; "))
	}
}

func mapKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// topResult is what watchTop saw.
type topResult struct {
	seconds float64 // from init start; 0: never
	polls   int     // metrics API requests made
	output  string  // kubectl top nodes
	err     string
}

// watchTop polls the metrics API (metrics.k8s.io, what `kubectl top nodes`
// reads) every 250 ms from now until it serves node n's CPU and memory usage, then
// runs `kubectl top nodes` in the node once to confirm; it gives up 3
// minutes after start (init's start, which the time is measured from).
// The returned function waits for it.
func watchTop(n *testbed.Node, admin func() ([]byte, error), start time.Time) func() topResult {
	done := make(chan topResult, 1)
	go func() {
		ctx, cancel := context.WithDeadline(context.Background(), start.Add(3*time.Minute))
		defer cancel()
		var tr topResult
		defer func() { done <- tr }()
		kc, err := admin()
		if err != nil {
			tr.err = err.Error()
			return
		}
		cs, _, err := NewClient(kc, "")
		if err != nil {
			tr.err = err.Error()
			return
		}
		last := ""
		for {
			rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
			body, err := cs.Discovery().RESTClient().Get().AbsPath("/apis/metrics.k8s.io/v1beta1/nodes").DoRaw(rctx)
			rcancel()
			tr.polls++
			at := time.Since(start).Seconds()
			if err != nil {
				last = short(err.Error())
			} else if state := nodeMetricsState(body, n.Name); state != "" {
				last = state
			} else {
				tr.seconds = round3(at)
				break
			}
			select {
			case <-ctx.Done():
				tr.err = fmt.Sprintf("the metrics API did not serve node %s's usage within 3 minutes of init start; last: %s", n.Name, last)
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
		out, err := n.KubectlContext(ctx, "top", "nodes")
		tr.output = out
		if err != nil || !strings.Contains(out, n.Name) || strings.Contains(out, "<unknown>") {
			tr.err = fmt.Sprintf("the metrics API served node %s's usage, but `kubectl top nodes` says: %v\n%s", n.Name, err, out)
		}
	}()
	return func() topResult { return <-done }
}

// nodeMetricsState is "" when a NodeMetricsList (JSON) holds node's CPU
// and memory usage, else what it lacks.
func nodeMetricsState(body []byte, node string) string {
	var list struct {
		Items []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Usage map[string]string `json:"usage"`
		} `json:"items"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return "not a NodeMetricsList: " + short(string(body))
	}
	for _, it := range list.Items {
		if it.Metadata.Name == node {
			if it.Usage["cpu"] == "" || it.Usage["memory"] == "" {
				return fmt.Sprintf("node %s without cpu and memory usage: %v", node, it.Usage)
			}
			return ""
		}
	}
	return fmt.Sprintf("no metrics for node %s yet (%d nodes)", node, len(list.Items))
}
