package scale

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubeforge/kubeforge/internal/testutil"
	"github.com/kubeforge/kubeforge/manifests"
	"github.com/kubeforge/kubeforge/test/bench"
	"github.com/kubeforge/kubeforge/test/testbed"
)

// Namespaces of the run: the Deployments' pods, and the load's own
// objects.
const (
	podNamespace  = "scale"
	loadNamespace = "scale-load"
	stepLabel     = "scale.kubeforge.io/step"
)

type config struct {
	steps       []int
	podsPerNode int
	perDeploy   int
	load        time.Duration
	workers     int
	qps         float64
	settle      time.Duration
	podTimeout  time.Duration
	out         string
	binary      string
	kwok        string
	kwokConfig  string
	kwokVersion string
}

func loadConfig(t *testing.T) config {
	c := config{steps: []int{100, 300, 1000}, podsPerNode: 10, perDeploy: 500, load: 30 * time.Second, workers: 20, qps: 100,
		settle: 10 * time.Second, podTimeout: 8 * time.Minute, out: filepath.Join(testutil.RepoRoot(), "scale"),
		kwok: os.Getenv("KWOK_BINARY"), kwokConfig: os.Getenv("KWOK_CONFIG"), kwokVersion: os.Getenv("KWOK_VERSION")}
	if v := os.Getenv("SCALE_STEPS"); v != "" {
		c.steps = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || (len(c.steps) > 0 && n <= c.steps[len(c.steps)-1]) {
				t.Fatalf("SCALE_STEPS=%q: want increasing node counts, e.g. 100,300,1000", v)
			}
			c.steps = append(c.steps, n)
		}
	}
	intEnv := func(name string, p *int) {
		if v := os.Getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				t.Fatalf("%s=%q: want a positive number", name, v)
			}
			*p = n
		}
	}
	durEnv := func(name string, p *time.Duration) {
		if v := os.Getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				t.Fatalf("%s=%q: want a duration (45s)", name, v)
			}
			*p = d
		}
	}
	intEnv("SCALE_PODS_PER_NODE", &c.podsPerNode)
	intEnv("SCALE_WORKERS", &c.workers)
	durEnv("SCALE_LOAD", &c.load)
	durEnv("SCALE_SETTLE", &c.settle)
	durEnv("SCALE_POD_TIMEOUT", &c.podTimeout)
	if v := os.Getenv("SCALE_QPS"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 {
			t.Fatalf("SCALE_QPS=%q: want a rate (0: unlimited)", v)
		}
		c.qps = f
	}
	if v := os.Getenv("SCALE_OUT"); v != "" {
		c.out = v
	}
	if c.kwok == "" || c.kwokConfig == "" {
		t.Fatal("KWOK_BINARY and KWOK_CONFIG are not set: run `make scale` (hack/scale.sh builds kwok and writes its stages)")
	}
	for _, f := range []string{c.kwok, c.kwokConfig} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%v: run `make scale`, which builds kwok and writes its stages", err)
		}
	}
	return c
}

// run is one `make scale` run.
type run struct {
	t     *testing.T
	cfg   config
	res   *Results
	node  *testbed.Node
	admin *kubernetes.Clientset
	// adminREST reads /metrics.
	adminREST rest.Interface
	loadCS    *kubernetes.Clientset
	// adminCert and adminKey are the admin's client certificate, as
	// files in the node (for the scheduler's /metrics).
	adminCert, adminKey string
	tr                  *tracker
	// kwokExited says why kwok is gone, nil while it runs.
	kwokExited func() error
	mu         sync.Mutex
}

// TestScale is `make scale`.
func TestScale(t *testing.T) {
	if os.Getenv("KUBEFORGE_SCALE") != "1" {
		t.Skip("the scale run runs with KUBEFORGE_SCALE=1 (make scale)")
	}
	testbed.RequireHost(t)
	cfg := loadConfig(t)
	src := testutil.Binary(t)
	cfg.binary = filepath.Join(t.TempDir(), "kubeforge")
	if err := testbed.CopyFile(src, cfg.binary, 0o755); err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
	r := &run{t: t, cfg: cfg, res: &Results{Schema: 1, Started: time.Now(), Host: hostInfo(), Kubeforge: binaryInfo(cfg.binary),
		Kwok: cfg.kwokVersion, Settings: Settings{Steps: cfg.steps, PodsPerNode: cfg.podsPerNode, LoadSeconds: cfg.load.Seconds(),
			LoadWorkers: cfg.workers, LoadQPS: cfg.qps, Settle: cfg.settle.Seconds(), Deployment: cfg.perDeploy}}}
	r.res.Kubeforge.Path = src
	stopLoadWatch := r.watchLoad()
	defer func() {
		stopLoadWatch()
		r.res.Finished = time.Now()
		r.res.DurationSeconds = math.Round(r.res.Finished.Sub(r.res.Started).Seconds())
		if t.Failed() {
			r.res.Errors = append(r.res.Errors, "the run failed: see scale.log")
		}
		if err := r.res.Write(cfg.out); err != nil {
			t.Errorf("writing results: %v", err)
		}
		r.res.PrintTable(os.Stdout)
		fmt.Printf("\nscale: results in %s\n", filepath.Join(cfg.out, "results.json"))
	}()

	// The control plane: one node, default settings, as `make bench`.
	r.loadSample("init")
	tb := testbed.New(t, testbed.WithBinary(cfg.binary))
	n := tb.AddNode("scale")
	r.node = n
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	start := time.Now()
	out, err := n.Kubeforge(ctx, "init", "--config", r.initConfig(), "--single-node")
	cancel()
	if err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	r.res.InitSeconds = math.Round(time.Since(start).Seconds()*100) / 100
	t.Logf("init: %.1f s", r.res.InitSeconds)
	kubeconfig, err := n.ReadFile("/etc/kubernetes/admin.conf")
	if err != nil {
		t.Fatal(err)
	}
	adminCfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	r.admin = kubernetes.NewForConfigOrDie(fastClient(adminCfg, "kubeforge-scale"))
	r.adminCert = n.WriteConfigFile("admin.crt", string(adminCfg.CertData))
	r.adminKey = n.WriteConfigFile("admin.key", string(adminCfg.KeyData))
	r.adminREST = r.admin.CoreV1().RESTClient()
	r.waitFor(3*time.Minute, "node "+n.Name+" Ready", func() (bool, error) {
		node, err := r.admin.CoreV1().Nodes().Get(context.Background(), n.Name, metav1.GetOptions{})
		return err == nil && nodeReady(node), err
	})

	// kwok, on the host with the admin kubeconfig.
	kcFile := filepath.Join(t.TempDir(), "admin.conf")
	if err := os.WriteFile(kcFile, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	r.startKwok(kcFile, tb.Subnet)

	r.setupNamespaces(adminCfg)
	r.tr = startTracker(t, r.admin)

	for _, nodes := range cfg.steps {
		if !r.step(nodes) {
			break
		}
	}
}

// initConfig writes the node's init configuration. With
// SCALE_SCHEDULER_CONFIG (a KubeSchedulerConfiguration file) the scheduler
// runs with --config set to a copy of it: a way to measure a scheduler
// setting (percentageOfNodesToScore, plugin weights) against the
// defaults. The file must name the scheduler's kubeconfig,
// /etc/kubernetes/scheduler.conf, under clientConnection.
func (r *run) initConfig() string {
	cfg := r.node.InitConfigYAML()
	f := os.Getenv("SCALE_SCHEDULER_CONFIG")
	if f == "" {
		return r.node.WriteConfigFile("init.yaml", cfg)
	}
	b, err := os.ReadFile(f)
	if err != nil {
		r.t.Fatalf("SCALE_SCHEDULER_CONFIG: %v", err)
	}
	p := r.node.WriteConfigFile("kube-scheduler-config.yaml", string(b))
	r.res.Settings.SchedulerConfig = string(b)
	const head = "kind: ClusterConfiguration\n"
	if !strings.Contains(cfg, head) {
		r.t.Fatalf("the test bed's init configuration has no ClusterConfiguration:\n%s", cfg)
	}
	return r.node.WriteConfigFile("init.yaml", strings.Replace(cfg, head, head+fmt.Sprintf(`scheduler:
  extraArgs:
  - name: config
    value: %[1]s
  extraVolumes:
  - name: scheduler-config
    hostPath: %[1]s
    mountPath: %[1]s
    readOnly: true
    pathType: File
`, p), 1))
}

// fastClient is a client for the run: protobuf, and a rate limit well
// above what it asks for, so that the client is not what is measured.
func fastClient(c *rest.Config, agent string) *rest.Config {
	c = rest.CopyConfig(c)
	c.QPS, c.Burst = 2000, 4000
	c.Timeout = 2 * time.Minute
	c.UserAgent = agent
	c.ContentType = "application/vnd.kubernetes.protobuf"
	c.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	return c
}

func (r *run) errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.res.Errors = append(r.res.Errors, msg)
	r.mu.Unlock()
	r.t.Error(msg)
}

// waitFor polls check every second until it reports true, failing the
// test after timeout.
func (r *run) waitFor(timeout time.Duration, what string, check func() (bool, error)) {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := check()
		if ok {
			return
		}
		last = err
		if time.Now().After(deadline) {
			r.t.Fatalf("%s: not within %v (last error: %v)", what, timeout, last)
		}
		time.Sleep(time.Second)
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// startKwok runs kwok on the host, managing the nodes that carry kwok's
// annotation. Their address is one on the bed's own bridge that no node
// has (metrics-server and the API server dial it and get no answer: the
// traffic stays on the test bridge), their pods' addresses from a range
// nothing routes.
func (r *run) startKwok(kubeconfig string, subnet netip.Prefix) {
	t := r.t
	a := subnet.Masked().Addr().As4()
	a[3] = 254
	nodeIP := netip.AddrFrom4(a).String()
	if err := os.MkdirAll(r.cfg.out, 0o755); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(r.cfg.out, "kwok.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(r.cfg.kwok,
		"--kubeconfig="+kubeconfig,
		"--config="+r.cfg.kwokConfig,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector="+KwokAnnotation+"=fake",
		"--node-ip="+nodeIP,
		"--cidr=100.64.0.1/16",
		"--node-lease-duration-seconds=40",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // no ~/.kwok of the user's
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting kwok: %v", err)
	}
	t.Logf("kwok: pid %d, nodes at %s, log %s", cmd.Process.Pid, nodeIP, logPath)
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); logFile.Close(); close(exited) }()
	r.kwokExited = func() error {
		select {
		case <-exited:
			return fmt.Errorf("kwok exited: %v (see %s)", waitErr, logPath)
		default:
			return nil
		}
	}
	t.Cleanup(func() {
		if err := r.kwokExited(); err != nil {
			r.errorf("%v", err)
			return
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
}

// setupNamespaces makes the run's namespaces and the load's identity: a
// ServiceAccount bound to cluster-admin. The load runs as it, not as the
// admin: system:masters is exempt from API Priority and Fairness, a
// ServiceAccount is not (as every workload's client).
func (r *run) setupNamespaces(adminCfg *rest.Config) {
	t := r.t
	ctx := context.Background()
	for _, ns := range []string{podNamespace, loadNamespace} {
		if _, err := r.admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	r.waitFor(time.Minute, "default ServiceAccount of "+loadNamespace, func() (bool, error) {
		_, err := r.admin.CoreV1().ServiceAccounts(loadNamespace).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, err
	})
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "scale-load", Namespace: loadNamespace}}
	if _, err := r.admin.CoreV1().ServiceAccounts(loadNamespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "scale-load"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa.Name, Namespace: loadNamespace}}}
	if _, err := r.admin.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := r.admin.CoreV1().ServiceAccounts(loadNamespace).CreateToken(ctx, sa.Name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lc := &rest.Config{Host: adminCfg.Host, BearerToken: tr.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAData: adminCfg.CAData}}
	r.loadCS = kubernetes.NewForConfigOrDie(fastClient(lc, "kubeforge-scale-load"))
}

// step grows the cluster to nodes nodes and their pods, measures, runs
// the load and measures again. It reports false when the run cannot go on.
func (r *run) step(nodes int) bool {
	t := r.t
	ctx := context.Background()
	s := Step{Nodes: nodes, Pods: nodes * r.cfg.podsPerNode}
	defer func() {
		r.res.Steps = append(r.res.Steps, s)
		r.res.SLOs = append(r.res.SLOs, CheckSLOs(nodes, s.Server, 20)...)
		r.res.SLOs = append(r.res.SLOs, CheckSLOs(nodes, s.Client, 20)...)
		if s.PodStartup.Count > 0 {
			r.res.SLOs = append(r.res.SLOs, SLOCheck{Nodes: nodes, Class: "pod startup", Limit: SLOPodStartup, Worst: s.PodStartup.P99,
				Source: "watch", Count: s.PodStartup.Count, Met: s.PodStartup.P99 <= SLOPodStartup})
		}
	}()
	fail := func(format string, args ...any) bool {
		msg := fmt.Sprintf("%d nodes: ", nodes) + fmt.Sprintf(format, args...)
		if err := r.kwokExited(); err != nil {
			msg += " (" + err.Error() + ")"
		}
		s.Errors = append(s.Errors, msg)
		r.errorf("%s", msg)
		return false
	}
	setupBefore, err := r.metrics()
	if err != nil {
		return fail("metrics: %v", err)
	}

	// Nodes.
	r.loadSample(fmt.Sprintf("%d nodes", nodes))
	have := r.tr.nodeCount()
	start := time.Now()
	if err := createNodes(ctx, r.admin, have, nodes); err != nil {
		return fail("creating nodes: %v", err)
	}
	if !r.tr.waitNodesReady(nodes, 5*time.Minute) {
		return fail("only %d of %d nodes Ready after 5 minutes", r.tr.nodesReady(), nodes)
	}
	s.RegisterSeconds = round2(time.Since(start).Seconds())
	t.Logf("%d nodes: %d new nodes Ready in %.1f s", nodes, nodes-have, s.RegisterSeconds)

	// Pods, from Deployments the controller manager turns into pods.
	r.loadSample(fmt.Sprintf("%d pods", s.Pods))
	step := strconv.Itoa(nodes)
	want := s.Pods - r.tr.podCount()
	schedBefore, schedErr := r.schedulerMetrics()
	start = time.Now()
	if err := createDeployments(ctx, r.admin, step, want, r.cfg.perDeploy); err != nil {
		return fail("creating deployments: %v", err)
	}
	if !r.tr.waitPodsRunning(step, want, r.cfg.podTimeout) {
		fail("only %d of %d pods Running after %v", r.tr.running(step), want, r.cfg.podTimeout)
	}
	r.tr.stepFigures(step, start, &s)
	if schedErr == nil {
		schedAfter, err := r.schedulerMetrics()
		schedErr = err
		if err == nil {
			s.SchedulerMs = schedulerMs(schedBefore, schedAfter)
			t.Logf("%d nodes: the scheduler's mean ms per attempt: %v", nodes, s.SchedulerMs)
		}
	}
	if schedErr != nil {
		t.Logf("%d nodes: the scheduler's metrics: %v", nodes, schedErr)
	}
	t.Logf("%d nodes: %d new pods scheduled in %.1f s, Running in %.1f s (%.0f created/s, %.0f bound/s); startup p50 %.2f s p99 %.2f s",
		nodes, want, s.ScheduledSeconds, s.RunningSeconds, s.CreateRate, s.ScheduleRate, s.PodStartup.P50, s.PodStartup.P99)

	// Idle: memory, etcd, objects.
	time.Sleep(r.cfg.settle)
	s.Idle = r.memory()
	loadBefore, err := r.metrics()
	if err != nil {
		return fail("metrics: %v", err)
	}
	s.SetupServerVerb = serverLatency(setupBefore, loadBefore, VerbScopeOf)
	r.etcd(&s)

	// The load.
	rec := NewRecorder()
	l := &Load{Client: r.loadCS, Namespace: loadNamespace, PodNamespace: podNamespace, PodNames: r.tr.runningPods(),
		Workers: r.cfg.workers, QPS: r.cfg.qps, Duration: r.cfg.load, Rec: rec}
	took := l.Run(ctx)
	loadAfter, err := r.metrics()
	if err != nil {
		return fail("metrics: %v", err)
	}
	s.Loaded = r.memory()
	s.LoadSeconds = round2(took.Seconds())
	s.LoadRequests = rec.Requests()
	s.Client = rec.Summary()
	s.ErrorSamples = rec.ErrorSamples()
	s.Server = serverLatency(loadBefore, loadAfter, OpOf)
	s.ServerVerb = serverLatency(loadBefore, loadAfter, VerbScopeOf)
	s.Rejected = loadAfter.rejected - loadBefore.rejected
	s.APFWaitP99 = map[string]float64{}
	for level, h := range GroupHistograms(DiffHistograms(loadBefore.apfWait, loadAfter.apfWait), func(l map[string]string) string { return l["priority_level"] }) {
		s.APFWaitP99[level] = round4(h.Quantile(0.99))
	}
	s.Objects = loadAfter.objects
	s.Throttled = r.throttled()
	s.Load1 = r.loadSample(fmt.Sprintf("%d nodes, after the load", nodes)).Load1
	t.Logf("%d nodes: load %d requests in %.0f s; apiserver RSS %.0f MiB, etcd RSS %.0f MiB, etcd db %.1f MiB",
		nodes, s.LoadRequests, s.LoadSeconds, s.Loaded["kube-apiserver"].RSSMiB, s.Loaded["etcd"].RSSMiB, float64(s.EtcdDBBytes)/(1<<20))
	for op, errs := range s.ErrorSamples {
		t.Logf("%d nodes: %s: %d errors, e.g. %s", nodes, op, s.Client[op].Errors, errs[0])
	}
	return len(s.Errors) == 0
}

func round2(x float64) float64 { return math.Round(x*100) / 100 }
func round4(x float64) float64 { return math.Round(x*10000) / 10000 }

// scrape is what the run reads from the API server's /metrics.
type scrape struct {
	requests []Histogram
	apfWait  []Histogram
	rejected float64
	objects  map[string]float64
}

func (r *run) metrics() (scrape, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	body, err := r.adminREST.Get().AbsPath("/metrics").SetHeader("Accept", "text/plain").DoRaw(ctx)
	if err != nil {
		return scrape{}, fmt.Errorf("GET /metrics: %w", err)
	}
	var s scrape
	if s.requests, err = ParseHistograms(bytes.NewReader(body), "apiserver_request_duration_seconds"); err != nil {
		return s, err
	}
	if len(s.requests) == 0 {
		return s, fmt.Errorf("the API server's /metrics has no apiserver_request_duration_seconds")
	}
	if s.apfWait, err = ParseHistograms(bytes.NewReader(body), "apiserver_flowcontrol_request_wait_duration_seconds"); err != nil {
		return s, err
	}
	rej, err := SumSamples(bytes.NewReader(body), "apiserver_flowcontrol_rejected_requests_total", "")
	if err != nil {
		return s, err
	}
	s.rejected = rej[""]
	objs, err := SumSamples(bytes.NewReader(body), "apiserver_storage_objects", "resource")
	if err != nil {
		return s, err
	}
	s.objects = map[string]float64{}
	for k, v := range objs {
		if v >= 50 {
			s.objects[k] = v
		}
	}
	return s, nil
}

// schedulerMetrics reads the scheduler's /metrics: it listens on the
// node's loopback only, so curl runs in the node with the admin's client
// certificate (the scheduler authorizes /metrics through the API server).
func (r *run) schedulerMetrics() ([]Histogram, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := r.node.Run(ctx, "curl", "-sSfk", "--max-time", "50", "--cert", r.adminCert, "--key", r.adminKey,
		"https://127.0.0.1:"+strconv.Itoa(manifests.SchedulerPort)+"/metrics")
	if err != nil {
		return nil, fmt.Errorf("curl the scheduler's /metrics: %v: %s", err, lastLines(out, 3))
	}
	var hs []Histogram
	for _, name := range []string{"scheduler_scheduling_attempt_duration_seconds", "scheduler_framework_extension_point_duration_seconds"} {
		h, err := ParseHistograms(strings.NewReader(out), name)
		if err != nil {
			return nil, err
		}
		hs = append(hs, h...)
	}
	return hs, nil
}

// schedulerMs is the mean time per attempt, in ms, over the attempts
// between two scrapes: "attempt" for the whole of it, then each extension
// point (the time of its calls divided by the attempts, so that the parts
// add up).
func schedulerMs(before, after []Histogram) map[string]float64 {
	diff := DiffHistograms(before, after)
	attempts := GroupHistograms(diff, func(l map[string]string) string {
		if _, ok := l["extension_point"]; ok {
			return ""
		}
		return "attempt"
	})["attempt"]
	if attempts.Count == 0 {
		return nil
	}
	out := map[string]float64{"attempt": round2(attempts.Sum / attempts.Count * 1000)}
	for ep, h := range GroupHistograms(diff, func(l map[string]string) string { return l["extension_point"] }) {
		if ep != "" {
			out[ep] = round2(h.Sum / attempts.Count * 1000)
		}
	}
	return out
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func serverLatency(before, after scrape, key func(map[string]string) string) map[string]Latency {
	out := map[string]Latency{}
	for k, h := range GroupHistograms(DiffHistograms(before.requests, after.requests), key) {
		out[k] = FromHistogram(h)
	}
	return out
}

// memory sums the node's processes by component (and "total").
func (r *run) memory() map[string]bench.CompMem {
	snap := &bench.MemSnapshot{}
	for _, p := range r.node.Processes() {
		pm, err := bench.ReadSmapsRollup(p.PID)
		if err != nil {
			continue
		}
		pm.Component = bench.Classify(p.Cmdline, p.Exe)
		snap.Processes = append(snap.Processes, pm)
	}
	snap.Sum()
	out := map[string]bench.CompMem{"total": snap.Total}
	for k, v := range snap.Components {
		out[k] = v
	}
	return out
}

// throttled counts the lines of the controller manager's and the
// scheduler's logs that say a request waited for the component's own
// client rate limit (its --kube-api-qps/--kube-api-burst): client-go logs
// "Waited for … due to client-side throttling" for waits over a second.
// The counts are for the node's life so far.
func (r *run) throttled() map[string]int {
	out := map[string]int{}
	for _, c := range []string{"kube-controller-manager", "kube-scheduler"} {
		files, _ := filepath.Glob(r.node.Path("/var/log/pods/kube-system_" + c + "-*/*/*.log"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			out[c] += bytes.Count(b, []byte("client-side throttling"))
		}
		if len(files) == 0 {
			out[c] = -1 // no log found
		}
	}
	return out
}

// etcd reads etcd's database size: the file, and its metrics (from inside
// the node: etcd serves them on the node's loopback).
func (r *run) etcd(s *Step) {
	if fi, err := os.Stat(r.node.Path("/var/lib/etcd/member/snap/db")); err == nil {
		s.EtcdDBBytes = fi.Size()
	} else {
		r.t.Logf("etcd db file: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := r.node.Run(ctx, "curl", "-sS", "--max-time", "15", "http://127.0.0.1:2381/metrics")
	if err != nil {
		r.t.Logf("etcd metrics: %v", err)
		return
	}
	get := func(name string) int64 {
		m, err := SumSamples(strings.NewReader(out), name, "")
		if err != nil {
			r.t.Logf("etcd metrics: %v", err)
		}
		return int64(m[""])
	}
	s.EtcdInUseBytes = get("etcd_mvcc_db_total_size_in_use_in_bytes")
	s.EtcdKeys = get("etcd_debugging_mvcc_keys_total")
	if s.EtcdDBBytes == 0 {
		s.EtcdDBBytes = get("etcd_mvcc_db_total_size_in_bytes")
	}
}

// createNodes creates the Node objects from..to-1 that kwok then runs.
func createNodes(ctx context.Context, cs kubernetes.Interface, from, to int) error {
	return parallel(16, from, to, func(i int) error {
		name := fmt.Sprintf("kwok-node-%04d", i)
		res := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("256Gi"),
			corev1.ResourcePods: resource.MustParse("110")}
		n := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name,
				Annotations: map[string]string{KwokAnnotation: "fake", "node.alpha.kubernetes.io/ttl": "0"},
				Labels: map[string]string{KwokNodeLabel: KwokNodeValue, corev1.LabelHostname: name, corev1.LabelOSStable: "linux",
					corev1.LabelArchStable: "amd64", "node-role.kubernetes.io/agent": ""}},
			Spec:   corev1.NodeSpec{Taints: []corev1.Taint{{Key: KwokTaintKey, Value: "fake", Effect: corev1.TaintEffectNoSchedule}}},
			Status: corev1.NodeStatus{Allocatable: res, Capacity: res},
		}
		_, err := cs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
		return err
	})
}

// createDeployments creates Deployments of at most per replicas, pods in
// all, for the step.
func createDeployments(ctx context.Context, cs kubernetes.Interface, step string, pods, per int) error {
	var sizes []int
	for left := pods; left > 0; left -= per {
		sizes = append(sizes, min(left, per))
	}
	return parallel(4, 0, len(sizes), func(i int) error {
		name := fmt.Sprintf("app-%s-%d", step, i)
		labels := map[string]string{"app": name, stepLabel: step}
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: podNamespace},
			Spec: appsv1.DeploymentSpec{
				Replicas: new(int32(sizes[i])),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: KwokPodSpec()},
			},
		}
		_, err := cs.AppsV1().Deployments(podNamespace).Create(ctx, d, metav1.CreateOptions{})
		return err
	})
}

// parallel runs f(from)…f(to-1) on workers goroutines; the first error
// stops it.
func parallel(workers, from, to int, f func(i int) error) error {
	next := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	var err error
feed:
	for i := from; i < to; i++ {
		select {
		case next <- i:
		case err = <-errs:
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return err
}

// tracker watches the simulated nodes and the run's pods and records when
// each was first seen, bound, Running and Ready.
type tracker struct {
	mu        sync.Mutex
	nodeSeen  map[string]bool
	nodeReady map[string]time.Time
	pods      map[string]*podTimes
}

type podTimes struct {
	step                     string
	created                  time.Time
	seen, scheduled, running time.Time
}

func startTracker(t *testing.T, cs kubernetes.Interface) *tracker {
	tr := &tracker{nodeSeen: map[string]bool{}, nodeReady: map[string]time.Time{}, pods: map[string]*podTimes{}}
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	nf := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = KwokNodeLabel + "=" + KwokNodeValue
	}))
	nodeInf := nf.Core().V1().Nodes().Informer()
	onNode := func(obj any) {
		if n, ok := obj.(*corev1.Node); ok {
			tr.mu.Lock()
			tr.nodeSeen[n.Name] = true
			if _, done := tr.nodeReady[n.Name]; !done && nodeReady(n) {
				tr.nodeReady[n.Name] = time.Now()
			}
			tr.mu.Unlock()
		}
	}
	_, _ = nodeInf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: onNode, UpdateFunc: func(_, o any) { onNode(o) }})
	pf := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(podNamespace))
	podInf := pf.Core().V1().Pods().Informer()
	onPod := func(obj any) {
		p, ok := obj.(*corev1.Pod)
		if !ok {
			return
		}
		now := time.Now()
		tr.mu.Lock()
		defer tr.mu.Unlock()
		pt := tr.pods[p.Name]
		if pt == nil {
			pt = &podTimes{step: p.Labels[stepLabel], created: p.CreationTimestamp.Time, seen: now}
			tr.pods[p.Name] = pt
		}
		if pt.scheduled.IsZero() && p.Spec.NodeName != "" {
			pt.scheduled = now
		}
		if pt.running.IsZero() && p.Status.Phase == corev1.PodRunning && podReady(p) {
			pt.running = now
		}
	}
	_, _ = podInf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: onPod, UpdateFunc: func(_, o any) { onPod(o) }})
	nf.Start(stop)
	pf.Start(stop)
	if !cache.WaitForCacheSync(stop, nodeInf.HasSynced, podInf.HasSynced) {
		t.Fatal("informers did not sync")
	}
	return tr
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (tr *tracker) nodeCount() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.nodeSeen)
}

func (tr *tracker) nodesReady() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.nodeReady)
}

func (tr *tracker) podCount() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.pods)
}

func (tr *tracker) running(step string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
	for _, p := range tr.pods {
		if p.step == step && !p.running.IsZero() {
			n++
		}
	}
	return n
}

func (tr *tracker) waitNodesReady(n int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for tr.nodesReady() < n {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
	return true
}

func (tr *tracker) waitPodsRunning(step string, n int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for tr.running(step) < n {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
	return true
}

// runningPods names the pods that run (for the load to get and patch).
func (tr *tracker) runningPods() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []string
	for name, p := range tr.pods {
		if !p.running.IsZero() {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// stepFigures fills in the step's pod figures from the pods of the step.
func (tr *tracker) stepFigures(step string, start time.Time, s *Step) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var startup, schedule []float64
	seen := 0
	var lastSched, lastRun, firstSeen, lastSeen, firstSched time.Time
	for _, p := range tr.pods {
		if p.step != step {
			continue
		}
		seen++
		if firstSeen.IsZero() || p.seen.Before(firstSeen) {
			firstSeen = p.seen
		}
		if p.seen.After(lastSeen) {
			lastSeen = p.seen
		}
		if !p.scheduled.IsZero() {
			schedule = append(schedule, p.scheduled.Sub(p.created).Seconds())
			if p.scheduled.After(lastSched) {
				lastSched = p.scheduled
			}
			if firstSched.IsZero() || p.scheduled.Before(firstSched) {
				firstSched = p.scheduled
			}
		}
		if !p.running.IsZero() {
			startup = append(startup, p.running.Sub(p.created).Seconds())
			if p.running.After(lastRun) {
				lastRun = p.running
			}
		}
	}
	s.PodStartup, s.PodSchedule = Summarize(startup, 0), Summarize(schedule, 0)
	s.ScheduledSeconds, s.RunningSeconds = math.NaN(), math.NaN()
	if !lastSched.IsZero() {
		s.ScheduledSeconds = round2(lastSched.Sub(start).Seconds())
		s.ScheduleRate = math.Round(float64(len(schedule)) / math.Max(lastSched.Sub(firstSched).Seconds(), 1))
	}
	if !lastRun.IsZero() {
		s.RunningSeconds = round2(lastRun.Sub(start).Seconds())
	}
	if !lastSeen.IsZero() {
		s.CreateRate = math.Round(float64(seen) / math.Max(lastSeen.Sub(firstSeen).Seconds(), 1))
	}
}

// watchLoad samples the load average every 5 s for its maximum.
func (r *run) watchLoad() (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Second)
		defer tick.Stop()
		for {
			l := readLoad()
			r.mu.Lock()
			r.res.MaxLoad = math.Max(r.res.MaxLoad, l.Load1)
			r.mu.Unlock()
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func (r *run) loadSample(before string) bench.LoadSample {
	l := readLoad()
	l.Before = before
	r.mu.Lock()
	r.res.Load = append(r.res.Load, l)
	r.mu.Unlock()
	r.t.Logf("before %s: load average %.2f %.2f %.2f", before, l.Load1, l.Load5, l.Load15)
	return l
}

func readLoad() bench.LoadSample {
	var l bench.LoadSample
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			l.Load1, _ = strconv.ParseFloat(f[0], 64)
			l.Load5, _ = strconv.ParseFloat(f[1], 64)
			l.Load15, _ = strconv.ParseFloat(f[2], 64)
		}
	}
	return l
}

func hostInfo() bench.Host {
	h := bench.Host{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	h.Hostname, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				h.MemMiB = kb / 1024
			}
		}
	}
	return h
}

func binaryInfo(path string) bench.Binary {
	bi := bench.Binary{Path: path}
	if f, err := os.Open(path); err == nil {
		h := sha256.New()
		bi.Size, _ = io.Copy(h, f)
		f.Close()
		bi.SHA256 = hex.EncodeToString(h.Sum(nil))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, path, "version").Output(); err == nil {
		bi.Version = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	return bi
}
