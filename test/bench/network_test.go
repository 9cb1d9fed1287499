package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubeforge/kubeforge/test/netbench"
	"github.com/kubeforge/kubeforge/test/testbed"
)

var (
	netbenchOnce   sync.Once
	netbenchClient []byte
	netbenchErr    error
)

// netbenchImage writes the netbench image (static busybox and the netbench
// client, built once per bench) as an image tarball in the bed's
// directory.
func netbenchImage(tb *testbed.Testbed) (string, error) {
	if err := testbed.RequireStaticBusybox(); err != nil {
		return "", err
	}
	netbenchOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kubeforge-bench-")
		if err != nil {
			netbenchErr = err
			return
		}
		defer os.RemoveAll(dir)
		p, err := netbench.BuildClient(dir)
		if err != nil {
			netbenchErr = err
			return
		}
		netbenchClient, netbenchErr = os.ReadFile(p)
	})
	if netbenchErr != nil {
		return "", netbenchErr
	}
	client := filepath.Join(tb.Dir, "nbclient")
	tarball := filepath.Join(tb.Dir, "netbench.tar")
	if err := os.WriteFile(client, netbenchClient, 0o755); err != nil {
		return "", err
	}
	if _, err := netbench.WriteImage(tarball, netbench.ImageRef, client); err != nil {
		return "", err
	}
	return tarball, nil
}

// networkBench measures Service request latency from pods (the helpers of
// test/netbench): a server pod (busybox httpd) behind a ClusterIP Service,
// and a client pod on each of nodes, which sends BENCH_REQUESTS requests,
// each on a new connection, to the ClusterIP. With cleanup, the objects
// are deleted afterwards (and their pods waited for).
func (b *bench) networkBench(t *testing.T, cluster string, tb *testbed.Testbed, cp1 *testbed.Node, nodes []*testbed.Node, cleanup bool) {
	problem := func(format string, args ...any) {
		msg := "network (" + cluster + "): " + fmt.Sprintf(format, args...)
		b.mu.Lock()
		b.network().Errors = append(b.network().Errors, msg)
		b.mu.Unlock()
		b.errorf(t, "%s", msg)
	}
	tarball, err := netbenchImage(tb)
	if err != nil {
		problem("%v", err)
		return
	}
	for _, n := range nodes {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		out, err := n.Kubeforge(ctx, "images", "import", tarball)
		cancel()
		if err != nil {
			problem("images import on %s: %v\n%s", n.Name, err, out)
			return
		}
	}
	cs, _, err := NewClient(mustRead(t, func() ([]byte, error) { return cp1.ReadFile("/etc/kubernetes/admin.conf") }), "")
	if err != nil {
		problem("%v", err)
		return
	}
	const name = "bench-web"
	if out, err := cp1.Kubectl("apply", "-f", cp1.WriteConfigFile("bench-web.yaml", netbench.ServerYAML(name, 1))); err != nil {
		problem("apply the server: %v\n%s", err, out)
		return
	}
	var clientNames []string
	for _, n := range nodes {
		pod := "bench-client-" + n.Name
		clientNames = append(clientNames, pod)
		if out, err := cp1.Kubectl("apply", "-f", cp1.WriteConfigFile(pod+".yaml", netbench.ClientPodYAML(pod, n.Name))); err != nil {
			problem("apply client %s: %v\n%s", pod, err, out)
			return
		}
	}
	if cleanup {
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			zero := int64(0)
			_ = cs.AppsV1().Deployments("default").Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
			_ = cs.CoreV1().Services("default").Delete(ctx, name, metav1.DeleteOptions{})
			for _, c := range clientNames {
				_ = cs.CoreV1().Pods("default").Delete(ctx, c, metav1.DeleteOptions{GracePeriodSeconds: &zero})
			}
			for ctx.Err() == nil {
				l, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
				if err == nil && len(l.Items) == 0 {
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
			problem("the bench's pods are not gone 2 minutes after their deletion")
		}()
	}
	// Wait for the server and the clients.
	var clusterIP, serverNode string
	deadline := time.Now().Add(2 * time.Minute)
	for {
		state := ""
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		svc, serr := cs.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
		cancel()
		switch {
		case err != nil:
			state = err.Error()
		case serr != nil:
			state = serr.Error()
		default:
			clusterIP = svc.Spec.ClusterIP
			ready := map[string]bool{}
			for i := range pods.Items {
				p := &pods.Items[i]
				if podReady(p) {
					ready[p.Name] = true
					if p.Labels["app"] == name {
						serverNode = p.Spec.NodeName
					}
				}
			}
			if serverNode == "" {
				state = "the server pod is not Ready"
			}
			for _, c := range clientNames {
				if !ready[c] {
					state = c + " is not Ready"
				}
			}
			if state == "" && !endpointsReady(cs, name) {
				state = "the Service has no ready endpoint"
			}
		}
		if state == "" {
			break
		}
		if time.Now().After(deadline) {
			problem("pods not ready after 2 minutes: %s", state)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	url := "http://" + clusterIP + "/"
	t.Logf("%s: server on %s, Service %s; %d requests per client", cluster, serverNode, url, b.cfg.requests)
	for i, n := range nodes {
		lr := LatencyResult{Cluster: cluster, ClusterIP: clusterIP, ServerNode: serverNode, Node: n.Name, Path: "cross node",
			Mode: "new connection per request", Requests: b.cfg.requests}
		if n.Name == serverNode {
			lr.Path = "same node"
		}
		exec := func(count int) (string, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			return cp1.KubectlContext(ctx, append([]string{"exec", clientNames[i], "--"}, netbench.HTTPCommand(url, count)...)...)
		}
		if _, err := exec(20); err != nil { // warm-up
			t.Logf("warm-up from %s: %v", n.Name, err)
		}
		out, err := exec(b.cfg.requests)
		r, perr := netbench.ParseHTTP(out)
		b.mu.Lock()
		b.samples.network().Latencies[cluster+": "+n.Name+" ("+lr.Path+")"] = durationsUS(r.Latencies)
		b.mu.Unlock()
		if perr != nil {
			lr.Error = fmt.Sprintf("%v; %v", err, perr)
			problem("client on %s: %s", n.Name, lr.Error)
		} else {
			lr.Failures = len(r.Failures)
			var msv []float64
			for _, d := range r.Latencies {
				msv = append(msv, float64(d.Microseconds())/1000)
			}
			if len(msv) > 0 {
				lr.P50ms, lr.P90ms, lr.P99ms, lr.Maxms = round3(Percentile(msv, 50)), round3(Percentile(msv, 90)), round3(Percentile(msv, 99)), round3(Percentile(msv, 100))
			}
			if err != nil {
				lr.Error = short(err.Error())
			}
			t.Logf("%s: from %s (%s): p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms, %d failures",
				cluster, n.Name, lr.Path, lr.P50ms, lr.P90ms, lr.P99ms, lr.Maxms, lr.Failures)
			if lr.Failures > 0 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				diag, derr := cp1.KubectlContext(ctx, "exec", clientNames[i], "--", "busybox", "sh", "-c", "busybox ip route")
				cancel()
				conf, _ := n.ReadFile("/etc/cni/net.d/10-kubeforge.conflist")
				t.Logf("client %s's routes:\n%s %v\n%s's CNI configuration:\n%s", clientNames[i], diag, derr, n.Name, conf)
				problem("%d of %d requests from a pod on %s failed (%s); the pod's routes: %s", lr.Failures, b.cfg.requests, n.Name,
					strings.Join(r.Failures[:min(2, len(r.Failures))], "; "), strings.TrimSpace(strings.ReplaceAll(diag, "\n", "; ")))
			}
		}
		b.mu.Lock()
		b.network().Clients = append(b.network().Clients, lr)
		b.mu.Unlock()
	}
}

// network returns the results' network part (b.mu held).
func (b *bench) network() *NetworkResult {
	if b.res.Network == nil {
		b.res.Network = &NetworkResult{}
	}
	return b.res.Network
}

func (s *Samples) network() *NetworkSamples {
	if s.Network == nil {
		s.Network = &NetworkSamples{Latencies: map[string][]int64{}}
	}
	return s.Network
}

func durationsUS(ds []time.Duration) []int64 {
	out := []int64{}
	for _, d := range ds {
		out = append(out, d.Microseconds())
	}
	return out
}

// endpointsReady reports whether the Service has a ready endpoint.
func endpointsReady(cs *kubernetes.Clientset, name string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := cs.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + name})
	if err != nil {
		return false
	}
	for _, s := range l.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && *e.Conditions.Ready {
				return true
			}
		}
	}
	return false
}
