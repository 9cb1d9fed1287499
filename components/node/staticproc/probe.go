package staticproc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Probe is an HTTP(S) probe of a manifest, as the kubelet runs it: any
// status from 200 to 399 passes, the server's certificate is not verified.
type Probe struct {
	URL              string
	Timeout          time.Duration
	Period           time.Duration
	InitialDelay     time.Duration
	FailureThreshold int
}

// probeOf reads a container's probe; only httpGet probes run here.
func probeOf(p *corev1.Probe, c corev1.Container, field string) (*Probe, error) {
	if p == nil {
		return nil, nil
	}
	g := p.HTTPGet
	if g == nil {
		return nil, fmt.Errorf("spec.containers[0].%s: only httpGet probes run for a control-plane process", field)
	}
	port := g.Port.IntValue()
	if g.Port.StrVal != "" {
		port = 0
		for _, cp := range c.Ports {
			if cp.Name == g.Port.StrVal {
				port = int(cp.ContainerPort)
			}
		}
	}
	if port <= 0 {
		return nil, fmt.Errorf("spec.containers[0].%s.httpGet.port: %q is no port of the container", field, g.Port.String())
	}
	host := g.Host
	if host == "" {
		host = "127.0.0.1"
	}
	scheme := strings.ToLower(string(g.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	path := g.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	sec := func(v, def int32) time.Duration {
		if v <= 0 {
			v = def
		}
		return time.Duration(v) * time.Second
	}
	threshold := int(p.FailureThreshold)
	if threshold <= 0 {
		threshold = 3
	}
	return &Probe{
		URL:              scheme + "://" + net.JoinHostPort(host, strconv.Itoa(port)) + path,
		Timeout:          sec(p.TimeoutSeconds, 1),
		Period:           sec(p.PeriodSeconds, 10),
		InitialDelay:     time.Duration(p.InitialDelaySeconds) * time.Second,
		FailureThreshold: threshold,
	}, nil
}

// probeClient is shared by every probe: no keep-alive (a probe is one
// request now and then), no certificate check (as the kubelet's).
var probeClient = &http.Client{
	Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the kubelet's probes do not verify either
		DisableKeepAlives: true,
		Proxy:             nil,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// Check runs the probe once.
func (p *Probe) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL, nil)
	if err != nil {
		return err
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) {
			return ue.Unwrap()
		}
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("%s: HTTP %d: %s", p.URL, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}
