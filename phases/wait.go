// Waiting: one Waiter for every wait of the workflows (health endpoints,
// conditions on the API), built on apimachinery's wait helpers, and a
// no-op one for dry runs, so phases wait without asking whether they may.

package phases

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubeforge/kubeforge/internal/progress"
)

// health is one endpoint a waiter polls.
type health struct {
	name, url string
	tls       *tls.Config
}

// healthWait is a wait for several endpoints at once.
type healthWait struct {
	phase string
	// waiting is said when the wait starts ("" says nothing).
	waiting string
	checks  []health
	timeout time.Duration
	// ready is reported once every endpoint is healthy ("" reports nothing).
	ready string
	// watch, when set, runs during the wait; its error ends the wait at
	// once and is returned as the wait's error.
	watch func(ctx context.Context) error
}

// Waiter waits until something is so. Phases get theirs from Node.waiter:
// the live one polls, a dry run's says what it would wait for and returns.
type Waiter interface {
	// Endpoints polls every endpoint at once until each answers 200 OK or
	// the timeout passes, reporting each one as it turns healthy. It
	// returns each endpoint's last error (nil: healthy), in order, and the
	// watch's error if that ended the wait.
	Endpoints(ctx context.Context, w healthWait) (errs []error, watchErr error)
	// Healthy polls one endpoint until it answers 200 OK; when ctx ends
	// the error is the last failure seen.
	Healthy(ctx context.Context, h health) error
	// Poll calls cond at once and then every interval until it reports
	// done or the timeout passes. An error from cond does not end the
	// wait; the last one is returned on timeout (else the context's).
	Poll(ctx context.Context, interval, timeout time.Duration, cond func(context.Context) (bool, error)) error
}

// waiter is this node's Waiter: Wait when set (tests), else a no-op one in
// a dry run and a live one otherwise.
func (n *Node) waiter() Waiter {
	switch {
	case n.Wait != nil:
		return n.Wait
	case n.DryRun:
		return dryRunWaiter{out: n.Out}
	}
	return &liveWaiter{out: n.Out}
}

// liveWaiter polls for real.
type liveWaiter struct {
	out *progress.Reporter
	// interval between health polls (default 100 ms).
	interval time.Duration
	// requestTimeout bounds one health request (default 2 s).
	requestTimeout time.Duration
}

func (w *liveWaiter) healthInterval() time.Duration {
	if w.interval > 0 {
		return w.interval
	}
	return 100 * time.Millisecond
}

func (w *liveWaiter) Endpoints(ctx context.Context, hw healthWait) ([]error, error) {
	if hw.waiting != "" {
		w.out.Printf(hw.phase, "%s", hw.waiting)
	}
	wctx, cancel := context.WithTimeout(ctx, hw.timeout)
	defer cancel()
	start := time.Now()
	var watchErr error
	watchDone := make(chan struct{})
	if hw.watch != nil {
		go func() {
			defer close(watchDone)
			if err := hw.watch(wctx); err != nil {
				watchErr = err
				cancel()
			}
		}()
	} else {
		close(watchDone)
	}
	type result struct {
		i   int
		err error
	}
	results := make(chan result, len(hw.checks))
	for i, h := range hw.checks {
		go func() {
			err := w.Healthy(wctx, h)
			if err == nil {
				w.out.Done(hw.phase, "healthy", "", start, "%s is healthy", h.name)
			}
			results <- result{i, err}
		}()
	}
	errs := make([]error, len(hw.checks))
	for range hw.checks {
		r := <-results
		errs[r.i] = r.err
	}
	cancel()
	<-watchDone
	if watchErr == nil && hw.ready != "" && errors.Join(errs...) == nil {
		w.out.Done(hw.phase, "ready", "", start, "%s", hw.ready)
	}
	return errs, watchErr
}

// Healthy polls h every interval until it answers 200 or ctx ends; the
// error is the last failure seen. The connection is kept between polls: a
// new TLS handshake every 100 ms to each component cost a starting API
// server and etcd an RSA signature each time.
func (w *liveWaiter) Healthy(ctx context.Context, h health) error {
	tr := &http.Transport{TLSClientConfig: h.tls, MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	timeout := w.requestTimeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	client := &http.Client{Timeout: timeout, Transport: tr}
	last := errors.New("not checked yet")
	err := wait.PollUntilContextCancel(ctx, w.healthInterval(), true, func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
		if err != nil {
			return false, err
		}
		resp, err := client.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				last = err
			}
			return false, nil
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so the connection is reused
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return true, nil
		}
		last = fmt.Errorf("%s answered %s", h.url, resp.Status)
		return false, nil
	})
	if err == nil {
		return nil
	}
	if ctx.Err() == nil {
		return err // a URL that makes no request
	}
	return last
}

func (w *liveWaiter) Poll(ctx context.Context, interval, timeout time.Duration, cond func(context.Context) (bool, error)) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, interval, timeout, true, func(ctx context.Context) (bool, error) {
		ok, err := cond(ctx)
		if err != nil {
			last = err
		}
		return ok, nil
	})
	if err != nil && last != nil {
		return last
	}
	return err
}

// dryRunWaiter waits for nothing: a dry run starts nothing that could
// become healthy. It says what a real run would wait for.
type dryRunWaiter struct {
	out *progress.Reporter
}

func (w dryRunWaiter) Endpoints(_ context.Context, hw healthWait) ([]error, error) {
	for _, h := range hw.checks {
		w.out.Printf(hw.phase, "Would wait for %s to answer ok at %s", h.name, h.url)
	}
	return make([]error, len(hw.checks)), nil
}

func (dryRunWaiter) Healthy(context.Context, health) error { return nil }

func (dryRunWaiter) Poll(context.Context, time.Duration, time.Duration, func(context.Context) (bool, error)) error {
	return nil
}
