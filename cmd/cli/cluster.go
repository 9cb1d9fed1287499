package cli

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubeforge/kubeforge/localcluster"
)

// clusterOptions are the flags of `kubeforge cluster …`.
type clusterOptions struct {
	root          string
	kubeconfig    string
	workers       int
	controlPlanes int
	configFile    string
	subnet        string
	wait          time.Duration
}

func (o *clusterOptions) clusters(out io.Writer) *localcluster.Clusters {
	kc := o.kubeconfig
	if kc == "" {
		kc = localcluster.DefaultKubeconfig()
	}
	return &localcluster.Clusters{Root: o.root, Kubeconfig: kc, Out: out}
}

func newClusterCmd(_ io.Reader, out, _ io.Writer) *cobra.Command {
	o := &clusterOptions{}
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Local multi-node clusters on this host, without Docker",
		Long: "Make Kubernetes clusters of several nodes on this host, each node in network and mount namespaces\n" +
			"of its own with its own cgroup root, on a bridge that is the cluster's network. Nothing but that\n" +
			"bridge changes on the host; the nodes have no route out. Clusters outlive the command that made them.",
		Args: cobra.NoArgs,
	}
	cmd.PersistentFlags().StringVar(&o.root, "state-dir", localcluster.DefaultRoot, "where clusters keep their state and their nodes' disks")
	cmd.PersistentFlags().StringVar(&o.kubeconfig, "kubeconfig", "", "the kubeconfig file to merge the cluster's context into (default: the first file of $KUBECONFIG, else ~/.kube/config)")

	create := &cobra.Command{
		Use:   "create [NAME]",
		Short: "Make a cluster: a control-plane node and --workers worker nodes (NAME defaults to kubeforge)",
		Long: "Make a cluster called NAME (default \"kubeforge\"): --control-planes control-plane nodes and --workers\n" +
			"worker nodes, wait until every node is Ready and CoreDNS answers, merge the context kubeforge-NAME into\n" +
			"the kubeconfig and make it current. --config takes kubeadm v1beta4 documents for the nodes\n" +
			"(ClusterConfiguration, InitConfiguration, JoinConfiguration, KubeletConfiguration,\n" +
			"KubeProxyConfiguration, KubeforgeConfiguration); the nodes' names, addresses and cgroup roots are set\n" +
			"by kubeforge cluster.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			co := localcluster.CreateOptions{Workers: o.workers, ControlPlanes: o.controlPlanes, ConfigFile: o.configFile, Wait: o.wait}
			if len(args) == 1 {
				co.Name = args[0]
			}
			if o.subnet != "" {
				p, err := netip.ParsePrefix(o.subnet)
				if err != nil || !p.Addr().Is4() || p.Bits() != 24 || p.Masked() != p {
					return fmt.Errorf("--subnet %q: want an IPv4 /24 such as 10.200.3.0/24", o.subnet)
				}
				co.Subnet = p
			}
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			co.Binary = exe
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			c := o.clusters(out)
			st, tm, err := c.Create(ctx, co)
			if err != nil {
				return err
			}
			printCreated(out, c, st, tm)
			return nil
		},
	}
	create.Flags().IntVar(&o.workers, "workers", 0, "number of worker nodes")
	create.Flags().IntVar(&o.controlPlanes, "control-planes", 1, "number of control-plane nodes (more than one: stacked etcd, the API endpoint is the first one's address)")
	create.Flags().StringVar(&o.configFile, "config", "", "a file of kubeadm v1beta4 documents for the nodes")
	create.Flags().StringVar(&o.subnet, "subnet", "", "the cluster's network, an IPv4 /24 (default: the first free one in 10.200.0.0/13)")
	create.Flags().DurationVar(&o.wait, "wait", 5*time.Minute, "how long to wait for the nodes to be Ready and CoreDNS to answer")

	list := &cobra.Command{
		Use:   "list",
		Short: "List the clusters on this host and whether their nodes run",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			l, err := o.clusters(out).List()
			if err != nil {
				return err
			}
			if len(l) == 0 {
				fmt.Fprintln(out, "No clusters.")
				return nil
			}
			w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tSTATUS\tNODES\tNETWORK\tAPI SERVER\tAGE\tNOTE")
			for _, e := range l {
				age := ""
				if !e.Created.IsZero() {
					age = time.Since(e.Created).Round(time.Second).String()
				}
				fmt.Fprintf(w, "%s\t%s\t%d/%d\t%s\t%s\t%s\t%s\n", e.Name, e.Status, e.Running, e.Nodes, e.Subnet, e.Endpoint, age, e.Detail)
			}
			return w.Flush()
		},
	}

	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a cluster: reset its nodes, remove everything it made on the host, check nothing is left",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			return o.clusters(out).Delete(args[0])
		},
	}

	kubeconfig := &cobra.Command{
		Use:   "kubeconfig NAME",
		Short: "Print the cluster's admin kubeconfig (context kubeforge-NAME)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			c := o.clusters(out)
			if _, err := c.LoadState(args[0]); err != nil {
				return err
			}
			b, err := os.ReadFile(c.KubeconfigPath(args[0]))
			if err != nil {
				return fmt.Errorf("cluster %s has no admin kubeconfig yet (%w): is its create finished?", args[0], err)
			}
			_, err = out.Write(b)
			return err
		},
	}

	load := &cobra.Command{
		Use:   "load-image NAME FILE",
		Short: "Import an image archive (docker save / OCI layout tarball) into every node of the cluster",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.clusters(out).LoadImage(cmd.Context(), args[0], args[1])
		},
	}
	cmd.AddCommand(create, list, del, kubeconfig, load)
	return cmd
}

func printCreated(out io.Writer, c *localcluster.Clusters, st *localcluster.State, tm localcluster.Timing) {
	ctx := localcluster.ContextName(st.Name)
	fmt.Fprintf(out, "\nCluster %s is up: %d control-plane and %d worker nodes Ready, CoreDNS answering in %.1fs\n"+
		"(namespaces %.1fs; init %.1fs, the joins began %.1fs into it and ended %.1fs later; then %.1fs until all Ready).\n",
		st.Name, st.ControlPlanes, st.Workers, tm.Total.Seconds(), tm.Nodes.Seconds(), tm.Init.Seconds(), tm.Joinable.Seconds(), tm.Joins.Seconds(), tm.Ready.Seconds())
	fmt.Fprintf(out, "\nNodes (reachable from this host over the bridge %s):\n", st.Bed.Bridge)
	for _, n := range st.Bed.Nodes {
		fmt.Fprintf(out, "  %-32s %s\n", n.Name, n.IP)
	}
	fmt.Fprintf(out, "\nThe context %s is in %s and is the current one:\n  kubectl --context %s get nodes\n", ctx, c.Kubeconfig, ctx)
	fmt.Fprintf(out, "The admin kubeconfig: kubeforge cluster kubeconfig %s\n", st.Name)
	fmt.Fprintf(out, "\nNodePort Services: http://<any node address above>:<nodePort> from this host.\n")
	fmt.Fprintf(out, "LoadBalancer Services: at their EXTERNAL-IP (kubectl get svc) when a load-balancer addon gives\n"+
		"them one in the cluster's network %s; otherwise at their NodePort on a node's address, as above.\n", st.Bed.Subnet)
	fmt.Fprintf(out, "Images: kubeforge cluster load-image %s FILE.tar. Delete: kubeforge cluster delete %s\n", st.Name, st.Name)
}
