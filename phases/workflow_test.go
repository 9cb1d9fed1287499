package phases

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

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
