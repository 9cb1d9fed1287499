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

// The addon/cloud-controller phase (dry run): on by default it applies the
// cloud controller's RBAC, cloud config and Deployment, the pool in the
// config; turned off it applies nothing and says so.
func TestAddonCloudControllerPhase(t *testing.T) {
	setup := func(t *testing.T, enabled *bool, pool []string) (*InitData, *bytes.Buffer) {
		cfg := config.New()
		cfg.Init.NodeRegistration.Name = "n1"
		cfg.Init.LocalAPIEndpoint.AdvertiseAddress = "10.201.0.2"
		if err := cfg.Complete(config.HostFacts{Hostname: "n1", CgroupV1: true,
			DefaultAddress: func() (net.IP, error) { return net.ParseIP("10.201.0.2"), nil }}); err != nil {
			t.Fatal(err)
		}
		cfg.Kubeforge.Addons.CloudController.Enabled = enabled
		cfg.Kubeforge.Addons.CloudController.AddressPool = pool
		var buf bytes.Buffer
		n := &Node{Cfg: cfg, Paths: cfg.Paths.WithRoot(t.TempDir()), Out: progress.New(&buf, false), DryRun: true}
		return &InitData{Node: n}, &buf
	}
	d, buf := setup(t, nil, []string{"10.201.0.240/29"})
	if err := runAddonCloudController(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Would apply ServiceAccount kube-system/cloud-controller-manager",
		"Would apply ClusterRole system:kubeforge:cloud-controller-manager",
		"Would apply ConfigMap kube-system/kubeforge-cloud-config",
		"Would apply Deployment kube-system/cloud-controller-manager",
		"10.201.0.240/29", "--cloud-provider=kubeforge", "6443"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("no %q in:\n%s", want, buf)
		}
	}
	off := false
	d, buf = setup(t, &off, nil)
	if err := runAddonCloudController(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "Would apply") || !strings.Contains(buf.String(), "Skipping the cloud controller") {
		t.Errorf("disabled: applied objects or said nothing:\n%s", buf)
	}
}
