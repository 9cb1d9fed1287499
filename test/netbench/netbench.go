// Package netbench measures a cluster's network from inside its pods: DNS
// resolution and Service request latency. Tests and the bench use it the
// same way:
//
//	client, _ := netbench.BuildClient(dir)                  // static nbclient program
//	digest, _ := netbench.WriteImage(tarball, netbench.ImageRef, client)
//	// kubeforge images import tarball on every node, then apply
//	// netbench.ServerYAML("web", 2) and netbench.ClientPodYAML("probe", "")
//	out, _ := kubectl exec probe -- netbench.HTTPCommand("http://web/", 200)...
//	r, _ := netbench.ParseHTTP(out)
//	fmt.Println(r.BenchLines("service"))                   // BENCH service.latency_p50_ms=…
//
// The image holds Debian's static busybox (httpd for the servers, sh) and
// nbclient (test/netbench/nbclient). Nothing is pulled from a registry.
package netbench

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kubeforge/kubeforge/internal/testutil"
	"github.com/kubeforge/kubeforge/test/testbed"
)

// ImageRef is the name the image is imported under.
const ImageRef = "kftb.local/netbench:e2e"

// ClientPath is where nbclient is in the image.
const ClientPath = "/bin/nbclient"

// ServerPort is the port the servers listen on (the Service's target port).
const ServerPort = 8080

// BuildClient builds nbclient (static, CGO_ENABLED=0) into dir and returns
// its path. It needs the Go toolchain and this module's source.
func BuildClient(dir string) (string, error) {
	out := filepath.Join(dir, "nbclient")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "github.com/kubeforge/kubeforge/test/netbench/nbclient")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Dir = testutil.RepoRoot()
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build nbclient: %v: %s", err, b)
	}
	return out, nil
}

// WriteImage writes an OCI image layout tarball named ref: one layer with
// /bin/busybox (the host's static busybox), /bin/sh, ClientPath (the
// client program) and /tmp. It returns the manifest's digest.
func WriteImage(path, ref, client string) (string, error) {
	nb, err := os.ReadFile(client)
	if err != nil {
		return "", err
	}
	return testbed.WriteImage(path, ref, map[string][]byte{strings.TrimPrefix(ClientPath, "/"): nb})
}

// ServerYAML is a Deployment of replicas HTTP servers (busybox httpd on
// ServerPort, each answering with its pod name) labelled app=name, spread
// over nodes where it can, and a ClusterIP Service name on port 80.
func ServerYAML(name string, replicas int) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s, namespace: default}
spec:
  replicas: %[2]d
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      terminationGracePeriodSeconds: 1
      affinity:
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            podAffinityTerm:
              topologyKey: kubernetes.io/hostname
              labelSelector: {matchLabels: {app: %[1]s}}
      containers:
      - name: httpd
        image: %[3]s
        imagePullPolicy: Never
        command: ["/bin/sh", "-c", "mkdir -p /tmp/www && echo \"$POD_NAME\" > /tmp/www/index.html && exec busybox httpd -f -p %[4]d -h /tmp/www"]
        env:
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        ports: [{containerPort: %[4]d}]
        readinessProbe:
          tcpSocket: {port: %[4]d}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: %[1]s, namespace: default}
spec:
  selector: {app: %[1]s}
  ports: [{port: 80, targetPort: %[4]d}]
`, name, replicas, ImageRef, ServerPort)
}

// ClientPodYAML is a pod that idles so that probes can be exec'ed in it,
// on nodeName when that is set (tolerating every taint, so it may be a
// control-plane node).
func ClientPodYAML(name, nodeName string) string {
	placement := ""
	if nodeName != "" {
		placement = "  nodeName: " + nodeName + "\n  tolerations: [{operator: Exists}]\n"
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: default, labels: {app: netbench-client}}
spec:
  terminationGracePeriodSeconds: 1
%s  containers:
  - name: client
    image: %s
    imagePullPolicy: Never
    command: ["busybox", "sleep", "100000"]
`, name, placement, ImageRef)
}

// HTTPCommand is the command (to exec in a client pod) that sends n
// sequential requests to url, each on a new connection.
func HTTPCommand(url string, n int) []string {
	return []string{ClientPath, "http", "-n", strconv.Itoa(n), url}
}

// LookupCommand resolves name through the pod's resolv.conf.
func LookupCommand(name string) []string { return []string{ClientPath, "lookup", name} }

// QueryCommand sends one raw A query for name to the pod's nameserver.
func QueryCommand(name string) []string { return []string{ClientPath, "query", name} }

// HTTPResult is what `nbclient http` reported.
type HTTPResult struct {
	Latencies []time.Duration // of the successful requests, in order
	Failures  []string        // error of each failed request
	Bodies    map[string]int  // first body line (the server pod's name) → count
}

// ParseHTTP parses `nbclient http` output.
func ParseHTTP(out string) (HTTPResult, error) {
	r := HTTPResult{Bodies: map[string]int{}}
	summary := false
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := Fields(sc.Text())
		switch {
		case strings.HasPrefix(sc.Text(), "req "):
			if e, ok := f["err"]; ok {
				r.Failures = append(r.Failures, e)
				continue
			}
			v, err := strconv.ParseFloat(f["ms"], 64)
			if err != nil {
				return r, fmt.Errorf("bad line %q", sc.Text())
			}
			r.Latencies = append(r.Latencies, time.Duration(v*float64(time.Millisecond)))
			r.Bodies[f["body"]]++
		case strings.HasPrefix(sc.Text(), "summary "):
			summary = true
		}
	}
	if !summary {
		return r, fmt.Errorf("no summary line in nbclient output:\n%s", out)
	}
	return r, nil
}

// Percentile is the p-th percentile (0 < p ≤ 1, nearest rank) of the
// successful requests' latencies.
func (r HTTPResult) Percentile(p float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	s := slices.Clone(r.Latencies)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// BenchLines are the result as the bench's parseable lines:
// "BENCH <prefix>.latency_p50_ms=0.412", p99, and the request counts.
func (r HTTPResult) BenchLines(prefix string) []string {
	msf := func(d time.Duration) string {
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 3, 64)
	}
	return []string{
		fmt.Sprintf("BENCH %s.latency_p50_ms=%s", prefix, msf(r.Percentile(0.50))),
		fmt.Sprintf("BENCH %s.latency_p99_ms=%s", prefix, msf(r.Percentile(0.99))),
		fmt.Sprintf("BENCH %s.requests=%d", prefix, len(r.Latencies)+len(r.Failures)),
		fmt.Sprintf("BENCH %s.failures=%d", prefix, len(r.Failures)),
	}
}

// Fields parses a line of key=value fields (values may be Go-quoted).
func Fields(line string) map[string]string {
	out := map[string]string{}
	for len(line) > 0 {
		line = strings.TrimLeft(line, " ")
		eq := strings.IndexByte(line, '=')
		sp := strings.IndexByte(line, ' ')
		if eq < 0 || (sp >= 0 && sp < eq) {
			if sp < 0 {
				break
			}
			line = line[sp+1:]
			continue
		}
		key, rest := line[:eq], line[eq+1:]
		if strings.HasPrefix(rest, `"`) {
			if q, err := strconv.QuotedPrefix(rest); err == nil {
				out[key], _ = strconv.Unquote(q)
				line = rest[len(q):]
				continue
			}
		}
		val, after, _ := strings.Cut(rest, " ")
		out[key] = val
		line = after
	}
	return out
}
