package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/test/testbed"
)

// hpaObjects are the autoscaling test's workload: busybox httpd serving a
// CGI script that burns a little CPU per request (each pod limited to
// 200m, so the load stays bounded), a Service in front of it, and a
// HorizontalPodAutoscaler (1-3 replicas at 50% of a 20m request) whose
// scale-down stabilization window is 10 s instead of 5 minutes.
var hpaObjects = `apiVersion: v1
kind: ConfigMap
metadata: {name: burn, namespace: default}
data:
  burn: |
    #!/bin/sh
    echo "Content-Type: text/plain"
    echo
    i=0; while [ $i -lt 5000 ]; do i=$((i+1)); done
    echo burned $i
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: burn, namespace: default}
spec:
  replicas: 1
  selector:
    matchLabels: {app: burn}
  template:
    metadata:
      labels: {app: burn}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: ` + busyboxRef + `
        imagePullPolicy: Never
        command: ["busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
        ports: [{containerPort: 8080}]
        resources:
          requests: {cpu: 20m}
          limits: {cpu: 200m}
        volumeMounts: [{name: cgi, mountPath: /www/cgi-bin}]
      volumes:
      - name: cgi
        configMap: {name: burn, defaultMode: 0755}
---
apiVersion: v1
kind: Service
metadata: {name: burn, namespace: default}
spec:
  selector: {app: burn}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: burn, namespace: default}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: burn}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource:
      name: cpu
      target: {type: Utilization, averageUtilization: 50}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 10
      policies: [{type: Percent, value: 100, periodSeconds: 5}]
`

// loadPod requests the CGI script in a loop for at most 3 minutes (the
// test deletes it as soon as the Deployment has scaled up).
var loadPod = `apiVersion: v1
kind: Pod
metadata: {name: load, namespace: default}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 0
  containers:
  - name: load
    image: ` + busyboxRef + `
    imagePullPolicy: Never
    command: ["busybox", "timeout", "180", "busybox", "sh", "-c",
      "while true; do busybox wget -q -O /dev/null http://burn.default.svc.cluster.local/cgi-bin/burn; done"]
`

// TestMetrics checks the metrics-server addon on a single node: `kubectl
// top` answers within a minute of init, over verified TLS both ways (the
// APIService has a caBundle, metrics-server a kubelet CA and no
// --kubelet-insecure-tls), metrics-server refuses to scrape kubelets whose
// certificate its CA did not sign, and a HorizontalPodAutoscaler scales a
// Deployment up under load from a pod and back down once the load stops.
func TestMetrics(t *testing.T) {
	testbed.RequireHost(t)
	if err := testbed.RequireStaticBusybox(); err != nil {
		t.Fatal(err)
	}
	tb := testbed.New(t)
	n := tb.AddNode("metrics1")
	c := &cluster{t: t, n: n}
	step := func(name string, f func(t *testing.T)) {
		start := time.Now()
		ok := t.Run(name, func(t *testing.T) { c.t = t; f(t) })
		c.t = t
		t.Logf("step %s: %v", name, time.Since(start).Round(100*time.Millisecond))
		if !ok {
			t.FailNow()
		}
	}

	var initDone time.Time
	cfg := n.InitConfigFile()
	step("init", func(t *testing.T) {
		out := c.kubeforge(3*time.Minute, "init", "--config", cfg, "--advertise-address", n.IP.String(), "--node-name", n.Name, "--single-node")
		initDone = time.Now()
		if !strings.Contains(out, "metrics-server") {
			t.Errorf("init did not report the metrics-server addon:\n%s", out)
		}
	})

	step("top", func(t *testing.T) {
		defer func() {
			if t.Failed() {
				for _, prev := range []string{"--previous=false", "--previous=true"} {
					out, err := n.Kubectl("logs", "-n", "kube-system", "-l", "k8s-app=metrics-server", "--tail=40", prev)
					t.Logf("metrics-server log (%s): %v\n%s", prev, err, out)
				}
				out, _ := n.Kubectl("get", "apiservice", "v1beta1.metrics.k8s.io", "-o", "yaml")
				t.Logf("APIService:\n%s", out)
			}
		}()
		// The target is a minute from the end of init; the polls allow
		// more so that an overloaded machine (whose every pod starts late)
		// reports how long it took instead of only that it took too long.
		poll(t, 3*time.Minute, "kubectl top nodes", func() string {
			out, err := n.Kubectl("top", "nodes", "--no-headers")
			if err != nil {
				return err.Error()
			}
			if !strings.HasPrefix(strings.TrimSpace(out), n.Name+" ") {
				return "top nodes: " + out
			}
			return ""
		})
		nodes := time.Since(initDone)
		t.Logf("BENCH metrics.top_nodes_s=%.1f (kubectl top nodes answered after init)", nodes.Seconds())
		poll(t, 3*time.Minute, "kubectl top pods -A", func() string {
			out, err := n.Kubectl("top", "pods", "-A", "--no-headers")
			if err != nil {
				return err.Error()
			}
			for _, want := range []string{"kube-apiserver-" + n.Name, "etcd-" + n.Name, "metrics-server-"} {
				if !strings.Contains(out, want) {
					return "top pods lacks " + want + ": " + out
				}
			}
			return ""
		})
		pods := time.Since(initDone)
		t.Logf("BENCH metrics.top_pods_s=%.1f (kubectl top pods -A answered after init)", pods.Seconds())
		if pods > time.Minute {
			if load := loadAverage(); load > 4*float64(runtime.NumCPU()) {
				t.Logf("kubectl top answered %v after init, over the minute, on an overloaded machine (load average %.1f on %d CPUs): not counted as a failure",
					pods.Round(time.Second), load, runtime.NumCPU())
			} else {
				t.Errorf("kubectl top answered %v after init, want within a minute (load average %.1f)", pods.Round(time.Second), load)
			}
		}
	})

	step("ready soon after start", func(t *testing.T) {
		// metrics-server is Ready once it holds two scrapes; kubeforge's
		// patch takes the second a second after the first instead of a
		// whole resolution (10 s) later, so Ready comes well within 10 s
		// of the container's start. Both times are in whole seconds.
		out, err := n.Kubectl("get", "pods", "-n", "kube-system", "-l", "k8s-app=metrics-server", "-o", "json")
		if err != nil {
			t.Fatalf("get metrics-server's pod: %v\n%s", err, out)
		}
		var pods struct {
			Items []struct {
				Status struct {
					Conditions []struct {
						Type               string    `json:"type"`
						Status             string    `json:"status"`
						LastTransitionTime time.Time `json:"lastTransitionTime"`
					} `json:"conditions"`
					ContainerStatuses []struct {
						RestartCount int `json:"restartCount"`
						State        struct {
							Running *struct {
								StartedAt time.Time `json:"startedAt"`
							} `json:"running"`
						} `json:"state"`
					} `json:"containerStatuses"`
				} `json:"status"`
			} `json:"items"`
		}
		if err := json.Unmarshal([]byte(out), &pods); err != nil || len(pods.Items) != 1 || len(pods.Items[0].Status.ContainerStatuses) != 1 {
			t.Fatalf("metrics-server's pod: %v\n%s", err, out)
		}
		st := pods.Items[0].Status
		c := st.ContainerStatuses[0]
		if c.RestartCount > 0 || c.State.Running == nil {
			t.Skipf("metrics-server's container restarted (%d) or is not running: its start says nothing", c.RestartCount)
		}
		for _, cond := range st.Conditions {
			if cond.Type != "Ready" || cond.Status != "True" {
				continue
			}
			took := cond.LastTransitionTime.Sub(c.State.Running.StartedAt)
			t.Logf("BENCH metrics.ready_after_start_s=%.0f (metrics-server's container start to its pod Ready)", took.Seconds())
			if took >= 9*time.Second {
				if load := loadAverage(); load > 4*float64(runtime.NumCPU()) {
					t.Logf("metrics-server Ready %v after its start, on an overloaded machine (load average %.1f): not counted as a failure", took, load)
				} else {
					t.Errorf("metrics-server Ready %v after its container started, want under 9 s (the quick second scrape; without it, 10 s at least)", took)
				}
			}
			return
		}
		t.Errorf("metrics-server's pod is not Ready:\n%s", out)
	})

	step("memory", func(t *testing.T) {
		// What the addon adds: metrics-server's memory a minute after it
		// started (its pod starts a few seconds after init).
		time.Sleep(time.Until(initDone.Add(70 * time.Second)))
		var found bool
		for _, p := range n.Processes() {
			if !hasWords(p.Cmdline, "component", "metrics-server") {
				continue
			}
			found = true
			rss, pss := smapsRollup(t, p.PID)
			t.Logf("BENCH metrics-server.rss_mib=%.1f metrics-server.pss_mib=%.1f (pid %d, 70 s after init)", rss, pss, p.PID)
		}
		if !found {
			t.Error("no metrics-server process on the node")
		}
	})

	step("idempotent", func(t *testing.T) {
		out := c.kubeforge(2*time.Minute, "init", "phase", "addon", "metrics-server", "--config", cfg)
		if regexp.MustCompile(`(?m)\b(Created|Updated) `).MatchString(out) {
			t.Errorf("a second addon/metrics-server changed objects:\n%s", out)
		}
		for _, want := range []string{"Using the existing metrics-server serving certificate",
			"Using existing APIService v1beta1.metrics.k8s.io", "metrics-server is up to date: nothing changed"} {
			if !strings.Contains(out, want) {
				t.Errorf("a second addon/metrics-server does not say %q:\n%s", want, out)
			}
		}
	})

	step("verified-tls", func(t *testing.T) {
		var svc struct {
			Spec struct {
				CABundle              []byte `json:"caBundle"`
				InsecureSkipTLSVerify bool   `json:"insecureSkipTLSVerify"`
			} `json:"spec"`
		}
		if err := c.getJSON(&svc, "apiservice", "v1beta1.metrics.k8s.io"); err != nil {
			t.Fatal(err)
		}
		ca, err := n.ReadFile("/etc/kubernetes/pki/ca.crt")
		if err != nil {
			t.Fatal(err)
		}
		if svc.Spec.InsecureSkipTLSVerify || strings.TrimSpace(string(svc.Spec.CABundle)) != strings.TrimSpace(string(ca)) {
			t.Errorf("APIService: insecureSkipTLSVerify %v, caBundle is the cluster CA: %v", svc.Spec.InsecureSkipTLSVerify,
				strings.TrimSpace(string(svc.Spec.CABundle)) == strings.TrimSpace(string(ca)))
		}
		args := c.kubectl("get", "deploy", "-n", "kube-system", "metrics-server", "-o", "jsonpath={.spec.template.spec.containers[0].args}")
		if strings.Contains(args, "insecure") || !strings.Contains(args, "--kubelet-certificate-authority=") {
			t.Errorf("metrics-server args %s: want --kubelet-certificate-authority and nothing insecure", args)
		}
		// An identity without the metrics reader role is refused.
		if out, err := n.Kubectl("--as=system:serviceaccount:default:default", "get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes"); err == nil {
			t.Errorf("the default service account read node metrics:\n%s", out)
		} else if !strings.Contains(err.Error(), "forbidden") {
			t.Errorf("want forbidden, got %v", err)
		}
	})

	step("refuses-unknown-kubelet-ca", func(t *testing.T) {
		// With the cluster CA in place of the kubelet serving CA, the
		// kubelet's certificate no longer verifies: metrics-server must
		// refuse to scrape it.
		good := c.kubectl("get", "configmap", "-n", "kube-system", "kubelet-serving-ca", "-o", "jsonpath={.data.ca\\.crt}")
		wrong, err := n.ReadFile("/etc/kubernetes/pki/ca.crt")
		if err != nil {
			t.Fatal(err)
		}
		patch := func(pem string) {
			b, _ := json.Marshal(map[string]any{"data": map[string]string{"ca.crt": pem}})
			c.kubectl("patch", "configmap", "-n", "kube-system", "kubelet-serving-ca", "--type=merge", "-p", string(b))
			c.kubectl("rollout", "restart", "-n", "kube-system", "deploy/metrics-server")
		}
		patch(string(wrong))
		// The new pod never becomes ready (it has nothing it may scrape),
		// so the old one stays: read every metrics-server pod's log.
		poll(t, 3*time.Minute, "metrics-server refusing the kubelet's certificate", func() string {
			out, _ := n.Kubectl("logs", "-n", "kube-system", "-l", "k8s-app=metrics-server", "--tail=100")
			if !strings.Contains(out, "x509: certificate signed by unknown authority") {
				return "no x509 refusal in the log yet"
			}
			return ""
		})
		patch(good)
		c.kubectl("rollout", "status", "-n", "kube-system", "deploy/metrics-server", "--timeout=90s")
		poll(t, 3*time.Minute, "kubectl top nodes again", func() string {
			if _, err := n.Kubectl("top", "nodes"); err != nil {
				return err.Error()
			}
			return ""
		})
	})

	step("hpa", func(t *testing.T) {
		tarball := filepath.Join(n.Dir, "busybox.tar")
		if _, err := testbed.WriteBusyboxImage(tarball, busyboxRef); err != nil {
			t.Fatal(err)
		}
		c.kubeforge(2*time.Minute, "images", "import", tarball)
		c.kubectl("apply", "-f", n.WriteConfigFile("hpa.yaml", hpaObjects))
		c.kubectl("rollout", "status", "deploy/burn", "--timeout=90s")
		replicas := func() int {
			out, err := n.Kubectl("get", "deploy", "burn", "-o", "jsonpath={.status.readyReplicas}")
			if err != nil {
				return -1
			}
			r, _ := strconv.Atoi(strings.TrimSpace(out))
			return r
		}
		hpa := func() string {
			out, _ := n.Kubectl("get", "hpa", "burn", "--no-headers")
			return strings.TrimSpace(out)
		}
		poll(t, 90*time.Second, "the HPA reading the Deployment's CPU", func() string {
			out, err := n.Kubectl("get", "hpa", "burn", "-o", "jsonpath={.status.currentMetrics[0].resource.current.averageUtilization}")
			if err != nil || strings.TrimSpace(out) == "" {
				return "no CPU utilization yet: " + hpa()
			}
			return ""
		})
		c.kubectl("apply", "-f", n.WriteConfigFile("load.yaml", loadPod))
		loadStart := time.Now()
		poll(t, 150*time.Second, "the HPA scaling burn up under load", func() string {
			if r := replicas(); r < 2 {
				return "ready replicas " + strconv.Itoa(r) + "; hpa " + hpa()
			}
			return ""
		})
		t.Logf("scaled up to %d ready replicas %v after the load started (hpa: %s)", replicas(), time.Since(loadStart).Round(time.Second), hpa())
		c.kubectl("delete", "pod", "load", "--grace-period=0", "--wait=true")
		loadStop := time.Now()
		poll(t, 150*time.Second, "the HPA scaling burn back down after the load", func() string {
			out, err := n.Kubectl("get", "deploy", "burn", "-o", "jsonpath={.spec.replicas}")
			if err != nil {
				return err.Error()
			}
			if strings.TrimSpace(out) != "1" {
				return "replicas " + out + "; hpa " + hpa()
			}
			return ""
		})
		t.Logf("scaled back down to 1 replica %v after the load stopped", time.Since(loadStop).Round(time.Second))
	})
}

// smapsRollup reads a process's RSS and PSS (MiB).
func smapsRollup(t *testing.T, pid int) (rss, pss float64) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kib, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "Rss:":
			rss = kib / 1024
		case "Pss:":
			pss = kib / 1024
		}
	}
	return rss, pss
}

// loadAverage is the machine's 1-minute load average (0 if unknown).
func loadAverage() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
