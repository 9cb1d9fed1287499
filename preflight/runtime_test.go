package preflight

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/internal/cri"
)

func TestContainerRuntimeCheck(t *testing.T) {
	tr, fa := true, false
	good := cri.Info{RuntimeName: "containerd", RuntimeVersion: "1.6.20~ds1", APIVersion: "v1", Ready: true,
		CgroupDriver: cri.CgroupFS, CgroupDriverFrom: "its config", SandboxImage: "registry.k8s.io/pause:3.6", SandboxImagePresent: true,
		RestrictOOMScoreAdj: &tr, CNIBinDirs: []string{"/var/lib/kubeforge/cni-bin"}}
	with := func(f func(*cri.Info)) cri.Info { i := good; f(&i); return i }
	for _, tc := range []struct {
		name       string
		info       cri.Info
		queryErr   error
		canRaise   bool
		wantErrs   []string // substrings, one per error
		wantWarns  []string
		noWarnings bool
	}{
		{name: "good", info: good, noWarnings: true},
		{name: "down", queryErr: errors.New("the container runtime is not reachable at unix:///x.sock"), wantErrs: []string{"start the runtime"}},
		{name: "not v1", info: with(func(i *cri.Info) { i.APIVersion = "v1alpha2" }), wantErrs: []string{"CRI v1"}},
		{name: "too old", info: with(func(i *cri.Info) { i.RuntimeVersion = "1.5.9" }), wantErrs: []string{"too old"}},
		{name: "not ready", info: with(func(i *cri.Info) { i.Ready, i.NotReady = false, "RuntimeNotReady boom" }), wantErrs: []string{"boom"}},
		{name: "systemd driver", info: with(func(i *cri.Info) { i.CgroupDriver = cri.Systemd }), wantErrs: []string{"SystemdCgroup = false"}},
		{name: "driver unknown", info: with(func(i *cri.Info) { i.CgroupDriver = "" }), wantWarns: []string{"does not say which cgroup driver"}},
		{name: "oom restricted off, no capability", info: with(func(i *cri.Info) { i.RestrictOOMScoreAdj = &fa }), wantErrs: []string{"restrict_oom_score_adj = true"}},
		{name: "oom restricted off, capability", info: with(func(i *cri.Info) { i.RestrictOOMScoreAdj = &fa }), canRaise: true, noWarnings: true},
		{name: "sandbox missing", info: with(func(i *cri.Info) { i.SandboxImagePresent = false }), wantWarns: []string{"registry.k8s.io/pause:3.6 is not present"}},
		{name: "sandbox pulled", info: with(func(i *cri.Info) { i.SandboxImagePresent, i.SandboxPulled = true, true }), noWarnings: true},
		{name: "sandbox cannot be pulled", info: with(func(i *cri.Info) { i.SandboxImagePresent, i.SandboxPullError = false, "connection refused" }),
			wantWarns: []string{"registry.k8s.io/pause:3.6 is not present and cannot be pulled (connection refused)"}},
		{name: "containerd 2 sandbox from its config", info: with(func(i *cri.Info) {
			i.RuntimeVersion, i.SandboxImage, i.SandboxImageFrom, i.SandboxImagePresent = "v2.4.2", "r/pause:3.10", "pinned_images.sandbox in its config /etc/c2.toml", false
		}), wantWarns: []string{"r/pause:3.10 is not present (read from pinned_images.sandbox in its config /etc/c2.toml)"}},
		{name: "containerd 2 systemd driver", info: with(func(i *cri.Info) { i.RuntimeVersion, i.CgroupDriver = "v2.4.2", cri.Systemd }), wantErrs: []string{"io.containerd.cri.v1.runtime"}},
		{name: "sandbox unknown", info: with(func(i *cri.Info) { i.SandboxImage = "" }), wantWarns: []string{"does not report its sandbox"}},
		{name: "CNI dir", info: with(func(i *cri.Info) { i.CNIBinDirs = []string{"/opt/cni/bin"} }), wantWarns: []string{"bin_dir to /var/lib/kubeforge/cni-bin"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ContainerRuntimeCheck{Endpoint: "unix:///x.sock", CgroupDriver: cri.CgroupFS, OwnPause: "kubeforge.local/pause:v1",
				CNIBinDir:        "/var/lib/kubeforge/cni-bin",
				Query:            func(context.Context) (cri.Info, error) { return tc.info, tc.queryErr },
				CanRaiseOOMScore: func() bool { return tc.canRaise }}
			if c.Name() != "CRI" {
				t.Errorf("name %q", c.Name())
			}
			warns, errs := c.Check()
			if len(errs) != len(tc.wantErrs) {
				t.Fatalf("errors %v, want %d", errs, len(tc.wantErrs))
			}
			for i, want := range tc.wantErrs {
				if !strings.Contains(errs[i].Error(), want) {
					t.Errorf("error %q lacks %q", errs[i], want)
				}
			}
			if tc.noWarnings && len(warns) > 0 {
				t.Errorf("warnings %v, want none", warns)
			}
			for _, want := range tc.wantWarns {
				found := false
				for _, w := range warns {
					found = found || strings.Contains(w.Error(), want)
				}
				if !found {
					t.Errorf("warnings %v lack %q", warns, want)
				}
			}
		})
	}
}

func TestAtLeast(t *testing.T) {
	for v, want := range map[string]bool{"1.6.20~ds1": true, "v2.1.0": true, "1.5.9": false, "1.7": true, "0.9.0": false, "weird": true} {
		if got := atLeast(v, 1, 6); got != want {
			t.Errorf("atLeast(%q, 1, 6) = %v", v, got)
		}
	}
}
