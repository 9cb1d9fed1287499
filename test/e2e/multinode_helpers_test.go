package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/join/etcdmember"
	"github.com/kubeforge/kubeforge/test/testbed"
)

// Helpers of the multi-node tests (multinode_test.go).

// bench logs a measurement in the form `make bench` parses:
// "BENCH name=value" (seconds unless the name says otherwise).
func bench(t *testing.T, name string, d time.Duration) {
	t.Helper()
	t.Logf("BENCH %s=%.3f", name, d.Seconds())
}

// stepper runs the steps of a test as subtests and stops at the first
// that fails (or after the step $KUBEFORGE_E2E_STOP_AFTER names, for
// debugging); it logs how long each took.
func stepper(t *testing.T) func(name string, f func(t *testing.T)) {
	return func(name string, f func(t *testing.T)) {
		t.Helper()
		start := time.Now()
		ok := t.Run(name, f)
		if os.Getenv("KUBEFORGE_E2E_STOP_AFTER") == name {
			t.Fatalf("KUBEFORGE_E2E_STOP_AFTER=%s: stopping here (with KUBEFORGE_E2E_HOLD the nodes stay up)", name)
		}
		t.Logf("step %s: %v", name, time.Since(start).Round(100*time.Millisecond))
		if !ok {
			t.FailNow()
		}
	}
}

// holdOnFailure keeps a failed test's nodes up for debugging when
// KUBEFORGE_E2E_HOLD names a file: cleanup waits until that file is
// removed. Call it right after testbed.New (cleanups run last first).
func holdOnFailure(t *testing.T, tb *testbed.Testbed) {
	hold := os.Getenv("KUBEFORGE_E2E_HOLD")
	if hold == "" {
		return
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		if err := os.WriteFile(hold, []byte(tb.ID+"\n"), 0o644); err != nil {
			t.Logf("hold: %v", err)
			return
		}
		for _, n := range tb.Nodes() {
			t.Logf("hold: node %s at %s: nsenter --net=/run/netns/%s --mount=/proc/%d/ns/mnt", n.Name, n.IP, n.NetNS, n.HolderPID())
		}
		t.Logf("hold: the testbed stays until %s is removed", hold)
		for exists(hold) {
			time.Sleep(time.Second)
		}
	})
}

// kf runs kubeforge in a node and fails the test when it fails.
func kf(t *testing.T, n *testbed.Node, timeout time.Duration, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := n.Kubeforge(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// killedAt runs kubeforge args in n and kills it (SIGKILL, as a power cut
// or an OOM kill would) as soon as its output holds marker; it returns the
// output until then. The test fails if the command ends first.
func killedAt(t *testing.T, n *testbed.Node, timeout time.Duration, marker string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// nsenter enters the namespaces and execs kubeforge: the process the
	// context kills is kubeforge itself.
	cmd := n.Command(ctx, n.Binary, args...)
	var buf lockedBuffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.After(timeout)
	for !strings.Contains(buf.String(), marker) {
		select {
		case err := <-done:
			t.Fatalf("%s: kubeforge %s ended (%v) before it printed %q:\n%s", n.Name, strings.Join(args, " "), err, marker, buf.String())
		case <-deadline:
			t.Fatalf("%s: kubeforge %s did not print %q within %v:\n%s", n.Name, strings.Join(args, " "), marker, timeout, buf.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	<-done
	t.Logf("%s: kubeforge %s killed once it printed %q:\n%s", n.Name, strings.Join(args, " "), marker, buf.String())
	return buf.String()
}

// lockedBuffer is a bytes.Buffer that a command writes while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// kubectlOn runs kubectl in n (with n's admin.conf), through the API server
// at server when it is not empty; it fails the test on an error.
func kubectlOn(t *testing.T, n *testbed.Node, server string, args ...string) string {
	t.Helper()
	out, err := kubectlTry(n, server, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// kubectlTry runs kubectl on n, bounded as Node.Kubectl (a minute, or
// the command's own --timeout and 30 s): on a fresh cluster beside another
// test's bed (CI runs two at a time) a first apply, with its discovery, took
// over 30 s once.
func kubectlTry(n *testbed.Node, server string, args ...string) (string, error) {
	if server != "" {
		args = append([]string{"--server=" + server}, args...)
	}
	return n.Kubectl(args...)
}

// apiServer is the URL of n's own API server.
func apiServer(n *testbed.Node) string { return "https://" + net.JoinHostPort(n.IP.String(), "6443") }

// joinCommands finds the join commands `kubeforge init` (or `token create
// --print-join-command`) printed: the worker's and, with --upload-certs,
// the control plane's. Each is returned as kubeforge's arguments.
func joinCommands(t *testing.T, out string) (worker, controlPlane []string) {
	t.Helper()
	// Undo the line continuations ("\" at the end of a line).
	text := regexp.MustCompile(`\\\n\s*`).ReplaceAllString(out, " ")
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "kubeforge join ") {
			continue
		}
		args := strings.Fields(line)[1:]
		if slices.Contains(args, "--control-plane") {
			controlPlane = args
		} else if worker == nil {
			worker = args
		}
	}
	if worker == nil {
		t.Fatalf("no `kubeforge join` command in:\n%s", out)
	}
	return worker, controlPlane
}

// flagValue is the value of --name in args.
func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// apiClient is a client with n's admin.conf, talking to server (the
// kubeconfig's own server when empty). The test process reaches the nodes'
// addresses over the testbed's bridge.
func apiClient(t *testing.T, n *testbed.Node, server string) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags(server, n.Path("/etc/kubernetes/admin.conf"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Timeout = 10 * time.Second
	cfg.QPS, cfg.Burst = 50, 100
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// nodeCondition reports "" when node name is Ready.
func nodeCondition(ctx context.Context, c kubernetes.Interface, name string) string {
	n, err := c.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err.Error()
	}
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			if cond.Status != corev1.ConditionTrue {
				return fmt.Sprintf("node %s Ready=%s: %s", name, cond.Status, cond.Message)
			}
			return ""
		}
	}
	return "node " + name + " has no Ready condition"
}

// readyWatch polls (every 100 ms, in the background) until node name is
// Ready; wait returns how long after start that was first seen.
type readyWatch struct {
	done chan struct{}
	took time.Duration
	last string
}

func watchNodeReady(c kubernetes.Interface, name string, start time.Time, timeout time.Duration) *readyWatch {
	w := &readyWatch{done: make(chan struct{})}
	go func() {
		defer close(w.done)
		ctx, cancel := context.WithDeadline(context.Background(), start.Add(timeout))
		defer cancel()
		for {
			cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
			w.last = nodeCondition(cctx, c, name)
			ccancel()
			if w.last == "" {
				w.took = time.Since(start)
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *readyWatch) wait(t *testing.T, name string) time.Duration {
	t.Helper()
	<-w.done
	if w.took == 0 {
		t.Fatalf("node %s not Ready: %s", name, w.last)
	}
	return w.took
}

// nodesReady reports "" when exactly the named nodes exist and are Ready.
func nodesReady(c kubernetes.Interface, names ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var have []string
	for _, n := range l.Items {
		have = append(have, n.Name)
	}
	slices.Sort(have)
	want := slices.Sorted(slices.Values(names))
	if !slices.Equal(have, want) {
		return fmt.Sprintf("nodes %v, want %v", have, want)
	}
	for _, n := range names {
		if s := nodeCondition(ctx, c, n); s != "" {
			return s
		}
	}
	return ""
}

// podsReady reports "" when every pod matching selector in namespace ns
// (at least min of them) runs and is ready.
func podsReady(c kubernetes.Interface, ns, selector string, min int) ([]corev1.Pod, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err.Error()
	}
	if len(l.Items) < min {
		return nil, fmt.Sprintf("%d pods (%s), want %d", len(l.Items), selector, min)
	}
	for _, p := range l.Items {
		if p.Status.Phase != corev1.PodRunning {
			return nil, fmt.Sprintf("pod %s on %q is %s", p.Name, p.Spec.NodeName, p.Status.Phase)
		}
		for _, cs := range p.Status.ContainerStatuses {
			if !cs.Ready {
				return nil, fmt.Sprintf("pod %s: container %s not ready", p.Name, cs.Name)
			}
		}
	}
	return l.Items, ""
}

// controlPlaneOf reports "" when node's four control-plane mirror pods run
// and are ready.
func controlPlaneOf(c kubernetes.Interface, node string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, comp := range controlPlane {
		p, err := c.CoreV1().Pods(metav1.NamespaceSystem).Get(ctx, comp+"-"+node, metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		if p.Status.Phase != corev1.PodRunning {
			return fmt.Sprintf("%s is %s", p.Name, p.Status.Phase)
		}
		for _, cs := range p.Status.ContainerStatuses {
			if !cs.Ready {
				return fmt.Sprintf("%s not ready", p.Name)
			}
		}
	}
	return ""
}

// filesUnder lists the files, links and directories below dirs in the
// node (the directories themselves not included).
func filesUnder(n *testbed.Node, dirs ...string) []string {
	var out []string
	for _, d := range dirs {
		root := n.Path(d)
		filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
			if err == nil && p != root {
				out = append(out, filepath.Join(d, strings.TrimPrefix(p, root)))
			}
			return nil
		})
	}
	return out
}

// nodeDirs are where a joining node writes.
var nodeDirs = []string{"/etc/kubernetes", "/var/lib/kubelet", "/var/lib/kubeforge", "/var/lib/etcd", "/etc/cni/net.d"}

// etcdClientOf connects to etcd at endpoints with node n's certificates.
func etcdMembers(ctx context.Context, n *testbed.Node, endpoints ...string) ([]etcdmember.Member, error) {
	c, err := etcdmember.Client(config.DefaultPaths().WithRoot(n.Path("/")), endpoints)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return etcdmember.List(ctx, c)
}

// etcdStatus is one member's view of the cluster (asked at its own endpoint).
type etcdStatus struct {
	Endpoint     string
	Leader       uint64
	MemberID     uint64
	AppliedIndex uint64
	IsLearner    bool
	Errors       []string
}

func etcdStatusOf(ctx context.Context, n *testbed.Node, endpoint string) (etcdStatus, error) {
	c, err := etcdmember.Client(config.DefaultPaths().WithRoot(n.Path("/")), []string{endpoint})
	if err != nil {
		return etcdStatus{}, err
	}
	defer c.Close()
	s, err := c.Status(ctx, endpoint)
	if err != nil {
		return etcdStatus{}, fmt.Errorf("etcd at %s: %w", endpoint, err)
	}
	return etcdStatus{Endpoint: endpoint, Leader: s.Leader, MemberID: s.Header.MemberId, AppliedIndex: s.RaftAppliedIndex,
		IsLearner: s.IsLearner, Errors: s.Errors}, nil
}

func etcdEndpoint(n *testbed.Node) string {
	return "https://" + net.JoinHostPort(n.IP.String(), "2379")
}

// votingMembers reports "" when etcd (asked through asker's certificates)
// has exactly the named members, all started voting members, each
// answering at its own endpoint with the same leader.
func votingMembers(asker *testbed.Node, nodes ...*testbed.Node) string {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var eps []string
	var names []string
	for _, n := range nodes {
		eps = append(eps, etcdEndpoint(n))
		names = append(names, n.Name)
	}
	members, err := etcdMembers(ctx, asker, eps...)
	if err != nil {
		return err.Error()
	}
	var have []string
	for _, m := range members {
		if m.Learner {
			return fmt.Sprintf("etcd member %q (%x) is a learner", m.Name, m.ID)
		}
		have = append(have, m.Name)
	}
	slices.Sort(have)
	slices.Sort(names)
	if !slices.Equal(have, names) {
		return fmt.Sprintf("etcd members %q, want %q", have, names)
	}
	var leader uint64
	for _, ep := range eps {
		s, err := etcdStatusOf(ctx, asker, ep)
		if err != nil {
			return err.Error()
		}
		if len(s.Errors) > 0 || s.Leader == 0 {
			return fmt.Sprintf("etcd at %s: leader %x, errors %v", ep, s.Leader, s.Errors)
		}
		if leader != 0 && s.Leader != leader {
			return fmt.Sprintf("etcd members disagree on the leader: %x, %x", leader, s.Leader)
		}
		leader = s.Leader
	}
	return ""
}

// serverTLS checks that the kubelet of n serves (port 10250) a certificate
// that verifies against the cluster CA for n's address: its serving
// certificate came from an approved CSR, not a self-signed one.
func kubeletServingCert(servingCA, clusterCA []byte, n *testbed.Node) (serial string, err error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(servingCA) {
		return "", errors.New("no kubelet serving CA certificate")
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", net.JoinHostPort(n.IP.String(), "10250"),
		&tls.Config{RootCAs: pool, ServerName: n.IP.String()})
	if err != nil {
		return "", fmt.Errorf("kubelet of %s: %w", n.Name, err)
	}
	defer conn.Close()
	leaf := conn.ConnectionState().PeerCertificates[0]
	if leaf.Subject.CommonName != "system:node:"+n.Name {
		return "", fmt.Errorf("kubelet of %s serves a certificate for %q", n.Name, leaf.Subject.CommonName)
	}
	// The cluster CA, which clients trust for the API server, does not
	// vouch for it.
	cluster := x509.NewCertPool()
	cluster.AppendCertsFromPEM(clusterCA)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: cluster}); err == nil {
		return "", fmt.Errorf("kubelet of %s serves a certificate the cluster CA verifies", n.Name)
	}
	return leaf.SerialNumber.String(), nil
}

// csrFor reports whether a PEM certificate request asks for node name's
// identity (CN system:node:NAME).
func csrFor(request []byte, name string) bool {
	b, _ := pem.Decode(request)
	if b == nil {
		return false
	}
	req, err := x509.ParseCertificateRequest(b.Bytes)
	return err == nil && req.Subject.CommonName == "system:node:"+name
}

// phaseSeconds finds "(1.23s)" / "(0.123s)" at the end of the first output
// line containing what.
func phaseSeconds(out, what string) (time.Duration, bool) {
	re := regexp.MustCompile(`\((\d+(?:\.\d+)?)s\)\s*$`)
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, what) {
			if m := re.FindStringSubmatch(line); m != nil {
				f, _ := strconv.ParseFloat(m[1], 64)
				return time.Duration(f * float64(time.Second)), true
			}
		}
	}
	return 0, false
}

// nodeClient is a client with the kubelet client certificate of node n
// (what its kubelet got by TLS bootstrap), talking to server.
func nodeClient(t *testing.T, n *testbed.Node, server string, caPEM []byte) kubernetes.Interface {
	t.Helper()
	// kubelet-client-current.pem links to a path in the node: relative as
	// kubeforge makes it, absolute once the kubelet rotated it.
	certFile := "/var/lib/kubelet/pki/kubelet-client-current.pem"
	if target, err := os.Readlink(n.Path(certFile)); err == nil {
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(certFile), target)
		}
		certFile = target
	}
	certFile = n.Path(certFile)
	cfg := &rest.Config{Host: server, Timeout: 10 * time.Second,
		TLSClientConfig: rest.TLSClientConfig{CertFile: certFile, KeyFile: certFile, CAData: caPEM}}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// createServingCSR posts, as node (with its credentials in c), a kubelet
// serving certificate request for ips, the way a kubelet does; it returns
// the CSR's name.
func createServingCSR(ctx context.Context, c kubernetes.Interface, node string, dns []string, ips ...net.IP) (string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}}, DNSNames: dns, IPAddresses: ips}, key)
	if err != nil {
		return "", err
	}
	csr := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-serving-" + node + "-"},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: certificatesv1.KubeletServingSignerName,
			Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth},
		}}
	created, err := c.CertificatesV1().CertificateSigningRequests().Create(ctx, csr, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return created.Name, nil
}

// csrState is "Approved", "Denied", "Failed" or "Pending".
func csrState(ctx context.Context, c kubernetes.Interface, name string) string {
	csr, err := c.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err.Error()
	}
	for _, cond := range csr.Status.Conditions {
		if cond.Status == corev1.ConditionTrue {
			return string(cond.Type)
		}
	}
	return "Pending"
}
