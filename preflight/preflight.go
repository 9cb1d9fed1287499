// Package preflight holds the checks kubeforge runs before init, join and
// reset: small values with a kubeadm-compatible Name (so
// --ignore-preflight-errors takes the names kubeadm users know) and a Check
// that reads the host only through a System.
package preflight

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// Check is one preflight check. Name is stable and is what
// --ignore-preflight-errors matches; Check returns problems that should be
// shown (warnings) and problems that stop the command (errors). Messages say
// what is wrong and how to fix it.
type Check interface {
	Name() string
	Check() (warnings, errors []error)
}

// IgnoreAll in an ignore list turns every error into a warning.
const IgnoreAll = "all"

// Finding is one warning reported by Run, or one error that the ignore list
// turned into a warning (Ignored).
type Finding struct {
	Check   string
	Err     error
	Ignored bool
}

// String formats f like kubeadm: "[WARNING Name]: message".
func (f Finding) String() string {
	return fmt.Sprintf("[WARNING %s]: %v", f.Check, f.Err)
}

// Error is returned by Run when a check failed and was not ignored. It
// unwraps to the checks' own errors.
type Error struct {
	// Failures are the failed checks' errors, in check order.
	Failures []Finding
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d preflight check error(s):\n", len(e.Failures))
	var names []string
	seen := map[string]bool{}
	for _, f := range e.Failures {
		fmt.Fprintf(&b, "\t[ERROR %s]: %v\n", f.Check, f.Err)
		if !seen[f.Check] {
			seen[f.Check] = true
			names = append(names, f.Check)
		}
	}
	fmt.Fprintf(&b, "If you know what you are doing, make these checks non-fatal with --ignore-preflight-errors=%s (or =all)",
		strings.Join(names, ","))
	return b.String()
}

// Unwrap returns the failed checks' errors.
func (e *Error) Unwrap() []error {
	out := make([]error, len(e.Failures))
	for i, f := range e.Failures {
		out[i] = f.Err
	}
	return out
}

// Run runs every check (concurrently) and reports in check order. Errors of
// checks named in ignore (case-insensitively, or every check with "all")
// become warnings marked Ignored. Ignore entries that name no check are
// reported as warnings of the pseudo-check "IgnorePreflightErrors". err is an
// *Error holding every remaining error, or nil.
func Run(checks []Check, ignore []string) (warnings []Finding, err error) {
	set := ignoreSet(ignore)

	results := make([]outcome, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = runOne(c)
		}()
	}
	wg.Wait()

	var failures []Finding
	known := map[string]bool{}
	for _, r := range results {
		known[strings.ToLower(r.name)] = true
		ignored := set[IgnoreAll] || set[strings.ToLower(r.name)]
		for _, w := range r.warns {
			warnings = append(warnings, Finding{Check: r.name, Err: w})
		}
		for _, e := range r.errs {
			if ignored {
				warnings = append(warnings, Finding{Check: r.name, Err: e, Ignored: true})
			} else {
				failures = append(failures, Finding{Check: r.name, Err: e})
			}
		}
	}

	var unknown []string
	for n := range set {
		if n != IgnoreAll && !known[n] {
			unknown = append(unknown, n)
		}
	}
	sort.Strings(unknown)
	for _, n := range unknown {
		warnings = append(warnings, Finding{
			Check: "IgnorePreflightErrors",
			Err:   fmt.Errorf("%q matches no preflight check that ran; check the spelling (names are those shown in [WARNING Name] and [ERROR Name])", n),
		})
	}

	if len(failures) > 0 {
		return warnings, &Error{Failures: failures}
	}
	return warnings, nil
}

type outcome struct {
	name        string
	warns, errs []error
}

// runOne runs c, turning a panic into an error of that check.
func runOne(c Check) (r outcome) {
	r.name = c.Name()
	defer func() {
		if p := recover(); p != nil {
			r.errs = append(r.errs, fmt.Errorf("check panicked: %v; this is a kubeforge bug, please report it", p))
		}
	}()
	r.warns, r.errs = c.Check()
	return r
}

// ignoreSet normalises an ignore list: lower case, trimmed, comma-split.
func ignoreSet(list []string) map[string]bool {
	set := map[string]bool{}
	for _, item := range list {
		for _, n := range strings.Split(item, ",") {
			if n = strings.ToLower(strings.TrimSpace(n)); n != "" {
				set[n] = true
			}
		}
	}
	return set
}

// ValidateIgnore rejects an ignore list that names individual checks
// together with "all", as kubeadm does.
func ValidateIgnore(list []string) error {
	set := ignoreSet(list)
	if set[IgnoreAll] && len(set) > 1 {
		names := make([]string, 0, len(set))
		for n := range set {
			names = append(names, n)
		}
		sort.Strings(names)
		return errors.New("--ignore-preflight-errors=" + strings.Join(names, ",") +
			": don't specify individual checks if 'all' is used")
	}
	return nil
}
