package phases

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/progress"
)

// The addon/dashboard phase (dry run): on by default it applies the
// ServiceAccount, Service and Deployment and no RBAC object; turned off in
// the KubeforgeConfiguration it applies nothing.
func TestAddonDashboardPhase(t *testing.T) {
	run := func(t *testing.T, enabled *bool) string {
		cfg := config.New()
		cfg.Init.NodeRegistration.Name = "n1"
		cfg.Init.LocalAPIEndpoint.AdvertiseAddress = "10.201.0.2"
		if err := cfg.Complete(config.HostFacts{Hostname: "n1", CgroupV1: true,
			DefaultAddress: func() (net.IP, error) { return net.ParseIP("10.201.0.2"), nil }}); err != nil {
			t.Fatal(err)
		}
		cfg.Kubeforge.Addons.Dashboard.Enabled = enabled
		var buf bytes.Buffer
		n := &Node{Cfg: cfg, Paths: cfg.Paths.WithRoot(t.TempDir()), Out: progress.New(&buf, false), DryRun: true}
		if err := runAddonDashboard(context.Background(), &InitData{Node: n}); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	off, on := false, true
	for _, enabled := range []*bool{nil, &on} {
		out := run(t, enabled)
		for _, want := range []string{"ServiceAccount kube-system/kubeforge-dashboard", "Service kube-system/kubeforge-dashboard",
			"Deployment kube-system/kubeforge-dashboard"} {
			if !strings.Contains(out, "Would apply "+want) {
				t.Errorf("no %s in:\n%s", want, out)
			}
		}
		if strings.Contains(out, "Role") {
			t.Errorf("the dashboard got an RBAC object:\n%s", out)
		}
	}
	if out := run(t, &off); strings.Contains(out, "Would apply") || !strings.Contains(out, "Skipping the dashboard") {
		t.Errorf("disabled: applied objects or said nothing:\n%s", out)
	}
}
