package phases

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kubeforge/kubeforge/components/node"
	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/fsutil"
	"github.com/kubeforge/kubeforge/preflight"
)

// Run state of init (and join) on this host, so that a failed run can be
// rerun: its own files, data and ports are then expected, not conflicts.
const (
	StateInProgress = "in-progress"
	StateDone       = "done"
)

// RunState is /var/lib/kubeforge/<workflow>-state.json.
type RunState struct {
	Workflow string    `json:"workflow"`
	Status   string    `json:"status"`
	NodeName string    `json:"nodeName"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
}

func stateFile(p config.Paths, workflow string) string {
	return filepath.Join(p.StateDir, workflow+"-state.json")
}

// readState returns the recorded state of workflow, if any.
func readState(n *Node, workflow string) (RunState, bool) {
	b, err := os.ReadFile(n.Paths.Host(stateFile(n.Cfg.Paths, workflow)))
	if err != nil {
		return RunState{}, false
	}
	var s RunState
	if json.Unmarshal(b, &s) != nil {
		return RunState{}, false
	}
	return s, true
}

// markState records the workflow's state (nothing in a dry run).
func markState(n *Node, workflow, status string) error {
	if n.DryRun {
		return nil
	}
	s, ok := readState(n, workflow)
	if !ok || s.Status == StateDone && status == StateInProgress {
		s = RunState{Workflow: workflow, NodeName: n.Cfg.NodeName(), Started: time.Now().UTC()}
	}
	s.Status = status
	if status == StateDone {
		s.Finished = time.Now().UTC()
	}
	b, _ := json.MarshalIndent(s, "", "  ")
	_, err := fsutil.WriteFile(n.Paths.Host(stateFile(n.Cfg.Paths, workflow)), append(b, '\n'), 0o600)
	return err
}

// resumeIgnores returns the preflight checks that an unfinished run of the
// same node explains (its files, data dirs and ports), so a rerun
// continues; empty when there is nothing to resume.
func resumeIgnores(n *Node, workflow string, checks []preflight.Check) ([]string, *RunState) {
	s, ok := readState(n, workflow)
	if !ok || s.Status != StateInProgress || s.NodeName != n.Cfg.NodeName() {
		return nil, nil
	}
	var names []string
	for _, c := range checks {
		name := c.Name()
		if strings.HasPrefix(name, "Port-") || strings.HasPrefix(name, "FileAvailable--") || strings.HasPrefix(name, "DirAvailable--") {
			names = append(names, name)
		}
	}
	return names, &s
}

// writeNodeInfo records the node's name for the node service and reset
// (node.Info), which used to parse it back out of the kubelet flags file,
// and whether the node is air-gapped (the node service's containerd reads it).
func writeNodeInfo(n *Node, phase string, worker bool) error {
	info := node.Info{NodeName: n.Cfg.NodeName(), AirGapped: n.Cfg.Kubeforge.AirGapped, Worker: worker}
	return n.WriteFile(phase, "node record", node.InfoFile(n.Cfg.Paths), node.MarshalInfo(info), 0o600, ShowContent)
}
