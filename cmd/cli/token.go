package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	bootstraptokenv1 "k8s.io/kubernetes/cmd/kubeadm/app/apis/bootstraptoken/v1"

	"github.com/kubeforge/kubeforge/join/tokens"
	"github.com/kubeforge/kubeforge/pki"
)

// tokenOptions are the flags of `kubeforge token`.
type tokenOptions struct {
	kubeconfig       string
	ttl              time.Duration
	description      string
	usages           []string
	groups           []string
	printJoinCommand bool
	allowNonExpiring bool
	output           string
}

func (o *tokenOptions) client() (kubernetes.Interface, *clientcmdRaw, error) {
	raw, err := clientcmd.LoadFromFile(o.kubeconfig)
	if err != nil {
		return nil, nil, fmt.Errorf("--kubeconfig %s: %w (run this on a control-plane node, or point --kubeconfig at an admin kubeconfig)", o.kubeconfig, err)
	}
	cfg, err := clientcmd.NewDefaultClientConfig(*raw, nil).ClientConfig()
	if err != nil {
		return nil, nil, err
	}
	c, err := kubernetes.NewForConfig(cfg)
	return c, &clientcmdRaw{server: cfg.Host, caData: cfg.CAData}, err
}

type clientcmdRaw struct {
	server string
	caData []byte
}

func newTokenCmd(_ io.Reader, out, _ io.Writer) *cobra.Command {
	o := &tokenOptions{}
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage bootstrap tokens for joining nodes",
		Args:  cobra.NoArgs,
	}
	cmd.PersistentFlags().StringVar(&o.kubeconfig, "kubeconfig", "/etc/kubernetes/admin.conf", "the admin kubeconfig")

	create := &cobra.Command{
		Use:   "create [TOKEN]",
		Short: "Create a bootstrap token (and sign cluster-info for it at once)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s := ""
			if len(args) == 1 {
				s = args[0]
			} else {
				var err error
				if s, err = tokens.Generate(); err != nil {
					return err
				}
			}
			ts, err := bootstraptokenv1.NewBootstrapTokenString(s)
			if err != nil {
				return fmt.Errorf("token %q: %w", s, err)
			}
			if o.ttl < 0 {
				return fmt.Errorf("--ttl %s: must not be negative", o.ttl)
			}
			if o.ttl == 0 {
				if !o.allowNonExpiring {
					return fmt.Errorf("--ttl 0 makes a token that never expires: anyone who learns it can join nodes to this cluster for as long as it exists; give a finite --ttl, or add --allow-non-expiring if you mean it (and delete it with `kubeforge token delete` when it is no longer needed)")
				}
				fmt.Fprintln(cmd.ErrOrStderr(), "[token] WARNING: this token never expires; delete it with `kubeforge token delete` when it is no longer needed")
			}
			for _, u := range o.usages {
				if u != "signing" && u != "authentication" {
					return fmt.Errorf("--usages %q: usages are signing and authentication", u)
				}
			}
			for _, g := range o.groups {
				if !strings.HasPrefix(g, "system:bootstrappers:") {
					return fmt.Errorf("--groups %q: extra groups must start with system:bootstrappers:", g)
				}
			}
			t := &bootstraptokenv1.BootstrapToken{Token: ts, Description: o.description, Usages: o.usages, Groups: o.groups,
				TTL: &metav1.Duration{Duration: o.ttl}}
			c, raw, err := o.client()
			if err != nil {
				return err
			}
			if err := tokens.Create(cmd.Context(), c, t); err != nil {
				return err
			}
			if !o.printJoinCommand {
				fmt.Fprintln(out, ts.String())
				return nil
			}
			certs, err := pki.ParseCerts(raw.caData)
			if err != nil {
				return fmt.Errorf("the kubeconfig's CA: %w", err)
			}
			fmt.Fprintf(out, "kubeforge join %s --token %s --discovery-token-ca-cert-hash %s\n",
				strings.TrimPrefix(raw.server, "https://"), ts.String(), pki.CAHash(certs[0]))
			return nil
		},
	}
	create.Flags().DurationVar(&o.ttl, "ttl", 24*time.Hour, "how long the token lives (0: forever, only with --allow-non-expiring)")
	create.Flags().BoolVar(&o.allowNonExpiring, "allow-non-expiring", false, "allow --ttl 0, a token that never expires")
	create.Flags().StringVar(&o.description, "description", "", "a description of what the token is for")
	create.Flags().StringSliceVar(&o.usages, "usages", tokens.DefaultUsages, "signing, authentication")
	create.Flags().StringSliceVar(&o.groups, "groups", tokens.DefaultGroups, "extra groups the token authenticates as")
	create.Flags().BoolVar(&o.printJoinCommand, "print-join-command", false, "print the whole `kubeforge join` command")
	cmd.AddCommand(create)

	list := &cobra.Command{
		Use:   "list",
		Short: "List the bootstrap tokens",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, _, err := o.client()
			if err != nil {
				return err
			}
			ts, err := tokens.List(cmd.Context(), c)
			if err != nil {
				return err
			}
			if o.output == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(ts)
			}
			w := tabwriter.NewWriter(out, 0, 4, 3, ' ', 0)
			fmt.Fprintln(w, "TOKEN\tTTL\tEXPIRES\tUSAGES\tDESCRIPTION\tEXTRA GROUPS")
			for _, t := range ts {
				ttl, expires := "<forever>", "<never>"
				if t.Expires != nil {
					ttl = time.Until(t.Expires.Time).Round(time.Minute).String()
					expires = t.Expires.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", t.Token, ttl, expires, strings.Join(t.Usages, ","), t.Description, strings.Join(t.Groups, ","))
			}
			return w.Flush()
		},
	}
	list.Flags().StringVarP(&o.output, "output", "o", "text", "text or json")
	cmd.AddCommand(list)

	cmd.AddCommand(&cobra.Command{
		Use:   "delete TOKEN_ID|TOKEN...",
		Short: "Delete bootstrap tokens (and their cluster-info signatures)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := o.client()
			if err != nil {
				return err
			}
			for _, a := range args {
				if err := tokens.Delete(cmd.Context(), c, a); err != nil {
					return err
				}
				id, _, _ := strings.Cut(a, ".")
				fmt.Fprintf(out, "bootstrap token %q deleted\n", id)
			}
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "generate",
		Short: "Print a new random token (creates nothing)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			s, err := tokens.Generate()
			if err != nil {
				return err
			}
			fmt.Fprintln(out, s)
			return nil
		},
	})
	return cmd
}
