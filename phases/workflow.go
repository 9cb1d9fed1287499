// Package phases holds the workflow runner and the init, join and reset
// phase trees. A phase is a value; the runner derives the `phase`
// subcommands, --skip-phases and the phase list in --help from the tree, so
// the CLI and the work cannot drift apart.
package phases

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Phase is one step of a workflow, with optional sub-phases. T is the data
// the workflow's phases share (for init, *InitData).
type Phase[T any] struct {
	Name  string
	Short string
	Long  string
	// Phases run after Run, in order, or all at once when Concurrent.
	Phases []Phase[T]
	// Concurrent runs the sub-phases at once: for sub-phases that do not
	// depend on each other, such as the addons, whose API round trips then
	// overlap. Each still runs or is skipped on its own; the first error
	// in phase order is returned once all have ended.
	Concurrent bool
	// After names earlier siblings in a Concurrent group that this phase
	// waits for; it does not run when one of them failed.
	After []string
	// InOrder, when set and true for the run's data, runs a Concurrent
	// group's sub-phases in order after all: a dry run then prints the
	// same output every time.
	InOrder func(d T) bool
	// Run does the phase's own work; nil for pure groups.
	Run func(ctx context.Context, d T) error
	// RunIf, when set, decides at run time whether the phase (and its
	// sub-phases) run at all.
	RunIf func(d T) bool
	// Flags names the command flags that apply to `<cmd> phase <name>`.
	Flags []string
	// Hidden phases run but are left out of help and of `phase` commands.
	Hidden bool
}

// Workflow is an ordered tree of phases.
type Workflow[T any] struct {
	// Name is the command name, used in messages ("init").
	Name   string
	Phases []Phase[T]
	// OnPhaseDone, when set, is called after each phase's own Run with its
	// full name and duration (the commands use it for JSON timing events).
	OnPhaseDone func(d T, name string, took time.Duration)
}

// PhaseError is an error from a phase; its message is prefixed with the
// phase's full name, so a failed run says where it stopped.
type PhaseError struct {
	Phase string
	Err   error
}

func (e *PhaseError) Error() string { return fmt.Sprintf("phase %s: %v", e.Phase, e.Err) }
func (e *PhaseError) Unwrap() error { return e.Err }

// Names lists every phase's full name ("certs", "certs/ca", …) in run order.
func (w *Workflow[T]) Names() []string {
	var out []string
	walk(w.Phases, "", func(full string, _ *Phase[T]) { out = append(out, full) })
	return out
}

func walk[T any](ps []Phase[T], parent string, f func(full string, p *Phase[T])) {
	for i := range ps {
		full := join(parent, ps[i].Name)
		f(full, &ps[i])
		walk(ps[i].Phases, full, f)
	}
}

func join(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "/" + name
}

// ParseSkip validates a --skip-phases list and returns it as a set. A name
// may be a group ("certs") or a leaf ("certs/apiserver", "addon/kube-proxy").
func (w *Workflow[T]) ParseSkip(list []string) (map[string]bool, error) {
	known := w.Names()
	skip := map[string]bool{}
	var unknown []string
	for _, s := range list {
		s = strings.Trim(strings.TrimSpace(s), "/")
		if s == "" {
			continue
		}
		if !slices.Contains(known, s) {
			unknown = append(unknown, s)
			continue
		}
		skip[s] = true
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("--skip-phases: unknown phase(s) %s; %s phases are: %s",
			strings.Join(unknown, ", "), w.Name, strings.Join(known, ", "))
	}
	return skip, nil
}

// Run runs every phase in order, skipping the names in skip (with their
// sub-phases). It stops at the first error, wrapped in a *PhaseError.
func (w *Workflow[T]) Run(ctx context.Context, d T, skip map[string]bool) error {
	return w.run(ctx, d, w.Phases, "", skip)
}

func (w *Workflow[T]) run(ctx context.Context, d T, ps []Phase[T], parent string, skip map[string]bool) error {
	for i := range ps {
		p := &ps[i]
		full := join(parent, p.Name)
		if skip[full] {
			continue
		}
		if err := w.runOne(ctx, d, p, full, skip); err != nil {
			return err
		}
	}
	return nil
}

func (w *Workflow[T]) runOne(ctx context.Context, d T, p *Phase[T], full string, skip map[string]bool) error {
	if err := ctx.Err(); err != nil {
		return &PhaseError{Phase: full, Err: err}
	}
	if p.RunIf != nil && !p.RunIf(d) {
		return nil
	}
	if p.Run != nil {
		start := time.Now()
		err := p.Run(ctx, d)
		if w.OnPhaseDone != nil {
			w.OnPhaseDone(d, full, time.Since(start))
		}
		if err != nil {
			var pe *PhaseError
			if errors.As(err, &pe) {
				return err
			}
			return &PhaseError{Phase: full, Err: err}
		}
	}
	if p.Concurrent && (p.InOrder == nil || !p.InOrder(d)) {
		return w.runConcurrent(ctx, d, p.Phases, full, skip)
	}
	return w.run(ctx, d, p.Phases, full, skip)
}

// runConcurrent runs the phases ps at once, each after the siblings its
// After names, and returns the first error in phase order.
func (w *Workflow[T]) runConcurrent(ctx context.Context, d T, ps []Phase[T], parent string, skip map[string]bool) error {
	index := make(map[string]int, len(ps))
	done := make([]chan struct{}, len(ps))
	for i := range ps {
		index[ps[i].Name] = i
		done[i] = make(chan struct{})
	}
	// errs[i] is written before done[i] is closed, and read after it is.
	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	for i := range ps {
		p := &ps[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(done[i])
			for _, a := range p.After {
				if j, ok := index[a]; ok {
					<-done[j]
					if errs[j] != nil {
						return
					}
				}
			}
			full := join(parent, p.Name)
			if skip[full] {
				return
			}
			errs[i] = w.runOne(ctx, d, p, full, skip)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// RunPhase runs one phase by full name, with its sub-phases.
func (w *Workflow[T]) RunPhase(ctx context.Context, d T, name string, skip map[string]bool) error {
	var target *Phase[T]
	walk(w.Phases, "", func(full string, p *Phase[T]) {
		if full == name {
			target = p
		}
	})
	if target == nil {
		return fmt.Errorf("unknown %s phase %q", w.Name, name)
	}
	return w.runOne(ctx, d, target, name, skip)
}

// Describe renders the phase list for --help.
func (w *Workflow[T]) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "The %q command runs these phases:\n\n```\n", w.Name)
	var rows [][2]string
	var collect func(ps []Phase[T], depth int)
	collect = func(ps []Phase[T], depth int) {
		for _, p := range ps {
			if p.Hidden {
				continue
			}
			name := p.Name
			if depth > 0 {
				name = strings.Repeat("  ", depth-1) + "  /" + p.Name
			}
			rows = append(rows, [2]string{name, p.Short})
			collect(p.Phases, depth+1)
		}
	}
	collect(w.Phases, 0)
	width := 0
	for _, r := range rows {
		width = max(width, len(r[0]))
	}
	for _, r := range rows {
		fmt.Fprintf(&b, "%-*s  %s\n", width, r[0], r[1])
	}
	b.WriteString("```")
	return b.String()
}

// BindOptions connects a workflow to its cobra command.
type BindOptions[T any] struct {
	// Flags is the command's full flag set; phase commands get the flags
	// their phase (and its ancestors and descendants) name, plus Common.
	Flags *pflag.FlagSet
	// Common flags apply to every phase command (--config, --dry-run, …).
	Common []string
	// NewData builds the data for a run; phase is "" for a full run.
	NewData func(cmd *cobra.Command, phase string) (T, error)
	// Finish is called after a run (success or not) to release resources
	// and print a summary; its error replaces a nil run error.
	Finish func(d T, runErr error) error
}

// PhaseCommand builds `<cmd> phase` with one subcommand per phase (nested
// like the tree; a group also gets an `all` subcommand, as kubeadm's).
func (w *Workflow[T]) PhaseCommand(o BindOptions[T]) *cobra.Command {
	phaseCmd := &cobra.Command{
		Use:   "phase",
		Short: fmt.Sprintf("Run one phase of the %s workflow", w.Name),
		Long:  "Run one phase (with its sub-phases) of the " + w.Name + " workflow.\n\n" + w.Describe(),
		Args:  cobra.NoArgs,
	}
	var add func(parent *cobra.Command, ps []Phase[T], prefix string, inherited []string)
	add = func(parent *cobra.Command, ps []Phase[T], prefix string, inherited []string) {
		for i := range ps {
			p := &ps[i]
			if p.Hidden {
				continue
			}
			full := join(prefix, p.Name)
			flags := append(append(slices.Clone(inherited), p.Flags...), descendantFlags(p.Phases)...)
			cmd := w.leafCommand(o, p.Name, p.Short, p.Long, full, flags)
			parent.AddCommand(cmd)
			if len(p.Phases) > 0 {
				all := w.leafCommand(o, "all", "Run all the "+p.Name+" phases", "", full, flags)
				cmd.AddCommand(all)
				add(cmd, p.Phases, full, append(slices.Clone(inherited), p.Flags...))
			}
		}
	}
	add(phaseCmd, w.Phases, "", nil)
	return phaseCmd
}

func descendantFlags[T any](ps []Phase[T]) []string {
	var out []string
	walk(ps, "", func(_ string, p *Phase[T]) { out = append(out, p.Flags...) })
	return out
}

func (w *Workflow[T]) leafCommand(o BindOptions[T], use, short, long, full string, flags []string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := o.NewData(cmd, full)
			if err != nil {
				return err
			}
			err = w.RunPhase(cmd.Context(), d, full, nil)
			if o.Finish != nil {
				err = o.Finish(d, err)
			}
			return err
		},
	}
	seen := map[string]bool{}
	for _, name := range append(slices.Clone(o.Common), flags...) {
		if seen[name] {
			continue
		}
		seen[name] = true
		if f := o.Flags.Lookup(name); f != nil {
			cmd.Flags().AddFlag(f)
		}
	}
	return cmd
}
