package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubeforge/kubeforge/test/testbed"
)

// joinArgs is what `kubeforge join` needs, from init's join-command event.
type joinArgs struct{ endpoint, token, hash string }

func parseJoinCommand(evs []TimedEvent) (joinArgs, error) {
	for _, e := range evs {
		if e.Action != "join-command" {
			continue
		}
		f := strings.Fields(e.Message)
		var j joinArgs
		for i := 0; i < len(f); i++ {
			switch {
			case f[i] == "join" && i+1 < len(f):
				j.endpoint = f[i+1]
			case f[i] == "--token" && i+1 < len(f):
				j.token = f[i+1]
			case f[i] == "--discovery-token-ca-cert-hash" && i+1 < len(f):
				j.hash = f[i+1]
			}
		}
		if j.endpoint == "" || j.token == "" || j.hash == "" {
			return j, fmt.Errorf("cannot read the join command %q", e.Message)
		}
		return j, nil
	}
	return joinArgs{}, fmt.Errorf("init printed no join-command event")
}

// joinBench builds a cluster of one control-plane node, two workers and a
// second control-plane node, timing each join, and measures Service
// latency on it.
func (b *bench) joinBench(t *testing.T) {
	jr := &JoinResult{Nodes: map[string]string{}}
	js := &JoinSamples{Joins: map[string][]TimedEvent{}, Outputs: map[string]string{}, Watches: map[string]WatchResult{}}
	defer func() {
		b.mu.Lock()
		b.res.Join, b.samples.Join = jr, js
		b.mu.Unlock()
	}()
	problem := func(format string, args ...any) {
		msg := "join: " + fmt.Sprintf(format, args...)
		jr.Errors = append(jr.Errors, msg)
		b.errorf(t, "%s", msg)
	}

	jr.Load = b.loadSample(t, "the join cluster")
	tb := testbed.New(t, testbed.WithBinary(b.cfg.binary))
	cp1 := tb.AddNode("cp1")
	w1 := tb.AddNode("w1")
	w2 := tb.AddNode("w2")
	cp2 := tb.AddNode("cp2")
	for _, n := range tb.Nodes() {
		jr.Nodes[n.Name] = n.IP.String()
		n.JoinConfigFile()
	}
	admin := func() ([]byte, error) { return cp1.ReadFile("/etc/kubernetes/admin.conf") }

	key := make([]byte, 32)
	rand.Read(key)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// A control-plane endpoint (cp1's address, as a user without a load
	// balancer would give), so that control-plane nodes can join.
	endpoint := net.JoinHostPort(cp1.IP.String(), "6443")
	res := run(ctx, cp1, cp1.Binary, "init", "--config", cp1.InitConfigFile(), "--control-plane-endpoint", endpoint,
		"--upload-certs", "--certificate-key", hex.EncodeToString(key), "-o", "json")
	js.InitEvents = res.Events
	if res.Err != nil {
		problem("init of cp1 failed: %v", res.Err)
		t.Fatal(res.Err)
	}
	jr.InitWall = res.Wall
	initEnd := time.Now()
	ja, err := parseJoinCommand(res.Events)
	if err != nil {
		problem("%v", err)
		t.Fatal(err)
	}

	cs, _, err := NewClient(mustRead(t, admin), "")
	if err != nil {
		t.Fatal(err)
	}
	// "Token already signed": cluster-info carries the token's signature
	// (watched from the end of init, while the first worker joins).
	tokenID, _, _ := strings.Cut(ja.token, ".")
	signed := make(chan struct{})
	go func() {
		defer close(signed)
		deadline := time.Now().Add(2 * time.Minute)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			cm, err := cs.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{})
			cancel()
			if err == nil && cm.Data["jws-kubeconfig-"+tokenID] != "" {
				jr.SignedSeconds = round3(time.Since(initEnd).Seconds())
				return
			}
			if time.Now().After(deadline) {
				problem("cluster-info has no signature for token %s 2 minutes after init (%v)", tokenID, err)
				return
			}
			time.Sleep(b.cfg.interval)
		}
	}()

	// The first worker joins right after init.
	gap := time.Since(initEnd)
	first := b.join(t, tb, cp1, w1, ja, admin, js, "")
	jr.First = &first
	<-signed
	if first.Error != "" {
		problem("first worker join: %s", first.Error)
		t.Fatal(first.Error)
	}
	t.Logf("first worker join (started %v after init): %.2f s, Node Ready %.2f s after join start", gap.Round(time.Millisecond), first.Wall, get(first.Milestones, CheckNodeReady))

	// Worker joins with a signed token, BENCH_RUNS times: join, reset, delete the Node, again.
	for i := 1; i <= b.cfg.runs; i++ {
		if i > 1 {
			rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Minute)
			out, err := w2.Kubeforge(rctx, "reset", "--force")
			rcancel()
			if err != nil {
				problem("reset of w2 before join %d: %v\n%s", i, err, out)
				break
			}
			dctx, dcancel := context.WithTimeout(context.Background(), time.Minute)
			err = cs.CoreV1().Nodes().Delete(dctx, w2.Name, metav1.DeleteOptions{})
			dcancel()
			if err != nil {
				problem("delete node w2: %v", err)
			}
			if err := waitGone(cs, w2.Name, time.Minute); err != nil {
				problem("%v", err)
			}
		}
		time.Sleep(2 * time.Second) // let the cluster settle after the reset
		jw := b.join(t, tb, cp1, w2, ja, admin, js, fmt.Sprintf("#%d", i))
		jr.Workers = append(jr.Workers, jw)
		if jw.Error != "" {
			problem("worker join %d: %s", i, jw.Error)
			break
		}
		t.Logf("worker join %d: %.2f s, Node Ready %.2f s after join start", i, jw.Wall, get(jw.Milestones, CheckNodeReady))
	}

	snap := memory(w1, "worker w1, after the worker joins")
	jr.WorkerMemory = snap.lite()
	t.Logf("worker w1: PSS %.0f MiB, RSS %.0f MiB in %d processes", snap.Total.PSSMiB, snap.Total.RSSMiB, snap.Total.Processes)
	if !b.cfg.skip["network"] {
		t.Run("network", func(t *testing.T) { b.networkBench(t, "join cluster", tb, cp1, []*testbed.Node{w1, w2}, false) })
	}

	// A second control-plane node.
	cpj := b.join(t, tb, cp1, cp2, ja, admin, js, "", "--control-plane", "--certificate-key", hex.EncodeToString(key),
		"--apiserver-advertise-address", cp2.IP.String())
	jr.ControlPlane = &cpj
	if cpj.Error != "" {
		problem("control-plane join: %s", cpj.Error)
		return
	}
	t.Logf("control-plane join: %.2f s, Node Ready %.2f s, its /readyz %.2f s after join start; etcd member add %.3f s",
		cpj.Wall, get(cpj.Milestones, CheckNodeReady), get(cpj.Milestones, "own-readyz"), cpj.MemberAdded)
}

// join runs `kubeforge join` on n and watches (from the bench, through
// cp1's API server) until the node is Ready.
func (b *bench) join(t *testing.T, tb *testbed.Testbed, cp1, n *testbed.Node, ja joinArgs, admin func() ([]byte, error), js *JoinSamples, tag string, extra ...string) JoinRun {
	jr := JoinRun{Node: n.Name + tag, Milestones: map[string]float64{}}
	controlPlane := len(extra) > 0
	// A new Node (the bench deletes it before a node joins again): Ready is
	// enough, its lease comes later (the kubelet's lease controller backs
	// off while the Node does not exist).
	w := &Watcher{Interval: b.cfg.interval, Kubeconfig: admin, Node: n.Name, Start: time.Now()}
	var own *Watcher
	if controlPlane {
		own = &Watcher{Interval: b.cfg.interval, Kubeconfig: admin, Server: "https://" + net.JoinHostPort(n.IP.String(), "6443"),
			Pods: true, ControlPlanes: []string{cp1.Name, n.Name}, Nodes: len(tb.Nodes()), Start: w.Start}
	}
	wait, stop := startWatch(w, 3*time.Minute)
	var waitOwn func() WatchResult
	var stopOwn func()
	if own != nil {
		waitOwn, stopOwn = startWatch(own, 4*time.Minute)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := append([]string{"join", ja.endpoint, "--config", n.JoinConfigFile(), "--token", ja.token,
		"--discovery-token-ca-cert-hash", ja.hash, "-o", "json"}, extra...)
	res := run(ctx, n, n.Binary, args...)
	js.Joins[jr.Node], js.Outputs[jr.Node] = res.Events, res.Output
	if res.Err != nil {
		stop()
		if stopOwn != nil {
			stopOwn()
		}
		jr.Error = res.Err.Error()
		return jr
	}
	jr.Wall = res.Wall
	jr.Reported = finite(eventSeconds(res.Events, "join", "done"))
	jr.Phases = phases(res.Events)
	if controlPlane {
		jr.MemberAdded = eventSeconds(res.Events, "", "member-added")
		if math.IsNaN(jr.MemberAdded) {
			jr.MemberAdded = 0
		}
	}
	offset := res.Start.Sub(w.Start).Seconds()
	wr := wait()
	js.Watches[jr.Node] = wr
	for _, k := range []string{CheckNodeReady, "node-registered"} {
		if v, ok := wr.First[k]; ok {
			jr.Milestones[k] = round3(v - offset)
		}
	}
	if m := w.Missing(); len(m) > 0 {
		jr.Error = "not reached: " + strings.Join(m, "; ")
	}
	if own != nil {
		or := waitOwn()
		js.Watches[jr.Node+"-own"] = or
		if v, ok := or.First[CheckReadyz]; ok {
			jr.Milestones["own-readyz"] = round3(v - offset)
		}
		for _, comp := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
			if v, ok := or.First["pod/"+comp+"-"+n.Name]; ok {
				jr.Milestones["pod/"+comp] = round3(v - offset)
			}
		}
		if v, ok := or.First[CheckAllPodsReady]; ok {
			jr.Milestones["cluster-settled"] = round3(v - offset)
		}
		if m := own.Missing(); len(m) > 0 {
			jr.Error = strings.TrimSpace(jr.Error + " not reached through its own API server: " + strings.Join(m, "; "))
		}
	}
	return jr
}

func waitGone(cs *kubernetes.Clientset, node string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		cancel()
		if err != nil && strings.Contains(err.Error(), "not found") {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("node %s still exists %v after its deletion", node, timeout)
}
