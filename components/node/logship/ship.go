// Package logship is the node service's log-shipping duty: it follows
// every container's log files (PODLOGDIR/NAMESPACE_POD_UID/CONTAINER/N.log,
// CRI format, rotation included) and the node service's, containerd's and
// the kubelet's own logs, and sends each line, with its node, namespace,
// pod and container, to the cluster's log store (the log-store addon)
// through the API server's Service proxy, with the node's own credentials
// (kubelet.conf; RBAC lets the nodes POST there and nowhere else).
//
// Lines go first to an on-disk buffer (Spool, bounded: DefaultBufferBytes)
// and leave it in order once the store took them, so lines printed while
// the store is down arrive when it is back. How far each file was read is
// kept on disk too, so a restarted node service neither loses nor repeats
// lines (a crash between a buffer write and the offsets' save may repeat
// a poll's lines).
package logship

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubeforge/kubeforge/components/node/duty"
	"github.com/kubeforge/kubeforge/internal/fsutil"
	"github.com/kubeforge/kubeforge/manifests"
)

// Name is the duty's name in `kubeforge node status`.
const Name = "log-shipping"

// DefaultBufferBytes bounds the node's on-disk buffer of lines the store
// has not taken yet (256 MiB); past it the oldest lines are dropped and
// counted.
const DefaultBufferBytes = 256 << 20

// Options configure the duty. Paths are host paths.
type Options struct {
	NodeName string
	// Kubeconfig is the node's credentials (kubelet.conf).
	Kubeconfig string
	// PodLogDir is the kubelet's pod log directory (/var/log/pods).
	PodLogDir string
	// OwnLogs maps the node's own log files to their source names
	// (node-service, containerd, kubelet).
	OwnLogs map[string]string
	// StateDir keeps the buffer and the file offsets.
	StateDir string
	// BufferBytes bounds the buffer (DefaultBufferBytes when 0).
	BufferBytes int64
	// Poll is how often the files are read (250 ms when 0).
	Poll time.Duration
	Log  *slog.Logger
	// Sink sends a batch of JSON lines; nil means the store through the
	// API server's Service proxy, with Kubeconfig's credentials.
	Sink func(ctx context.Context, body []byte) error
	// Installed says whether the store is installed; nil asks the API
	// server for its Service.
	Installed func(ctx context.Context) (bool, error)
}

// Duty is the log-shipping duty for the node service's list.
func Duty(o Options) duty.Duty {
	return duty.Duty{Name: Name, Run: func(ctx context.Context, h *duty.Health) error { return Run(ctx, o, h) }}
}

// Run ships logs until ctx ends. While the log-store addon is not
// installed it ships nothing and says so (disabled); it looks again every
// 10 s.
func Run(ctx context.Context, o Options, h *duty.Health) error {
	if o.NodeName == "" {
		return errors.New("no node name recorded by init or join")
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Poll <= 0 {
		o.Poll = 250 * time.Millisecond
	}
	if o.BufferBytes <= 0 {
		o.BufferBytes = DefaultBufferBytes
	}
	if o.Sink == nil || o.Installed == nil {
		// A joining node's kubelet writes kubelet.conf once its TLS
		// bootstrap is done.
		for !fsutil.Exists(o.Kubeconfig) {
			h.Warn("waiting for the node's credentials (%s)", o.Kubeconfig)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
		}
		cfg, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
		if err != nil {
			return fmt.Errorf("load %s: %w", o.Kubeconfig, err)
		}
		if o.Sink == nil {
			if o.Sink, err = proxySink(cfg); err != nil {
				return err
			}
		}
		if o.Installed == nil {
			c, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return fmt.Errorf("client from %s: %w", o.Kubeconfig, err)
			}
			o.Installed = func(ctx context.Context) (bool, error) {
				_, err := c.CoreV1().Services(metav1.NamespaceSystem).Get(ctx, manifests.LogStoreName, metav1.GetOptions{})
				if apierrors.IsNotFound(err) {
					return false, nil
				}
				return err == nil, err
			}
		}
	}
	// Ship only once the store is installed: a cluster without it gets no
	// growing buffer.
	for {
		ok, err := o.Installed(ctx)
		if ok {
			break
		}
		if err != nil {
			h.Warn("cannot tell whether the log store is installed: %v; asking again in 10s", err)
		} else {
			h.Disabled("the log-store addon is not installed (no Service %s/%s); looking again every 10s", metav1.NamespaceSystem, manifests.LogStoreName)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(10 * time.Second):
		}
	}
	sp, err := OpenSpool(filepath.Join(o.StateDir, "buffer"), o.BufferBytes)
	if err != nil {
		return err
	}
	defer sp.Close()
	t, err := newTailer(o.NodeName, o.PodLogDir, o.OwnLogs, filepath.Join(o.StateDir, "offsets.json"))
	if err != nil {
		return err
	}
	defer t.close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sendErr := make(chan error, 1)
	st := &status{}
	go func() { sendErr <- send(ctx, sp, o.Sink, st) }()

	tick := time.NewTicker(o.Poll)
	defer tick.Stop()
	lastReport := time.Time{}
	for {
		recs, err := t.poll()
		if err == nil {
			err = sp.Append(recs)
		}
		if err == nil {
			err = t.commit()
		}
		if err != nil {
			return err
		}
		if time.Since(lastReport) >= 5*time.Second {
			report(h, sp.Stats(), st, t.files())
			lastReport = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-sendErr:
			return err
		case <-tick.C:
		}
	}
}

// status is the sender's state, for the health report.
type status struct {
	mu       sync.Mutex
	lastErr  error
	failing  time.Time
	sentLast time.Time
	lines    uint64
}

func report(h *duty.Health, s SpoolStats, st *status, files int) {
	st.mu.Lock()
	lastErr, failing, lines := st.lastErr, st.failing, st.lines
	st.mu.Unlock()
	buf := fmt.Sprintf("buffered %s of %s", size(s.Pending), size(s.Bound))
	if lastErr != nil {
		h.Warn("the log store does not take lines since %s: %v; %s on disk, %d lines dropped (oldest first, past the bound)",
			failing.Format(time.RFC3339), lastErr, buf, s.Dropped)
		return
	}
	h.OK("following %d files, %d lines shipped to %s/%s; %s on disk, %d lines dropped",
		files, lines, metav1.NamespaceSystem, manifests.LogStoreName, buf, s.Dropped)
}

func size(b int64) string {
	switch {
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}

// send moves batches from the spool to the store, in order, retrying a
// failed batch (1 s, doubling up to 5 s) until the store takes it.
func send(ctx context.Context, sp *Spool, sink func(context.Context, []byte) error, st *status) error {
	const batchBytes = 1 << 20
	delay := time.Second
	for {
		data, n, pos, err := sp.Next(batchBytes)
		if err != nil {
			return err
		}
		if n == 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-sp.Ready():
			case <-time.After(time.Second):
			}
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = sink(sctx, data)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		st.mu.Lock()
		if err != nil {
			if st.lastErr == nil {
				st.failing = time.Now()
			}
			st.lastErr = err
		} else {
			st.lastErr, st.sentLast = nil, time.Now()
			st.lines += uint64(n)
		}
		st.mu.Unlock()
		if err != nil {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(delay):
			}
			delay = min(2*delay, 5*time.Second)
			continue
		}
		delay = time.Second
		if err := sp.Commit(pos); err != nil {
			return err
		}
	}
}

// InsertQuery is the query string of the store's JSON-lines insert
// endpoint for Records.
func InsertQuery() string {
	v := url.Values{}
	v.Set("_stream_fields", StreamFields)
	v.Set("_time_field", "_time")
	v.Set("_msg_field", "_msg")
	return v.Encode()
}

// proxySink posts batches to the store's /insert/jsonline through the API
// server's Service proxy.
func proxySink(cfg *rest.Config) (func(context.Context, []byte) error, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("HTTP client for the API server: %w", err)
	}
	u := cfg.Host + manifests.LogStoreProxyPath("/insert/jsonline") + "?" + InsertQuery()
	return func(ctx context.Context, body []byte) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/stream+json")
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("POST %s: %s: %s", manifests.LogStoreProxyPath("/insert/jsonline"), resp.Status, bytes.TrimSpace(msg))
		}
		return nil
	}, nil
}
