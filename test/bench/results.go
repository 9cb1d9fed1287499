package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
)

// Figure is one measured figure: its samples' median and range, with
// kubeadm's figure and the target where there are.
type Figure struct {
	Key     string `json:"key"`
	Section string `json:"section"`
	Name    string `json:"name"`
	Unit    string `json:"unit"`
	Summary
	Kubeadm     *float64 `json:"kubeadm,omitempty"`
	KubeadmText string   `json:"kubeadm_text,omitempty"`
	// KubeadmSource says where Kubeadm comes from: KubeadmMeasured (the
	// kubeadm part of this run) or KubeadmDesign (DESIGN.md's fixed
	// figure, when the kubeadm part did not measure it).
	KubeadmSource string   `json:"kubeadm_source,omitempty"`
	Target        *float64 `json:"target,omitempty"`
	TargetText    string   `json:"target_text,omitempty"`
	// Ratio is the median over Kubeadm; RatioTarget the most it may be
	// (issue 13's day-1 targets).
	Ratio       *float64 `json:"ratio,omitempty"`
	RatioTarget *float64 `json:"ratio_target,omitempty"`
	// MeetsTarget compares the median with the target and the ratio with
	// the ratio target (both, where there are both).
	MeetsTarget *bool `json:"meets_target,omitempty"`
	// Note says how the figure was taken, or why it has no value.
	Note string `json:"note,omitempty"`
}

// NewFigure summarizes samples into a figure, with its reference figures.
func NewFigure(section, key, name, unit string, values []float64, note string) Figure {
	for i := range values {
		values[i] = round3(values[i])
	}
	f := Figure{Key: key, Section: section, Name: name, Unit: unit, Summary: Summarize(values), Note: note}
	f.Median, f.Min, f.Max = round3(f.Median), round3(f.Min), round3(f.Max)
	if r, ok := References[key]; ok {
		if r.Target != 0 {
			f.Target, f.TargetText = ptr(r.Target), r.TargetText
		}
		if r.Ratio != 0 {
			f.RatioTarget = ptr(r.Ratio)
		}
		if r.Kubeadm != 0 {
			f.setKubeadm(r.Kubeadm, r.KubeadmText+" (DESIGN.md)", KubeadmDesign)
		}
	}
	f.judge()
	return f
}

func ptr[T any](v T) *T { return &v }

// LoadSample is the load average before a run.
type LoadSample struct {
	Before string  `json:"before"`
	Load1  float64 `json:"load1"`
	Load5  float64 `json:"load5"`
	Load15 float64 `json:"load15"`
	// OtherNodes counts the test bed nodes of other tests that run now.
	OtherNodes int  `json:"other_testbed_nodes"`
	Busy       bool `json:"busy"`
	// WaitedSeconds is how long the bench waited for a quiet machine.
	WaitedSeconds float64 `json:"waited_seconds,omitempty"`
	// MemoryCgroups is the kernel's count of memory cgroups (/proc/cgroups):
	// with the dying ones that deleted containers leave while cached pages
	// are still charged to them, it says how much this machine has run
	// since its caches were last dropped (a state figure, beside the load).
	MemoryCgroups int `json:"memory_cgroups,omitempty"`
}

func (l LoadSample) String() string {
	s := fmt.Sprintf("load average %.2f %.2f %.2f", l.Load1, l.Load5, l.Load15)
	if l.OtherNodes > 0 {
		s += fmt.Sprintf(", %d node(s) of other test beds running", l.OtherNodes)
	}
	if l.WaitedSeconds > 0 {
		s += fmt.Sprintf(" (waited %.0f s for a quiet machine)", l.WaitedSeconds)
	}
	if l.MemoryCgroups > 0 {
		s += fmt.Sprintf(", %d memory cgroups in the kernel", l.MemoryCgroups)
	}
	if l.Busy {
		s += " — BUSY: figures of this run are not representative"
	}
	return s
}

// Results is bench/results.json.
type Results struct {
	Schema          int       `json:"schema"`
	Started         time.Time `json:"started"`
	Finished        time.Time `json:"finished"`
	DurationSeconds float64   `json:"duration_seconds"`
	Host            Host      `json:"host"`
	Kubeforge       Binary    `json:"kubeforge"`
	Settings        Settings  `json:"settings"`
	// Busy is true when the load average was above the limit before any
	// run: the figures are then not representative.
	Busy    bool         `json:"busy"`
	Load    []LoadSample `json:"load"`
	Figures []Figure     `json:"figures"`
	// Detail per measurement (the raw samples are in samples.json).
	Single []SingleRun `json:"single_node_runs"`
	// Processes: single-node runs with --control-plane-runtime=Processes.
	Processes []SingleRun `json:"processes_runs,omitempty"`
	// Kubeadm: kubeadm init on this machine in this run (kubeadm_test.go).
	KubeadmInfo *KubeadmInfo   `json:"kubeadm,omitempty"`
	Kubeadm     []KubeadmRun   `json:"kubeadm_runs,omitempty"`
	External    []ExternalRun  `json:"external_containerd_runs,omitempty"`
	Join        *JoinResult    `json:"join,omitempty"`
	Network     *NetworkResult `json:"network,omitempty"`
	// Snapshot: etcd snapshot save and restore (snapshot_test.go).
	Snapshot *SnapshotResult `json:"snapshot,omitempty"`
	// Cluster: `kubeforge cluster create --workers 2` (cluster_test.go).
	Cluster *ClusterResult `json:"cluster,omitempty"`
	// Upgrade: `upgrade apply` and `upgrade node` (upgrade_test.go).
	Upgrade *UpgradeResult `json:"upgrade,omitempty"`
	// AddonsOff: the single node with every optional addon off (addons.go).
	AddonsOff *AddonsOffResult `json:"addons_off,omitempty"`
	// Pull: image pulls from a registry on the test bridge (pull.go).
	Pull   *PullResult `json:"pull,omitempty"`
	Errors []string    `json:"errors,omitempty"`
}

// Host describes the machine.
type Host struct {
	Hostname string `json:"hostname"`
	Kernel   string `json:"kernel"`
	CPUs     int    `json:"cpus"`
	MemMiB   int64  `json:"mem_mib"`
	Go       string `json:"go"`
}

// Binary is the kubeforge binary measured.
type Binary struct {
	Path    string `json:"path"`
	SHA256  string `json:"sha256"`
	Version string `json:"version"`
	Size    int64  `json:"size"`
}

// Settings are the bench's settings.
type Settings struct {
	Runs            int      `json:"runs"`
	IdleSeconds     float64  `json:"idle_seconds"`
	SettleSeconds   float64  `json:"settle_seconds"`
	Requests        int      `json:"requests"`
	PollIntervalMS  float64  `json:"poll_interval_ms"`
	BusyLoad        float64  `json:"busy_load"`
	WaitQuietSecond float64  `json:"wait_quiet_seconds"`
	Skip            []string `json:"skip,omitempty"`
}

// PhaseTime is one init or join phase's duration, from its "phase-done"
// event.
type PhaseTime struct {
	Phase   string  `json:"phase"`
	Seconds float64 `json:"seconds"`
}

// SingleRun is one single-node run.
type SingleRun struct {
	Run  int        `json:"run"`
	Load LoadSample `json:"load"`
	Node string     `json:"node"`
	// InitWall is the `kubeforge init` command's wall time as the bench saw
	// it; InitReported is init's own figure (its "done" event).
	InitWall     float64     `json:"init_wall_seconds"`
	InitReported float64     `json:"init_reported_seconds"`
	Phases       []PhaseTime `json:"phases"`
	// Milestones are seconds from init start (see Watcher checks).
	Milestones map[string]float64 `json:"milestones"`
	Memory     *MemSnapshot       `json:"memory,omitempty"`
	Restart    *RestartResult     `json:"restart,omitempty"`
	Kill9      *RestartResult     `json:"kill9,omitempty"`
	LogLag     *LogLagResult      `json:"log_lag,omitempty"`
	Reset      *ResetResult       `json:"reset,omitempty"`
	Errors     []string           `json:"errors,omitempty"`
}

// LogLagResult is how far the log store is behind a pod that prints 5
// lines a second: at each sample, the time `kubeforge logs` was asked
// minus the print time (the CRI timestamp) of the newest line it found.
type LogLagResult struct {
	Samples    []float64 `json:"samples_seconds"`
	MaxSeconds float64   `json:"max_seconds"`
	Errors     []string  `json:"errors,omitempty"`
}

// RestartResult is a node service restart.
type RestartResult struct {
	How string `json:"how"`
	// StopSeconds is `kubeforge node stop` (or the kill); StartSeconds the
	// `kubeforge node start` command.
	StopSeconds  float64 `json:"stop_seconds"`
	StartSeconds float64 `json:"start_seconds"`
	// Milestones are seconds from the start of `node start`.
	Milestones map[string]float64 `json:"milestones"`
	// ReadyzLost: /readyz failed at some point after the stop.
	ReadyzLost bool `json:"readyz_lost"`
	// Survivors are the node processes that ran right after the stop or
	// kill (containers keep running through shims; after kill -9 of the
	// supervisor its children may stay).
	Survivors []string `json:"survivors,omitempty"`
	// ContainersChanged lists kube-system containers restarted or replaced.
	ContainersChanged []string     `json:"containers_changed"`
	Memory            *MemSnapshot `json:"memory,omitempty"`
	Errors            []string     `json:"errors,omitempty"`
}

// ResetResult is `kubeforge reset --force`.
type ResetResult struct {
	WallSeconds float64  `json:"wall_seconds"`
	Clean       bool     `json:"clean"`
	Leftovers   []string `json:"leftovers,omitempty"`
}

// JoinResult is the multi-node part.
type JoinResult struct {
	Load LoadSample `json:"load"`
	// Nodes: name → address.
	Nodes         map[string]string `json:"nodes"`
	InitWall      float64           `json:"init_wall_seconds"`
	First         *JoinRun          `json:"first_worker,omitempty"`
	Workers       []JoinRun         `json:"workers,omitempty"`
	ControlPlane  *JoinRun          `json:"control_plane,omitempty"`
	SignedSeconds float64           `json:"token_signed_after_init_seconds,omitempty"`
	// WorkerMemory is a worker's memory (w1, before the Service latency
	// measurement, some 10-30 s after its join).
	WorkerMemory *MemSnapshot `json:"worker_memory,omitempty"`
	Errors       []string     `json:"errors,omitempty"`
}

// JoinRun is one `kubeforge join`.
type JoinRun struct {
	Node     string      `json:"node"`
	Wall     float64     `json:"wall_seconds"`
	Reported float64     `json:"reported_seconds"`
	Phases   []PhaseTime `json:"phases"`
	// Milestones are seconds from join start.
	Milestones map[string]float64 `json:"milestones"`
	// MemberAdded is the etcd member add's duration (the join's
	// "member-added" event), for a control-plane join.
	MemberAdded float64 `json:"member_added_seconds,omitempty"`
	Error       string  `json:"error,omitempty"`
}

// NetworkResult is the Service latency measurement.
type NetworkResult struct {
	Clients []LatencyResult `json:"clients"`
	Errors  []string        `json:"errors,omitempty"`
}

// LatencyResult is one client pod's requests to a ClusterIP.
type LatencyResult struct {
	Cluster    string  `json:"cluster"` // "single-node run N" or "join cluster"
	ClusterIP  string  `json:"cluster_ip"`
	ServerNode string  `json:"server_node"`
	Node       string  `json:"node"`
	Path       string  `json:"path"` // "same node" or "cross node"
	Mode       string  `json:"mode"`
	Requests   int     `json:"requests"`
	Failures   int     `json:"failures"`
	P50ms      float64 `json:"p50_ms"`
	P90ms      float64 `json:"p90_ms"`
	P99ms      float64 `json:"p99_ms"`
	Maxms      float64 `json:"max_ms"`
	Error      string  `json:"error,omitempty"`
}

// WriteJSON writes v as indented JSON into dir/name.
func WriteJSON(dir, name string, v any) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, name)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return "", err
	}
	return p, os.Rename(tmp, p)
}

func format(v float64, unit string) string {
	if math.IsNaN(v) {
		return "–"
	}
	switch unit {
	case "s":
		if v < 10 {
			return fmt.Sprintf("%.2f s", v)
		}
		return fmt.Sprintf("%.1f s", v)
	case "ms":
		return fmt.Sprintf("%.2f ms", v)
	case "MiB":
		return fmt.Sprintf("%.0f MiB", v)
	case "":
		return fmt.Sprintf("%.3g", v)
	default:
		return fmt.Sprintf("%.3g %s", v, unit)
	}
}

func rangeText(f Figure) string {
	if f.N == 0 {
		return ""
	}
	if f.N == 1 {
		return "(1 sample)"
	}
	if f.Min == f.Max {
		return fmt.Sprintf("(all equal, n=%d)", f.N)
	}
	return fmt.Sprintf("(%s–%s, n=%d)", strings.TrimSuffix(format(f.Min, f.Unit), " "+f.Unit), format(f.Max, f.Unit), f.N)
}

// MemorySection starts the title of the idle memory figures, which the
// table shows one component per line.
const MemorySection = "idle memory"

// printMemory prints the memory figures one component per line.
func printMemory(w io.Writer, title string, figs []Figure) {
	by := map[string]Figure{}
	var comps []string
	prefix := "memory."
	for _, f := range figs {
		by[f.Key] = f
		i := strings.Index(f.Key, "memory.")
		if i < 0 {
			continue
		}
		prefix = f.Key[:i+len("memory.")] // "memory." or "kubeadm.memory."
		c := f.Key[len(prefix):]
		c = c[:strings.LastIndexByte(c, '.')]
		if !slicesContains(comps, c) {
			comps = append(comps, c)
		}
	}
	fmt.Fprintf(w, "\n--- %s (MiB; median, range over the runs; smaps_rollup of every node process)\n", title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "component\tprocs\tPSS\tRSS\tanonymous\tkubeadm\ttarget\t")
	cell := func(f Figure) string {
		if f.N == 0 {
			return "–"
		}
		s := fmt.Sprintf("%.0f", f.Median)
		if f.N > 1 && fmt.Sprintf("%.0f", f.Min) != fmt.Sprintf("%.0f", f.Max) {
			s += fmt.Sprintf(" (%.0f–%.0f)", f.Min, f.Max)
		}
		return s
	}
	for _, c := range comps {
		pss, rss := by[prefix+c+".pss"], by[prefix+c+".rss"]
		name, kubeadm, target := c, "", ""
		var kparts []string
		for _, f := range []Figure{pss, rss} {
			if f.KubeadmText != "" {
				kparts = append(kparts, strings.ToUpper(f.Key[len(f.Key)-3:])+" "+f.KubeadmText)
			}
		}
		kubeadm = strings.Join(kparts, ", ")
		if c == "total" {
			name = "whole node"
			var tparts []string
			for _, f := range []Figure{pss, rss} {
				if f.MeetsTarget != nil || f.RatioTarget != nil {
					t := strings.ToUpper(f.Key[len(f.Key)-3:]) + " "
					if f.Ratio != nil && f.RatioTarget != nil {
						t += ratioText(f.Ratio) + ", "
					}
					tparts = append(tparts, t+targetText(f))
				}
			}
			target = strings.Join(tparts, "; ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", name, cell(by[prefix+c+".processes"]), cell(pss), cell(rss), cell(by[prefix+c+".anon"]), kubeadm, target)
	}
	tw.Flush()
	fmt.Fprintln(w, "  (RSS counts the kubeforge executable's pages in every process that maps it; PSS shares them out. anonymous = heap and stacks.)")
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// PrintTable prints the figures as tables, one per section.
func (r *Results) PrintTable(w io.Writer) {
	fmt.Fprintf(w, "\n=== kubeforge bench: %s, %s, %d CPUs, %d MiB; %d single-node run(s), median (min–max) ===\n",
		r.Kubeforge.Version, r.Started.Format("2006-01-02 15:04"), r.Host.CPUs, r.Host.MemMiB, r.Settings.Runs)
	for _, l := range r.Load {
		fmt.Fprintf(w, "  before %s: %s\n", l.Before, l)
	}
	if r.Busy {
		fmt.Fprintf(w, "  NOTE: the machine was busy (load average above %.1f) before at least one run; take final numbers on a quiet machine.\n", r.Settings.BusyLoad)
	}
	section := ""
	var tw *tabwriter.Writer
	flush := func() {
		if tw != nil {
			tw.Flush()
		}
	}
	for i, f := range r.Figures {
		if strings.HasPrefix(f.Section, MemorySection) {
			if f.Section != section {
				flush()
				tw = nil
				section = f.Section
				var figs []Figure
				for _, g := range r.Figures[i:] {
					if g.Section == section {
						figs = append(figs, g)
					}
				}
				printMemory(w, section, figs)
			}
			continue
		}
		if f.Section != section {
			flush()
			section = f.Section
			fmt.Fprintf(w, "\n--- %s\n", section)
			tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "figure\tkubeforge\trange\tkubeadm\tratio\ttarget\t")
		}
		value := format(f.Median, f.Unit)
		if f.N == 0 {
			value = "not measured"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", f.Name, value, rangeText(f), f.KubeadmText, ratioText(f.Ratio), targetText(f))
		if f.Note != "" && f.N == 0 {
			fmt.Fprintf(tw, "  (%s)\t\t\t\t\t\t\n", f.Note)
		}
	}
	flush()
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "\n--- problems seen\n")
		for _, e := range r.Errors {
			fmt.Fprintf(w, "  - %s\n", strings.ReplaceAll(e, "\n", "\n    "))
		}
	}
	fmt.Fprintln(w)
}

// SnapshotConfigMaps is how many ConfigMaps the snapshot bench stores.
const SnapshotConfigMaps = 10000

// SnapshotResult is the etcd snapshot measurement: `kubeforge etcd
// snapshot save` and `restore` on a single node holding SnapshotConfigMaps
// ConfigMaps.
type SnapshotResult struct {
	ConfigMaps   int      `json:"configmaps"`
	Bytes        int64    `json:"snapshot_bytes"`
	SaveSeconds  float64  `json:"save_seconds"`
	RestoreWall  float64  `json:"restore_seconds"`
	CreateWall   float64  `json:"create_seconds"`
	RestoredBack bool     `json:"restored_objects_back"`
	Errors       []string `json:"errors,omitempty"`
}
