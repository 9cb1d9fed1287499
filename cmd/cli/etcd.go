package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kubeforge/kubeforge/components/etcd/restore"
	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/etcdsnapshot"
	"github.com/kubeforge/kubeforge/internal/progress"
	"github.com/kubeforge/kubeforge/join/etcdmember"
)

type etcdOptions struct {
	paths   config.Paths
	rootDir string
	output  string
	timeout time.Duration
}

func newEtcdCmd(_ io.Reader, out, _ io.Writer) *cobra.Command {
	o := &etcdOptions{paths: config.DefaultPaths()}
	cmd := &cobra.Command{
		Use:   "etcd",
		Short: "Snapshots and members of this control-plane node's etcd",
		Args:  cobra.NoArgs,
	}
	cmd.PersistentFlags().StringVar(&o.paths.StateDir, "state-dir", o.paths.StateDir, "kubeforge's state; snapshots are kept in its etcd-snapshots directory")
	cmd.PersistentFlags().StringVar(&o.rootDir, "root-dir", "", "do all file I/O under this directory (for tests)")
	cmd.PersistentPreRun = func(*cobra.Command, []string) {
		if o.rootDir != "" {
			o.paths = o.paths.WithRoot(o.rootDir)
		}
	}
	cmd.PersistentFlags().DurationVar(&o.timeout, "timeout", 3*time.Minute, "how long to wait for etcd (and, on restore, for each step)")

	snap := &cobra.Command{
		Use:   "snapshot",
		Short: "Save, list, delete and restore etcd snapshots (kept in " + config.DefaultPaths().EtcdSnapshotDir() + ")",
		Args:  cobra.NoArgs,
	}
	save := &cobra.Command{
		Use:   "save [NAME]",
		Short: "Save a snapshot of this node's etcd member (name: on-demand-NODE-UNIXTIME by default)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			mem, err := etcdsnapshot.ReadMember(o.paths)
			if err != nil {
				return err
			}
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			start := time.Now()
			m, err := etcdsnapshot.NewStore(o.paths).Save(ctx, o.paths, etcdsnapshot.SaveOptions{
				Name: name, Node: mem.Name, Endpoint: etcdsnapshot.LocalClientURL,
			})
			if err != nil {
				return err
			}
			progress.New(out, false).Done("etcd-snapshot", "saved", etcdsnapshot.NewStore(o.paths).DBPath(m.Name), start,
				"Saved snapshot %s: %d bytes, revision %d, sha256 %s", m.Name, m.Size, m.Revision, m.SHA256)
			return nil
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the snapshots: name, time, size, revision, checksum",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			all, err := etcdsnapshot.NewStore(o.paths).List()
			if err != nil {
				return err
			}
			if o.output == "json" {
				if all == nil {
					all = []etcdsnapshot.Meta{}
				}
				b, err := json.MarshalIndent(all, "", "  ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintln(out, string(b))
				return err
			}
			if o.output != "" {
				return fmt.Errorf("--output %q: use json, or leave it out for a table", o.output)
			}
			w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tCREATED\tSIZE\tREVISION\tSCHEDULED\tSHA256")
			for _, m := range all {
				sum := m.SHA256
				if m.Missing != "" {
					sum = "(" + m.Missing + ")"
				}
				fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%v\t%s\n", m.Name, m.CreatedAt.Format(time.RFC3339), m.Size, m.Revision, m.Scheduled, sum)
			}
			return w.Flush()
		},
	}
	list.Flags().StringVarP(&o.output, "output", "o", "", "json for a machine-readable list")
	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a snapshot and its metadata",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if err := etcdsnapshot.NewStore(o.paths).Delete(args[0]); err != nil {
				return err
			}
			fmt.Fprintf(out, "Deleted snapshot %s\n", args[0])
			return nil
		},
	}
	var ignoreMissingKeys bool
	rest := &cobra.Command{
		Use:   "restore FILE",
		Short: "Restore this control-plane node's etcd from a snapshot, as a single-member cluster",
		Long: `Restore this control-plane node's etcd from a snapshot (a file, or the name
of a snapshot in the node's snapshot directory). The file is checked first
(etcd's integrity hash, the recorded sha256, etcd's snapshot status); a
corrupt or truncated file is refused before anything is touched, and so is
one whose Secrets are encrypted with a key this node neither has nor kept
(a snapshot from before a key rotation; a retired key the node kept goes
back into its encryption configuration while the API server is stopped). Then the
API server, controller manager, scheduler and etcd are stopped (their
manifests moved aside), etcd's data kept aside, the snapshot restored as a
new single-member cluster named after this node, and etcd, then the API
server, then the others started again. Every other control-plane node must then be reset and joined
again (see the README's "Backups" section).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pr := progress.New(out, false)
			res, err := restore.Restore(cmd.Context(), restore.Options{Paths: o.paths, File: args[0], Timeout: o.timeout, Out: pr, IgnoreMissingKeys: ignoreMissingKeys})
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "\nThe cluster runs on snapshot %s (revision %d) with a single etcd member.\n", args[0], res.Snapshot.Revision)
			if res.OldData != "" {
				fmt.Fprintf(out, "The previous etcd data is kept in %s, the previous manifest in %s.\n", res.OldData, res.OldManifest)
			}
			fmt.Fprintln(out, "Every other control-plane node: run `kubeforge reset`, then `kubeforge join --control-plane` again.")
			return nil
		},
	}
	rest.Flags().BoolVar(&ignoreMissingKeys, "ignore-missing-encryption-keys", false,
		"restore even when the snapshot's Secrets are encrypted with keys this node's encryption configuration no longer has (those Secrets are then lost)")
	snap.AddCommand(save, list, del, rest)

	member := &cobra.Command{
		Use:   "member",
		Short: "List etcd's members, or remove one whose node is gone for good",
		Args:  cobra.NoArgs,
	}
	mlist := &cobra.Command{
		Use:   "list",
		Short: "List the etcd members",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.withMembers(cmd.Context(), func(ctx context.Context, mem etcdsnapshot.Member, c etcdClient) error {
				ms, err := etcdmember.List(ctx, c)
				if err != nil {
					return err
				}
				w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "ID\tNAME\tPEER URLS\tLEARNER\tTHIS NODE")
				for _, m := range ms {
					fmt.Fprintf(w, "%x\t%s\t%s\t%v\t%v\n", m.ID, m.Name, strings.Join(m.PeerURLs, ","), m.Learner, m.Name == mem.Name)
				}
				return w.Flush()
			})
		},
	}
	mremove := &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove the etcd member NAME (a control-plane node that is gone for good)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.withMembers(cmd.Context(), func(ctx context.Context, mem etcdsnapshot.Member, c etcdClient) error {
				if args[0] == mem.Name {
					return fmt.Errorf("member %s is this node: run `kubeforge reset` here instead (it removes the member and the node's data)", mem.Name)
				}
				removed, err := etcdmember.Remove(ctx, c, args[0])
				if err != nil {
					return err
				}
				if !removed {
					return fmt.Errorf("no etcd member named %s (kubeforge etcd member list shows them)", args[0])
				}
				fmt.Fprintf(out, "Removed etcd member %s\n", args[0])
				return nil
			})
		},
	}
	member.AddCommand(mlist, mremove)
	cmd.AddCommand(snap, member)
	return cmd
}

type etcdClient = *clientv3.Client

// withMembers runs f with a client of this node's etcd member.
func (o *etcdOptions) withMembers(ctx context.Context, f func(context.Context, etcdsnapshot.Member, etcdClient) error) error {
	mem, err := etcdsnapshot.ReadMember(o.paths)
	if err != nil {
		return err
	}
	c, err := etcdmember.Client(o.paths, mem.Endpoints())
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	return f(ctx, mem, c)
}
