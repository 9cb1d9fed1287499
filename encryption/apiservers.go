package encryption

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// ConfigInfoMetric is the API server metric whose hash label is the SHA-256
// of the encryption configuration file it runs with (set at start and at
// each successful automatic reload).
const ConfigInfoMetric = "apiserver_encryption_config_controller_last_config_info"

// endpointAnnotation is where a kube-apiserver static pod (kubeadm's and
// kubeforge's) records its advertise address and port.
const endpointAnnotation = "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint"

// APIServer is one control-plane node's API server.
type APIServer struct {
	Node     string
	Endpoint string // host:port
}

// APIServers finds the API server of every control-plane node from the
// mirror pods of their kube-apiserver static pods. A control-plane node
// without one, or one that does not reload its encryption configuration by
// itself, is an error: a rotation must reach every API server.
func APIServers(ctx context.Context, c kubernetes.Interface) ([]APIServer, error) {
	nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "node-role.kubernetes.io/control-plane"})
	if err != nil {
		return nil, fmt.Errorf("list the control-plane nodes: %w", err)
	}
	pods, err := c.CoreV1().Pods(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{LabelSelector: "component=kube-apiserver,tier=control-plane"})
	if err != nil {
		return nil, fmt.Errorf("list the kube-apiserver pods: %w", err)
	}
	byNode := map[string]int{}
	for i, p := range pods.Items {
		byNode[p.Spec.NodeName] = i
	}
	var out []APIServer
	for _, n := range nodes.Items {
		i, ok := byNode[n.Name]
		if !ok {
			return nil, fmt.Errorf("control-plane node %s has no kube-apiserver pod in kube-system: start its node service (or remove the node) before rotating the key", n.Name)
		}
		p := pods.Items[i]
		ep := p.Annotations[endpointAnnotation]
		if ep == "" {
			return nil, fmt.Errorf("kube-system/%s lacks the %s annotation: cannot reach node %s's API server", p.Name, endpointAnnotation, n.Name)
		}
		reload := false
		for _, ctr := range p.Spec.Containers {
			reload = reload || slices.Contains(ctr.Command, "--encryption-provider-config-automatic-reload=true") ||
				slices.Contains(ctr.Args, "--encryption-provider-config-automatic-reload=true")
		}
		if !reload {
			return nil, fmt.Errorf("the API server on node %s (kube-system/%s) runs without --encryption-provider-config-automatic-reload=true, so it would not see a new key without a restart: rewrite its manifest with this kubeforge (`kubeforge init phase control-plane apiserver` on that node) first", n.Name, p.Name)
		}
		out = append(out, APIServer{Node: n.Name, Endpoint: ep})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no control-plane node (label node-role.kubernetes.io/control-plane) found")
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out, nil
}

// LoadedHashes asks each API server's /metrics directly (not through a
// load balancer) for the hash of the encryption configuration it runs with.
// admin is the admin kubeconfig's client config; its CA verifies every API
// server, whose certificate names its advertise address.
type LoadedHashes func(ctx context.Context, s APIServer) (string, error)

// MetricsHashes is the LoadedHashes of real API servers.
func MetricsHashes(admin *rest.Config) LoadedHashes {
	return func(ctx context.Context, s APIServer) (string, error) {
		cfg := rest.CopyConfig(admin)
		cfg.Host = "https://" + s.Endpoint
		cfg.Timeout = 10 * time.Second
		c, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return "", err
		}
		body, err := c.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
		if err != nil {
			return "", fmt.Errorf("GET https://%s/metrics (node %s): %w", s.Endpoint, s.Node, err)
		}
		h := ParseConfigHash(body)
		if h == "" {
			return "", fmt.Errorf("https://%s/metrics (node %s) has no %s: is --encryption-provider-config set?", s.Endpoint, s.Node, ConfigInfoMetric)
		}
		return h, nil
	}
}

// ParseConfigHash finds the hash label of ConfigInfoMetric in a Prometheus
// text exposition ("" when absent).
func ParseConfigHash(metrics []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(metrics))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, ConfigInfoMetric+"{") {
			continue
		}
		labels := line[len(ConfigInfoMetric)+1:]
		end := strings.LastIndex(labels, "}")
		if end < 0 {
			continue
		}
		for _, kv := range strings.Split(labels[:end], ",") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(kv), `hash="`); ok {
				return strings.TrimSuffix(v, `"`)
			}
		}
	}
	return ""
}

// WaitLoaded waits until every API server in servers runs with the
// configuration file data, polling every interval for up to timeout. The
// API server rereads its file once a minute.
func WaitLoaded(ctx context.Context, servers []APIServer, hashes LoadedHashes, data []byte, interval, timeout time.Duration) error {
	want := Hash(data)
	pending := map[string]string{}
	err := wait.PollUntilContextTimeout(ctx, interval, timeout, true, func(ctx context.Context) (bool, error) {
		clear(pending)
		for _, s := range servers {
			got, err := hashes(ctx, s)
			switch {
			case err != nil:
				pending[s.Node] = err.Error()
			case got != want:
				pending[s.Node] = "runs with " + got
			}
		}
		return len(pending) == 0, nil
	})
	if err != nil {
		var lines []string
		for n, why := range pending {
			lines = append(lines, n+": "+why)
		}
		sort.Strings(lines)
		return fmt.Errorf("not every API server loaded the encryption configuration %s within %s (%s): check that the node service runs on those nodes (`kubeforge node status`, duty secrets-encryption-config), then run the command again to continue: %w",
			want, timeout, strings.Join(lines, "; "), err)
	}
	return nil
}
