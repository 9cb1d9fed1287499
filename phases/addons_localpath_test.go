package phases

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/progress"
	"github.com/kubeforge/kubeforge/internal/testutil"
)

// The addon/local-path phase (dry run): on by default it applies the
// StorageClass, the RBAC and the DaemonSet with the configured root;
// turned off it applies nothing.
func TestAddonLocalPathPhase(t *testing.T) {
	setup := func(t *testing.T, enabled *bool, root string) (*InitData, *bytes.Buffer) {
		cfg := config.New()
		cfg.Init.NodeRegistration.Name = "n1"
		cfg.Init.LocalAPIEndpoint.AdvertiseAddress = "10.201.0.2"
		cfg.Kubeforge.Addons.LocalPath.Enabled = enabled
		cfg.Kubeforge.Addons.LocalPath.Root = root
		if err := cfg.Complete(config.HostFacts{Hostname: "n1", CgroupV1: true,
			DefaultAddress: func() (net.IP, error) { return net.ParseIP("10.201.0.2"), nil }}); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		n := &Node{Cfg: cfg, Paths: cfg.Paths.WithRoot(t.TempDir()), Out: progress.New(&buf, false), DryRun: true}
		return &InitData{Node: n}, &buf
	}
	off := false
	for _, c := range []struct{ root, want string }{{"", config.DefaultLocalPathRoot}, {"/srv/volumes", "/srv/volumes"}} {
		d, buf := setup(t, nil, c.root)
		if err := runAddonLocalPath(context.Background(), d); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"Would apply StorageClass local-path", "Would apply DaemonSet kube-system/local-path-provisioner",
			"Would apply ClusterRole system:kubeforge:local-path-provisioner", "Would apply ServiceAccount kube-system/local-path-provisioner",
			"--root=" + c.want, "path: " + c.want} {
			if !strings.Contains(buf.String(), want) {
				t.Errorf("root %q: no %q in:\n%s", c.root, want, buf)
			}
		}
	}
	d, buf := setup(t, &off, "")
	if err := runAddonLocalPath(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "Would apply") || !strings.Contains(buf.String(), "Skipping local-path storage") {
		t.Errorf("disabled: applied objects or said nothing:\n%s", buf)
	}
}

// Reset names the volume directories of the configured root before it
// deletes them with their data.
func TestResetListsVolumes(t *testing.T) {
	for _, c := range []struct{ config, root string }{
		{"", config.DefaultLocalPathRoot},
		{"apiVersion: kubeforge.io/v1alpha1\nkind: KubeforgeConfiguration\naddons:\n  localPath:\n    root: /srv/volumes\n", "/srv/volumes"},
	} {
		d, out := resetData(t)
		if c.config != "" {
			testutil.MkFiles(t, d.Paths.Root, d.Cfg.Paths.KubeforgeConfigFile())
			if err := os.WriteFile(d.Paths.Host(d.Cfg.Paths.KubeforgeConfigFile()), []byte(c.config), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if got := d.localPathRoot(); got != c.root {
			t.Errorf("root %q, want %q", got, c.root)
		}
		if !strings.Contains(strings.Join(d.resetPaths(), " "), c.root) {
			t.Errorf("reset does not remove %s: %v", c.root, d.resetPaths())
		}
		d.listVolumes("reset")
		if strings.Contains(out.String(), "Deleting") {
			t.Errorf("no root: %q", out)
		}
		testutil.MkFiles(t, d.Paths.Root, filepath.Join(c.root, "pvc-1_default_data-web-0", "f"), filepath.Join(c.root, "pvc-2_ns_c", "g"))
		out.Reset()
		d.listVolumes("reset")
		want := "Deleting 2 local-path volume(s) and their data: " + c.root + "/pvc-1_default_data-web-0, " + c.root + "/pvc-2_ns_c"
		if !strings.Contains(out.String(), want) {
			t.Errorf("listing %q, want %q", out, want)
		}
		d.DryRun = true
		out.Reset()
		d.listVolumes("reset")
		if !strings.Contains(out.String(), "Would delete 2 local-path volume(s)") {
			t.Errorf("dry run listing %q", out)
		}
	}
}
