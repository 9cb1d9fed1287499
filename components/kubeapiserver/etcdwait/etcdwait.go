// Package etcdwait is the API server's wait for etcd before it starts (see
// Wait). It imports no upstream program, so its tests build in seconds.
package etcdwait

import (
	"net"
	"net/url"
	"strings"
	"time"
)

// Waiter waits for etcd; its dialer and clock are injected for tests.
type Waiter struct {
	// Dial tries one endpoint (host:port) once.
	Dial func(endpoint string) error
	// Now and Sleep are the clock.
	Now   func() time.Time
	Sleep func(time.Duration)
	// Interval is the pause between two rounds over the endpoints.
	Interval time.Duration
}

// Default dials TCP with a 200 ms timeout on the real clock, every 20 ms.
func Default() Waiter {
	return Waiter{
		Dial: func(ep string) error {
			c, err := net.DialTimeout("tcp", ep, 200*time.Millisecond)
			if err == nil {
				c.Close()
			}
			return err
		},
		Now: time.Now, Sleep: time.Sleep, Interval: 20 * time.Millisecond,
	}
}

// Wait waits until one of the etcd endpoints accepts a connection, or
// until max has passed; it reports whether one did. The kubelet starts etcd
// and the API server together; an API server that dials etcd before it
// listens backs off for a second (gRPC's reconnect delay) and so serves up
// to a second after etcd could have answered. Waiting costs nothing: the API
// server can do nothing without etcd. After max it starts anyway and
// reports etcd's absence itself.
func (w Waiter) Wait(endpoints []string, max time.Duration) bool {
	if len(endpoints) == 0 {
		return false
	}
	deadline := w.Now().Add(max)
	for w.Now().Before(deadline) {
		for _, ep := range endpoints {
			if w.Dial(ep) == nil {
				return true
			}
		}
		w.Sleep(w.Interval)
	}
	return false
}

// Servers returns the host:port of each --etcd-servers URL in the API
// server's arguments (port 2379 when the URL has none; unix sockets are
// left out).
func Servers(args []string) []string {
	var v string
	for i, a := range args {
		if s, ok := strings.CutPrefix(a, "--etcd-servers="); ok {
			v = s
		} else if a == "--etcd-servers" && i+1 < len(args) {
			v = args[i+1]
		}
	}
	var out []string
	for _, s := range strings.Split(v, ",") {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil || u.Host == "" || u.Scheme == "unix" {
			continue
		}
		host, port := u.Hostname(), u.Port()
		if port == "" {
			port = "2379"
		}
		out = append(out, net.JoinHostPort(host, port))
	}
	return out
}
