package certrenew

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/components/node"
	"github.com/kubeforge/kubeforge/components/node/duty"
	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/pki"
)

type bed struct {
	p        config.Paths
	now      time.Time
	client   *fake.Clientset
	r        *Renewer
	kubelets int // RestartKubelet calls
}

const leafValidity = 10 * time.Minute

// newBed makes a control-plane node's PKI (leaves valid leafValidity, CAs
// caValidity), static pod manifests, and a Renewer on a fake clock and a
// fake API holding a ClusterConfiguration with clusterValidity.
func newBed(t *testing.T, caValidity time.Duration, clusterValidity string) *bed {
	t.Helper()
	b := &bed{p: config.DefaultPaths().WithRoot(t.TempDir()), now: time.Now().UTC().Truncate(time.Second)}
	spec := pki.Spec{
		Paths: b.p, NodeName: "n1", AdvertiseAddress: net.ParseIP("10.201.0.2"), ServiceSubnet: "10.96.0.0/12",
		DNSDomain: "cluster.local", Algorithm: pki.AlgorithmECDSAP256,
		CAValidity: caValidity, Validity: leafValidity,
		Now: func() time.Time { return b.now },
	}
	if _, err := pki.EnsureAll(spec); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.EnsureAllKubeconfigs(spec); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(b.p.Host(b.p.ManifestsDir), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		pod := corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Name: c, Namespace: "kube-system"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: c, Image: "kubeforge.local/kubeforge:test"}}}}
		data, _ := yaml.Marshal(&pod)
		if err := os.WriteFile(b.p.Host(b.p.Manifest(c)), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kubeadm-config", Namespace: "kube-system"},
		Data: map[string]string{"ClusterConfiguration": "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n" + clusterValidity}}
	b.client = fake.NewClientset(cm)
	b.r = New(Options{Paths: b.p, Now: func() time.Time { return b.now }, Client: b.client, NodeName: "n1",
		Log:            slog.New(slog.NewTextHandler(io.Discard, nil)),
		RestartKubelet: func() error { b.kubelets++; return nil }})
	return b
}

func (b *bed) annotation(t *testing.T, component string) string {
	t.Helper()
	data, err := os.ReadFile(b.p.Host(b.p.Manifest(component)))
	if err != nil {
		t.Fatal(err)
	}
	var pod corev1.Pod
	if err := yaml.Unmarshal(data, &pod); err != nil {
		t.Fatal(err)
	}
	return pod.Annotations[RestartAnnotation]
}

func TestReconcileRenewsWhenDue(t *testing.T) {
	b := newBed(t, 10*365*24*time.Hour, "certificateValidityPeriod: 2h\n")
	ctx := context.Background()
	const share = 2.0 / 3
	issued := b.now

	rep := b.r.Reconcile(ctx, share)
	if len(rep.Renewed) != 0 || len(rep.Failed) != 0 || len(rep.CAWarnings) != 0 || len(rep.Restarted) != 0 {
		t.Fatalf("fresh PKI: %+v, want nothing to do", rep)
	}
	// Lifetime: backdate + validity; the renewal point is 2/3 into it.
	want := issued.Add(-pki.CertificateBackdate).Add((pki.CertificateBackdate + leafValidity) * 2 / 3)
	if d := rep.Next.Sub(want); d < -time.Second || d > time.Second {
		t.Errorf("next renewal %s, want %s", rep.Next, want)
	}

	b.now = want.Add(time.Second)
	rep = b.r.Reconcile(ctx, share)
	if len(rep.Failed) != 0 {
		t.Fatalf("failed: %v", rep.Failed)
	}
	slices.Sort(rep.Renewed)
	all := slices.Clone(pki.RenewNames())
	slices.Sort(all)
	if !slices.Equal(rep.Renewed, all) {
		t.Errorf("renewed %v, want %v", rep.Renewed, all)
	}
	// The cluster's certificateValidityPeriod (2h) is honoured.
	rows, _ := pki.CheckExpiration(b.p, b.now)
	for _, r := range rows {
		if r.CertificateAuthority {
			continue
		}
		if got := r.ExpirationDate.Sub(b.now); got != 2*time.Hour {
			t.Errorf("%s: valid for %s after renewal, want 2h (certificateValidityPeriod)", r.Name, got)
		}
	}
	slices.Sort(rep.Restarted)
	if !slices.Equal(rep.Restarted, []string{"kube-controller-manager", "kube-scheduler", "kubelet"}) || b.kubelets != 1 {
		t.Errorf("restarted %v (kubelet restarts %d), want controller-manager, scheduler, and the kubelet (its kubelet.conf embeds the certificate)", rep.Restarted, b.kubelets)
	}
	for _, c := range []string{"kube-controller-manager", "kube-scheduler"} {
		conf := strings.TrimPrefix(c, "kube-") + ".conf"
		serial, err := kubeconfigSerial(b.p, conf)
		if err != nil || b.annotation(t, c) != serial {
			t.Errorf("%s: annotation %q, want the serial of %s's new certificate %q (%v)", c, b.annotation(t, c), conf, serial, err)
		}
	}
	if b.annotation(t, "kube-apiserver") != "" {
		t.Error("kube-apiserver's manifest was changed: it reloads its certificates itself")
	}

	// Again at the same time: nothing to do, no file touched.
	before, _ := os.Stat(b.p.Host(b.p.Manifest("kube-scheduler")))
	rep = b.r.Reconcile(ctx, share)
	after, _ := os.Stat(b.p.Host(b.p.Manifest("kube-scheduler")))
	if len(rep.Renewed)+len(rep.Restarted)+len(rep.Failed) != 0 || !before.ModTime().Equal(after.ModTime()) {
		t.Errorf("second run: %+v, want nothing done", rep)
	}
	if evs, _ := b.client.CoreV1().Events("default").List(ctx, metav1.ListOptions{}); len(evs.Items) != 0 {
		t.Errorf("events posted with nothing wrong: %v", evs.Items)
	}
}

func TestReconcileWarnsWhenItCannotRenew(t *testing.T) {
	// The CA expires within a year; the cluster CA's key is gone (external CA).
	b := newBed(t, 300*24*time.Hour, "")
	ctx := context.Background()
	if err := os.Remove(b.p.Host(pki.KeyPath(b.p, "ca"))); err != nil {
		t.Fatal(err)
	}
	b.now = b.now.Add(leafValidity - time.Minute)
	rep := b.r.Reconcile(ctx, 2.0/3)
	for _, n := range []string{"apiserver", "apiserver-kubelet-client", "admin.conf", "scheduler.conf"} {
		if !strings.Contains(rep.Failed[n], "external") {
			t.Errorf("%s: %q, want a warning naming the external CA", n, rep.Failed[n])
		}
	}
	if !slices.Contains(rep.Renewed, "etcd-server") || !slices.Contains(rep.Renewed, "front-proxy-client") {
		t.Errorf("renewed %v: the certificates of the other CAs must still be renewed", rep.Renewed)
	}
	// Without the cluster's validity, a renewal keeps the lifetime.
	c, err := pki.LoadCert(b.p, "etcd/server")
	if err != nil || c.NotAfter.Sub(b.now) != leafValidity {
		t.Errorf("etcd-server renewed for %s, want its former validity %s", c.NotAfter.Sub(b.now), leafValidity)
	}
	for _, ca := range []string{"ca", "etcd-ca", "front-proxy-ca"} {
		if !strings.Contains(rep.CAWarnings[ca], "never renewed automatically") {
			t.Errorf("CA %s: %q, want a warning one year before it expires", ca, rep.CAWarnings[ca])
		}
	}
	evs, err := b.client.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]int{}
	for _, e := range evs.Items {
		if e.InvolvedObject.Kind != "Node" || e.InvolvedObject.Name != "n1" || e.Type != corev1.EventTypeWarning {
			t.Errorf("event %+v: want a Warning on Node n1", e)
		}
		reasons[e.Reason]++
	}
	if reasons[ReasonRenewalFailed] < 4 || reasons[ReasonCAExpiring] < 3 {
		t.Errorf("events by reason %v", reasons)
	}
	// The same warnings are not posted again within the interval.
	b.r.Reconcile(ctx, 2.0/3)
	evs2, _ := b.client.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
	if len(evs2.Items) != len(evs.Items) {
		t.Errorf("%d events after a second run, want still %d", len(evs2.Items), len(evs.Items))
	}
	// Health: a warning.
	got := runDuty(t, func(ctx context.Context, h *duty.Health) error {
		rep.report(h, "127.0.0.1:10263")
		<-ctx.Done()
		return nil
	})
	if got.Status != node.DutyWarning || !strings.Contains(got.Message, "apiserver") || !strings.Contains(got.Message, "127.0.0.1:10263/metrics") {
		t.Errorf("health %+v", got)
	}
}

// TestRunRenewsWhenTheMetricsPortIsTaken: a metrics address that cannot be
// bound (another process has the port) must not stop the renewals; the
// duty warns, naming the setting, and renews what is due.
func TestRunRenewsWhenTheMetricsPortIsTaken(t *testing.T) {
	b := newBed(t, 10*365*24*time.Hour, "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := os.MkdirAll(b.p.Host(b.p.StateDir), 0o700); err != nil {
		t.Fatal(err)
	}
	kf := "apiVersion: kubeforge.io/v1alpha1\nkind: KubeforgeConfiguration\ncertificateRenewal:\n  metricsBindAddress: " + ln.Addr().String() + "\n"
	if err := os.WriteFile(b.p.Host(b.p.KubeforgeConfigFile()), []byte(kf), 0o600); err != nil {
		t.Fatal(err)
	}
	before, err := pki.LoadCert(b.p, "apiserver")
	if err != nil {
		t.Fatal(err)
	}
	b.now = b.now.Add(leafValidity - time.Minute) // every leaf is due
	got := runDuty(t, b.r.Run)
	if got.Status != node.DutyWarning || !strings.Contains(got.Message, "metricsBindAddress") {
		t.Errorf("health %+v, want a warning naming certificateRenewal.metricsBindAddress", got)
	}
	after, err := pki.LoadCert(b.p, "apiserver")
	if err != nil || !after.NotAfter.After(before.NotAfter) {
		t.Errorf("apiserver certificate not renewed while the metrics port was taken: %v → %v (%v)", before.NotAfter, after.NotAfter, err)
	}
}

func TestRunDisabled(t *testing.T) {
	for _, tc := range []struct {
		name, file   string
		controlPlane bool
		want         string
	}{
		{name: "worker", want: "not a control-plane node"},
		{name: "off", controlPlane: true, file: "certificateRenewal:\n  enabled: false\n", want: "turned off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p config.Paths
			if tc.controlPlane {
				p = newBed(t, 10*365*24*time.Hour, "").p
			} else {
				p = config.DefaultPaths().WithRoot(t.TempDir())
			}
			if tc.file != "" {
				if err := os.MkdirAll(p.Host(p.StateDir), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p.Host(p.KubeforgeConfigFile()), []byte("apiVersion: kubeforge.io/v1alpha1\nkind: KubeforgeConfiguration\n"+tc.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			s := runDuty(t, New(Options{Paths: p}).Run)
			if s.Status != node.DutyDisabled || !strings.Contains(s.Message, tc.want) {
				t.Errorf("health %+v, want disabled: %s", s, tc.want)
			}
		})
	}
}

func TestMetricsEndpoint(t *testing.T) {
	b := newBed(t, 10*365*24*time.Hour, "")
	m := newMetrics(b.p, func() time.Time { return b.now }, 2.0/3)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()

	resp, err := http.Get(srv.URL + MetricsPath)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", MetricsPath, resp.Status)
	}
	for _, want := range []string{
		ExpirySecondsMetric + `{ca="false",name="apiserver",path="/etc/kubernetes/pki/apiserver.crt",renewal="automatic"} 600`,
		ExpirySecondsMetric + `{ca="true",name="ca",`,
		ExpirySecondsMetric + `{ca="false",name="admin.conf",`,
		RenewalSecondsMetric + `{name="apiserver",path="/etc/kubernetes/pki/apiserver.crt"} 300`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s:\n%s", want, body)
		}
	}
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodPost, MetricsPath, http.StatusMethodNotAllowed},
		{http.MethodPut, MetricsPath, http.StatusMethodNotAllowed},
		{http.MethodDelete, MetricsPath, http.StatusMethodNotAllowed},
		{http.MethodGet, "/", http.StatusNotFound},
		{http.MethodGet, "/debug/pprof/", http.StatusNotFound},
		{http.MethodGet, MetricsPath + "/x", http.StatusNotFound},
		{http.MethodHead, MetricsPath, http.StatusOK},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader("x"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
		}
	}

	// serve: a bind address in use is an error naming the setting.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := m.serve(ln.Addr().String(), slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil || !strings.Contains(err.Error(), "metricsBindAddress") {
		t.Errorf("serve on a used port: %v", err)
	}
}

// runDuty runs run as a duty and returns the first state it reports
// besides "starting"; the duty is stopped before runDuty returns.
func runDuty(t *testing.T, run func(context.Context, *duty.Health) error) node.DutyState {
	t.Helper()
	got := make(chan node.DutyState, 10)
	m := duty.NewManager(duty.Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Publish: func(s node.DutyState) {
		if s.Status != node.DutyStarting {
			select {
			case got <- s:
			default:
			}
		}
	}}, duty.Duty{Name: Name, Run: run})
	m.Start(context.Background())
	defer m.Stop()
	select {
	case s := <-got:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("the duty reported nothing in 10s")
	}
	return node.DutyState{}
}
