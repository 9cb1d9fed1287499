package supervisor

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/components/node"
	"github.com/kubeforge/kubeforge/components/node/duty"
	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/manifests"
)

// TestPodNetworkDutyOff: with the built-in pod network turned off in the
// node's KubeforgeConfiguration, or its CNI configuration never written
// (--skip-phases pod-network), the pod-network duty is disabled and says
// why in `node status`; a broken backend in the file is a failure naming
// the file.
func TestPodNetworkDutyOff(t *testing.T) {
	head := "apiVersion: kubeforge.io/v1alpha1\nkind: KubeforgeConfiguration\n"
	for _, tc := range []struct {
		name, kf   string
		cni        bool
		status     string
		wantInText string
	}{
		{"turned off", head + "podNetwork:\n  enabled: false\n", true, node.DutyDisabled, "podNetwork.enabled"},
		{"phase skipped", head, false, node.DutyDisabled, "the pod-network phase was skipped"},
		{"bad backend", head + "podNetwork:\n  backend: geneve\n", true, node.DutyFailing, "podNetwork.backend"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := config.DefaultPaths().WithRoot(t.TempDir())
			write := func(logical string, data []byte) { writeUnder(t, p, logical, data) }
			write(node.InfoFile(p), node.MarshalInfo(node.Info{NodeName: "n1"}))
			write(p.KubeforgeConfigFile(), []byte(tc.kf))
			if tc.cni {
				write(filepath.Join(p.CNIConfDir, manifests.CNIConfigName), []byte("{}"))
			}
			s := &supervisor{p: p, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			runDuty(t, s, "pod-network", s.runPodNetworkAgent)(tc.status, tc.wantInText)
		})
	}
}

// runDuty runs one duty of s under a duty manager (stopped at the test's
// end) and returns a function that waits up to 10 s for a state of the
// duty with status whose message contains text.
func runDuty(t *testing.T, s *supervisor, name string, run func(context.Context, *duty.Health) error) func(status, text string) {
	t.Helper()
	states := make(chan node.DutyState, 20)
	m := duty.NewManager(duty.Options{Publish: func(st node.DutyState) { states <- st }, Log: s.log, RestartDelay: time.Hour},
		duty.Duty{Name: name, Run: run})
	m.Start(context.Background())
	t.Cleanup(m.Stop)
	return func(status, text string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case st := <-states:
				if st.Status == status && strings.Contains(st.Message, text) {
					return
				}
			case <-deadline:
				t.Fatalf("no %s state mentioning %q; last states: %+v", status, text, m.States())
			}
		}
	}
}

// TestEncryptionConfigDutyWaitsForTheAPIServer: the node service starts
// before init writes the API server's manifest, so the secrets encryption
// duty says it is disabled until the manifest appears, then goes on (here
// it fails on the missing admin.conf, which shows it went on) instead of
// ending for good.
func TestEncryptionConfigDutyWaitsForTheAPIServer(t *testing.T) {
	p := config.DefaultPaths().WithRoot(t.TempDir())
	s := &supervisor{p: p, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	wait := runDuty(t, s, "secrets-encryption-config", s.runEncryptionConfigSync)
	wait(node.DutyDisabled, "not a control-plane node")
	writeUnder(t, p, p.Manifest(manifests.KubeAPIServer), []byte("x"))
	wait(node.DutyFailing, "admin.conf")
}
