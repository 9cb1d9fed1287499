package certrenew

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/pki"
)

// MetricsPath is the only path the metrics endpoint serves.
const MetricsPath = "/metrics"

// Metric names.
const (
	ExpirySecondsMetric  = "kubeforge_certificate_expiration_seconds"
	RenewalSecondsMetric = "kubeforge_certificate_renewal_seconds"
	RenewalsMetric       = "kubeforge_certificate_renewals_total"
	FailuresMetric       = "kubeforge_certificate_renewal_failures_total"
)

// metrics holds the duty's registry (its own, not the global one).
type metrics struct {
	exp      *expiryCollector
	reg      *prometheus.Registry
	renewals *prometheus.CounterVec
	failures *prometheus.CounterVec
}

func newMetrics(p config.Paths, now func() time.Time, share float64) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: RenewalsMetric, Help: "Automatic renewals of a certificate or kubeconfig by the node service.",
		}, []string{"name"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: FailuresMetric, Help: "Failed automatic renewals of a certificate or kubeconfig by the node service.",
		}, []string{"name"}),
	}
	m.exp = &expiryCollector{p: p, now: now, share: share}
	m.reg.MustRegister(m.renewals, m.failures, m.exp)
	return m
}

// setShare changes the renewal share the gauges are computed with.
func (m *metrics) setShare(share float64) {
	m.exp.mu.Lock()
	m.exp.share = share
	m.exp.mu.Unlock()
}

// expiryCollector reads the certificates at each scrape.
type expiryCollector struct {
	mu    sync.Mutex
	p     config.Paths
	now   func() time.Time
	share float64
}

var (
	expiryDesc = prometheus.NewDesc(ExpirySecondsMetric,
		"Seconds until the certificate expires (negative once expired), per certificate and kubeconfig of the node.",
		[]string{"name", "path", "ca", "renewal"}, nil)
	renewalDesc = prometheus.NewDesc(RenewalSecondsMetric,
		"Seconds until the node service renews the certificate automatically (negative: overdue).",
		[]string{"name", "path"}, nil)
)

func (c *expiryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- expiryDesc
	ch <- renewalDesc
}

func (c *expiryCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.now()
	rows, err := pki.CheckExpiration(c.p, now)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(expiryDesc, err)
		return
	}
	c.mu.Lock()
	share := c.share
	c.mu.Unlock()
	pki.SetRenewal(rows, true, share)
	for _, r := range rows {
		if r.Missing || r.Error != "" {
			continue
		}
		ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue, r.ExpirationDate.Sub(now).Seconds(),
			r.Name, r.Path, strconv.FormatBool(r.CertificateAuthority), r.Renewal)
		if !r.RenewalDate.IsZero() {
			ch <- prometheus.MustNewConstMetric(renewalDesc, prometheus.GaugeValue, r.RenewalDate.Sub(now).Seconds(), r.Name, r.Path)
		}
	}
}

// Handler serves the metrics at MetricsPath, GET and HEAD only: other
// methods get 405, other paths 404.
func (m *metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET "+MetricsPath, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	return mux
}

// serve listens on addr and serves Handler until stop is called.
func (m *metrics) serve(addr string, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("certificate metrics endpoint: listen on %s: %w (change KubeforgeConfiguration certificateRenewal.metricsBindAddress)", addr, err)
	}
	srv := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("certificate metrics endpoint stopped", "addr", addr, "err", err)
		}
	}()
	log.Info("serving certificate metrics", "url", "http://"+ln.Addr().String()+MetricsPath)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
