package bench

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/test/netbench"
	"github.com/kubeforge/kubeforge/test/testbed"
)

// logLagSamples are the `kubeforge logs` searches of one run, a second
// apart, starting when the printer is Running.
const logLagSamples = 8

// logLag measures how far the log store is behind a pod on node n that
// prints a numbered line every 0.2 s: at each search, the time it was
// asked minus the print time of the newest line it found (none yet counts
// from the pod's Running). The pod is removed afterwards.
func (b *bench) logLag(t *testing.T, tb *testbed.Testbed, n *testbed.Node) *LogLagResult {
	r := &LogLagResult{}
	problem := func(format string, args ...any) {
		r.Errors = append(r.Errors, fmt.Sprintf(format, args...))
		b.errorf(t, "logging: %s", fmt.Sprintf(format, args...))
	}
	tarball, err := netbenchImage(tb)
	if err != nil {
		problem("%v", err)
		return r
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := n.Kubeforge(ctx, "images", "import", tarball); err != nil {
		problem("images import: %v\n%s", err, out)
		return r
	}
	mark := fmt.Sprintf("BENCHLOG%d", time.Now().UnixNano()%1_000_000)
	pod := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: bench-printer, namespace: default}
spec:
  nodeName: %s
  terminationGracePeriodSeconds: 0
  restartPolicy: Never
  containers:
  - name: printer
    image: %s
    imagePullPolicy: Never
    command: ["busybox", "sh", "-c", "i=0; while [ $i -lt 300 ]; do i=$((i+1)); echo %s-$i; busybox sleep 0.2; done; busybox sleep 3600"]
`, n.Name, netbench.ImageRef, mark)
	if out, err := n.Kubectl("apply", "-f", n.WriteConfigFile("bench-printer.yaml", pod)); err != nil {
		problem("apply the printer: %v\n%s", err, out)
		return r
	}
	defer func() {
		if out, err := n.Kubectl("delete", "pod", "bench-printer", "--grace-period=0", "--wait=true"); err != nil {
			problem("delete the printer: %v\n%s", err, out)
		}
	}()
	var running time.Time
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if out, _ := n.Kubectl("get", "pod", "bench-printer", "-o", "jsonpath={.status.phase}"); strings.TrimSpace(out) == "Running" {
			running = time.Now()
			break
		}
	}
	if running.IsZero() {
		problem("the printer pod is not Running after 2 minutes")
		return r
	}
	line := regexp.MustCompile(`^(\S+) \S+/default/bench-printer/printer: ` + mark + `-\d+$`)
	for range logLagSamples {
		time.Sleep(time.Second)
		asked := time.Now()
		sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := n.Kubeforge(sctx, "logs", mark, "--namespace", "default")
		scancel()
		if err != nil {
			problem("kubeforge logs: %v\n%s", err, out)
			return r
		}
		newest := running
		for _, l := range strings.Split(out, "\n") {
			m := line.FindStringSubmatch(strings.TrimSpace(l))
			if m == nil {
				continue
			}
			if at, err := time.Parse(time.RFC3339Nano, m[1]); err == nil && at.After(newest) {
				newest = at
			}
		}
		// A line printed while the search ran is newer than the question:
		// no lag (0).
		r.Samples = append(r.Samples, round3(max(0, asked.Sub(newest).Seconds())))
	}
	r.MaxSeconds = slices.Max(r.Samples)
	t.Logf("logging: the store was at most %.2f s behind the printer (samples %v)", r.MaxSeconds, r.Samples)
	return r
}

// logLagFigure is each run's largest lag.
func logLagFigure(runs []SingleRun) Figure {
	var v []float64
	for _, s := range runs {
		if s.LogLag == nil || len(s.LogLag.Samples) < logLagSamples {
			v = append(v, math.NaN())
			continue
		}
		v = append(v, s.LogLag.MaxSeconds)
	}
	return NewFigure("cluster logging (single node, from a pod's line to `kubeforge logs`)", "logging.lag",
		"log store behind a pod printing 5 lines/s (largest of 8 searches)", "s", v, "not measured")
}
