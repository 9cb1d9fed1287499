package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAirGappedRecorded: --air-gapped, or airGapped in a
// KubeforgeConfiguration, lands in the node record the node service reads;
// without either the node pulls (airGapped absent); a second run with the
// same settings rewrites nothing.
func TestAirGappedRecorded(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "kubeforge.yaml")
	if err := os.WriteFile(cfgFile, []byte("apiVersion: kubeforge.io/v1alpha1\nkind: KubeforgeConfiguration\nairGapped: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want bool
	}{
		{"default", nil, false},
		{"flag", []string{"--air-gapped"}, true},
		{"config", []string{"--config", cfgFile}, true},
		{"flag overrides config", []string{"--config", cfgFile, "--air-gapped=false"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			args := append([]string{"init", "phase", "kubelet-config"}, offline(root, tc.args...)...)
			mustRun(t, args...)
			path := filepath.Join(root, "var/lib/kubeforge/node.json")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var info struct {
				NodeName  string `json:"nodeName"`
				AirGapped bool   `json:"airGapped"`
			}
			if err := json.Unmarshal(b, &info); err != nil {
				t.Fatal(err)
			}
			if info.AirGapped != tc.want || info.NodeName != "n1" {
				t.Errorf("node record %s, want airGapped %v", b, tc.want)
			}
			before, _ := os.Stat(path)
			mustRun(t, args...)
			if after, _ := os.Stat(path); !after.ModTime().Equal(before.ModTime()) {
				t.Error("a second run rewrote the node record")
			}
		})
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: kubeforge.io/v1alpha1\nkind: KubeforgeConfiguration\nairgapped: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code := run(t, append([]string{"init", "phase", "kubelet-config"}, offline(t.TempDir(), "--config", bad)...)...)
	if code == 0 || !strings.Contains(out, `unknown field "airgapped"`) || !strings.Contains(out, bad) {
		t.Errorf("a misspelled field was not refused by name (exit %d):\n%s", code, out)
	}
}
