package localpath

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/component-base/logs"
	"k8s.io/klog/v2"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"

	"github.com/kubeforge/kubeforge/components/internal/k8srun"
)

// ProvisionerName is the provisioner the local-path StorageClass names.
const ProvisionerName = "kubeforge.io/local-path"

// options are the component's flags.
type options struct {
	node, root, kubeconfig, name string
}

// Main runs the provisioner (args excludes the program name) and returns
// its exit code.
func Main(args []string) int {
	return k8srun.Run(command(), args)
}

func command() *cobra.Command {
	o := options{}
	cmd := &cobra.Command{
		Use:   "local-path-provisioner",
		Short: "Provision node-local directories for the local-path StorageClass",
		Long: "Serves PersistentVolumeClaims of the StorageClasses whose provisioner is " + ProvisionerName +
			" whose pods run on this node: each gets a directory under --root, deleted with the claim under the Delete reclaim policy.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			return run(ctx, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.node, "node-name", os.Getenv("NODE_NAME"), "this node's name (default: $NODE_NAME)")
	f.StringVar(&o.root, "root", "", "the directory holding the volumes on this node")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: the in-cluster service account)")
	f.StringVar(&o.name, "provisioner-name", ProvisionerName, "the provisioner name StorageClasses use")
	logs.AddFlags(f)
	return cmd
}

func run(ctx context.Context, o options) error {
	if o.node == "" {
		return errors.New("--node-name (or $NODE_NAME) is required: give the name of the node this runs on")
	}
	if o.root == "" || !filepath.IsAbs(o.root) || filepath.Clean(o.root) == "/" {
		return fmt.Errorf("--root %q: give the absolute directory holding the volumes, such as /var/lib/kubeforge/storage", o.root)
	}
	root := filepath.Clean(o.root)
	// The root is private: the kubelet (root) bind-mounts each volume
	// directory into its pods, nobody else needs to look in.
	if err := os.MkdirAll(root, 0o700); err != nil {
		return fmt.Errorf("volume root %s on node %s: %w", root, o.node, err)
	}
	if err := os.Chmod(root, 0o700); err != nil {
		return fmt.Errorf("volume root %s on node %s: %w", root, o.node, err)
	}
	cfg, err := restConfig(o.kubeconfig)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	node, err := client.CoreV1().Nodes().Get(ctx, o.node, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read node %s (for its %s label): %w", o.node, corev1.LabelHostname, err)
	}
	p := &Provisioner{Node: o.node, Hostname: node.Labels[corev1.LabelHostname], Root: root}
	klog.FromContext(ctx).Info("Serving local-path volumes", "node", o.node, "hostname", p.Hostname, "root", root, "provisioner", o.name)
	// One provisioner per node, each serving its own node's claims: no
	// leader election.
	controller.NewProvisionController(ctx, client, o.name, p, controller.LeaderElection(false)).Run(ctx)
	return nil
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig %s: %w", kubeconfig, err)
		}
		return cfg, nil
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("no --kubeconfig and not in a pod (%w): give --kubeconfig", err)
	}
	return cfg, nil
}
