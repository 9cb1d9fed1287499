package scale

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kubeforge/kubeforge/internal/fsutil"
	"github.com/kubeforge/kubeforge/test/bench"
)

// Results is scale/results.json.
type Results struct {
	Schema          int          `json:"schema"`
	Started         time.Time    `json:"started"`
	Finished        time.Time    `json:"finished"`
	DurationSeconds float64      `json:"duration_seconds"`
	Host            bench.Host   `json:"host"`
	Kubeforge       bench.Binary `json:"kubeforge"`
	Kwok            string       `json:"kwok"`
	Settings        Settings     `json:"settings"`
	// InitSeconds is `kubeforge init --single-node` of the control plane.
	InitSeconds float64 `json:"init_seconds"`
	Steps       []Step  `json:"steps"`
	// SLOs are the upstream SLOs held against each step.
	SLOs []SLOCheck `json:"slos"`
	// Load is the load average sampled during the run.
	Load    []bench.LoadSample `json:"load"`
	MaxLoad float64            `json:"max_load1"`
	Errors  []string           `json:"errors,omitempty"`
}

// Settings are the run's settings (environment, see doc.go).
type Settings struct {
	Steps       []int   `json:"steps"`
	PodsPerNode int     `json:"pods_per_node"`
	LoadSeconds float64 `json:"load_seconds"`
	LoadWorkers int     `json:"load_workers"`
	LoadQPS     float64 `json:"load_qps"`
	Settle      float64 `json:"settle_seconds"`
	Deployment  int     `json:"pods_per_deployment"`
	// SchedulerConfig is the KubeSchedulerConfiguration the scheduler ran
	// with (SCALE_SCHEDULER_CONFIG); empty: the defaults.
	SchedulerConfig string `json:"scheduler_config,omitempty"`
}

// Step is the control plane at one size: N simulated nodes, N×pods per
// node pods, then the load.
type Step struct {
	Nodes int `json:"nodes"`
	Pods  int `json:"pods"`
	// RegisterSeconds: creating the step's new Node objects until every
	// one is Ready (kwok's node stages).
	RegisterSeconds float64 `json:"register_seconds"`
	// ScheduledSeconds / RunningSeconds: from creating the step's
	// Deployments until every pod is bound / Running and Ready.
	ScheduledSeconds float64 `json:"scheduled_seconds"`
	RunningSeconds   float64 `json:"running_seconds"`
	// CreateRate is pods created per second by the controller manager's
	// ReplicaSet controller (their creation timestamps), ScheduleRate
	// pods bound per second.
	CreateRate   float64 `json:"pods_created_per_second"`
	ScheduleRate float64 `json:"pods_scheduled_per_second"`
	// PodStartup is creation → Running and Ready as seen by a watch
	// (creation timestamps have 1 s resolution); PodSchedule creation →
	// bound.
	PodStartup  Latency `json:"pod_startup"`
	PodSchedule Latency `json:"pod_schedule"`
	// SchedulerMs is the scheduler's own mean time per scheduling attempt
	// while the step's pods were placed, in milliseconds: "attempt"
	// (scheduler_scheduling_attempt_duration_seconds) and each extension
	// point (scheduler_framework_extension_point_duration_seconds:
	// PreFilter, Filter, PreScore, Score, Bind, …).
	SchedulerMs map[string]float64 `json:"scheduler_ms_per_attempt,omitempty"`
	// Memory of the control plane's processes after the pods run (Idle,
	// after Settle) and after the load (Loaded).
	Idle   map[string]bench.CompMem `json:"memory_idle"`
	Loaded map[string]bench.CompMem `json:"memory_loaded"`
	// EtcdDBBytes is etcd's database file; EtcdInUseBytes what of it is in
	// use (etcd_mvcc_db_total_size_in_use_in_bytes).
	EtcdDBBytes    int64 `json:"etcd_db_bytes"`
	EtcdInUseBytes int64 `json:"etcd_db_in_use_bytes"`
	EtcdKeys       int64 `json:"etcd_keys"`
	// Objects: apiserver_storage_objects for the resources that grow.
	Objects map[string]float64 `json:"objects,omitempty"`
	// The load: requests, their client-side and server-side latency.
	LoadRequests int                `json:"load_requests"`
	LoadSeconds  float64            `json:"load_seconds"`
	Client       map[string]Latency `json:"client_latency"`
	// Server is apiserver_request_duration_seconds during the load (every
	// client, the controllers and kwok too), by "VERB scope resource";
	// ServerVerb the same by "VERB scope".
	Server     map[string]Latency `json:"server_latency"`
	ServerVerb map[string]Latency `json:"server_latency_by_verb"`
	// SetupServerVerb is the same while the step's nodes and pods came up.
	SetupServerVerb map[string]Latency `json:"setup_server_latency_by_verb"`
	// APF during the load: requests rejected (429) and the p99 of the
	// time requests waited in a queue, by priority level.
	Rejected float64 `json:"apf_rejected"`
	// Throttled counts, per component, its log lines saying a request
	// waited over a second for its own client rate limit (--kube-api-qps),
	// over the node's life up to the end of the step (-1: no log found).
	Throttled    map[string]int      `json:"client_throttled_log_lines,omitempty"`
	APFWaitP99   map[string]float64  `json:"apf_wait_p99_seconds,omitempty"`
	ErrorSamples map[string][]string `json:"error_samples,omitempty"`
	Load1        float64             `json:"load1"`
	Errors       []string            `json:"errors,omitempty"`
}

// controlPlane are the processes whose memory the table shows.
var controlPlane = []string{"kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler"}

// Write writes results.json and table.txt into dir.
func (r *Results) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(sanitize(r), "", "  ")
	if err != nil {
		return err
	}
	if _, err := fsutil.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	var t strings.Builder
	r.PrintTable(&t)
	_, err = fsutil.WriteFile(filepath.Join(dir, "table.txt"), []byte(t.String()), 0o644)
	return err
}

// sanitize replaces NaN (not measured) by -1 through a JSON round trip of
// the latencies: encoding/json refuses NaN.
func sanitize(r *Results) *Results {
	c := *r
	c.Steps = slices.Clone(r.Steps)
	fix := func(m map[string]Latency) map[string]Latency {
		out := map[string]Latency{}
		for k, l := range m {
			out[k] = l.finite()
		}
		return out
	}
	for i := range c.Steps {
		s := &c.Steps[i]
		s.PodStartup, s.PodSchedule = s.PodStartup.finite(), s.PodSchedule.finite()
		s.Client, s.Server, s.ServerVerb, s.SetupServerVerb = fix(s.Client), fix(s.Server), fix(s.ServerVerb), fix(s.SetupServerVerb)
		for _, p := range []*float64{&s.RegisterSeconds, &s.ScheduledSeconds, &s.RunningSeconds, &s.CreateRate, &s.ScheduleRate} {
			*p = nanTo(*p)
		}
		for k, v := range s.APFWaitP99 {
			s.APFWaitP99[k] = nanTo(v)
		}
	}
	return &c
}

func nanTo(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return -1
	}
	return x
}

func (l Latency) finite() Latency {
	l.P50, l.P90, l.P99, l.Max, l.Mean = nanTo(l.P50), nanTo(l.P90), nanTo(l.P99), nanTo(l.Max), nanTo(l.Mean)
	return l
}

// PrintTable prints the run's figures, one column per step.
func (r *Results) PrintTable(out io.Writer) {
	fmt.Fprintf(out, "\nkubeforge control plane at scale (%s, %d CPUs, %d MiB; kwok %s; load average max %.1f)\n",
		r.Kubeforge.Version, r.Host.CPUs, r.Host.MemMiB, r.Kwok, r.MaxLoad)
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	head := "\t"
	for _, s := range r.Steps {
		head += fmt.Sprintf("%d nodes / %d pods\t", s.Nodes, s.Pods)
	}
	fmt.Fprintln(w, head)
	row := func(name string, f func(s Step) string) {
		line := name + "\t"
		for _, s := range r.Steps {
			line += f(s) + "\t"
		}
		fmt.Fprintln(w, line)
	}
	row("nodes registered → Ready", func(s Step) string { return seconds(s.RegisterSeconds) })
	row("pods all scheduled", func(s Step) string { return seconds(s.ScheduledSeconds) })
	row("pods all Running", func(s Step) string { return seconds(s.RunningSeconds) })
	row("pods created / s (controller-manager)", func(s Step) string { return fmt.Sprintf("%.0f", s.CreateRate) })
	row("pods bound / s (scheduler)", func(s Step) string { return fmt.Sprintf("%.0f", s.ScheduleRate) })
	row("scheduler ms per attempt (Filter / PreScore / Score)", func(s Step) string {
		if s.SchedulerMs == nil {
			return "-"
		}
		m := s.SchedulerMs
		return fmt.Sprintf("%.1f (%.1f / %.1f / %.1f)", m["attempt"], m["Filter"], m["PreScore"], m["Score"])
	})
	row("pod startup p50 / p99 (SLO p99 ≤ 5 s)", func(s Step) string {
		return seconds(s.PodStartup.P50) + " / " + seconds(s.PodStartup.P99)
	})
	for _, c := range controlPlane {
		row(c+" RSS / PSS MiB (idle → loaded)", func(s Step) string {
			i, l := s.Idle[c], s.Loaded[c]
			return fmt.Sprintf("%.0f/%.0f → %.0f/%.0f", i.RSSMiB, i.PSSMiB, l.RSSMiB, l.PSSMiB)
		})
	}
	row("whole node RSS / PSS MiB (loaded)", func(s Step) string {
		return fmt.Sprintf("%.0f / %.0f", s.Loaded["total"].RSSMiB, s.Loaded["total"].PSSMiB)
	})
	row("etcd db / in use MiB, keys", func(s Step) string {
		return fmt.Sprintf("%.1f / %.1f, %d", float64(s.EtcdDBBytes)/(1<<20), float64(s.EtcdInUseBytes)/(1<<20), s.EtcdKeys)
	})
	row("load: requests, rate", func(s Step) string {
		return fmt.Sprintf("%d, %.0f/s", s.LoadRequests, float64(s.LoadRequests)/math.Max(s.LoadSeconds, 1))
	})
	row("controller-manager / scheduler throttled (log lines, cumulative)", func(s Step) string {
		return fmt.Sprintf("%d / %d", s.Throttled["kube-controller-manager"], s.Throttled["kube-scheduler"])
	})
	row("APF rejected (429) during load", func(s Step) string { return fmt.Sprintf("%.0f", s.Rejected) })
	row("load average (1 min) after load", func(s Step) string { return fmt.Sprintf("%.1f", s.Load1) })
	w.Flush()

	fmt.Fprintln(out, "\nAPI latency during the load, p50 / p99 — client: the load's own requests; apiserver: apiserver_request_duration_seconds of every client")
	w = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, head+"SLO (p99)\t")
	for _, src := range []struct {
		name string
		get  func(s Step) map[string]Latency
	}{{"client", func(s Step) map[string]Latency { return s.Client }}, {"apiserver", func(s Step) map[string]Latency { return s.ServerVerb }}} {
		var ops []string
		for _, s := range r.Steps {
			for op, l := range src.get(s) {
				if l.Count >= 10 && !slices.Contains(ops, op) {
					ops = append(ops, op)
				}
			}
		}
		sort.Strings(ops)
		for _, op := range ops {
			line := src.name + " " + op + "\t"
			for _, s := range r.Steps {
				l, ok := src.get(s)[op]
				if !ok {
					line += "—\t"
					continue
				}
				line += fmt.Sprintf("%s / %s (n=%d", seconds(l.P50), seconds(l.P99), l.Count)
				if l.Errors > 0 {
					line += fmt.Sprintf(", %d errors", l.Errors)
				}
				line += ")\t"
			}
			verb, scope, _ := SplitOp(op + " ")
			if _, limit := SLOClass(verb, scope); limit > 0 {
				line += fmt.Sprintf("≤ %g s\t", limit)
			}
			fmt.Fprintln(w, line)
		}
	}
	w.Flush()

	fmt.Fprintln(out, "\nUpstream SLOs (sig-scalability; there over a cluster-day, here over each step's load):")
	for _, c := range r.SLOs {
		fmt.Fprintf(out, "  %5d nodes, %-9s %s\n", c.Nodes, c.Source+":", c)
	}
	if len(r.Load) > 0 {
		fmt.Fprintf(out, "\nLoad average during the run: max %.1f (", r.MaxLoad)
		for i, l := range r.Load {
			if i > 0 {
				fmt.Fprint(out, "; ")
			}
			fmt.Fprintf(out, "%s %.1f", l.Before, l.Load1)
		}
		fmt.Fprintln(out, ")")
	}
	for _, e := range r.Errors {
		fmt.Fprintln(out, "ERROR:", e)
	}
}
