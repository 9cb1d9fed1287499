package cli

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubeforge/kubeforge/components/dashboard"
)

// dashboardOptions are the flags of `kubeforge dashboard`.
type dashboardOptions struct {
	kubeconfig     string
	port           int
	serviceAccount string
	admin          bool
	tokenTTL       time.Duration
}

func newDashboardCmd(_ io.Reader, out, _ io.Writer) *cobra.Command {
	o := &dashboardOptions{}
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Open the web dashboard: port-forward it to 127.0.0.1 and print its URL",
		Long: "Port-forward the dashboard (the addon/dashboard init phase installs it) to 127.0.0.1 through the\n" +
			"API server, print its URL, and keep forwarding until Ctrl-C. Sign in with a bearer token: with\n" +
			"--service-account NAMESPACE/NAME the URL carries a short-lived token of that ServiceAccount\n" +
			"(TokenRequest), so you act with its rights; --admin creates kube-system/kubeforge-dashboard-admin\n" +
			"bound to cluster-admin (only when asked) and signs in as it.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.tokenTTL < 10*time.Minute {
				return fmt.Errorf("--token-ttl %v: the API server issues tokens for 10m at least", o.tokenTTL)
			}
			path := o.kubeconfig
			if path == "" {
				path = os.Getenv("KUBECONFIG")
			}
			if path == "" {
				path = "/etc/kubernetes/admin.conf"
			}
			cfg, err := clientcmd.BuildConfigFromFlags("", path)
			if err != nil {
				return fmt.Errorf("kubeconfig %s: %w (pass --kubeconfig)", path, err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return dashboard.Open(ctx, dashboard.OpenOptions{Config: cfg, LocalPort: o.port,
				ServiceAccount: o.serviceAccount, Admin: o.admin, TokenTTL: o.tokenTTL, Out: out})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig to reach the API server (default $KUBECONFIG, else /etc/kubernetes/admin.conf)")
	f.IntVar(&o.port, "port", 0, "local port on 127.0.0.1 (default: any free port)")
	f.StringVar(&o.serviceAccount, "service-account", "", "NAMESPACE/NAME: put a short-lived token of this ServiceAccount in the sign-in URL")
	f.BoolVar(&o.admin, "admin", false, "create kube-system/kubeforge-dashboard-admin (bound to cluster-admin) if missing and sign in as it")
	f.DurationVar(&o.tokenTTL, "token-ttl", 15*time.Minute, "lifetime of the sign-in token (10m at least)")
	return cmd
}
