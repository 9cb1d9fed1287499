package bench

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/internal/testutil"
	"github.com/kubeforge/kubeforge/test/testbed"
)

// UpgradeSamples are the upgrade commands' JSON events.
type UpgradeSamples struct {
	Apply  []TimedEvent `json:"apply_events"`
	Node   []TimedEvent `json:"node_events"`
	Addons []TimedEvent `json:"addons_apply_events"`
}

// upgradeBench makes a control-plane node and a worker with an older
// kubeforge (testutil.OldKubeforge, as TestUpgrade) and upgrades them to the
// build under test as the README says: `upgrade apply` on the control-plane
// node, timed while the bench asks /readyz every 100 ms for the longest API
// gap (testbed.WatchAPIGaps, as TestUpgrade), `upgrade node` on the worker,
// and `upgrade apply` once more for the addons.
func (b *bench) upgradeBench(t *testing.T) {
	ur := &UpgradeResult{}
	us := &UpgradeSamples{}
	b.mu.Lock()
	b.res.Upgrade, b.samples.Upgrade = ur, us
	b.mu.Unlock()
	problem := func(format string, args ...any) {
		msg := "upgrade: " + fmt.Sprintf(format, args...)
		b.mu.Lock()
		ur.Errors = append(ur.Errors, msg)
		b.mu.Unlock()
		b.errorf(t, "%s", msg)
	}
	old, oldVersion := testutil.OldKubeforge(t)
	ur.From = oldVersion
	ur.Load = b.loadSample(t, "the upgrade cluster")
	tb := testbed.New(t, testbed.WithBinary(old))
	cp := tb.AddNode("upcp")
	w := tb.AddNode("upw")
	newBin, newVersion := tb.InstallBinary(b.cfg.binary, "kubeforge-new")
	ur.To = newVersion
	if newVersion == oldVersion {
		problem("the build under test has the old build's version %s", oldVersion)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	res := run(ctx, cp, cp.Binary, "init", "--config", cp.InitConfigFile(), "-o", "json")
	if res.Err != nil {
		problem("init with kubeforge %s: %v", oldVersion, res.Err)
		return
	}
	ja, err := parseJoinCommand(res.Events)
	if err != nil {
		problem("%v", err)
		return
	}
	if res := run(ctx, w, w.Binary, "join", ja.endpoint, "--config", w.JoinConfigFile(), "--token", ja.token,
		"--discovery-token-ca-cert-hash", ja.hash); res.Err != nil {
		problem("join of the worker with kubeforge %s: %v", oldVersion, res.Err)
		return
	}
	admin := func() ([]byte, error) { return cp.ReadFile("/etc/kubernetes/admin.conf") }
	// The upgrade starts on a settled cluster: both nodes Ready, every
	// kube-system pod Ready.
	settle := &Watcher{Interval: b.cfg.interval, Kubeconfig: admin, Node: w.Name, Pods: true,
		ControlPlanes: []string{cp.Name}, Nodes: 2, Start: time.Now()}
	wait, _ := startWatch(settle, 3*time.Minute)
	wait()
	if m := settle.Missing(); len(m) > 0 {
		problem("the cluster made by kubeforge %s did not settle within 3 minutes: %s", oldVersion, strings.Join(m, "; "))
		return
	}
	cs, _, err := NewClient(mustRead(t, admin), "")
	if err != nil {
		problem("%v", err)
		return
	}

	b.loadSample(t, "upgrade apply")
	stop := testbed.WatchAPIGaps(cs, 100*time.Millisecond)
	res = run(ctx, cp, newBin, "upgrade", "apply", "-o", "json")
	gap := stop()
	us.Apply = res.Events
	if res.Err != nil {
		problem("upgrade apply: %v", res.Err)
		return
	}
	ur.ApplySeconds, ur.APIGapSeconds, ur.ApplyPhases = res.Wall, round3(gap.Seconds()), phases(res.Events)
	t.Logf("upgrade apply %s → %s: %.1f s, longest API gap %.1f s", oldVersion, newVersion, res.Wall, gap.Seconds())

	res = run(ctx, w, newBin, "upgrade", "node", "-o", "json")
	us.Node = res.Events
	if res.Err != nil {
		problem("upgrade node on the worker: %v", res.Err)
		return
	}
	ur.NodeSeconds = res.Wall
	res = run(ctx, cp, newBin, "upgrade", "apply", "-o", "json")
	us.Addons = res.Events
	if res.Err != nil {
		problem("upgrade apply (addons): %v", res.Err)
		return
	}
	ur.AddonsSeconds = res.Wall
	t.Logf("upgrade node (worker): %.1f s; upgrade apply (addons): %.1f s", ur.NodeSeconds, ur.AddonsSeconds)
}

func (b *bench) upgradeFigures() []Figure {
	ur := b.res.Upgrade
	if ur == nil {
		return nil
	}
	s := fmt.Sprintf("`upgrade` of 1 control-plane node + 1 worker (%s → %s)", ur.From, ur.To)
	val := func(v float64) []float64 {
		if v == 0 {
			return []float64{math.NaN()}
		}
		return []float64{v}
	}
	gap := []float64{ur.APIGapSeconds}
	if ur.ApplySeconds == 0 {
		gap = []float64{math.NaN()}
	}
	out := []Figure{
		NewFigure(s, "upgrade.apply", "`upgrade apply` on the control-plane node: wall time", "s", val(ur.ApplySeconds), "failed"),
		NewFigure(s, "upgrade.api_unavailable_max", "longest API unavailability during it (/readyz every 100 ms)", "s", gap, "failed"),
		NewFigure(s, "upgrade.node_worker", "`upgrade node` on the worker: wall time", "s", val(ur.NodeSeconds), "failed"),
		NewFigure(s, "upgrade.addons", "second `upgrade apply` (CoreDNS, kube-proxy, addons): wall time", "s", val(ur.AddonsSeconds), "failed"),
	}
	for _, p := range ur.ApplyPhases {
		out = append(out, NewFigure("`upgrade apply` phases (phase-done events)", "upgrade.phase."+p.Phase, p.Phase, "s", []float64{p.Seconds}, ""))
	}
	return out
}
