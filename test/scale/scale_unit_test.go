package scale

import (
	"bytes"
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubeforge/kubeforge/test/bench"
)

// metricsPage is a cut of a real API server's /metrics: two series of the
// request histogram, a watch, other families around them.
const metricsPage = `# HELP apiserver_current_inflight_requests [STABLE] Maximal number of currently used inflight request limit of this apiserver per request kind in last second.
# TYPE apiserver_current_inflight_requests gauge
apiserver_current_inflight_requests{request_kind="mutating"} 1
apiserver_current_inflight_requests{request_kind="readOnly"} 2
# HELP apiserver_request_duration_seconds [STABLE] Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.
# TYPE apiserver_request_duration_seconds histogram
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="POST",version="v1",le="0.005"} 10
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="POST",version="v1",le="0.025"} 60
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="POST",version="v1",le="0.1"} 90
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="POST",version="v1",le="1"} 100
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="POST",version="v1",le="+Inf"} 100
apiserver_request_duration_seconds_sum{component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="POST",version="v1"} 3.5
apiserver_request_duration_seconds_count{component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="POST",version="v1"} 100
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="status",verb="PATCH",version="v1",le="0.005"} 0
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="status",verb="PATCH",version="v1",le="0.025"} 0
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="status",verb="PATCH",version="v1",le="0.1"} 0
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="status",verb="PATCH",version="v1",le="1"} 4
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="status",verb="PATCH",version="v1",le="+Inf"} 5
apiserver_request_duration_seconds_sum{component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="status",verb="PATCH",version="v1"} 4
apiserver_request_duration_seconds_count{component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="status",verb="PATCH",version="v1"} 5
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="pods",scope="cluster",subresource="",verb="WATCH",version="v1",le="+Inf"} 7
apiserver_request_duration_seconds_sum{component="apiserver",dry_run="",group="",resource="pods",scope="cluster",subresource="",verb="WATCH",version="v1"} 700
apiserver_request_duration_seconds_count{component="apiserver",dry_run="",group="",resource="pods",scope="cluster",subresource="",verb="WATCH",version="v1"} 7
# HELP apiserver_request_duration_seconds_extra not the same family
# TYPE apiserver_request_duration_seconds_extra gauge
apiserver_request_duration_seconds_extra 1
# HELP apiserver_storage_objects [STABLE] Number of stored objects at the time of last check split by kind.
# TYPE apiserver_storage_objects gauge
apiserver_storage_objects{resource="pods"} 10042
apiserver_storage_objects{resource="nodes"} 1001
# HELP apiserver_flowcontrol_rejected_requests_total [BETA] Number of requests rejected by API Priority and Fairness subsystem
# TYPE apiserver_flowcontrol_rejected_requests_total counter
apiserver_flowcontrol_rejected_requests_total{flow_schema="service-accounts",priority_level="workload-low",reason="queue-full"} 3
apiserver_flowcontrol_rejected_requests_total{flow_schema="global-default",priority_level="global-default",reason="time-out"} 2
# HELP etcd_mvcc_db_total_size_in_use_in_bytes Total size of the underlying database logically in use in bytes.
# TYPE etcd_mvcc_db_total_size_in_use_in_bytes gauge
etcd_mvcc_db_total_size_in_use_in_bytes 4.5056e+07
`

func TestParseHistograms(t *testing.T) {
	hs, err := ParseHistograms(strings.NewReader(metricsPage), "apiserver_request_duration_seconds")
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 3 {
		t.Fatalf("want 3 series, got %d: %+v", len(hs), hs)
	}
	post := hs[0]
	if post.Labels["verb"] != "POST" || post.Count != 100 || post.Sum != 3.5 || len(post.Bounds) != 5 || !math.IsInf(post.Bounds[4], 1) {
		t.Errorf("POST series: %+v", post)
	}
	// 50th of 100: in (0.005, 0.025], 40 of the bucket's 50 → 0.005 + 0.02×40/50.
	if q := post.Quantile(0.5); math.Abs(q-0.021) > 1e-9 {
		t.Errorf("p50 = %v, want 0.021", q)
	}
	// 99th: in (0.1, 1], 9 of 10 → 0.1 + 0.9×0.9.
	if q := post.Quantile(0.99); math.Abs(q-0.91) > 1e-9 {
		t.Errorf("p99 = %v, want 0.91", q)
	}
	// 5 PATCHes, one above 1 s: p99 is in +Inf, reported as "1 s or more".
	if q := hs[1].Quantile(0.99); q != 1 {
		t.Errorf("p99 in +Inf = %v, want 1 (the largest finite bound)", q)
	}
	if q := (Histogram{}).Quantile(0.5); !math.IsNaN(q) {
		t.Errorf("empty histogram: %v, want NaN", q)
	}
	if hs, err := ParseHistograms(strings.NewReader(metricsPage), "no_such_metric"); err != nil || hs != nil {
		t.Errorf("missing family: %v, %v", hs, err)
	}
	if hs, err := ParseHistograms(strings.NewReader(metricsPage), "apiserver_storage_objects"); err != nil || hs != nil {
		t.Errorf("a gauge read as a histogram: %v, %v", hs, err)
	}
	bad := "# TYPE x histogram\nx_bucket{le=\"1\"} notanumber\n"
	if _, err := ParseHistograms(strings.NewReader(bad), "x"); err == nil {
		t.Error("malformed sample: no error")
	}
}

func TestDiffAndGroup(t *testing.T) {
	before, err := ParseHistograms(strings.NewReader(metricsPage), "apiserver_request_duration_seconds")
	if err != nil {
		t.Fatal(err)
	}
	// After: 100 more POSTs, all in the first bucket; the PATCHes unchanged.
	after := strings.NewReplacer(
		`verb="POST",version="v1",le="0.005"} 10`, `verb="POST",version="v1",le="0.005"} 110`,
		`verb="POST",version="v1",le="0.025"} 60`, `verb="POST",version="v1",le="0.025"} 160`,
		`verb="POST",version="v1",le="0.1"} 90`, `verb="POST",version="v1",le="0.1"} 190`,
		`verb="POST",version="v1",le="1"} 100`, `verb="POST",version="v1",le="1"} 200`,
		`verb="POST",version="v1",le="+Inf"} 100`, `verb="POST",version="v1",le="+Inf"} 200`,
		`verb="POST",version="v1"} 3.5`, `verb="POST",version="v1"} 3.7`,
		`verb="POST",version="v1"} 100`, `verb="POST",version="v1"} 200`,
	).Replace(metricsPage)
	a, err := ParseHistograms(strings.NewReader(after), "apiserver_request_duration_seconds")
	if err != nil {
		t.Fatal(err)
	}
	d := DiffHistograms(before, a)
	if len(d) != 1 || d[0].Labels["verb"] != "POST" || d[0].Count != 100 || d[0].Counts[0] != 100 || math.Abs(d[0].Sum-0.2) > 1e-9 {
		t.Fatalf("diff: %+v", d)
	}
	if q := d[0].Quantile(0.99); q > 0.005 {
		t.Errorf("p99 of the difference = %v, want ≤ 5 ms", q)
	}
	// A restarted API server (counts went down): the new counts as a
	// whole; series that did not change are left out.
	if d := DiffHistograms(a, before); len(d) != 1 || d[0].Count != 100 {
		t.Errorf("reset: %+v, want the 100 POSTs", d)
	}

	g := GroupHistograms(before, OpOf)
	if _, ok := g["WATCH cluster pods"]; ok {
		t.Error("WATCH grouped: it is long-running, no latency SLO")
	}
	if h := g["PATCH resource pods/status"]; h.Count != 5 {
		t.Errorf("PATCH pods/status: %+v (groups %v)", h, keysOf(g))
	}
	byVerb := GroupHistograms(append(before, before...), VerbScopeOf)
	if h := byVerb["POST resource"]; h.Count != 200 || h.Counts[0] != 20 {
		t.Errorf("grouped POST: %+v", h)
	}
	l := FromHistogram(byVerb["PATCH resource"])
	if l.Count != 10 || l.Max != 1 || l.P99 != 1 || l.Source != "apiserver" {
		t.Errorf("FromHistogram: %+v", l)
	}
}

func keysOf[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestSumSamples(t *testing.T) {
	objs, err := SumSamples(strings.NewReader(metricsPage), "apiserver_storage_objects", "resource")
	if err != nil || objs["pods"] != 10042 || objs["nodes"] != 1001 {
		t.Errorf("objects: %v, %v", objs, err)
	}
	rej, err := SumSamples(strings.NewReader(metricsPage), "apiserver_flowcontrol_rejected_requests_total", "")
	if err != nil || rej[""] != 5 {
		t.Errorf("rejected: %v, %v", rej, err)
	}
	inUse, err := SumSamples(strings.NewReader(metricsPage), "etcd_mvcc_db_total_size_in_use_in_bytes", "")
	if err != nil || inUse[""] != 45056000 {
		t.Errorf("etcd in use: %v, %v", inUse, err)
	}
	if m, err := SumSamples(strings.NewReader(metricsPage), "apiserver_request_duration_seconds", ""); err != nil || len(m) != 0 {
		t.Errorf("a histogram summed as a gauge: %v, %v", m, err)
	}
}

func TestRecorderAndSummarize(t *testing.T) {
	r := NewRecorder()
	for i := 1; i <= 100; i++ {
		r.Observe("GET resource pods", time.Duration(i)*time.Millisecond, nil)
	}
	r.Observe("GET resource pods", time.Second, errors.New("boom"))
	r.Observe("LIST cluster pods", 0, errors.New("timeout"))
	if err := r.Time("POST resource configmaps", func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	s := r.Summary()
	g := s["GET resource pods"]
	if g.Count != 100 || g.Errors != 1 || g.P50 != 0.05 || g.P99 != 0.099 || g.Max != 0.1 || math.Abs(g.Mean-0.0505) > 1e-9 || g.Source != "client" {
		t.Errorf("GET: %+v", g)
	}
	if l := s["LIST cluster pods"]; l.Count != 0 || l.Errors != 1 || !math.IsNaN(l.P99) {
		t.Errorf("errors only: %+v", l)
	}
	if r.Requests() != 103 {
		t.Errorf("requests = %d, want 103", r.Requests())
	}
	if e := r.ErrorSamples(); len(e["GET resource pods"]) != 1 {
		t.Errorf("error samples: %v", e)
	}
}

func TestSLOs(t *testing.T) {
	for _, c := range []struct {
		verb, scope string
		class       string
		limit       float64
	}{
		{"POST", "resource", "mutating", 1}, {"DELETE", "resource", "mutating", 1}, {"PATCH", "resource", "mutating", 1},
		{"GET", "resource", "get", 1}, {"LIST", "namespace", "list namespace", 5}, {"LIST", "cluster", "list cluster", 30},
		{"WATCH", "cluster", "", 0}, {"DELETECOLLECTION", "namespace", "", 0},
	} {
		if class, limit := SLOClass(c.verb, c.scope); class != c.class || limit != c.limit {
			t.Errorf("SLOClass(%s %s) = %q %v, want %q %v", c.verb, c.scope, class, limit, c.class, c.limit)
		}
	}
	lat := map[string]Latency{
		"POST resource configmaps": {Count: 100, P99: 0.2, Source: "client"},
		"PUT resource configmaps":  {Count: 100, P99: 1.5, Source: "client"},
		"DELETE resource pods":     {Count: 3, P99: 9, Source: "client"}, // too few: left out
		"LIST cluster pods":        {Count: 50, P99: 12, Source: "client"},
		"GET resource pods":        {Count: 50, P99: math.NaN(), Source: "client"},
	}
	checks := CheckSLOs(1000, lat, 20)
	if len(checks) != 2 {
		t.Fatalf("checks: %+v", checks)
	}
	if c := checks[0]; c.Class != "mutating" || c.Worst != 1.5 || c.Op != "PUT resource configmaps" || c.Met || c.Count != 200 || c.Nodes != 1000 {
		t.Errorf("mutating: %+v", c)
	}
	if c := checks[1]; c.Class != "list cluster" || !c.Met || c.Limit != 30 {
		t.Errorf("list cluster: %+v", c)
	}
	if s := checks[0].String(); !strings.Contains(s, "MISSED") || !strings.Contains(s, "1.50 s") {
		t.Errorf("String: %s", s)
	}
}

// TestLoad runs the load for a moment against the fake clientset: every
// kind of request is made and recorded, and nothing is left behind.
func TestLoad(t *testing.T) {
	cs := fake.NewClientset(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p1", Namespace: "work"}})
	rec := NewRecorder()
	l := &Load{Client: cs, Namespace: "load", PodNamespace: "work", PodNames: []string{"p1"}, Workers: 4, QPS: 0, Duration: 2 * time.Second, Rec: rec}
	took := l.Run(context.Background())
	if took < 2*time.Second || took > 10*time.Second {
		t.Errorf("ran %v", took)
	}
	s := rec.Summary()
	for _, op := range []string{"POST resource configmaps", "GET resource configmaps", "PUT resource configmaps", "DELETE resource configmaps",
		"LIST namespace configmaps", "GET resource pods", "PATCH resource pods", "POST resource pods", "DELETE resource pods",
		"LIST namespace pods", "LIST cluster nodes", "LIST cluster pods"} {
		if s[op].Count == 0 || s[op].Errors > 0 {
			t.Errorf("%s: %+v (errors %v)", op, s[op], rec.ErrorSamples()[op])
		}
	}
	cms, _ := cs.CoreV1().ConfigMaps("load").List(context.Background(), metav1.ListOptions{})
	pods, _ := cs.CoreV1().Pods("load").List(context.Background(), metav1.ListOptions{})
	if len(cms.Items) != 0 || len(pods.Items) != 0 {
		t.Errorf("left behind: %d configmaps, %d pods", len(cms.Items), len(pods.Items))
	}
	p, _ := cs.CoreV1().Pods("work").Get(context.Background(), "p1", metav1.GetOptions{})
	if p.Annotations["scale.kubeforge.io/touched"] == "" {
		t.Error("the run's pod was not patched")
	}

	// A rate: 4 workers at 20 requests per second for a second make about 20.
	rec = NewRecorder()
	l = &Load{Client: cs, Namespace: "load", Workers: 4, QPS: 20, Duration: time.Second, Rec: rec}
	l.Run(context.Background())
	if n := rec.Requests(); n < 5 || n > 40 {
		t.Errorf("QPS 20 for 1 s: %d requests", n)
	}
}

func TestPrintTable(t *testing.T) {
	r := &Results{Kwok: "v0.8.0", MaxLoad: 7.5, Host: bench.Host{CPUs: 2, MemMiB: 24000}, Kubeforge: bench.Binary{Version: "v0.1.0"},
		Steps: []Step{{
			Nodes: 100, Pods: 1000, RegisterSeconds: 2.5, ScheduledSeconds: 9, RunningSeconds: 11, CreateRate: 95, ScheduleRate: 97,
			PodStartup:  Latency{Count: 1000, P50: 1.2, P99: 3.4},
			Idle:        map[string]bench.CompMem{"kube-apiserver": {RSSMiB: 400, PSSMiB: 350}},
			Loaded:      map[string]bench.CompMem{"kube-apiserver": {RSSMiB: 500, PSSMiB: 450}, "total": {RSSMiB: 1500, PSSMiB: 1200}},
			EtcdDBBytes: 20 << 20, EtcdInUseBytes: 10 << 20, EtcdKeys: 3000, LoadRequests: 4500, LoadSeconds: 45,
			Client:     map[string]Latency{"GET resource pods": {Count: 400, P50: 0.004, P99: 0.03, Errors: 2}},
			ServerVerb: map[string]Latency{"LIST cluster": {Count: 40, P50: 0.5, P99: 2.5}},
		}},
		SLOs: []SLOCheck{{Nodes: 100, Class: "mutating", Limit: 1, Worst: 0.2, Op: "POST resource configmaps", Source: "apiserver", Met: true}},
	}
	var out bytes.Buffer
	r.PrintTable(&out)
	s := out.String()
	for _, want := range []string{"100 nodes / 1000 pods", "2.50 s", "1.20 s / 3.40 s", "400/350 → 500/450", "1500 / 1200", "20.0 / 10.0, 3000",
		"4500, 100/s", "client GET resource pods", "4 ms / 30 ms (n=400, 2 errors)", "≤ 1 s", "apiserver LIST cluster", "500 ms / 2.50 s (n=40)",
		"≤ 30 s", "mutating p99 ≤ 1 s: worst 200 ms (POST resource configmaps), met", "load average max 7.5"} {
		if !strings.Contains(s, want) {
			t.Errorf("table lacks %q:\n%s", want, s)
		}
	}
	// NaN (not measured) is written as -1: JSON has no NaN.
	r.Steps[0].PodSchedule = Summarize(nil, 0)
	dir := t.TempDir()
	if err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
}
