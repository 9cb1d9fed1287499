// Package netpol runs NetworkPolicy enforcement on a node with the
// Kubernetes SIG Network implementation, sigs.k8s.io/kube-network-policies
// (v0.8.0), compiled in: its controller watches NetworkPolicies, Pods and
// Namespaces, has nftables send the first packet of every new connection
// of a pod that a policy selects to an NFQUEUE, and gives each such packet
// its verdict in user space. The flags are upstream's.
//
// Kernels built without the nftables queue expression (CONFIG_NFT_QUEUE
// off, as on the machines kubeforge is tested on, where the xtables
// NFQUEUE target and nfnetlink_queue are built in) refuse upstream's
// rules as a whole, so nothing would reach the queue. There Main detects
// it at start and installs the same rules itself, in its own table
// (SteerTable), with the xtables NFQUEUE target in place of the queue
// expression; the upstream controller still decides every verdict.
package netpol

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/component-base/logs"
	logsapi "k8s.io/component-base/logs/api/v1"
	nodeutil "k8s.io/component-helpers/node/util"
	"k8s.io/klog/v2"
	"sigs.k8s.io/kube-network-policies/pkg/networkpolicy"

	_ "k8s.io/component-base/logs/json/register" // JSON log format, as upstream's main
)

// Table names: upstream's own table (its default NFTableName) and the one
// kubeforge installs where the kernel lacks the nftables queue expression.
// Both are in the inet family; `kubeforge reset` deletes both.
const (
	UpstreamTable = "kube-network-policies"
	SteerTable    = "kubeforge-network-policies"
)

// DefaultHealthAddress is where /healthz and /metrics are served: on the
// node's loopback (the pod runs in the host network), so the kubelet's
// probe reaches it and nothing outside the node does.
const DefaultHealthAddress = "127.0.0.1:10264"

// options are upstream's flags (cmd/main.go of kube-network-policies,
// without the alpha AdminNetworkPolicy ones and --disable-nri, which
// v0.8.0 cannot honour: it then dereferences the absent NRI plugin) plus
// the health address and the steering mode.
type options struct {
	failOpen            bool
	queueID             int
	hostnameOverride    string
	netfilterBug1766Fix bool
	healthAddress       string
	steer               string
}

func (o *options) addFlags(fs *flag.FlagSet) {
	fs.BoolVar(&o.failOpen, "fail-open", false, "If set, don't drop packets if the controller is not running")
	fs.IntVar(&o.queueID, "nfqueue-id", 100, "Number of the nfqueue used")
	fs.StringVar(&o.hostnameOverride, "hostname-override", "", "If non-empty, will be used as the name of the Node that kube-network-policies is running on. If unset, the node name is assumed to be the same as the node's hostname.")
	fs.BoolVar(&o.netfilterBug1766Fix, "netfilter-bug-1766-fix", false, "If set, process DNS packets on the PREROUTING hooks to avoid the race condition on the conntrack subsystem, not needed for kernels 6.12+ (see https://bugzilla.netfilter.org/show_bug.cgi?id=1766)")
	fs.StringVar(&o.healthAddress, "health-address", DefaultHealthAddress, "host:port to serve /healthz (200 once the nftables rules are in place) and /metrics on")
	fs.StringVar(&o.steer, "steer", "auto", "How packets reach the queue: nft-queue (upstream's rules, needs the kernel's nftables queue expression), xt-nfqueue (the same rules with the xtables NFQUEUE target, for kernels without it), or auto (nft-queue where the kernel has it)")
}

// Main runs the network policy controller with its upstream flags (args
// excludes the program name) and returns its exit code.
func Main(args []string) int {
	fs := flag.NewFlagSet("network-policies", flag.ContinueOnError)
	o := &options{}
	o.addFlags(fs)
	logCfg := logsapi.NewLoggingConfiguration()
	logsapi.AddGoFlags(logCfg, fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	logs.InitLogs()
	defer logs.FlushLogs()
	if err := logsapi.ValidateAndApply(logCfg, nil); err != nil {
		fmt.Fprintf(os.Stderr, "network-policies: %v\n", err)
		return 1
	}
	// SIGTERM too (upstream's main waits for SIGINT only): the kubelet
	// stops a pod with SIGTERM, and the rules must go with the process, or
	// the pods they select would lose every new connection.
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "network-policies: %v\n", err)
		return 1
	}
	return 0
}

func run(ctx context.Context, o *options) error {
	logger := klog.FromContext(ctx)
	if o.queueID < 0 || o.queueID > 65535 {
		return fmt.Errorf("--nfqueue-id=%d: a queue number is 0..65535", o.queueID)
	}
	if _, _, err := net.SplitHostPort(o.healthAddress); err != nil {
		return fmt.Errorf("--health-address=%q: %w (want host:port)", o.healthAddress, err)
	}
	nodeName, err := nodeutil.GetHostname(o.hostnameOverride)
	if err != nil {
		return fmt.Errorf("cannot tell the node's name: %w (pass --hostname-override)", err)
	}
	mode, err := chooseSteer(o.steer, queueExprSupported)
	if err != nil {
		return err
	}
	if mode == SteerXT && o.netfilterBug1766Fix {
		return fmt.Errorf("--netfilter-bug-1766-fix needs the nftables queue expression, which --steer=%s replaces; kernels 6.12 and later do not need the fix: drop the flag", SteerXT)
	}
	logger.Info("Steering new connections to the NFQUEUE", "mode", mode, "queue", o.queueID, "node", nodeName)

	config, err := rest.InClusterConfig()
	if err != nil {
		return fmt.Errorf("in-cluster API configuration: %w (run inside a pod with a service account)", err)
	}
	config.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	config.ContentType = "application/vnd.kubernetes.protobuf"
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return err
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	policies := factory.Networking().V1().NetworkPolicies()
	pods := factory.Core().V1().Pods()
	namespaces := factory.Core().V1().Namespaces()

	cfg := networkpolicy.Config{
		FailOpen:            o.failOpen,
		QueueID:             o.queueID,
		NodeName:            nodeName,
		NetfilterBug1766Fix: o.netfilterBug1766Fix,
		NFTableName:         UpstreamTable,
		// Upstream's v0.8.0 dereferences its NRI plugin whenever a
		// packet's address is not a known pod's, so it keeps the plugin
		// (which only logs when the runtime offers no NRI socket).
		NRIdisabled: false,
	}
	ctrl, err := networkpolicy.NewController(client, policies, namespaces, pods, nil, nil, nil, nil, cfg)
	if err != nil {
		return fmt.Errorf("start the network policy controller: %w", err)
	}

	var st *steerer
	table := UpstreamTable
	if mode == SteerXT {
		table = SteerTable
		st = newSteerer(SteerConfig{Table: SteerTable, QueueID: uint16(o.queueID), FailOpen: o.failOpen, NodeName: nodeName},
			policies.Lister(), pods.Lister(), &netlinkTables{})
		if err := st.watch(policies.Informer(), pods.Informer()); err != nil {
			return err
		}
	}

	var synced atomic.Bool
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := healthy(synced.Load(), table, tableExists); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	ln, err := net.Listen("tcp", o.healthAddress)
	if err != nil {
		return fmt.Errorf("--health-address=%s: %w", o.healthAddress, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	done := make(chan error, 1)
	go func() { done <- ctrl.Run(ctx) }()
	factory.Start(ctx.Done())
	for _, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return ctx.Err()
		}
	}
	if st != nil {
		go st.run(ctx)
		defer st.cleanup()
	}
	synced.Store(true)

	select {
	case <-ctx.Done():
	case err := <-done:
		if err != nil {
			return fmt.Errorf("network policy controller: %w", err)
		}
	}
	// Upstream's controller removes its table when Run returns; give it
	// the grace period upstream's main gives it.
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
	return nil
}

// healthy is the /healthz answer: the caches have synced and the table
// that steers packets to the queue is in place.
func healthy(synced bool, table string, exists func(string) (bool, error)) error {
	if !synced {
		return errors.New("waiting for the NetworkPolicy, Pod and Namespace caches to sync")
	}
	ok, err := exists(table)
	if err != nil {
		return fmt.Errorf("list nftables tables: %w", err)
	}
	if !ok {
		return fmt.Errorf("nftables table inet %s is not installed yet", table)
	}
	return nil
}
