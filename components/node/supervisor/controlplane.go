package supervisor

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/kubeforge/kubeforge/components/node"
	"github.com/kubeforge/kubeforge/components/node/staticproc"
	"github.com/kubeforge/kubeforge/config"
)

// runControlPlane runs the control plane's manifests as processes
// (staticproc) when the node's KubeforgeConfiguration says
// controlPlane.runtime: Processes. The service may start before init
// writes that file (init starts it right after preflight), so the choice
// waits for the file; a node whose kubelet config exists without it was
// made before the setting and runs static pods.
func (s *supervisor) runControlPlane(ctx context.Context) {
	defer close(s.cpDone)
	tick := time.NewTicker(s.o.ConfigPoll)
	defer tick.Stop()
	for {
		settings := s.p.Host(s.p.KubeforgeConfigFile())
		_, err := os.Stat(settings)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Error("cannot read the node's settings: the control plane is left to the kubelet", "path", s.p.KubeforgeConfigFile(), "err", err)
			return
		}
		if _, err := os.Stat(s.p.Host(s.p.KubeletConfigFile())); err == nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
	if !s.controlPlaneProcesses() {
		return
	}
	r := staticproc.New(staticproc.Options{
		Paths:       s.p,
		Executable:  s.self,
		Env:         componentEnv(os.Environ()),
		StopTimeout: min(s.o.StopTimeout, componentStopTimeout),
		KillOnStop:  s.killControlPlane.Load,
		Log:         s.log.With("part", "control-plane"),
		Publish: func(d node.DutyState) {
			s.update(func(st *node.State) { st.Duties = setDuty(st.Duties, d) })
		},
	})
	s.mu.Lock()
	s.cpRan = true
	s.mu.Unlock()
	r.Run(ctx)
}

// componentStopTimeout bounds each control-plane component's stop (SIGTERM,
// then SIGKILL): they stop in three rounds (staticproc.Runner.stopAll),
// which must fit in the node service's own stop (systemd's TimeoutStopSec,
// reset's wait). A healthy API server stops in about a second; one whose
// etcd member is gone (reset removed it from the cluster) would wait for
// its endpoint removal until killed.
const componentStopTimeout = 5 * time.Second

// controlPlaneProcesses reports whether the node's settings run the
// control plane as processes.
func (s *supervisor) controlPlaneProcesses() bool {
	k, err := config.LoadKubeforge(s.p)
	if err != nil {
		s.log.Error("cannot read the node's settings", "err", err)
		return false
	}
	return k.ControlPlane.Processes()
}

// stopControlPlaneProcesses stops what runControlPlane runs and reports
// whether it ran components.
func (s *supervisor) stopControlPlaneProcesses() bool {
	s.mu.Lock()
	stop, done := s.stopControlPlane, s.cpDone
	s.mu.Unlock()
	if stop == nil {
		return false
	}
	stop()
	<-done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cpRan // a runner starts only when the settings say Processes
}

// componentEnv is the node service's environment without what belongs to
// the service alone (systemd's notification and socket-activation
// variables: etcd would answer systemd's notify socket itself).
func componentEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "INVOCATION_ID", "JOURNAL_STREAM", "WATCHDOG_USEC", "WATCHDOG_PID":
			continue
		}
		out = append(out, kv)
	}
	return node.WithDefaultPath(out)
}
