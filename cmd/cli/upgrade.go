package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kubeforge/kubeforge/components/image"
	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/progress"
	"github.com/kubeforge/kubeforge/internal/version"
	"github.com/kubeforge/kubeforge/phases"
)

// upgradeOptions are the flags of `kubeforge upgrade apply|node|plan|diff`.
type upgradeOptions struct {
	force              bool
	certificateRenewal bool
	dryRun             bool
	skipPhases         []string
	output             string
	componentTimeout   time.Duration
}

func newUpgradeCmd(_ io.Reader, out, _ io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "upgrade",
		Short: "Upgrade the cluster to this kubeforge binary's version",
		Long: `Upgrade a cluster made by kubeforge to the version of this binary (kubeforge ` + version.Version + `,
Kubernetes ` + version.Kubernetes + `). Put the new binary on every node, then:

  kubeforge upgrade plan     on a control-plane node: what runs where, and whether the upgrade is allowed
  kubeforge upgrade apply    on the first control-plane node
  kubeforge upgrade node     on every other node (control-plane nodes first, then workers)
  kubeforge upgrade apply    once more on the first node: the addons, now that every node has the new image`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newUpgradePlanCmd(out), newUpgradeWorkflowCmd(out, "apply"), newUpgradeWorkflowCmd(out, "node"), newUpgradeDiffCmd(out))
	return cmd
}

// minComponentTimeout is the shortest --component-timeout upgrade accepts.
const minComponentTimeout = 30 * time.Second

func (o *upgradeOptions) addFlags(fs *pflag.FlagSet) {
	fs.BoolVarP(&o.force, "force", "f", false, "upgrade even where the version-skew policy says --force is needed")
	fs.BoolVar(&o.certificateRenewal, "certificate-renewal", true, "renew the leaf certificates and kubeconfig files during the upgrade")
	fs.BoolVar(&o.dryRun, "dry-run", false, "change nothing; print what would be done and the files that would be written")
	fs.StringSliceVar(&o.skipPhases, "skip-phases", nil, "phases to skip, e.g. 'certs,addon/kube-proxy'")
	fs.StringVarP(&o.output, "output", "o", "text", "progress output: text or json (one event per line)")
	fs.DurationVar(&o.componentTimeout, "component-timeout", 4*time.Minute, "how long each replaced static Pod may take to run its new manifest and be healthy before it is rolled back")
}

func (o *upgradeOptions) newData(cmd *cobra.Command, out io.Writer, workflow string) (*phases.UpgradeData, error) {
	if o.output != "text" && o.output != "json" {
		return nil, fmt.Errorf("--output %q: must be text or json", o.output)
	}
	if o.componentTimeout < minComponentTimeout && cmd.Flags().Lookup("component-timeout") != nil {
		// Too short a wait judges a component that is merely restarting
		// as failed and rolls it back (etcd first). (plan and diff have
		// no such flag and replace nothing.)
		return nil, fmt.Errorf("--component-timeout %s: must be at least %s (a replaced static Pod restarts in seconds to a minute; the default is 4m)",
			o.componentTimeout, minComponentTimeout)
	}
	p := config.DefaultPaths()
	d, err := phases.NewUpgradeData(cmd.Context(), phases.UpgradeOptions{Paths: p, Host: config.HostDefaults(),
		Out: progress.New(out, o.output == "json"), DryRun: o.dryRun, Workflow: workflow})
	if err != nil {
		return nil, err
	}
	d.Force, d.CertificateRenewal, d.ComponentTimeout = o.force, o.certificateRenewal, o.componentTimeout
	if !d.Cfg.ExternalCRI() {
		d.EnsureImages = func(ctx context.Context) error { return image.EnsureImages(ctx, p, p.Host(p.ContainerdSocket())) }
	}
	return d, nil
}

func newUpgradeWorkflowCmd(out io.Writer, workflow string) *cobra.Command {
	o := &upgradeOptions{}
	wf := phases.UpgradeApplyWorkflow()
	short := "Upgrade the control plane from the first control-plane node, then the addons"
	if workflow == "node" {
		wf = phases.UpgradeNodeWorkflow()
		short = "Upgrade this node: its static Pods (on a control-plane node), its kubelet configuration and its node service"
	}
	cmd := &cobra.Command{
		Use:   workflow,
		Short: short,
		Long:  short + ".\n\n" + wf.Describe(),
		Args:  cobra.NoArgs,
	}
	fs := cmd.Flags()
	o.addFlags(fs)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		skip, err := wf.ParseSkip(o.skipPhases)
		if err != nil {
			return err
		}
		d, err := o.newData(cmd, out, workflow)
		if err != nil {
			return err
		}
		wf.OnPhaseDone = phaseTimer[*phases.UpgradeData](func(d *phases.UpgradeData) *progress.Reporter { return d.Out })
		start := time.Now()
		ctx, stop := interruptible(cmd.Context())
		defer stop()
		return finishUpgrade(d, wf.Run(ctx, d, skip), start)
	}
	cmd.AddCommand(wf.PhaseCommand(phases.BindOptions[*phases.UpgradeData]{
		Flags:  fs,
		Common: []string{"dry-run", "output", "force", "component-timeout"},
		NewData: func(cmd *cobra.Command, _ string) (*phases.UpgradeData, error) {
			return o.newData(cmd, out, workflow)
		},
		Finish: func(d *phases.UpgradeData, err error) error { return finishUpgrade(d, err, time.Time{}) },
	}))
	return cmd
}

// interruptible is ctx, cancelled by the first SIGINT or SIGTERM: the
// upgrade then puts back the previous manifest of a component it was
// replacing (rollback) instead of dying with the new one half-started. A
// second signal ends the process as usual.
func interruptible(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // the next signal is the default one again
	}()
	return ctx, stop
}

// finishUpgrade turns a phase error into what the user needs and records a
// finished upgrade.
func finishUpgrade(d *phases.UpgradeData, runErr error, start time.Time) error {
	defer d.Close()
	name := "upgrade " + d.Workflow
	if runErr != nil {
		var pe *phases.PhaseError
		if errors.As(runErr, &pe) {
			if d.Out.JSON() {
				d.Out.Emit(progress.Event{Phase: pe.Phase, Level: progress.Error, Action: "failed", Message: pe.Err.Error()})
			}
			return fmt.Errorf("%s failed in phase %q: %w", name, pe.Phase, pe.Err)
		}
		return runErr
	}
	if start.IsZero() {
		return nil
	}
	if err := d.MarkDone(); err != nil {
		return err
	}
	msg := fmt.Sprintf("kubeforge %s finished: this node runs kubeforge %s (Kubernetes %s)", name, version.Version, version.Kubernetes)
	if d.LocalUpToDate {
		msg = fmt.Sprintf("kubeforge %s: this node already ran kubeforge %s; nothing changed on it", name, version.Version)
	}
	if d.DryRun {
		msg = fmt.Sprintf("kubeforge %s --dry-run finished: nothing was changed", name)
	}
	d.Out.Emit(progress.Event{Phase: "upgrade", Action: "done", Message: msg, Seconds: progress.Seconds(time.Since(start))})
	return nil
}

func newUpgradePlanCmd(out io.Writer) *cobra.Command {
	o := &upgradeOptions{}
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Show every node's versions against this binary's, whether the upgrade is allowed, and what apply will change",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.output != "text" && o.output != "json" {
				return fmt.Errorf("--output %q: must be text or json", o.output)
			}
			d, err := o.newData(cmd, io.Discard, "apply")
			if err != nil {
				return err
			}
			defer d.Close()
			if !d.ControlPlane {
				return errors.New("run `kubeforge upgrade plan` on a control-plane node (this one has no kube-apiserver manifest)")
			}
			plan, err := d.GatherPlan(cmd.Context())
			if err != nil {
				return err
			}
			return phases.PrintPlan(out, plan, o.output == "json")
		},
	}
	cmd.Flags().StringVarP(&o.output, "output", "o", "text", "text or json")
	return cmd
}

func newUpgradeDiffCmd(out io.Writer) *cobra.Command {
	o := &upgradeOptions{}
	return &cobra.Command{
		Use:   "diff",
		Short: "Show the changes an upgrade of this node makes to its static Pod manifests and kubelet configuration",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.output = "text"
			d, err := o.newData(cmd, io.Discard, "apply")
			if err != nil {
				return err
			}
			defer d.Close()
			n, err := d.Diff(out)
			if err != nil {
				return err
			}
			if n == 0 {
				fmt.Fprintf(out, "No changes: this node's files are those of kubeforge %s\n", version.Version)
			}
			return nil
		},
	}
}
