package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPodNetworkSwitch: the pod-network phase writes the CNI
// configuration (bridge without ipMasq, the pods' MTU for the VXLAN
// overlay, none with host-gw); podNetwork.enabled false and --skip-phases
// pod-network leave /etc/cni/net.d to the user's CNI while the kubelet's
// files are still written; a backend that does not exist is refused naming
// the field.
func TestPodNetworkSwitch(t *testing.T) {
	dir := t.TempDir()
	write := func(name, doc string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("apiVersion: kubeforge.io/v1alpha1\nkind: KubeforgeConfiguration\n"+doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	off := write("off.yaml", "podNetwork:\n  enabled: false\n")
	hostgw := write("hostgw.yaml", "podNetwork:\n  backend: host-gw\n")
	const cni = "etc/cni/net.d/10-kubeforge.conflist"
	skipLive := "preflight,kubelet-start,wait-control-plane,upload-config,upload-certs,mark-control-plane,bootstrap-token,kubelet-finalize,addon,show-join-command"
	for _, tc := range []struct {
		name    string
		args    []string
		wantCNI []string // nil: no CNI configuration
		wantOut string
	}{
		{"default", nil, []string{`"ipMasq": false`, `"mtu": `}, "[pod-network]"},
		{"host-gw", []string{"--config", hostgw}, []string{`"ipMasq": false`}, "[pod-network]"},
		{"disabled", []string{"--config", off}, nil, "podNetwork.enabled is false"},
		{"skipped", []string{"--skip-phases", skipLive + ",pod-network"}, nil, "[kubelet-config]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			args := tc.args
			if !strings.Contains(strings.Join(args, " "), "--skip-phases") {
				args = append(args, "--skip-phases", skipLive)
			}
			out := mustRun(t, append([]string{"init"}, offline(root, args...)...)...)
			if !strings.Contains(out, tc.wantOut) {
				t.Errorf("output lacks %q:\n%s", tc.wantOut, out)
			}
			if _, err := os.Stat(filepath.Join(root, "var/lib/kubelet/config.yaml")); err != nil {
				t.Errorf("no kubelet configuration: %v", err)
			}
			b, err := os.ReadFile(filepath.Join(root, cni))
			if tc.wantCNI == nil {
				if err == nil {
					t.Errorf("%s written with the built-in pod network off:\n%s", cni, b)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.wantCNI {
				if !strings.Contains(string(b), w) {
					t.Errorf("%s lacks %s:\n%s", cni, w, b)
				}
			}
			if tc.name == "host-gw" && strings.Contains(string(b), `"mtu"`) {
				t.Errorf("host-gw needs no reduced MTU:\n%s", b)
			}
		})
	}
	bad := write("bad.yaml", "podNetwork:\n  backend: flannel\n")
	out, code := run(t, append([]string{"init", "phase", "pod-network"}, offline(t.TempDir(), "--config", bad)...)...)
	if code == 0 || !strings.Contains(out, "podNetwork.backend") || !strings.Contains(out, "bad.yaml") {
		t.Errorf("a bad backend: exit %d, want an error naming bad.yaml and podNetwork.backend:\n%s", code, out)
	}
}
