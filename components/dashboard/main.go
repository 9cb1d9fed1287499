package dashboard

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"

	"github.com/kubeforge/kubeforge/internal/logsearch"
)

// Main runs the dashboard (`kubeforge component dashboard [flags]`) and
// returns the process exit code.
func Main(args []string) int {
	fs := flag.NewFlagSet("dashboard", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8080", "address of the dashboard (plain HTTP unless --tls-cert-file is set)")
	health := fs.String("health-listen", "", "address serving only /healthz, for the kubelet's probes (empty: none)")
	server := fs.String("api-server", "", "API server URL (default: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT)")
	caFile := fs.String("ca-file", "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt", "CA bundle that verifies the API server")
	certFile := fs.String("tls-cert-file", "", "serve HTTPS with this certificate (and mark the session cookie Secure)")
	keyFile := fs.String("tls-private-key-file", "", "the key of --tls-cert-file")
	ttl := fs.Duration("session-ttl", 8*time.Hour, "how long a sign-in lasts")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log, *listen, *health, *server, *caFile, *certFile, *keyFile, *ttl); err != nil {
		log.Error("dashboard failed", "err", err)
		return 1
	}
	return 0
}

func run(log *slog.Logger, listen, health, server, caFile, certFile, keyFile string, ttl time.Duration) error {
	if server == "" {
		host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
		if host == "" || port == "" {
			return errors.New("no API server: set --api-server or KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT")
		}
		server = "https://" + net.JoinHostPort(host, port)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return fmt.Errorf("the API server's CA (--ca-file): %w", err)
	}
	if (certFile == "") != (keyFile == "") {
		return errors.New("--tls-cert-file and --tls-private-key-file go together")
	}
	factory := InClusterClients(server, caPEM)
	s, err := New(Options{Clients: factory, Secure: certFile != "", SessionTTL: ttl, Log: log,
		Certificates: func(ctx context.Context) []CertInfo { return clusterCertificates(ctx, server, caPEM) }})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	srv := &http.Server{Addr: listen, Handler: s, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	if health != "" {
		hm := http.NewServeMux()
		hm.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
		hs := &http.Server{Addr: health, Handler: hm, ReadHeaderTimeout: 5 * time.Second}
		go func() { errc <- hs.ListenAndServe() }()
		defer hs.Close()
	}
	go func() {
		log.Info("serving the dashboard", "address", listen, "tls", certFile != "", "api-server", server)
		if certFile != "" {
			errc <- srv.ListenAndServeTLS(certFile, keyFile)
		} else {
			errc <- srv.ListenAndServe()
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}

// InClusterClients makes a user's clients for the API server at server,
// verified with caPEM, authenticated with the user's token only.
func InClusterClients(server string, caPEM []byte) ClientFactory {
	return func(token string) (Clients, error) {
		cfg := &rest.Config{Host: server, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAData: caPEM},
			UserAgent: "kubeforge-dashboard", QPS: 20, Burst: 40}
		kube, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return Clients{}, fmt.Errorf("API client for %s: %w", server, err)
		}
		m, err := metricsclient.NewForConfig(cfg)
		if err != nil {
			return Clients{}, fmt.Errorf("metrics client for %s: %w", server, err)
		}
		logs, err := logsearch.NewClient(cfg)
		if err != nil {
			return Clients{}, fmt.Errorf("log store client for %s: %w", server, err)
		}
		return Clients{Kube: kube, Metrics: m, Logs: logs}, nil
	}
}

// clusterCertificates are the certificates anyone who reaches the API
// server can read: the cluster CA (the dashboard's CA bundle) and the API
// server's serving certificate (from a verified TLS handshake, which sends
// no credential).
func clusterCertificates(ctx context.Context, server string, caPEM []byte) []CertInfo {
	var out []CertInfo
	pool := x509.NewCertPool()
	for rest := caPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil {
			pool.AddCert(c)
			out = append(out, CertInfo{Name: "cluster CA", Subject: c.Subject.String(), NotAfter: c.NotAfter})
		}
	}
	host := server
	if u, err := parseHost(server); err == nil {
		host = u
	}
	d := tls.Dialer{Config: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := d.DialContext(dctx, "tcp", host)
	if err != nil {
		return out
	}
	defer conn.Close()
	if certs := conn.(*tls.Conn).ConnectionState().PeerCertificates; len(certs) > 0 {
		out = append(out, CertInfo{Name: "API server serving", Subject: certs[0].Subject.String(), NotAfter: certs[0].NotAfter})
	}
	return out
}

// parseHost is the host:port of an https URL.
func parseHost(server string) (string, error) {
	u, err := url.Parse(server)
	if err != nil {
		return "", err
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "443"), nil
	}
	return u.Host, nil
}
