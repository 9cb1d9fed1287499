package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubeforge/kubeforge/test/testbed"
)

// Leaf lifetime in the test: certificateValidityPeriod plus kubeforge's
// 5-minute backdating, so that with renewAt 2/3 each certificate is renewed
// about 2m20s after it was issued.
const (
	renewalValidity   = 6 * time.Minute
	renewalCAValidity = 24 * time.Hour
	metricsPort       = "10263"
)

// renewedFiles are the node's certificates the test expects renewed: every
// leaf, every kubeconfig kubeforge made, and the kubelet's own client
// certificate (rotated by the kubelet through a CSR).
var renewedFiles = map[string]string{
	"apiserver":                "/etc/kubernetes/pki/apiserver.crt",
	"apiserver-kubelet-client": "/etc/kubernetes/pki/apiserver-kubelet-client.crt",
	"front-proxy-client":       "/etc/kubernetes/pki/front-proxy-client.crt",
	"etcd-server":              "/etc/kubernetes/pki/etcd/server.crt",
	"etcd-peer":                "/etc/kubernetes/pki/etcd/peer.crt",
	"etcd-healthcheck-client":  "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
	"apiserver-etcd-client":    "/etc/kubernetes/pki/apiserver-etcd-client.crt",
	"admin.conf":               "/etc/kubernetes/admin.conf",
	"super-admin.conf":         "/etc/kubernetes/super-admin.conf",
	"controller-manager.conf":  "/etc/kubernetes/controller-manager.conf",
	"scheduler.conf":           "/etc/kubernetes/scheduler.conf",
	"kubelet.conf":             "/var/lib/kubelet/pki/kubelet-client-current.pem",
}

// TestCertificateRenewal: a single node whose leaf certificates live six
// minutes (a CA of one day). The node service renews every leaf certificate
// and kubeconfig, the kubelet its client certificate, while a request loop
// against the API sees no failure longer than a second; kubectl logs and
// exec work afterwards; the metrics endpoint, check-expiration, node status
// and a Node event tell about it, including the CA's expiry within a year.
func TestCertificateRenewal(t *testing.T) {
	testbed.RequireHost(t)
	if err := testbed.RequireStaticBusybox(); err != nil {
		t.Fatal(err)
	}
	tb := testbed.New(t)
	n := tb.AddNode("crt1")
	c := &cluster{t: t, n: n}
	metricsURL := "http://" + net.JoinHostPort(n.IP.String(), metricsPort) + "/metrics"
	cfg := strings.Replace(n.InitConfigYAML(), "kind: ClusterConfiguration\n",
		fmt.Sprintf("kind: ClusterConfiguration\ncertificateValidityPeriod: %s\ncaCertificateValidityPeriod: %s\n", renewalValidity, renewalCAValidity), 1)
	cfg += fmt.Sprintf("---\napiVersion: kubeforge.io/v1alpha1\nkind: KubeforgeConfiguration\ncertificateRenewal:\n  metricsBindAddress: %s\n",
		net.JoinHostPort(n.IP.String(), metricsPort))
	initFile := n.WriteConfigFile("init-certs.yaml", cfg)

	step := func(name string, f func(t *testing.T)) {
		start := time.Now()
		ok := t.Run(name, func(t *testing.T) { c.t = t; f(t) })
		c.t = t
		t.Logf("step %s: %v", name, time.Since(start).Round(100*time.Millisecond))
		if !ok {
			t.FailNow()
		}
	}

	first := map[string]*x509.Certificate{}
	step("init", func(t *testing.T) {
		c.kubeforge(3*time.Minute, "init", "--config", initFile, "--advertise-address", n.IP.String(), "--node-name", n.Name, "--single-node")
		poll(t, 90*time.Second, "node Ready and control plane Running", func() string {
			if s := c.nodeReady(time.Time{}); s != "" {
				return s
			}
			return c.controlPlaneReady()
		})
		poll(t, 3*time.Minute, "every kube-system pod Ready", c.systemReady)
		for name, f := range renewedFiles {
			cert, err := nodeCert(n, f)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			first[name] = cert
			if name != "kubelet.conf" {
				if got := cert.NotAfter.Sub(cert.NotBefore); got != renewalValidity+5*time.Minute {
					t.Errorf("%s: lifetime %s, want certificateValidityPeriod %s + 5m backdating", name, got, renewalValidity)
				}
			}
		}
		ca, err := nodeCert(n, "/etc/kubernetes/pki/ca.crt")
		if err != nil || ca.NotAfter.Sub(ca.NotBefore) != renewalCAValidity+5*time.Minute {
			t.Errorf("CA lifetime: %v (%v), want caCertificateValidityPeriod %s + 5m backdating", ca.NotAfter.Sub(ca.NotBefore), err, renewalCAValidity)
		}
	})

	step("workload", func(t *testing.T) {
		tarball := filepath.Join(n.Dir, "busybox.tar")
		if _, err := testbed.WriteBusyboxImage(tarball, busyboxRef); err != nil {
			t.Fatal(err)
		}
		c.kubeforge(2*time.Minute, "images", "import", tarball)
		c.kubectl("apply", "-f", n.WriteConfigFile("hello.yaml", deployment))
		poll(t, 90*time.Second, "hello pod ready", func() string {
			p, msg := c.helloPod()
			if msg != "" {
				return msg
			}
			return p.ready()
		})
	})

	step("renewal", func(t *testing.T) {
		loop := startAPILoop(t, n)
		defer loop.stop()
		deadline := 9 * time.Minute
		took := pollEvery(t, deadline, 2*time.Second, "every certificate and kubeconfig renewed", func() string {
			var pending []string
			for name, f := range renewedFiles {
				cert, err := nodeCert(n, f)
				if err != nil {
					return fmt.Sprintf("%s: %v", name, err)
				}
				if cert.SerialNumber.Cmp(first[name].SerialNumber) == 0 {
					pending = append(pending, name)
				}
			}
			if len(pending) > 0 {
				return "not renewed yet: " + strings.Join(pending, ", ")
			}
			return ""
		})
		t.Logf("everything renewed %v after the first check", took.Round(time.Second))
		// The restarted controller-manager and scheduler are back (3 min:
		// on a loaded CI machine a restart alone has taken a minute).
		poll(t, 3*time.Minute, "control plane Ready after the renewals", c.controlPlaneReady)
		worst, failures, requests := loop.stop()
		t.Logf("API request loop: %d requests, %d failed, longest run of failures %v, slowest answer %v, last error %q",
			requests, failures, worst.Round(10*time.Millisecond), loop.slowest.Round(10*time.Millisecond), loop.lastErr)
		if worst > time.Second {
			t.Errorf("the API was unavailable for %v during renewal, want at most 1s", worst)
		}
		if requests < 100 {
			t.Errorf("only %d API requests in the loop", requests)
		}
		for name := range renewedFiles {
			cert, _ := nodeCert(n, renewedFiles[name])
			if name != "kubelet.conf" && cert != nil && cert.NotAfter.Sub(cert.NotBefore) != renewalValidity+5*time.Minute {
				t.Errorf("%s renewed with lifetime %v, want certificateValidityPeriod %s + 5m", name, cert.NotAfter.Sub(cert.NotBefore), renewalValidity)
			}
		}
	})

	step("logs-exec", func(t *testing.T) {
		// The API server reaches the kubelet with its renewed client
		// certificate.
		poll(t, 30*time.Second, "kubectl logs", func() string {
			out, err := n.Kubectl("logs", "deploy/hello")
			if err != nil {
				return err.Error()
			}
			if !strings.Contains(out, helloLine) {
				return "log: " + out
			}
			return ""
		})
		// The renewal duty goes on renewing (every ~2m20s here) and
		// restarts these two with each new kubeconfig; while the kubelet
		// starts the new pod, its log is "not available" for a moment.
		for _, comp := range []string{"kube-controller-manager", "kube-scheduler"} {
			poll(t, time.Minute, "kubectl logs "+comp, func() string {
				if _, err := n.Kubectl("logs", "-n", "kube-system", comp+"-"+n.Name, "--tail=1"); err != nil {
					return err.Error()
				}
				return ""
			})
		}
		if out := c.kubectl("exec", "deploy/hello", "--", "busybox", "echo", "exec-ok"); strings.TrimSpace(out) != "exec-ok" {
			t.Errorf("kubectl exec: %q", out)
		}
		if s := c.readyz(); s != "" {
			t.Error(s)
		}
	})

	step("visibility", func(t *testing.T) {
		out := c.kubeforge(time.Minute, "certs", "check-expiration")
		for _, want := range []string{"Automatic renewal: on", "apiserver ", "automatic, ", "rotated by the kubelet", "WARNING: the CA ca "} {
			if !strings.Contains(out, want) {
				t.Errorf("check-expiration lacks %q:\n%s", want, out)
			}
		}
		out = c.kubeforge(time.Minute, "node", "status")
		if !strings.Contains(out, "certificate-renewal: warning") || !strings.Contains(out, "the CA expires on") || !strings.Contains(out, "next renewal") {
			t.Errorf("node status lacks the renewal duty's CA warning and next renewal:\n%s", out)
		}
		poll(t, 30*time.Second, "a CertificateAuthorityExpiring event on the Node", func() string {
			out, err := n.Kubectl("get", "events", "-n", "default", "--field-selector", "reason=CertificateAuthorityExpiring,involvedObject.kind=Node", "-o", "name")
			if err != nil {
				return err.Error()
			}
			if strings.TrimSpace(out) == "" {
				return "no event"
			}
			return ""
		})
		// The metrics endpoint, scraped from outside the node: gauges for
		// every certificate; nothing but GET /metrics.
		body, code := httpDo(t, http.MethodGet, metricsURL)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d", metricsURL, code)
		}
		for _, want := range []string{
			`kubeforge_certificate_expiration_seconds{ca="false",name="apiserver"`,
			`kubeforge_certificate_expiration_seconds{ca="true",name="ca"`,
			`kubeforge_certificate_expiration_seconds{ca="false",name="kubelet.conf"`,
			`kubeforge_certificate_renewals_total{name="scheduler.conf"}`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
		for _, bad := range []struct{ method, url string }{
			{http.MethodPost, metricsURL},
			{http.MethodPut, metricsURL},
			{http.MethodGet, strings.TrimSuffix(metricsURL, "metrics")},
			{http.MethodGet, strings.TrimSuffix(metricsURL, "metrics") + "debug/pprof/"},
		} {
			if _, code := httpDo(t, bad.method, bad.url); code != http.StatusMethodNotAllowed && code != http.StatusNotFound {
				t.Errorf("%s %s: %d, want 405 or 404", bad.method, bad.url, code)
			}
		}
	})
}

// nodeCert reads the first certificate of a PEM file of the node, or the
// client certificate embedded in a kubeconfig.
func nodeCert(n *testbed.Node, path string) (*x509.Certificate, error) {
	// kubelet-client-current.pem links to a path in the node: relative as
	// kubeforge makes it, absolute once the kubelet rotated it.
	if target, err := os.Readlink(n.Path(path)); err == nil {
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(path), target)
		}
		path = target
	}
	data, err := n.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if strings.HasSuffix(path, ".conf") {
		kc, err := clientcmd.Load(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		ctx := kc.Contexts[kc.CurrentContext]
		if ctx == nil || kc.AuthInfos[ctx.AuthInfo] == nil {
			return nil, fmt.Errorf("%s: no current user", path)
		}
		data = kc.AuthInfos[ctx.AuthInfo].ClientCertificateData
	}
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, fmt.Errorf("%s: no certificate", path)
		}
		if b.Type == "CERTIFICATE" {
			return x509.ParseCertificate(b.Bytes)
		}
	}
}

func httpDo(t *testing.T, method, url string) (string, int) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	cl := &http.Client{Timeout: 10 * time.Second}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode
}

// apiLoop sends an authenticated request to the node's API server every
// 100 ms, each on a new TLS connection (so that every handshake meets the
// current serving certificate), with the client certificate admin.conf
// holds at that moment, and measures the longest run of failures: from the
// start of the first failed request to the end of the next successful one.
// A request without an answer in 5 s is a failure; a slower answer that
// comes is not (on a CI machine at load 50 a TLS handshake alone can take
// over a second), and is reported as the slowest answer.
type apiLoop struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once1  sync.Once

	mu       sync.Mutex
	worst    time.Duration
	slowest  time.Duration
	failures int
	requests int
	lastErr  string
}

func startAPILoop(t *testing.T, n *testbed.Node) *apiLoop {
	ctx, cancel := context.WithCancel(context.Background())
	l := &apiLoop{cancel: cancel}
	url := "https://" + net.JoinHostPort(n.IP.String(), "6443") + "/api/v1/namespaces/default"
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		var failingSince time.Time
		for ctx.Err() == nil {
			began := time.Now()
			err := l.once(ctx, n, url)
			end := time.Now()
			l.mu.Lock()
			l.requests++
			if err != nil && ctx.Err() == nil {
				l.failures++
				l.lastErr = err.Error()
				if failingSince.IsZero() {
					failingSince = began
				}
				t.Logf("API request failed: %v", err)
			} else if err == nil {
				if !failingSince.IsZero() {
					l.worst = max(l.worst, end.Sub(failingSince))
					failingSince = time.Time{}
				}
				l.slowest = max(l.slowest, end.Sub(began))
			}
			l.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
		if !failingSince.IsZero() {
			l.mu.Lock()
			l.worst = max(l.worst, time.Since(failingSince))
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *apiLoop) once(ctx context.Context, n *testbed.Node, url string) error {
	data, err := n.ReadFile("/etc/kubernetes/admin.conf")
	if err != nil {
		return err
	}
	kc, err := clientcmd.Load(data)
	if err != nil {
		return err
	}
	cur := kc.Contexts[kc.CurrentContext]
	auth, cluster := kc.AuthInfos[cur.AuthInfo], kc.Clusters[cur.Cluster]
	pair, err := tls.X509KeyPair(auth.ClientCertificateData, auth.ClientKeyData)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cluster.CertificateAuthorityData)
	tr := &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}}
	defer tr.CloseIdleConnections()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

func (l *apiLoop) stop() (worst time.Duration, failures, requests int) {
	l.once1.Do(func() { l.cancel(); l.wg.Wait() })
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.worst, l.failures, l.requests
}
