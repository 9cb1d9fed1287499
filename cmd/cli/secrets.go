package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/encryption"
	"github.com/kubeforge/kubeforge/internal/progress"
	"github.com/kubeforge/kubeforge/join/etcdmember"
	"github.com/kubeforge/kubeforge/manifests"
	"github.com/kubeforge/kubeforge/phases"
)

// secretsOptions are the flags of `kubeforge secrets`.
type secretsOptions struct {
	kubeconfig    string
	certDir       string
	etcdEndpoints []string
	etcdPrefix    string
	timeout       time.Duration
	pageSize      int64
}

func (o *secretsOptions) adminClient() (*rest.Config, kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return nil, nil, fmt.Errorf("--kubeconfig %s: %w (run this on a control-plane node, or point --kubeconfig at an admin kubeconfig)", o.kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	c, err := kubernetes.NewForConfig(cfg)
	return cfg, c, err
}

func (o *secretsOptions) paths() config.Paths {
	p := config.DefaultPaths()
	p.CertDir = o.certDir
	return p
}

func newSecretsCmd(_ io.Reader, out, _ io.Writer) *cobra.Command {
	o := &secretsOptions{}
	cmd := &cobra.Command{
		Use:   "secrets",
		Short: "Manage the encryption of Secrets at rest",
		Args:  cobra.NoArgs,
	}
	cmd.PersistentFlags().StringVar(&o.kubeconfig, "kubeconfig", "/etc/kubernetes/admin.conf", "the admin kubeconfig")
	cmd.PersistentFlags().StringVar(&o.certDir, "cert-dir", config.DefaultPaths().CertDir, "this node's certificate directory (holds encryption-config.yaml and the etcd client certificate)")

	rotate := &cobra.Command{
		Use:   "rotate-key",
		Short: "Encrypt every Secret with a new key on every control-plane node, then retire the old keys",
		Long: `Rotate the key that encrypts Secrets at rest, without an outage. Run it on a
control-plane node. It records each step in kube-system/` + encryption.StateSecret + `; the
node service of every control-plane node writes that configuration to its
` + "encryption-config.yaml" + ` and its API server rereads the file within a minute. Steps:

` + phases.RotateKeyWorkflow().Describe() + `
After each configuration change the command waits until every API server
reports the new file's hash (metric ` + encryption.ConfigInfoMetric + `).
An interrupted run continues where it stopped when run again; a run after a
finished rotation rotates again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.timeout <= 0 || o.pageSize <= 0 {
				return fmt.Errorf("--timeout %s and --page-size %d must be positive", o.timeout, o.pageSize)
			}
			admin, c, err := o.adminClient()
			if err != nil {
				return err
			}
			p := o.paths()
			ec, err := etcdmember.Client(p, o.etcdEndpoints)
			if err != nil {
				return fmt.Errorf("connect to etcd at %s to check the stored Secrets: %w (run this on a control-plane node; --etcd-endpoints, --cert-dir)", strings.Join(o.etcdEndpoints, ","), err)
			}
			defer ec.Close()
			d := &phases.RotateData{
				Client:    c,
				Servers:   func(ctx context.Context) ([]encryption.APIServer, error) { return encryption.APIServers(ctx, c) },
				Hashes:    encryption.MetricsHashes(admin),
				Raw:       encryption.EtcdSecrets(ec, o.etcdPrefix),
				LocalFile: filepath.Clean(p.EncryptionConfigFile()),
				Out:       progress.New(out, false),
				Now:       time.Now,
				Poll:      2 * time.Second,
				Timeout:   o.timeout,
				PageSize:  o.pageSize,
			}
			return phases.RotateKeyWorkflow().Run(cmd.Context(), d, nil)
		},
	}
	rotate.Flags().StringSliceVar(&o.etcdEndpoints, "etcd-endpoints", []string{manifests.EtcdLocalClientURL}, "etcd, read to check that every Secret is stored under the new key")
	rotate.Flags().StringVar(&o.etcdPrefix, "etcd-prefix", "/registry", "the API servers' --etcd-prefix")
	rotate.Flags().DurationVar(&o.timeout, "timeout", 5*time.Minute, "how long to wait for every API server at each step")
	rotate.Flags().Int64Var(&o.pageSize, "page-size", 100, "Secrets per list request while rewriting them")

	status := &cobra.Command{
		Use:   "status",
		Short: "Show the recorded key rotation and the configuration each API server runs with",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			admin, c, err := o.adminClient()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			st, found, err := encryption.LoadState(ctx, c)
			if err != nil {
				return err
			}
			want := ""
			if found {
				cfg, err := encryption.Parse(st.Config, "kube-system/"+encryption.StateSecret)
				if err != nil {
					return err
				}
				want = encryption.Hash(st.Config)
				fmt.Fprintf(out, "rotation step: %s\nkey:           %s\nwrite key:     %s %s\nkeys:          %s\nconfiguration: %s\n",
					st.Step, st.Key, cfg.Write().Type, cfg.Write().Name, strings.Join(cfg.KeyNames(), ", "), want)
			} else {
				fmt.Fprintf(out, "no rotation recorded (kube-system/%s absent)\n", encryption.StateSecret)
				if b, err := os.ReadFile(o.paths().EncryptionConfigFile()); err == nil {
					want = encryption.Hash(b)
				}
			}
			servers, err := encryption.APIServers(ctx, c)
			if err != nil {
				return err
			}
			hashes := encryption.MetricsHashes(admin)
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NODE\tAPI SERVER\tCONFIGURATION\tCURRENT")
			for _, s := range servers {
				h, err := hashes(ctx, s)
				if err != nil {
					h = "error: " + err.Error()
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\n", s.Node, s.Endpoint, h, h == want)
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(rotate, status)
	return cmd
}
