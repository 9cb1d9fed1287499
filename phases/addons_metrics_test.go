package phases

import (
	"bytes"
	"context"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/progress"
	"github.com/kubeforge/kubeforge/pki"
)

// The addon/metrics-server phase (dry run): on by default it applies the
// Secret, the kubelet CA, RBAC, Service, Deployment and APIService; turned
// off in the KubeforgeConfiguration it applies nothing; without the
// cluster CA's key (external CA) it is skipped with a warning.
func TestAddonMetricsServerPhase(t *testing.T) {
	setup := func(t *testing.T, enabled *bool, withCAKey bool) (*InitData, *bytes.Buffer) {
		cfg := config.New()
		cfg.Init.NodeRegistration.Name = "n1"
		cfg.Init.LocalAPIEndpoint.AdvertiseAddress = "10.201.0.2"
		if err := cfg.Complete(config.HostFacts{Hostname: "n1", CgroupV1: true,
			DefaultAddress: func() (net.IP, error) { return net.ParseIP("10.201.0.2"), nil }}); err != nil {
			t.Fatal(err)
		}
		cfg.Kubeforge.Addons.MetricsServer.Enabled = enabled
		var buf bytes.Buffer
		n := &Node{Cfg: cfg, Paths: cfg.Paths.WithRoot(t.TempDir()), Out: progress.New(&buf, false), DryRun: true}
		d := &InitData{Node: n}
		spec := d.Node.PKISpec()
		spec.Algorithm = pki.AlgorithmECDSAP256
		for _, name := range []string{pki.CAName, pki.KubeletServingCA} {
			if _, err := pki.Ensure(spec, name); err != nil {
				t.Fatal(err)
			}
		}
		if !withCAKey {
			if err := os.Remove(n.Paths.Host(pki.KeyPath(n.Paths, "ca"))); err != nil {
				t.Fatal(err)
			}
		}
		return d, &buf
	}
	off, on := false, true
	for _, c := range []struct {
		name    string
		enabled *bool
	}{{"default", nil}, {"enabled", &on}} {
		d, buf := setup(t, c.enabled, true)
		if err := runAddonMetricsServer(context.Background(), d); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for _, want := range []string{"Secret kube-system/metrics-server-tls", "ConfigMap kube-system/kubelet-serving-ca",
			"Deployment kube-system/metrics-server", "Service kube-system/metrics-server", "APIService v1beta1.metrics.k8s.io",
			"ClusterRoleBinding system:metrics-server"} {
			if !strings.Contains(buf.String(), "Would apply "+want) {
				t.Errorf("%s: no %s in:\n%s", c.name, want, buf)
			}
		}
		if !strings.Contains(buf.String(), "tls.key: <redacted>") {
			t.Errorf("%s: the dry run printed the serving key", c.name)
		}
	}
	d, buf := setup(t, &off, true)
	if err := runAddonMetricsServer(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "Would apply") || !strings.Contains(buf.String(), "Skipping metrics-server") {
		t.Errorf("disabled: applied objects or said nothing:\n%s", buf)
	}
	// External CA: init goes on without it and says why.
	d, buf = setup(t, nil, false)
	if err := runAddonMetricsServer(context.Background(), d); err != nil {
		t.Errorf("no CA key: %v", err)
	}
	if out := buf.String(); strings.Contains(out, "Would apply") || !strings.Contains(out, "Skipping metrics-server") ||
		!strings.Contains(out, "ca.key is absent (external CA)") || !strings.Contains(out, "addons.metricsServer.enabled: false") {
		t.Errorf("no CA key: applied objects or did not say why:\n%s", out)
	}
}
