package bench

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// figures turns the runs into the figures of results.json and the table.
func (b *bench) figures() []Figure {
	r := b.res
	var out []Figure
	add := func(section, key, name, unit string, values []float64, note string) {
		out = append(out, NewFigure(section, key, name, unit, values, note))
	}
	single := func(f func(SingleRun) float64) []float64 {
		var v []float64
		for _, run := range r.Single {
			v = append(v, f(run))
		}
		return v
	}
	ms := func(m map[string]float64, k string) float64 { return get(m, k) }

	if len(r.Single) == 0 {
		return ApplyKubeadm(append(append(append(append(append(append(b.processesFigures(), b.kubeadmFigures()...), b.externalFigures()...), b.joinFigures()...), b.networkFigures()...), append(append(b.snapshotFigures(), b.clusterFigures()...), b.upgradeFigures()...)...), b.benchrowsFigures()...))
	}
	const sInit = "single-node init (from `init` start)"
	add(sInit, "init.wall", "`init` wall time", "s", single(func(s SingleRun) float64 { return nz(s.InitWall) }), "")
	add(sInit, "init.readyz", "→ apiserver /readyz ok", "s", single(func(s SingleRun) float64 { return ms(s.Milestones, CheckReadyz) }), "")
	add(sInit, "init.node_ready", "→ Node Ready", "s", single(func(s SingleRun) float64 { return ms(s.Milestones, CheckNodeReady) }), "")
	add(sInit, "init.coredns_ready", "→ CoreDNS Ready", "s", single(func(s SingleRun) float64 { return ms(s.Milestones, CheckCoreDNSReady) }), "")
	add(sInit, "init.all_pods_ready", "→ every kube-system pod Ready", "s", single(func(s SingleRun) float64 { return ms(s.Milestones, CheckAllPodsReady) }), "")
	add(sInit, "init.kubectl_top", "→ `kubectl top nodes` answers (metrics.k8s.io serves the node's usage)", "s", single(func(s SingleRun) float64 { return ms(s.Milestones, MilestoneKubectlTop) }), "")
	for _, g := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "coredns", "metrics-server", "local-path-provisioner", "kubeforge-dashboard"} {
		add(sInit, "init.ready."+g, "  → "+g+" pod(s) Ready", "s", single(func(s SingleRun) float64 { return ms(s.Milestones, "ready/"+g) }), "")
	}

	// Phases, in the order of the first run that has them.
	var names []string
	for _, run := range r.Single {
		for _, p := range run.Phases {
			if !slices.Contains(names, p.Phase) {
				names = append(names, p.Phase)
			}
		}
	}
	for _, name := range names {
		add("init phases (phase-done events)", "phase."+name, name, "s", single(func(s SingleRun) float64 {
			for _, p := range s.Phases {
				if p.Phase == name {
					return p.Seconds
				}
			}
			return math.NaN()
		}), "")
	}

	sMem := fmt.Sprintf("%s %.0f s after init", MemorySection, b.cfg.idle.Seconds())
	var snaps []MemSnapshot
	for _, run := range r.Single {
		if run.Memory != nil {
			snaps = append(snaps, *run.Memory)
		}
	}
	memFig := func(f func(MemSnapshot) float64) []float64 {
		var v []float64
		for _, run := range r.Single {
			if run.Memory == nil {
				v = append(v, math.NaN())
				continue
			}
			v = append(v, f(*run.Memory))
		}
		return v
	}
	add(sMem, "memory.total.pss", "whole node PSS", "MiB", memFig(func(m MemSnapshot) float64 { return m.Total.PSSMiB }), "")
	add(sMem, "memory.total.rss", "whole node RSS", "MiB", memFig(func(m MemSnapshot) float64 { return m.Total.RSSMiB }), "")
	add(sMem, "memory.total.anon", "whole node anonymous", "MiB", memFig(func(m MemSnapshot) float64 { return m.Total.AnonMiB }), "")
	add(sMem, "memory.total.processes", "whole node processes", "", memFig(func(m MemSnapshot) float64 { return float64(m.Total.Processes) }), "")
	for _, c := range ComponentNames(snaps...) {
		get := func(m MemSnapshot) CompMem {
			if cm, ok := m.Components[c]; ok {
				return cm
			}
			return CompMem{}
		}
		add(sMem, "memory."+c+".processes", c+" processes", "", memFig(func(m MemSnapshot) float64 { return float64(get(m).Processes) }), "")
		add(sMem, "memory."+c+".pss", c+" PSS", "MiB", memFig(func(m MemSnapshot) float64 { return get(m).PSSMiB }), "")
		add(sMem, "memory."+c+".rss", c+" RSS", "MiB", memFig(func(m MemSnapshot) float64 { return get(m).RSSMiB }), "")
		add(sMem, "memory."+c+".anon", c+" anonymous", "MiB", memFig(func(m MemSnapshot) float64 { return get(m).AnonMiB }), "")
	}

	restarts := []struct{ key, title string }{{"restart", "node service restart: `node stop` + `node start` (from `node start`)"},
		{"kill9", "node service restart: kill -9 of the supervisor + `node start` (from `node start`)"}}
	if b.cfg.skip["restart"] {
		restarts = nil
	}
	for _, rs := range restarts {
		pick := func(s SingleRun) *RestartResult {
			if rs.key == "restart" {
				return s.Restart
			}
			return s.Kill9
		}
		rf := func(f func(*RestartResult) float64) []float64 {
			return single(func(s SingleRun) float64 {
				if rr := pick(s); rr != nil {
					return f(rr)
				}
				return math.NaN()
			})
		}
		if rs.key == "restart" {
			add(rs.title, rs.key+".stop", "`node stop`", "s", rf(func(rr *RestartResult) float64 { return rr.StopSeconds }), "")
		}
		add(rs.title, rs.key+".start", "`node start` command", "s", rf(func(rr *RestartResult) float64 { return rr.StartSeconds }), "")
		add(rs.title, rs.key+".readyz", "→ /readyz ok", "s", rf(func(rr *RestartResult) float64 { return ms(rr.Milestones, CheckReadyz) }), "")
		add(rs.title, rs.key+".node_ready", "→ Node Ready (as the new kubelet reports it, for good)", "s", rf(func(rr *RestartResult) float64 { return ms(rr.Milestones, CheckNodeReady) }), "")
		add(rs.title, rs.key+".node_flapped", "runs where the Node went NotReady after Ready", "", rf(func(rr *RestartResult) float64 {
			if rr.Milestones[CheckNodeReady+"-dipped"] == 1 {
				return 1
			}
			return 0
		}), "")
		add(rs.title, rs.key+".all_pods_ready", "→ every kube-system pod Ready (for good)", "s", rf(func(rr *RestartResult) float64 { return ms(rr.Milestones, CheckAllPodsReady) }), "")
		add(rs.title, rs.key+".containers_changed", "containers restarted or replaced", "", rf(func(rr *RestartResult) float64 { return float64(len(rr.ContainersChanged)) }), "")
		add(rs.title, rs.key+".pods_dipped", "runs where a kube-system pod went not Ready", "", rf(func(rr *RestartResult) float64 {
			if rr.Milestones[CheckAllPodsReady+"-dipped"] == 1 {
				return 1
			}
			return 0
		}), "")
		add(rs.title, rs.key+".pss", "whole node PSS afterwards", "MiB", rf(func(rr *RestartResult) float64 {
			if rr.Memory == nil {
				return math.NaN()
			}
			return rr.Memory.Total.PSSMiB
		}), "")
		add(rs.title, rs.key+".rss", "whole node RSS afterwards", "MiB", rf(func(rr *RestartResult) float64 {
			if rr.Memory == nil {
				return math.NaN()
			}
			return rr.Memory.Total.RSSMiB
		}), "")
	}

	const sReset = "`reset --force`"
	add(sReset, "reset.wall", "`reset --force` wall time", "s", single(func(s SingleRun) float64 {
		if s.Reset == nil {
			return math.NaN()
		}
		return s.Reset.WallSeconds
	}), "")
	add(sReset, "reset.clean", "runs that left the node clean", "", single(func(s SingleRun) float64 {
		if s.Reset == nil {
			return math.NaN()
		}
		if s.Reset.Clean {
			return 1
		}
		return 0
	}), "1 = clean")

	out = append(out, b.processesFigures()...)
	out = append(out, b.kubeadmFigures()...)
	out = append(out, b.externalFigures()...)
	out = append(out, b.joinFigures()...)
	out = append(out, b.networkFigures()...)
	if !b.cfg.skip["logging"] {
		out = append(out, logLagFigure(r.Single))
	}
	out = append(out, b.snapshotFigures()...)
	out = append(out, b.clusterFigures()...)
	out = append(out, b.upgradeFigures()...)
	out = append(out, b.benchrowsFigures()...)
	return ApplyKubeadm(out)
}

// kubeadmFigures are the kubeadm part's rows (KubeadmPrefix and the key
// of kubeforge's figure they compare with).
func (b *bench) kubeadmFigures() []Figure {
	runs := b.res.Kubeadm
	if len(runs) == 0 {
		return nil
	}
	var out []Figure
	add := func(section, key, name, unit string, values []float64, note string) {
		out = append(out, NewFigure(section, KubeadmPrefix+key, name, unit, values, note))
	}
	vals := func(f func(KubeadmRun) float64) []float64 {
		var v []float64
		for _, r := range runs {
			v = append(v, f(r))
		}
		return v
	}
	ms := func(k string) []float64 { return vals(func(r KubeadmRun) float64 { return get(r.Milestones, k) }) }
	s := "kubeadm " + kubeadmVersion(b.res.KubeadmInfo) + " single-node init, this machine, this run (Debian's containerd 1.6, images pre-imported; from `kubeadm init` start)"
	add(s, "init.wall", "`kubeadm init` wall time", "s", vals(func(r KubeadmRun) float64 { return nz(r.InitWall) }), "")
	add(s, "init.readyz", "→ apiserver /readyz ok", "s", ms(CheckReadyz), "")
	add(s, "init.node_ready", "→ Node Ready", "s", ms(CheckNodeReady), "")
	add(s, "init.coredns_ready", "→ CoreDNS Ready", "s", ms(CheckCoreDNSReady), "")
	add(s, "init.all_pods_ready", "→ every kube-system pod Ready", "s", ms(CheckAllPodsReady), "")
	for _, g := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "coredns"} {
		add(s, "init.ready."+g, "  → "+g+" pod(s) Ready", "s", ms("ready/"+g), "")
	}
	add(s, "images.import", "importing its images before init (in no figure above)", "s", vals(func(r KubeadmRun) float64 { return nz(r.ImportSeconds) }), "")
	add(s, "reset.wall", "`kubeadm reset -f` wall time", "s", vals(func(r KubeadmRun) float64 { return nz(r.ResetWall) }), "")
	var names []string
	for _, r := range runs {
		for _, p := range r.Phases {
			if !slices.Contains(names, p.Phase) {
				names = append(names, p.Phase)
			}
		}
	}
	for _, name := range names {
		add("kubeadm init phases (its output's [tag] lines, each until the next tag; its wait for the API server falls under kubelet-start)", "init_phase."+name, name, "s", vals(func(r KubeadmRun) float64 {
			for _, p := range r.Phases {
				if p.Phase == name {
					return p.Seconds
				}
			}
			return math.NaN()
		}), "")
	}

	sMem := fmt.Sprintf("%s of the kubeadm node %.0f s after init", MemorySection, b.cfg.idle.Seconds())
	var snaps []MemSnapshot
	for _, r := range runs {
		if r.Memory != nil {
			snaps = append(snaps, *r.Memory)
		}
	}
	mem := func(f func(MemSnapshot) float64) []float64 {
		return vals(func(r KubeadmRun) float64 {
			if r.Memory == nil {
				return math.NaN()
			}
			return f(*r.Memory)
		})
	}
	add(sMem, "memory.total.pss", "whole node PSS", "MiB", mem(func(m MemSnapshot) float64 { return m.Total.PSSMiB }), "")
	add(sMem, "memory.total.rss", "whole node RSS", "MiB", mem(func(m MemSnapshot) float64 { return m.Total.RSSMiB }), "")
	add(sMem, "memory.total.anon", "whole node anonymous", "MiB", mem(func(m MemSnapshot) float64 { return m.Total.AnonMiB }), "")
	add(sMem, "memory.total.processes", "whole node processes", "", mem(func(m MemSnapshot) float64 { return float64(m.Total.Processes) }), "")
	for _, c := range ComponentNames(snaps...) {
		get := func(m MemSnapshot) CompMem { return m.Components[c] }
		add(sMem, "memory."+c+".processes", c+" processes", "", mem(func(m MemSnapshot) float64 { return float64(get(m).Processes) }), "")
		add(sMem, "memory."+c+".pss", c+" PSS", "MiB", mem(func(m MemSnapshot) float64 { return get(m).PSSMiB }), "")
		add(sMem, "memory."+c+".rss", c+" RSS", "MiB", mem(func(m MemSnapshot) float64 { return get(m).RSSMiB }), "")
		add(sMem, "memory."+c+".anon", c+" anonymous", "MiB", mem(func(m MemSnapshot) float64 { return get(m).AnonMiB }), "")
	}
	return out
}

// benchrowsFigures are the rows of parts addons-off and pull.
func (b *bench) benchrowsFigures() []Figure {
	var out []Figure
	if ar := b.res.AddonsOff; ar != nil || !b.cfg.skip["addons-off"] {
		var on []*MemSnapshot
		for _, run := range b.res.Single {
			on = append(on, run.Memory)
		}
		var off *MemSnapshot
		note := "part addons-off skipped"
		if ar != nil {
			off, note = ar.Memory, "the addons-off run failed"
		}
		out = append(out, AddonFigures(on, off, b.cfg.idle.Seconds(), note)...)
		if ar != nil {
			s := AddonsSection(b.cfg.idle.Seconds())
			out = append(out,
				NewFigure(s, "addons.off.init_wall", "`init` wall time, every optional addon off", "s", []float64{nz(ar.InitWall)}, "failed"),
				NewFigure(s, "addons.off.all_pods_ready", "init start → every kube-system pod Ready, every optional addon off", "s", []float64{get(ar.Milestones, CheckAllPodsReady)}, "not reached"))
		}
	}
	out = append(out, PullFigures(b.res.Pull)...)
	return out
}

func kubeadmVersion(i *KubeadmInfo) string {
	if i == nil || i.Version == "" {
		return "(version unknown)"
	}
	return i.Version
}

// nz is NaN for 0 (not measured).
func nz(v float64) float64 {
	if v == 0 {
		return math.NaN()
	}
	return v
}

func (b *bench) joinFigures() []Figure {
	jr := b.res.Join
	if jr == nil {
		return nil
	}
	var out []Figure
	add := func(section, key, name, unit string, values []float64, note string) {
		out = append(out, NewFigure(section, key, name, unit, values, note))
	}
	one := func(j *JoinRun, f func(JoinRun) float64) []float64 {
		if j == nil || j.Error != "" && j.Wall == 0 {
			return []float64{math.NaN()}
		}
		return []float64{f(*j)}
	}
	workers := func(f func(JoinRun) float64) []float64 {
		var v []float64
		for _, j := range jr.Workers {
			if j.Error != "" && j.Wall == 0 {
				v = append(v, math.NaN())
				continue
			}
			v = append(v, f(j))
		}
		return v
	}
	wall := func(j JoinRun) float64 { return nz(j.Wall) }
	ready := func(j JoinRun) float64 { return get(j.Milestones, CheckNodeReady) }

	const s = "join (1 control plane, 2 workers, then a 2nd control plane; from `join` start)"
	add(s, "join.first.wall", "first worker `join` right after `init`: wall time", "s", one(jr.First, wall), "")
	add(s, "join.first.node_ready", "first worker join right after `init` → Node Ready", "s", one(jr.First, ready), "")
	add(s, "join.token_signed", "`init` end → cluster-info signed for the token", "s", []float64{nz(jr.SignedSeconds)}, "")
	add(s, "join.worker.wall", "worker `join` (token already signed): wall time", "s", workers(wall), "")
	add(s, "join.worker.node_ready", "worker join (token already signed) → Node Ready", "s", workers(ready), "")
	add(s, "join.cp.wall", "control-plane `join`: wall time", "s", one(jr.ControlPlane, wall), "")
	add(s, "join.cp.member_added", "control-plane join: etcd member add", "s", one(jr.ControlPlane, func(j JoinRun) float64 { return nz(j.MemberAdded) }), "the join's member-added event")
	add(s, "join.cp.node_ready", "control-plane join → Node Ready", "s", one(jr.ControlPlane, ready), "")
	add(s, "join.cp.readyz", "control-plane join → its own apiserver /readyz ok", "s", one(jr.ControlPlane, func(j JoinRun) float64 { return get(j.Milestones, "own-readyz") }), "")
	add(s, "join.cp.settled", "control-plane join → every kube-system pod of the cluster Ready", "s", one(jr.ControlPlane, func(j JoinRun) float64 { return get(j.Milestones, "cluster-settled") }), "")

	if m := jr.WorkerMemory; m != nil {
		add(s, "join.worker.memory.pss", "worker node (w1) memory: PSS", "MiB", []float64{m.Total.PSSMiB}, "")
		add(s, "join.worker.memory.rss", "worker node (w1) memory: RSS", "MiB", []float64{m.Total.RSSMiB}, "")
	}

	phaseFigs := func(section, prefix string, runs []JoinRun) {
		var names []string
		for _, j := range runs {
			for _, p := range j.Phases {
				if !slices.Contains(names, p.Phase) {
					names = append(names, p.Phase)
				}
			}
		}
		for _, name := range names {
			var v []float64
			for _, j := range runs {
				x := math.NaN()
				for _, p := range j.Phases {
					if p.Phase == name {
						x = p.Seconds
					}
				}
				v = append(v, x)
			}
			add(section, prefix+name, name, "s", v, "")
		}
	}
	phaseFigs("worker join phases (token already signed)", "join.worker.phase.", jr.Workers)
	if jr.ControlPlane != nil {
		phaseFigs("control-plane join phases", "join.cp.phase.", []JoinRun{*jr.ControlPlane})
	}
	return out
}

func (b *bench) networkFigures() []Figure {
	nr := b.res.Network
	if nr == nil {
		return nil
	}
	var out []Figure
	const s = "Service latency from a pod to a ClusterIP (HTTP GET to busybox httpd, new connection per request)"
	for _, g := range []struct{ cluster, path, key, name string }{
		{"single-node run", "same node", "network.single.same_node", "single node"},
		{"join cluster", "same node", "network.join.same_node", "join cluster, client on the server's node"},
		{"join cluster", "cross node", "network.join.cross_node", "join cluster, client on another node"},
	} {
		var p50, p99, fails []float64
		for _, c := range nr.Clients {
			if strings.HasPrefix(c.Cluster, g.cluster) && c.Path == g.path {
				fails = append(fails, float64(c.Failures))
				if c.Failures < c.Requests && c.P50ms > 0 {
					p50, p99 = append(p50, c.P50ms), append(p99, c.P99ms)
				}
			}
		}
		if len(fails) == 0 {
			continue
		}
		if len(p50) == 0 {
			p50, p99 = []float64{math.NaN()}, []float64{math.NaN()}
		}
		out = append(out,
			NewFigure(s, g.key+".p50", fmt.Sprintf("%s: p50 (%d requests)", g.name, b.cfg.requests), "ms", p50, "every request failed"),
			NewFigure(s, g.key+".p99", g.name+": p99", "ms", p99, "every request failed"),
			NewFigure(s, g.key+".failures", g.name+": failed requests", "", fails, ""),
		)
	}
	return out
}

// processesFigures are the single-node runs whose control plane runs as
// the node service's processes: the day-1 figures, with the targets and
// the kubeadm runs of the default ones (ProcessesPrefix).
func (b *bench) processesFigures() []Figure {
	runs := b.res.Processes
	if len(runs) == 0 {
		return nil
	}
	var out []Figure
	s := "single-node init, control plane as processes (`init --control-plane-runtime=Processes`; from `init` start)"
	add := func(key, name, unit string, f func(SingleRun) float64) {
		var v []float64
		for _, r := range runs {
			v = append(v, f(r))
		}
		out = append(out, NewFigure(s, ProcessesPrefix+key, name, unit, v, ""))
	}
	ms := func(k string) func(SingleRun) float64 {
		return func(r SingleRun) float64 { return get(r.Milestones, k) }
	}
	mem := func(f func(MemSnapshot) float64) func(SingleRun) float64 {
		return func(r SingleRun) float64 {
			if r.Memory == nil {
				return math.NaN()
			}
			return f(*r.Memory)
		}
	}
	add("init.wall", "`init` wall time", "s", func(r SingleRun) float64 { return nz(r.InitWall) })
	add("init.readyz", "→ apiserver /readyz ok", "s", ms(CheckReadyz))
	add("init.node_ready", "→ Node Ready", "s", ms(CheckNodeReady))
	add("init.coredns_ready", "→ CoreDNS Ready", "s", ms(CheckCoreDNSReady))
	add("init.all_pods_ready", "→ every kube-system pod Ready", "s", ms(CheckAllPodsReady))
	add("memory.total.pss", fmt.Sprintf("whole node PSS %.0f s after init", b.cfg.idle.Seconds()), "MiB", mem(func(m MemSnapshot) float64 { return m.Total.PSSMiB }))
	add("memory.total.rss", fmt.Sprintf("whole node RSS %.0f s after init", b.cfg.idle.Seconds()), "MiB", mem(func(m MemSnapshot) float64 { return m.Total.RSSMiB }))
	add("memory.total.processes", "whole node processes", "", mem(func(m MemSnapshot) float64 { return float64(m.Total.Processes) }))
	add("reset.wall", "`reset --force` wall time", "s", func(r SingleRun) float64 {
		if r.Reset == nil {
			return math.NaN()
		}
		return r.Reset.WallSeconds
	})
	return out
}
