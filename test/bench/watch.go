package bench

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Checks a Watcher records.
const (
	CheckKubeconfig   = "kubeconfig"     // admin.conf exists and parses
	CheckReadyz       = "readyz"         // GET /readyz says ok
	CheckNodeReady    = "node-ready"     // the Node is Ready (and its lease renewed after LeaseSince)
	CheckAllPodsReady = "all-pods-ready" // every kube-system pod Ready, CoreDNS and kube-proxy included
	CheckCoreDNSReady = "coredns-ready"  // as many Ready CoreDNS pods as the Deployment wants
)

// Transition is a raw sample: the state a check saw change, at T seconds
// after the watcher's start.
type Transition struct {
	T     float64 `json:"t"`
	Check string  `json:"check"`
	State string  `json:"state"`
}

// Watcher polls a cluster's API server from the bench process (client-go:
// kubectl is too slow for its interval) and records when each check first
// holds, in seconds after Start.
type Watcher struct {
	Start    time.Time
	Interval time.Duration
	// Kubeconfig returns admin.conf; it is polled until it parses.
	Kubeconfig func() ([]byte, error)
	// Server, when set, replaces admin.conf's server URL (to watch another
	// control-plane node's API server).
	Server string
	// Node is the node whose Ready condition to watch ("": none). With
	// LeaseSince set, Ready counts only once the Ready condition's
	// heartbeat and the node's lease are from LeaseSince or later (a
	// kubelet started after it reports).
	Node       string
	LeaseSince time.Time
	// Pods: watch the kube-system pods. ControlPlanes are the nodes whose
	// static pods must be there, Nodes how many kube-proxy pods.
	Pods          bool
	ControlPlanes []string
	Nodes         int
	// KeepWatching: poll every check until the context ends, also after
	// each has held (to see them flap).
	KeepWatching bool

	mu          sync.Mutex
	first       map[string]float64
	transitions []Transition
	last        map[string]string
	polls       int
	client      *kubernetes.Clientset
	ctx         context.Context
}

// WatchResult is what a watcher saw.
type WatchResult struct {
	// First is when each check first held (seconds after the start); pods'
	// "ready/<component>" entries are when all of a component's pods were
	// first Ready at the same time.
	First       map[string]float64 `json:"first"`
	Polls       int                `json:"polls"`
	Transitions []Transition       `json:"transitions"`
}

func (w *Watcher) wanted() []string {
	want := []string{CheckReadyz}
	if w.Node != "" {
		want = append(want, CheckNodeReady)
	}
	if w.Pods {
		want = append(want, CheckAllPodsReady, CheckCoreDNSReady)
	}
	return want
}

// Result returns what the watcher saw so far.
func (w *Watcher) Result() WatchResult {
	w.mu.Lock()
	defer w.mu.Unlock()
	first := map[string]float64{}
	for k, v := range w.first {
		first[k] = v
	}
	return WatchResult{First: first, Polls: w.polls, Transitions: slices.Clone(w.transitions)}
}

// LastOK is when a check last turned ok (NaN if it never did, or is not
// ok at the end), and whether it was not ok at some point after it first
// held.
func (r WatchResult) LastOK(check string) (t float64, flapped bool) {
	t = math.NaN()
	okSeen := false
	for _, tr := range r.Transitions {
		if tr.Check != check {
			continue
		}
		if strings.HasPrefix(tr.State, errPrefix) {
			continue
		}
		if tr.State == "ok" {
			t, okSeen = tr.T, true
		} else {
			if okSeen {
				flapped = true
			}
			t = math.NaN()
		}
	}
	return t, flapped
}

// Done reports whether every wanted check has held.
func (w *Watcher) Done() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.wanted() {
		if _, ok := w.first[c]; !ok {
			return false
		}
	}
	return true
}

// Missing lists the wanted checks that have not held, with their last state.
func (w *Watcher) Missing() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, c := range w.wanted() {
		if _, ok := w.first[c]; !ok {
			out = append(out, fmt.Sprintf("%s (%s)", c, w.last[c]))
		}
	}
	return out
}

func (w *Watcher) since() float64 { return round3(time.Since(w.Start).Seconds()) }

// see records a check's state; "" means it holds.
func (w *Watcher) see(check, state string) bool {
	if w.stopped() {
		return false // an error of the poll the end of the watch cut short
	}
	t := w.since()
	w.mu.Lock()
	defer w.mu.Unlock()
	if prev, seen := w.last[check]; !seen || prev != state {
		show := state
		if show == "" {
			show = "ok"
		}
		w.transitions = append(w.transitions, Transition{T: t, Check: check, State: show})
	}
	w.last[check] = state
	if _, ok := w.first[check]; !ok && state == "" {
		w.first[check] = t
	}
	return state == ""
}

func (w *Watcher) stopped() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ctx != nil && w.ctx.Err() != nil
}

func (w *Watcher) has(check string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.first[check]
	return ok
}

// Run polls every Interval until every wanted check has held or ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	w.mu.Lock()
	if w.first == nil {
		w.first, w.last = map[string]float64{}, map[string]string{}
	}
	w.ctx = ctx
	w.mu.Unlock()
	if w.Interval == 0 {
		w.Interval = 50 * time.Millisecond
	}
	tick := time.NewTicker(w.Interval)
	defer tick.Stop()
	for {
		w.poll(ctx)
		if w.Done() && !w.KeepWatching {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (w *Watcher) poll(ctx context.Context) {
	w.mu.Lock()
	w.polls++
	w.mu.Unlock()
	if w.client == nil {
		b, err := w.Kubeconfig()
		if err != nil {
			w.see(CheckKubeconfig, "no admin.conf")
			return
		}
		cfg, err := clientcmd.RESTConfigFromKubeConfig(b)
		if err != nil {
			w.see(CheckKubeconfig, "admin.conf: "+err.Error())
			return
		}
		if w.Server != "" {
			cfg.Host = w.Server
		}
		cfg.Timeout = 2 * time.Second
		cfg.QPS, cfg.Burst = 1000, 1000
		cfg.UserAgent = "kubeforge-bench"
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			w.see(CheckKubeconfig, err.Error())
			return
		}
		w.mu.Lock()
		w.client = cs
		w.mu.Unlock()
		w.see(CheckKubeconfig, "")
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	body, err := w.client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
	switch {
	case err != nil:
		w.see(CheckReadyz, errState(err))
		return
	case strings.TrimSpace(string(body)) != "ok":
		w.see(CheckReadyz, short(string(body)))
		return
	}
	w.see(CheckReadyz, "")
	if w.Node != "" && (w.KeepWatching || !w.has(CheckNodeReady)) {
		w.see(CheckNodeReady, w.nodeReady(rctx))
	}
	if w.Pods && (w.KeepWatching || !(w.has(CheckAllPodsReady) && w.has(CheckCoreDNSReady))) {
		w.pods(rctx)
	}
}

func (w *Watcher) nodeReady(ctx context.Context) string {
	node, err := w.client.CoreV1().Nodes().Get(ctx, w.Node, metav1.GetOptions{})
	if err != nil {
		return errState(err)
	}
	w.see("node-registered", "")
	ready := "no Ready condition"
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			switch {
			case c.Status != corev1.ConditionTrue:
				ready = "Ready=" + string(c.Status) + ": " + c.Reason + ": " + c.Message
			case !w.LeaseSince.IsZero() && c.LastHeartbeatTime.Time.Before(w.LeaseSince.Truncate(time.Second)):
				// (the heartbeat has whole seconds)
				ready = "Ready=True, but reported before the start"
			default:
				ready = ""
			}
		}
	}
	if ready != "" || w.LeaseSince.IsZero() {
		return ready
	}
	lease, err := w.client.CoordinationV1().Leases("kube-node-lease").Get(ctx, w.Node, metav1.GetOptions{})
	if err != nil {
		return errState(err)
	}
	if lease.Spec.RenewTime == nil || lease.Spec.RenewTime.Time.Before(w.LeaseSince.Truncate(time.Microsecond)) {
		return "lease not renewed since the start"
	}
	return ""
}

// podGroup names the component a kube-system pod belongs to.
func podGroup(p *corev1.Pod) string {
	if app := p.Labels["k8s-app"]; app != "" {
		if app == "kube-dns" {
			return "coredns"
		}
		return app
	}
	if c := p.Labels["component"]; c != "" {
		return c
	}
	name := p.Name
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		name = name[:i]
	}
	return name
}

func podReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (w *Watcher) pods(ctx context.Context) {
	list, err := w.client.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{})
	if err != nil {
		w.see(CheckAllPodsReady, errState(err))
		return
	}
	groups := map[string][2]int{} // ready, total
	var notReady []string
	for i := range list.Items {
		p := &list.Items[i]
		if p.DeletionTimestamp != nil {
			continue
		}
		g := groups[podGroup(p)]
		g[1]++
		if podReady(p) {
			g[0]++
			w.see("pod/"+p.Name, "")
		} else {
			notReady = append(notReady, p.Name)
		}
		groups[podGroup(p)] = g
	}
	for name, g := range groups {
		if g[0] == g[1] {
			w.see("ready/"+name, "")
		}
	}
	// CoreDNS: as many Ready pods as the Deployment wants.
	dnsState := ""
	dep, err := w.client.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
	switch {
	case err != nil:
		dnsState = errState(err)
	default:
		want := int32(1)
		if dep.Spec.Replicas != nil {
			want = *dep.Spec.Replicas
		}
		if got := groups["coredns"][0]; int32(got) < want {
			dnsState = fmt.Sprintf("%d/%d CoreDNS pods Ready", got, want)
		}
	}
	w.see(CheckCoreDNSReady, dnsState)

	var missing []string
	for _, cp := range w.ControlPlanes {
		for _, comp := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
			found := false
			for i := range list.Items {
				if list.Items[i].Name == comp+"-"+cp && podReady(&list.Items[i]) {
					found = true
				}
			}
			if !found {
				missing = append(missing, comp+"-"+cp)
			}
		}
	}
	if got := groups["kube-proxy"][0]; got < w.Nodes {
		missing = append(missing, fmt.Sprintf("kube-proxy (%d/%d Ready)", got, w.Nodes))
	}
	switch {
	case len(missing) > 0:
		w.see(CheckAllPodsReady, "not Ready: "+strings.Join(missing, ", "))
	case len(notReady) > 0:
		w.see(CheckAllPodsReady, "not Ready: "+strings.Join(notReady, ", "))
	case dnsState != "":
		w.see(CheckAllPodsReady, dnsState)
	default:
		w.see(CheckAllPodsReady, "")
	}
}

// errState is the state of a check whose request failed: it says nothing
// about the check itself (LastOK skips it).
func errState(err error) string { return errPrefix + short(err.Error()) }

const errPrefix = "error: "

func short(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}

// Client returns the watcher's API client once admin.conf was read (nil
// before).
func (w *Watcher) Client() *kubernetes.Clientset {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.client
}

// NewClient makes a client from a kubeconfig (for the bench's own calls).
func NewClient(kubeconfig []byte, server string) (*kubernetes.Clientset, *rest.Config, error) {
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		return nil, nil, err
	}
	if server != "" {
		cfg.Host = server
	}
	cfg.Timeout = 10 * time.Second
	cfg.QPS, cfg.Burst = 100, 200
	cfg.UserAgent = "kubeforge-bench"
	cs, err := kubernetes.NewForConfig(cfg)
	return cs, cfg, err
}
