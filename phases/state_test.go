package phases

import (
	"slices"
	"testing"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/preflight"
)

type namedCheck string

func (c namedCheck) Name() string                      { return string(c) }
func (c namedCheck) Check() (warnings, errors []error) { return nil, nil }

func TestResumeIgnores(t *testing.T) {
	for _, wf := range []string{"init", "join"} {
		t.Run(wf, func(t *testing.T) { testResumeIgnores(t, wf) })
	}
}

func testResumeIgnores(t *testing.T, wf string) {
	cfg := config.New()
	cfg.Paths = cfg.Paths.WithRoot(t.TempDir())
	cfg.ThisNode.Name = "n1"
	n := &Node{Cfg: cfg, Paths: cfg.Paths}
	checks := []preflight.Check{namedCheck("Port-6443"), namedCheck("FileAvailable--etc-kubernetes-admin.conf"),
		namedCheck("DirAvailable--var-lib-etcd"), namedCheck("NumCPU"), namedCheck("Swap")}
	if names, st := resumeIgnores(n, wf, checks); st != nil || names != nil {
		t.Fatal("nothing to resume on a fresh host")
	}
	if err := markState(n, wf, StateInProgress); err != nil {
		t.Fatal(err)
	}
	names, st := resumeIgnores(n, wf, checks)
	if st == nil || !slices.Equal(names, []string{"Port-6443", "FileAvailable--etc-kubernetes-admin.conf", "DirAvailable--var-lib-etcd"}) {
		t.Fatalf("resume ignores %v", names)
	}
	other := &Node{Cfg: config.New(), Paths: cfg.Paths}
	other.Cfg.ThisNode.Name = "n2"
	if _, st := resumeIgnores(other, wf, checks); st != nil {
		t.Fatal("another node's unfinished run must not be continued")
	}
	if err := markState(n, wf, StateDone); err != nil {
		t.Fatal(err)
	}
	if _, st := resumeIgnores(n, wf, checks); st != nil {
		t.Fatal("a finished run is not continued")
	}
	s, _ := readState(n, wf)
	if s.Status != StateDone || s.Finished.IsZero() || s.Started.IsZero() {
		t.Fatalf("state %+v", s)
	}
	dry := &Node{Cfg: cfg, Paths: config.DefaultPaths().WithRoot(t.TempDir()), DryRun: true}
	if err := markState(dry, wf, StateInProgress); err != nil {
		t.Fatal(err)
	}
	if _, ok := readState(dry, wf); ok {
		t.Fatal("a dry run wrote its state")
	}
}
