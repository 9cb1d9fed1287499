package phases

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type rec struct{ ran []string }

func leaf(name string, err error) Phase[*rec] {
	return Phase[*rec]{Name: name, Short: "do " + name, Run: func(_ context.Context, r *rec) error {
		r.ran = append(r.ran, name)
		return err
	}}
}

func testWorkflow(failAt string) *Workflow[*rec] {
	e := func(n string) error {
		if n == failAt {
			return errors.New("boom")
		}
		return nil
	}
	return &Workflow[*rec]{Name: "init", Phases: []Phase[*rec]{
		leaf("preflight", e("preflight")),
		{Name: "certs", Short: "certs", Phases: []Phase[*rec]{leaf("ca", e("ca")), leaf("apiserver", e("apiserver"))}},
		{Name: "etcd", Phases: []Phase[*rec]{leaf("local", e("local"))}},
		{Name: "addon", Phases: []Phase[*rec]{
			leaf("coredns", nil),
			{Name: "kube-proxy", RunIf: func(*rec) bool { return false }, Run: func(context.Context, *rec) error { return errors.New("must not run") }},
		}},
	}}
}

func TestRunOrderAndSkip(t *testing.T) {
	for _, tc := range []struct {
		name string
		skip []string
		want []string
	}{
		{"all", nil, []string{"preflight", "ca", "apiserver", "local", "coredns"}},
		{"skip group", []string{"certs"}, []string{"preflight", "local", "coredns"}},
		{"skip leaf", []string{"certs/apiserver", "preflight"}, []string{"ca", "local", "coredns"}},
		{"skip nested with spaces", []string{" addon/coredns ", "etcd/local"}, []string{"preflight", "ca", "apiserver"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := testWorkflow("")
			skip, err := w.ParseSkip(tc.skip)
			if err != nil {
				t.Fatal(err)
			}
			r := &rec{}
			if err := w.Run(context.Background(), r, skip); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(r.ran, tc.want) {
				t.Fatalf("ran %v, want %v", r.ran, tc.want)
			}
		})
	}
}

func TestUnknownSkip(t *testing.T) {
	_, err := testWorkflow("").ParseSkip([]string{"certs/nope", "preflight"})
	if err == nil || !strings.Contains(err.Error(), "certs/nope") || !strings.Contains(err.Error(), "certs/apiserver") {
		t.Fatalf("want an error naming the bad phase and listing the known ones, got %v", err)
	}
}

func TestErrorPrefixedAndStops(t *testing.T) {
	w := testWorkflow("apiserver")
	r := &rec{}
	err := w.Run(context.Background(), r, nil)
	var pe *PhaseError
	if !errors.As(err, &pe) || pe.Phase != "certs/apiserver" {
		t.Fatalf("want PhaseError for certs/apiserver, got %v", err)
	}
	if !strings.HasPrefix(err.Error(), "phase certs/apiserver: boom") {
		t.Fatalf("message %q", err)
	}
	if !slices.Equal(r.ran, []string{"preflight", "ca", "apiserver"}) {
		t.Fatalf("did not stop at the failure: %v", r.ran)
	}
}

func TestRunPhaseAndCommands(t *testing.T) {
	w := testWorkflow("")
	fs := pflag.NewFlagSet("init", pflag.ContinueOnError)
	fs.String("config", "", "")
	fs.String("cert-dir", "", "")
	w.Phases[1].Flags = []string{"cert-dir"}
	var r *rec
	phaseCmd := w.PhaseCommand(BindOptions[*rec]{
		Flags: fs, Common: []string{"config"},
		NewData: func(*cobra.Command, string) (*rec, error) { r = &rec{}; return r, nil },
	})
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"certs", "apiserver"}, []string{"apiserver"}},
		{[]string{"certs", "all"}, []string{"ca", "apiserver"}},
		{[]string{"certs"}, []string{"ca", "apiserver"}},
		{[]string{"etcd", "local", "--config", "x"}, []string{"local"}},
		{[]string{"certs", "ca", "--cert-dir", "/x"}, []string{"ca"}},
	} {
		phaseCmd.SetArgs(tc.args)
		phaseCmd.SetOut(&bytes.Buffer{})
		if err := phaseCmd.Execute(); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if !slices.Equal(r.ran, tc.want) {
			t.Fatalf("%v ran %v, want %v", tc.args, r.ran, tc.want)
		}
	}
	phaseCmd.SetArgs([]string{"etcd", "local", "--cert-dir", "/x"})
	if err := phaseCmd.Execute(); err == nil {
		t.Fatal("etcd local accepted --cert-dir, which only certs names")
	}
	desc := w.Describe()
	for _, s := range []string{"preflight", "certs", "/ca", "/apiserver", "addon", "/kube-proxy"} {
		if !strings.Contains(desc, s) {
			t.Fatalf("describe lacks %q:\n%s", s, desc)
		}
	}
}

// A Concurrent group runs its sub-phases at once, each after the siblings
// its After names; a failure skips the phases after it and is returned
// (the first in phase order) once the others have ended.
func TestConcurrentPhases(t *testing.T) {
	type log struct {
		mu  sync.Mutex
		ran []string
	}
	step := func(name string, err error, wait func()) Phase[*log] {
		return Phase[*log]{Name: name, Run: func(_ context.Context, l *log) error {
			if wait != nil {
				wait()
			}
			l.mu.Lock()
			l.ran = append(l.ran, name)
			l.mu.Unlock()
			return err
		}}
	}
	// a and b each wait until the other has started: only at once do
	// both end.
	var started sync.WaitGroup
	barrier := func() {
		started.Done()
		ch := make(chan struct{})
		go func() { started.Wait(); close(ch) }()
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Error("the sub-phases of a Concurrent group did not run at once")
		}
	}
	group := func(failA bool) *Workflow[*log] {
		var errA error
		if failA {
			errA = errors.New("boom")
		}
		started = sync.WaitGroup{}
		started.Add(2)
		c := step("c", nil, nil)
		c.After = []string{"a"}
		return &Workflow[*log]{Name: "init", Phases: []Phase[*log]{
			{Name: "addon", Concurrent: true, Phases: []Phase[*log]{step("a", errA, barrier), step("b", nil, barrier), c}},
			step("last", nil, nil),
		}}
	}

	l := &log{}
	if err := group(false).Run(context.Background(), l, nil); err != nil {
		t.Fatal(err)
	}
	if len(l.ran) != 4 || l.ran[3] != "last" || slices.Index(l.ran, "c") < slices.Index(l.ran, "a") {
		t.Errorf("ran %v: want a before c, and last after the group", l.ran)
	}

	l = &log{}
	err := group(true).Run(context.Background(), l, nil)
	var pe *PhaseError
	if !errors.As(err, &pe) || pe.Phase != "addon/a" {
		t.Fatalf("want the PhaseError of addon/a, got %v", err)
	}
	slices.Sort(l.ran)
	if !slices.Equal(l.ran, []string{"a", "b"}) {
		t.Errorf("ran %v: want a and b, and neither c (after the failed a) nor last", l.ran)
	}

	// A skipped phase does not hold up the phases after it.
	l = &log{}
	w := group(false)
	w.Phases[0].Phases[1].Run = func(_ context.Context, l *log) error { return nil }
	w.Phases[0].Phases[0].Run = func(_ context.Context, l *log) error { return errors.New("must be skipped") }
	skip, err := w.ParseSkip([]string{"addon/a"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Run(context.Background(), l, skip); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(l.ran, []string{"c", "last"}) {
		t.Errorf("ran %v with addon/a skipped, want [c last]", l.ran)
	}
}

// InOrder makes a Concurrent group run in order (a dry run's output is
// then the same every time).
func TestConcurrentInOrder(t *testing.T) {
	var ran []string
	step := func(name string, pause time.Duration) Phase[*rec] {
		return Phase[*rec]{Name: name, Run: func(context.Context, *rec) error {
			time.Sleep(pause)
			ran = append(ran, name) // no lock: in order, one at a time
			return nil
		}}
	}
	w := &Workflow[*rec]{Name: "init", Phases: []Phase[*rec]{{Name: "addon", Concurrent: true,
		InOrder: func(*rec) bool { return true },
		Phases:  []Phase[*rec]{step("a", 30*time.Millisecond), step("b", 10*time.Millisecond), step("c", 0)}}}}
	if err := w.Run(context.Background(), &rec{}, nil); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ran, []string{"a", "b", "c"}) {
		t.Errorf("ran %v, want [a b c] in order", ran)
	}
}

// After names only earlier siblings in Concurrent groups, in every
// workflow: an unknown name would be ignored, and names that point both
// ways would wait for each other for ever.
func TestAfterNamesEarlierSiblings(t *testing.T) {
	checkTree(t, "init", InitWorkflow().Phases)
	checkTree(t, "join", JoinWorkflow().Phases)
	checkTree(t, "reset", ResetWorkflow().Phases)
	checkTree(t, "rotate", RotateKeyWorkflow().Phases)
	checkTree(t, "upgrade apply", UpgradeApplyWorkflow().Phases)
	checkTree(t, "upgrade node", UpgradeNodeWorkflow().Phases)
}

func checkTree[T any](t *testing.T, parent string, ps []Phase[T]) {
	t.Helper()
	for i, p := range ps {
		for _, a := range p.After {
			earlier := slices.ContainsFunc(ps[:i], func(q Phase[T]) bool { return q.Name == a })
			if !earlier {
				t.Errorf("%s/%s: After %q is not an earlier sibling", parent, p.Name, a)
			}
		}
		if len(p.Phases) > 0 && !p.Concurrent {
			for _, q := range p.Phases {
				if len(q.After) > 0 {
					t.Errorf("%s/%s/%s: After in a group that is not Concurrent", parent, p.Name, q.Name)
				}
			}
		}
		checkTree(t, parent+"/"+p.Name, p.Phases)
	}
}
