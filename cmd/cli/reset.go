package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/progress"
	"github.com/kubeforge/kubeforge/phases"
)

// resetOptions are the flags of `kubeforge reset`.
type resetOptions struct {
	force                 bool
	dryRun                bool
	certDir               string
	ignorePreflightErrors []string
	skipPhases            []string
	output                string
	rootDir               string
}

func newResetCmd(in io.Reader, out, _ io.Writer) *cobra.Command {
	o := &resetOptions{}
	wf := phases.ResetWorkflow()
	cmd := &cobra.Command{
		Use:   "reset",
		Short: "Undo init or join: stop everything kubeforge started and remove its files, mounts, interfaces and rules",
		Long:  "Undo what `kubeforge init` or `kubeforge join` did on this host.\n\n" + wf.Describe(),
		Args:  cobra.NoArgs,
	}
	fs := cmd.Flags()
	fs.BoolVarP(&o.force, "force", "f", false, "do not ask for confirmation")
	fs.BoolVar(&o.dryRun, "dry-run", false, "only print what would be stopped and removed")
	fs.StringVar(&o.certDir, "cert-dir", "", "the certificate directory to remove (default /etc/kubernetes/pki)")
	fs.StringSliceVar(&o.ignorePreflightErrors, "ignore-preflight-errors", nil, "pre-flight checks whose errors become warnings")
	fs.StringSliceVar(&o.skipPhases, "skip-phases", nil, "phases to skip")
	fs.StringVarP(&o.output, "output", "o", "text", "progress output: text or json")
	fs.StringVar(&o.rootDir, "root-dir", "", "do all file I/O under this directory (for tests)")
	_ = fs.MarkHidden("root-dir")

	newData := func() (*phases.ResetData, error) {
		if o.output != "text" && o.output != "json" {
			return nil, fmt.Errorf("--output %q: must be text or json", o.output)
		}
		cfg := config.New()
		if o.certDir != "" {
			cfg.Paths.CertDir = o.certDir
		}
		if o.rootDir != "" {
			cfg.Paths = cfg.Paths.WithRoot(o.rootDir)
		}
		rep := progress.New(out, o.output == "json")
		n := &phases.Node{Cfg: cfg, Paths: cfg.Paths, Out: rep, DryRun: o.dryRun}
		return &phases.ResetData{Node: n, IgnorePreflightErrors: o.ignorePreflightErrors}, nil
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		skip, err := wf.ParseSkip(o.skipPhases)
		if err != nil {
			return err
		}
		if !o.force && !o.dryRun {
			fmt.Fprint(out, "[reset] This stops the node and deletes its cluster state, certificates and configuration.\n")
			if d, err := newData(); err == nil {
				if b := d.Backups(); len(b) > 0 {
					fmt.Fprintf(out, "[reset] It also deletes this node's etcd snapshots and upgrade backups (copy them off the node first if you may need them):\n")
					for _, f := range b {
						fmt.Fprintf(out, "[reset]   %s\n", f)
					}
				}
			}
			fmt.Fprint(out, "[reset] Are you sure you want to proceed? [y/N]: ")
			answer, _ := bufio.NewReader(in).ReadString('\n')
			if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
				return errors.New("aborted: nothing was changed (pass --force to skip this question)")
			}
		}
		d, err := newData()
		if err != nil {
			return err
		}
		start := time.Now()
		// The node's name, before its files go.
		name := phases.RegisteredNodeName(d.Cfg.Paths)
		if err := wf.Run(cmd.Context(), d, skip); err != nil {
			return fmt.Errorf("reset did not finish: %w\nrun `kubeforge reset --force` again once the cause is fixed", err)
		}
		if name != "" {
			d.Out.Done("reset", "done", "", start, "Node %s is reset. Remove it from the cluster: run `kubectl delete node %s` where you manage the cluster (on a control-plane node)", name, name)
		} else {
			d.Out.Done("reset", "done", "", start, "The node is reset. If it was part of a cluster, remove it there with `kubectl delete node <name>`")
		}
		return nil
	}
	cmd.AddCommand(wf.PhaseCommand(phases.BindOptions[*phases.ResetData]{
		Flags:   fs,
		Common:  []string{"dry-run", "output", "root-dir", "cert-dir"},
		NewData: func(*cobra.Command, string) (*phases.ResetData, error) { return newData() },
	}))
	return cmd
}
