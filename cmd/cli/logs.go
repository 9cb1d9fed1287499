package cli

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubeforge/kubeforge/internal/logsearch"
)

// logsOptions are the flags of `kubeforge logs`.
type logsOptions struct {
	kubeconfig string
	q          logsearch.Query
	follow     bool
	interval   time.Duration
}

func newLogsCmd(_ io.Reader, out, _ io.Writer) *cobra.Command {
	o := &logsOptions{}
	cmd := &cobra.Command{
		Use:   "logs [QUERY]",
		Short: "Search the cluster's logs (the log-store addon) and print them in time order with their source",
		Long: `Search the log lines every node shipped to the cluster's log store: its
containers' lines (also of pods long gone) and the node service's,
containerd's and the kubelet's own. Lines print oldest first as
TIME NODE/NAMESPACE/POD/CONTAINER: LINE (NODE/PROGRAM for a node's own).

QUERY is a LogsQL filter (https://docs.victoriametrics.com/victorialogs/logsql/):
words and "phrases", field:value, and/or/not; the fields are node, source
(pod, kubelet, containerd, node-service), namespace, pod, container, stream.
The store is reached through the API server's Service proxy with
--kubeconfig, so it works from any machine with the admin kubeconfig.

Examples:
  kubeforge logs error --namespace kube-system --since 1h
  kubeforge logs --pod web-0 -f
  kubeforge logs 'source:=kubelet and "failed"' --node worker-1`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.q.Filter = args[0]
			}
			if o.q.Since < 0 || o.q.Limit < 0 || o.interval <= 0 {
				return fmt.Errorf("--since %s, --limit %d and --interval %s must not be negative (and --interval not zero)", o.q.Since, o.q.Limit, o.interval)
			}
			cfg, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
			if err != nil {
				return fmt.Errorf("--kubeconfig %s: %w (point --kubeconfig at an admin kubeconfig)", o.kubeconfig, err)
			}
			c, err := logsearch.NewClient(cfg)
			if err != nil {
				return err
			}
			return c.Run(cmd.Context(), o.q, o.follow, o.interval, out)
		},
	}
	def := "/etc/kubernetes/admin.conf"
	if env := os.Getenv("KUBECONFIG"); env != "" {
		def = env
	}
	fs := cmd.Flags()
	fs.StringVar(&o.kubeconfig, "kubeconfig", def, "the admin kubeconfig ($KUBECONFIG when set)")
	fs.StringVarP(&o.q.Namespace, "namespace", "n", "", "only lines of pods in this namespace")
	fs.StringVar(&o.q.Pod, "pod", "", "only lines of this pod")
	fs.StringVar(&o.q.Node, "node", "", "only lines from this node")
	fs.DurationVar(&o.q.Since, "since", 0, "only lines newer than this (such as 10m or 2h; default all)")
	fs.IntVar(&o.q.Limit, "limit", 0, "only the newest N lines (default all)")
	fs.BoolVarP(&o.follow, "follow", "f", false, "keep printing new lines as they arrive")
	fs.DurationVar(&o.interval, "interval", time.Second, "with -f, how often to ask the store")
	return cmd
}
