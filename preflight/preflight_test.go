package preflight

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

type fakeCheck struct {
	name        string
	warns, errs []error
	delay       time.Duration
	panics      bool
}

func (c fakeCheck) Name() string { return c.name }
func (c fakeCheck) Check() ([]error, []error) {
	time.Sleep(c.delay)
	if c.panics {
		panic("boom")
	}
	return c.warns, c.errs
}

func findingStrings(fs []Finding) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = fmt.Sprintf("%s|%v|%v", f.Check, f.Err, f.Ignored)
	}
	return out
}

func TestRunKeepsCheckOrder(t *testing.T) {
	var checks []Check
	var want []string
	for i := range 20 {
		name := fmt.Sprintf("C%02d", i)
		// Later checks finish first.
		checks = append(checks, fakeCheck{name: name, delay: time.Duration(20-i) * time.Millisecond,
			warns: []error{fmt.Errorf("w%d", i)}})
		want = append(want, fmt.Sprintf("%s|w%d|false", name, i))
	}
	warnings, err := Run(checks, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := findingStrings(warnings); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("warnings =\n%v\nwant\n%v", got, want)
	}
}

func TestRunIgnore(t *testing.T) {
	errA := errors.New("Port 6443 is in use")
	checks := func() []Check {
		return []Check{
			fakeCheck{name: "Port-6443", errs: []error{errA}},
			fakeCheck{name: "Swap", warns: []error{errors.New("swap is on")}},
			fakeCheck{name: "Mem", errs: []error{errors.New("too little")}},
			fakeCheck{name: "Mem", errs: []error{errors.New("second Mem")}},
		}
	}
	tests := []struct {
		name     string
		ignore   []string
		wantWarn []string
		wantErr  []string // names of the failed checks, in order
	}{
		{name: "nothing ignored", ignore: nil,
			wantWarn: []string{"Swap|swap is on|false"},
			wantErr:  []string{"Port-6443", "Mem", "Mem"}},
		{name: "by name, case-insensitively", ignore: []string{"port-6443"},
			wantWarn: []string{"Port-6443|Port 6443 is in use|true", "Swap|swap is on|false"},
			wantErr:  []string{"Mem", "Mem"}},
		{name: "every check of a name", ignore: []string{" MEM "},
			wantWarn: []string{"Swap|swap is on|false", "Mem|too little|true", "Mem|second Mem|true"},
			wantErr:  []string{"Port-6443"}},
		{name: "comma-separated entry", ignore: []string{"Port-6443,mem"},
			wantWarn: []string{"Port-6443|Port 6443 is in use|true", "Swap|swap is on|false", "Mem|too little|true", "Mem|second Mem|true"}},
		{name: "all", ignore: []string{"ALL"},
			wantWarn: []string{"Port-6443|Port 6443 is in use|true", "Swap|swap is on|false", "Mem|too little|true", "Mem|second Mem|true"}},
		{name: "unknown names warn", ignore: []string{"Port-6443", "Mem", "NoSuchCheck", "swap", ""},
			wantWarn: []string{"Port-6443|Port 6443 is in use|true", "Swap|swap is on|false", "Mem|too little|true", "Mem|second Mem|true",
				`IgnorePreflightErrors|"nosuchcheck" matches no preflight check that ran; check the spelling (names are those shown in [WARNING Name] and [ERROR Name])|false`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			warnings, err := Run(checks(), tt.ignore)
			if got := findingStrings(warnings); strings.Join(got, "\n") != strings.Join(tt.wantWarn, "\n") {
				t.Errorf("warnings =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.wantWarn, "\n"))
			}
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			var perr *Error
			if !errors.As(err, &perr) {
				t.Fatalf("err = %v (%T), want *Error", err, err)
			}
			var gotNames []string
			for _, f := range perr.Failures {
				gotNames = append(gotNames, f.Check)
			}
			if strings.Join(gotNames, ",") != strings.Join(tt.wantErr, ",") {
				t.Errorf("failed checks = %v, want %v", gotNames, tt.wantErr)
			}
		})
	}
}

func TestRunErrorMessage(t *testing.T) {
	errA := errors.New("Port 6443 is in use (on all interfaces); stop it")
	_, err := Run([]Check{
		fakeCheck{name: "Port-6443", errs: []error{errA}},
		fakeCheck{name: "Swap", warns: []error{errors.New("swap is on")}},
		fakeCheck{name: "FileAvailable--etc-kubernetes-admin.conf", errs: []error{errors.New("/etc/kubernetes/admin.conf already exists; run `kubeforge reset` first")}},
		fakeCheck{name: "Port-6443", errs: []error{errors.New("again")}},
	}, nil)
	want := "3 preflight check error(s):\n" +
		"\t[ERROR Port-6443]: Port 6443 is in use (on all interfaces); stop it\n" +
		"\t[ERROR FileAvailable--etc-kubernetes-admin.conf]: /etc/kubernetes/admin.conf already exists; run `kubeforge reset` first\n" +
		"\t[ERROR Port-6443]: again\n" +
		"If you know what you are doing, make these checks non-fatal with --ignore-preflight-errors=Port-6443,FileAvailable--etc-kubernetes-admin.conf (or =all)"
	if err == nil || err.Error() != want {
		t.Fatalf("err =\n%v\nwant\n%s", err, want)
	}
	if !errors.Is(err, errA) {
		t.Error("errors.Is(err, check error) = false, want true")
	}
}

func TestRunRecoversPanics(t *testing.T) {
	warnings, err := Run([]Check{
		fakeCheck{name: "Boom", panics: true},
		fakeCheck{name: "Swap", warns: []error{errors.New("swap is on")}},
	}, nil)
	if len(warnings) != 1 || warnings[0].Check != "Swap" {
		t.Errorf("warnings = %v", warnings)
	}
	if err == nil || !strings.Contains(err.Error(), "[ERROR Boom]: check panicked: boom") {
		t.Errorf("err = %v", err)
	}
}

func TestRunNoChecks(t *testing.T) {
	if w, err := Run(nil, nil); w != nil || err != nil {
		t.Errorf("Run(nil) = %v, %v", w, err)
	}
}

func TestFindingString(t *testing.T) {
	f := Finding{Check: "Swap", Err: errors.New("swap is on")}
	if got := f.String(); got != "[WARNING Swap]: swap is on" {
		t.Errorf("String() = %q", got)
	}
}

func TestValidateIgnore(t *testing.T) {
	tests := []struct {
		list    []string
		wantErr string
	}{
		{list: nil},
		{list: []string{"all"}},
		{list: []string{"ALL", "all"}},
		{list: []string{"Port-6443", "Swap"}},
		{list: []string{"all", "Swap"}, wantErr: "--ignore-preflight-errors=all,swap: don't specify individual checks if 'all' is used"},
		{list: []string{"Mem,All"}, wantErr: "don't specify individual checks if 'all' is used"},
	}
	for _, tt := range tests {
		err := ValidateIgnore(tt.list)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("ValidateIgnore(%q) = %v, want %q", tt.list, err, tt.wantErr)
		}
	}
}
