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

// The addon/network-policy phase (dry run): on by default it applies the
// ServiceAccount, its RBAC and the DaemonSet; a second run does the same;
// turned off in the KubeforgeConfiguration it applies nothing and says so.
func TestAddonNetworkPolicyPhase(t *testing.T) {
	setup := func(t *testing.T, enabled *bool) (*InitData, *bytes.Buffer) {
		cfg := config.New()
		cfg.Init.NodeRegistration.Name = "n1"
		cfg.Init.LocalAPIEndpoint.AdvertiseAddress = "10.201.0.2"
		if err := cfg.Complete(config.HostFacts{Hostname: "n1", CgroupV1: true,
			DefaultAddress: func() (net.IP, error) { return net.ParseIP("10.201.0.2"), nil }}); err != nil {
			t.Fatal(err)
		}
		cfg.Kubeforge.Addons.NetworkPolicy.Enabled = enabled
		var buf bytes.Buffer
		n := &Node{Cfg: cfg, Paths: cfg.Paths.WithRoot(t.TempDir()), Out: progress.New(&buf, false), DryRun: true}
		return &InitData{Node: n}, &buf
	}
	off, on := false, true
	for _, c := range []struct {
		name    string
		enabled *bool
	}{{"default", nil}, {"enabled", &on}} {
		d, buf := setup(t, c.enabled)
		for run := 1; run <= 2; run++ {
			buf.Reset()
			if err := runAddonNetworkPolicy(context.Background(), d); err != nil {
				t.Fatalf("%s, run %d: %v", c.name, run, err)
			}
			for _, want := range []string{"ServiceAccount kube-system/kube-network-policies", "ClusterRole kube-network-policies",
				"ClusterRoleBinding kube-network-policies", "DaemonSet kube-system/kube-network-policies"} {
				if !strings.Contains(buf.String(), "Would apply "+want) {
					t.Errorf("%s, run %d: no %s in:\n%s", c.name, run, want, buf)
				}
			}
		}
	}
	d, buf := setup(t, &off)
	if err := runAddonNetworkPolicy(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "Would apply") || !strings.Contains(buf.String(), "addons.networkPolicy.enabled is false") {
		t.Errorf("disabled addon: %s", buf)
	}
}
