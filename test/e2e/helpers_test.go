package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/test/testbed"
)

// controlPlane are the static pods of a control-plane node.
var controlPlane = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}

// cluster drives one testbed node with kubectl and kubeforge.
type cluster struct {
	t *testing.T
	n *testbed.Node
}

func (c *cluster) kubeforge(timeout time.Duration, args ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := c.n.Kubeforge(ctx, args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

func (c *cluster) kubectl(args ...string) string {
	c.t.Helper()
	out, err := c.n.Kubectl(args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// getJSON runs `kubectl get … -o json` into v.
func (c *cluster) getJSON(v any, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := c.n.KubectlContext(ctx, append(append([]string{"get"}, args...), "-o", "json")...)
	if err != nil {
		return err
	}
	return json.Unmarshal([]byte(out), v)
}

// readyz asks the API server's /readyz; "" means ok.
func (c *cluster) readyz() string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := c.n.KubectlContext(ctx, "get", "--raw", "/readyz")
	if err != nil {
		return err.Error()
	}
	if strings.TrimSpace(out) != "ok" {
		return "/readyz: " + out
	}
	return ""
}

// poll calls check every half second until it reports "" (done), and
// fails the test with check's last answer after timeout. It returns how
// long it took.
func poll(t *testing.T, timeout time.Duration, what string, check func() string) time.Duration {
	t.Helper()
	return pollEvery(t, timeout, 500*time.Millisecond, what, check)
}

type condition struct {
	Type, Status      string
	LastHeartbeatTime time.Time `json:"lastHeartbeatTime"`
}

type containerStatus struct {
	Name         string
	Ready        bool
	RestartCount int
	ContainerID  string
	State        map[string]json.RawMessage
}

type pod struct {
	Metadata struct {
		Name, Namespace, UID string
		Labels               map[string]string
	}
	Status struct {
		Phase             string
		PodIP             string
		Conditions        []condition
		ContainerStatuses []containerStatus
	}
}

type podList struct{ Items []pod }

// ready reports "" when the pod runs and all its containers are ready.
func (p pod) ready() string {
	if p.Status.Phase != "Running" {
		return fmt.Sprintf("%s is %s", p.Metadata.Name, p.Status.Phase)
	}
	if len(p.Status.ContainerStatuses) == 0 {
		return p.Metadata.Name + " has no container status"
	}
	for _, cs := range p.Status.ContainerStatuses {
		if !cs.Ready {
			return fmt.Sprintf("%s: container %s not ready (state %s)", p.Metadata.Name, cs.Name, keys(cs.State))
		}
	}
	return ""
}

func keys(m map[string]json.RawMessage) string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	slices.Sort(k)
	return strings.Join(k, ",")
}

// systemPods returns the pods of kube-system.
func (c *cluster) systemPods() ([]pod, error) {
	var l podList
	if err := c.getJSON(&l, "pods", "-n", "kube-system"); err != nil {
		return nil, err
	}
	return l.Items, nil
}

// mirrorPods returns the control-plane pods of the node, by component.
func (c *cluster) mirrorPods() (map[string]pod, error) {
	pods, err := c.systemPods()
	if err != nil {
		return nil, err
	}
	out := map[string]pod{}
	for _, p := range pods {
		for _, comp := range controlPlane {
			if p.Metadata.Name == comp+"-"+c.n.Name {
				out[comp] = p
			}
		}
	}
	return out, nil
}

// systemReady reports "" when every kube-system workload has all its pods
// and every kube-system pod runs and is ready. The workloads count too:
// right after init, only the static pods may exist yet.
func (c *cluster) systemReady() string {
	if s := c.systemWorkloadsReady(); s != "" {
		return s
	}
	pods, err := c.systemPods()
	if err != nil {
		return err.Error()
	}
	for _, p := range pods {
		if s := p.ready(); s != "" {
			return s
		}
	}
	return ""
}

// systemWorkloadsReady reports "" when every Deployment, DaemonSet and
// StatefulSet in kube-system has observed its spec and has as many ready
// pods as it wants.
func (c *cluster) systemWorkloadsReady() string {
	var l struct {
		Items []struct {
			Kind     string
			Metadata struct {
				Name       string
				Generation int64
			}
			Spec struct {
				Replicas *int32
			}
			Status struct {
				ObservedGeneration     int64
				ReadyReplicas          int32
				UpdatedReplicas        int32
				DesiredNumberScheduled int32
				NumberReady            int32
				UpdatedNumberScheduled int32
			}
		}
	}
	if err := c.getJSON(&l, "deployments,daemonsets,statefulsets", "-n", "kube-system"); err != nil {
		return err.Error()
	}
	for _, w := range l.Items {
		name := w.Kind + " kube-system/" + w.Metadata.Name
		if w.Status.ObservedGeneration < w.Metadata.Generation {
			return name + " has not observed its spec yet"
		}
		// Ready, and (but for a StatefulSet) of the current spec: during
		// a rollout the old pods count as ready.
		want, ready, updated := w.Status.DesiredNumberScheduled, w.Status.NumberReady, w.Status.UpdatedNumberScheduled
		if w.Kind != "DaemonSet" {
			want, ready, updated = 1, w.Status.ReadyReplicas, w.Status.UpdatedReplicas
			if w.Spec.Replicas != nil {
				want = *w.Spec.Replicas
			}
		}
		if w.Kind == "StatefulSet" {
			updated = want
		}
		if ready < want || updated < want {
			return fmt.Sprintf("%s: %d of %d pods ready, %d of the current spec", name, ready, want, updated)
		}
	}
	return ""
}

// controlPlaneReady reports "" when the four control-plane pods run and
// are ready.
func (c *cluster) controlPlaneReady() string {
	pods, err := c.mirrorPods()
	if err != nil {
		return err.Error()
	}
	for _, comp := range controlPlane {
		p, ok := pods[comp]
		if !ok {
			return "no mirror pod " + comp + "-" + c.n.Name
		}
		if s := p.ready(); s != "" {
			return s
		}
	}
	return ""
}

// nodeReady reports "" when the node is Ready and its lease was renewed
// after since (that is, a kubelet running now reports it).
func (c *cluster) nodeReady(since time.Time) string {
	var node struct {
		Status struct{ Conditions []condition }
	}
	if err := c.getJSON(&node, "node", c.n.Name); err != nil {
		return err.Error()
	}
	ready := false
	for _, cond := range node.Status.Conditions {
		if cond.Type == "Ready" {
			if cond.Status != "True" {
				return "node Ready=" + cond.Status
			}
			ready = true
		}
	}
	if !ready {
		return "node has no Ready condition"
	}
	var lease struct {
		Spec struct {
			RenewTime time.Time `json:"renewTime"`
		}
	}
	if err := c.getJSON(&lease, "lease", "-n", "kube-node-lease", c.n.Name); err != nil {
		return err.Error()
	}
	// The lease's renewTime has microseconds; since may be later within the
	// same second on a coarse clock, so compare with a small margin.
	if lease.Spec.RenewTime.Before(since.Add(-time.Second)) {
		return fmt.Sprintf("node lease last renewed %v, before %v", lease.Spec.RenewTime.Format(time.RFC3339Nano), since.Format(time.RFC3339Nano))
	}
	return ""
}

// helloPod returns the Deployment's pod (there must be exactly one).
func (c *cluster) helloPod() (pod, string) {
	var l podList
	if err := c.getJSON(&l, "pods", "-n", "default", "-l", "app=hello"); err != nil {
		return pod{}, err.Error()
	}
	if len(l.Items) != 1 {
		var names []string
		for _, p := range l.Items {
			names = append(names, p.Metadata.Name+"("+p.Status.Phase+")")
		}
		return pod{}, fmt.Sprintf("want 1 hello pod, have %v", names)
	}
	return l.Items[0], ""
}

// containers maps pod/container to "containerID restarts=N" for the
// kube-system pods and the hello pod.
func (c *cluster) containers() (map[string]string, error) {
	pods, err := c.systemPods()
	if err != nil {
		return nil, err
	}
	hello, msg := c.helloPod()
	if msg != "" {
		return nil, fmt.Errorf("%s", msg)
	}
	out := map[string]string{}
	for _, p := range append(pods, hello) {
		for _, cs := range p.Status.ContainerStatuses {
			out[p.Metadata.Name+"/"+cs.Name] = cs.ContainerID + " restarts=" + strconv.Itoa(cs.RestartCount)
		}
	}
	return out, nil
}

// settledContainers waits until the control plane, every kube-system pod
// and the hello pod are ready, then returns their containers' ids and
// restart counts.
func (c *cluster) settledContainers() map[string]string {
	c.t.Helper()
	var snap map[string]string
	poll(c.t, 3*time.Minute, "all pods ready", func() string {
		if s := c.controlPlaneReady(); s != "" {
			return s
		}
		if s := c.systemReady(); s != "" {
			return s
		}
		p, msg := c.helloPod()
		if msg != "" {
			return msg
		}
		if s := p.ready(); s != "" {
			return s
		}
		var err error
		if snap, err = c.containers(); err != nil {
			return err.Error()
		}
		return ""
	})
	return snap
}

func diff(before, after map[string]string) []string {
	var d []string
	for k, v := range before {
		if after[k] != v {
			d = append(d, fmt.Sprintf("%s: %s → %s", k, v, after[k]))
		}
	}
	for k, v := range after {
		if _, ok := before[k]; !ok {
			d = append(d, fmt.Sprintf("%s: new %s", k, v))
		}
	}
	slices.Sort(d)
	return d
}

// kubeletSynced says what keeps the node's kubelet from having synced every
// pod bound to the node since it started ("" when it has): its pod workers
// count one sync (create, update or sync) per pod at least. A container
// the kubelet means to restart or kill is acted on in that first sync.
func (c *cluster) kubeletSynced() string {
	metrics, err := c.n.Kubectl("get", "--raw", "/api/v1/nodes/"+c.n.Name+"/proxy/metrics")
	if err != nil {
		return err.Error()
	}
	syncs := 0.0
	for _, l := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(l, "kubelet_pod_worker_duration_seconds_count{") {
			f := strings.Fields(l)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			syncs += v
		}
	}
	pods, err := c.n.Kubectl("get", "pods", "-A", "--field-selector", "spec.nodeName="+c.n.Name, "-o", "name")
	if err != nil {
		return err.Error()
	}
	if n := len(strings.Fields(pods)); syncs < float64(n) {
		return fmt.Sprintf("the kubelet synced pods %v times since it started, %d pods on the node", syncs, n)
	}
	return ""
}

// component finds the node's process of `kubeforge component NAME`.
func (c *cluster) component(name string) []testbed.Process {
	var out []testbed.Process
	for _, p := range c.n.Processes() {
		if hasWords(p.Cmdline, "component", name) && c.n.InNetNS(p.PID) {
			out = append(out, p)
		}
	}
	return out
}

func hasWords(args []string, words ...string) bool {
	for i := 0; i+len(words) <= len(args); i++ {
		if slices.Equal(args[i:i+len(words)], words) {
			return true
		}
	}
	return false
}

// kill sends SIGKILL to a process of the node and waits until it is gone.
func (c *cluster) kill(p testbed.Process) {
	c.t.Helper()
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil {
		c.t.Fatalf("kill %v: %v", p, err)
	}
	poll(c.t, 2*time.Minute, fmt.Sprintf("pid %d gone", p.PID), func() string {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID))
		if err != nil {
			return ""
		}
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && i+2 < len(b) && b[i+2] == 'Z' {
			return "" // exited; its parent has not reaped it yet
		}
		return "still running"
	})
}

// fileTree lists the files below dir in the node with size and mtime.
func (c *cluster) fileTree(dir string) map[string]string {
	out := map[string]string{}
	root := c.n.Path(dir)
	filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			out[strings.TrimPrefix(p, root)] = fmt.Sprintf("%d %s", info.Size(), info.ModTime().Format(time.RFC3339Nano))
		}
		return nil
	})
	return out
}

func (c *cluster) exists(p string) bool {
	_, err := os.Lstat(c.n.Path(p))
	return err == nil
}

// run runs a command in the node and fails the test when it fails.
func (c *cluster) run(name string, args ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := c.n.Run(ctx, name, args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

func processes(ps []testbed.Process) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return strings.Join(s, "\n  ")
}

func itoa(i int) string { return strconv.Itoa(i) }

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// containerProcesses maps the pids of the containers' main processes (the
// children of the node's runtime shims) to their command lines.
func (c *cluster) containerProcesses() map[int]string {
	procs := c.n.Processes()
	shims := map[int]bool{}
	for _, p := range procs {
		if hasWords(p.Cmdline, "-namespace", "k8s.io") && slices.Contains(p.Cmdline, "-id") {
			shims[p.PID] = true
		}
	}
	out := map[int]string{}
	for _, p := range procs {
		if shims[parent(p.PID)] {
			out[p.PID] = strings.Join(p.Cmdline, " ")
		}
	}
	return out
}

func parent(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// gone lists the processes of before that no longer run.
func gone(before, after map[int]string) []string {
	var out []string
	for pid, cmd := range before {
		if after[pid] != cmd {
			if len(cmd) > 100 {
				cmd = cmd[:100] + "…"
			}
			out = append(out, fmt.Sprintf("pid %d: %s", pid, cmd))
		}
	}
	slices.Sort(out)
	return out
}
