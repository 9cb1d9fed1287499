// Package logstore runs VictoriaLogs (github.com/VictoriaMetrics/VictoriaLogs,
// Apache-2.0), the cluster's log store, as `kubeforge component log-store`
// with its upstream flags (-storageDataPath, -retentionPeriod,
// -httpListenAddr, ...). Main does what upstream's app/victoria-logs main
// does: storage, select and insert in one process on one HTTP port.
//
// VictoriaMetrics' libraries declare their flags as package variables on
// the process-wide standard flag set. In a multicall binary that set is
// shared: kube-proxy merges it into its own flags (VictoriaLogs' -version
// would shadow kube-proxy's --version, and some 200 flags would join its
// help), and lib/buildinfo's -version collides with CoreDNS's. Package
// storeflags therefore moves exactly VictoriaLogs' flags onto a flag set of
// their own, which Main makes the standard set before parsing: the store's
// flag parsing then owns the process, and no other component sees its
// flags.
package logstore

import (
	"context"
	"crypto/subtle"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path"
	"runtime/debug"
	"strings"
	"time"

	"github.com/VictoriaMetrics/VictoriaMetrics/lib/appmetrics"
	"github.com/VictoriaMetrics/VictoriaMetrics/lib/buildinfo"
	"github.com/VictoriaMetrics/VictoriaMetrics/lib/envflag"
	"github.com/VictoriaMetrics/VictoriaMetrics/lib/flagutil"
	"github.com/VictoriaMetrics/VictoriaMetrics/lib/httpserver"
	"github.com/VictoriaMetrics/VictoriaMetrics/lib/logger"
	"github.com/VictoriaMetrics/VictoriaMetrics/lib/procutil"
	"github.com/VictoriaMetrics/VictoriaMetrics/lib/pushmetrics"

	"github.com/VictoriaMetrics/VictoriaLogs/app/vlinsert"
	"github.com/VictoriaMetrics/VictoriaLogs/app/vlinsert/insertutil"
	"github.com/VictoriaMetrics/VictoriaLogs/app/vlselect"
	"github.com/VictoriaMetrics/VictoriaLogs/app/vlstorage"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubeforge/kubeforge/components/logstore/storeflags"
	"github.com/kubeforge/kubeforge/manifests"
)

// Name is the component's name: `kubeforge component log-store`.
const Name = "log-store"

// DefaultPort is VictoriaLogs' HTTP port (insert, select and /health).
const DefaultPort = 9428

// flags is VictoriaLogs' own flag set (see the package comment).
var flags = storeflags.Set

// Upstream main's own flags, on the store's set.
var (
	httpListenAddrs  = flagutil.NewArrayString("httpListenAddr", "TCP address to listen for incoming http requests. See also -httpListenAddr.useProxyProtocol")
	useProxyProtocol = flagutil.NewArrayBool("httpListenAddr.useProxyProtocol", "Whether to use proxy protocol for connections accepted at the given -httpListenAddr")
)

// insertListenAddr is kubeforge's own flag: a second port that serves only
// ingestion (/insert/...) and /health. The nodes ship through a Service on
// this port, so their credentials, which may POST to that Service's proxy,
// cannot run a query (a POSTed query form) against the store.
var insertListenAddr = flags.String("insertListenAddr", "", "kubeforge: TCP address of a port that serves only /insert/... and /health (empty: none)")

// podNetwork, podNetworkMasks and nodeDirectory are kubeforge's own
// flags: with -nodeDirectory both ports serve the cluster's nodes only
// (an allowlist read from the node directory, see gate); without it, they
// refuse pods' addresses only (see podSources), as the builds before the
// allowlist did.
var (
	podNetwork      = flags.String("podNetwork", "", "kubeforge: the cluster's pod CIDRs, comma-separated: without -nodeDirectory, connections from a pod's address are refused on every port; with it, refusals name pods as such (empty: no check)")
	podNetworkMasks = flags.String("podNetwork.nodeMaskSizes", "", "kubeforge: without -nodeDirectory, the size of each node's pod CIDR, IPv4 then IPv6, comma-separated (the controller-manager's --node-cidr-mask-size-*; default 24,64)")
	nodeDirectory   = flags.String("nodeDirectory", "", "kubeforge: NAMESPACE/NAME of the node directory ConfigMap (kube-system/kubeforge-nodes): every port serves only the nodes it lists (their addresses and their bridge and VXLAN addresses) and loopback, read with the pod's ServiceAccount; until it is read, no one (/health answers 503) (empty: see -podNetwork)")
)

func init() { storeflags.Move() }

// Main runs VictoriaLogs with its upstream flags (args excludes the program
// name) and returns its exit code once SIGTERM or SIGINT stopped it.
// VictoriaLogs exits the process itself on fatal errors, as upstream does.
func Main(args []string) int {
	os.Args = append([]string{Name}, args...)
	flags.SetOutput(os.Stdout)
	flags.Usage = func() {
		flagutil.Usage("log-store is VictoriaLogs " + buildinfo.Version + ", kubeforge's cluster log store (https://docs.victoriametrics.com/victorialogs/).\n")
	}
	flag.CommandLine = flags
	if buildinfo.Version == "" { // upstream sets it at link time
		buildinfo.Version = "victoria-logs-" + moduleVersion("github.com/VictoriaMetrics/VictoriaLogs")
	}
	envflag.Parse()
	buildinfo.Init()
	vlselect.InitSecretFlags()
	logger.Init()
	gate, err := newGate(*podNetwork, *podNetworkMasks, *nodeDirectory, logger.Warnf)
	if err != nil {
		logger.Errorf("%s", err)
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if gate != nil && gate.dirName != "" {
		client, err := inClusterClient()
		if err != nil {
			logger.Errorf("-nodeDirectory: %s", err)
			return 2
		}
		go func() {
			if err := gate.watch(ctx, client, logger.Infof, logger.Warnf); err != nil {
				logger.Errorf("cannot watch the node directory: %s", err)
			}
		}()
	}

	listenAddrs := *httpListenAddrs
	if len(listenAddrs) == 0 {
		listenAddrs = []string{fmt.Sprintf(":%d", DefaultPort)}
	}
	logger.Infof("starting VictoriaLogs at %q...", listenAddrs)
	start := time.Now()
	vlstorage.Init()
	vlselect.Init()
	insertutil.SetLogRowsStorage(&vlstorage.Storage{})
	vlinsert.Init()
	// With the source check on, the main port serves no built-in route of
	// upstream's server (they answer before any handler could check the
	// source): only /health, /metrics and the store's own endpoints, all
	// behind the check.
	main, mainOpts := requireKey(os.Getenv(manifests.LogStoreQueryKeyEnv), noInternal(requestHandler)), httpserver.ServeOptions{UseProxyProtocol: useProxyProtocol}
	if gate != nil {
		main, mainOpts.DisableBuiltinRoutes = gate.wrap(strings.Join(listenAddrs, ","), withHealthAndMetrics(main)), true
	}
	go httpserver.Serve(listenAddrs, main, mainOpts)
	if *insertListenAddr != "" {
		listenAddrs = append(listenAddrs, *insertListenAddr)
		// No built-in routes there (/metrics, /flags, /debug/pprof/).
		go httpserver.Serve([]string{*insertListenAddr}, gate.wrap(*insertListenAddr, insertOnly(vlinsert.RequestHandler)), httpserver.ServeOptions{DisableBuiltinRoutes: true})
	}
	logger.Infof("started VictoriaLogs in %.3f seconds", time.Since(start).Seconds())

	pushmetrics.Init()
	sig := procutil.WaitForSigterm()
	logger.Infof("received signal %s", sig)
	cancel()
	pushmetrics.Stop()
	start = time.Now()
	if err := httpserver.Stop(listenAddrs); err != nil {
		logger.Errorf("cannot stop the web service: %s", err)
		return 1
	}
	vlinsert.Stop()
	vlselect.Stop()
	vlstorage.Stop()
	logger.Infof("VictoriaLogs stopped in %.3f seconds", time.Since(start).Seconds())
	return 0
}

// inClusterClient is a client with the pod's ServiceAccount.
func inClusterClient() (kubernetes.Interface, error) {
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("not in a pod with a ServiceAccount token (%w): the store reads the node directory with its ServiceAccount", err)
	}
	cfg.UserAgent = "kubeforge-log-store"
	return kubernetes.NewForConfig(cfg)
}

// moduleVersion is the version of module path linked in.
func moduleVersion(path string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == path {
				return m.Version
			}
		}
	}
	return "unknown"
}

// requestHandler is upstream's: insert, select and storage endpoints on
// one port.
func requestHandler(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.Path == "/" {
		if r.Method != http.MethodGet {
			return false
		}
		w.Header().Add("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<h2>VictoriaLogs (kubeforge log-store)</h2>Version %s<br>", buildinfo.Version)
		httpserver.WriteAPIHelp(w, [][2]string{
			{"select/vmui", "Web UI for VictoriaLogs"},
			{"metrics", "available service metrics"},
			{"flags", "command-line flags"},
		})
		return true
	}
	return vlinsert.RequestHandler(w, r) || vlselect.RequestHandler(w, r) || vlstorage.RequestHandler(w, r)
}

// withHealthAndMetrics answers /health and /metrics as upstream's
// built-in routes do and passes everything else to h.
func withHealthAndMetrics(h func(w http.ResponseWriter, r *http.Request) bool) func(w http.ResponseWriter, r *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		switch r.URL.Path {
		case "/health":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = w.Write([]byte("OK"))
			return true
		case "/metrics":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			appmetrics.WritePrometheusMetrics(w)
			return true
		}
		return h(w, r)
	}
}

// requireKey lets through only requests that carry key in
// manifests.LogStoreQueryKeyHeader (compared in constant time; the header
// is removed before the store sees the request); with no key it is h. The
// main port's /health and /metrics are answered before it (probes, and
// nothing secret).
func requireKey(key string, h func(w http.ResponseWriter, r *http.Request) bool) func(w http.ResponseWriter, r *http.Request) bool {
	if key == "" {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) bool {
		got := r.Header.Get(manifests.LogStoreQueryKeyHeader)
		if subtle.ConstantTimeCompare([]byte(got), []byte(key)) != 1 {
			http.Error(w, "the log store's searches need its query key in the "+manifests.LogStoreQueryKeyHeader+" header (Secret "+
				metav1.NamespaceSystem+"/"+manifests.LogStoreQueryKeySecret+"): `kubeforge logs` and the dashboard send it", http.StatusForbidden)
			return true
		}
		r.Header.Del(manifests.LogStoreQueryKeyHeader)
		return h(w, r)
	}
}

// noInternal refuses upstream's /internal/ endpoints (partition detach and
// attach, snapshots, forced merges and flushes, cluster-mode selects) with
// 403 before any store code sees them: they have no key set, so anyone the
// source check lets through (any process on a node) could hide a day of
// logs or fill the disk with snapshots. kubeforge uses none of them.
func noInternal(h func(w http.ResponseWriter, r *http.Request) bool) func(w http.ResponseWriter, r *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if p := path.Clean("/" + r.URL.Path); p == "/internal" || strings.HasPrefix(p, "/internal/") {
			http.Error(w, "the log store's /internal/ endpoints are not served", http.StatusForbidden)
			return true
		}
		return h(w, r)
	}
}

// insertOnly serves ingestion and nothing else: paths under /insert/ go to
// insert, /health answers OK (the probes), and every other path is refused
// with 403 before any store code sees it.
func insertOnly(insert func(w http.ResponseWriter, r *http.Request) bool) func(w http.ResponseWriter, r *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/health" && r.Method == http.MethodGet {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = w.Write([]byte("OK"))
			return true
		}
		if !strings.HasPrefix(r.URL.Path, "/insert/") || strings.Contains(r.URL.Path, "..") {
			http.Error(w, "this port only takes logs (/insert/...): queries go to the store's main port", http.StatusForbidden)
			return true
		}
		return insert(w, r)
	}
}
