// Package kubeapiserver runs the Kubernetes API server (kube-apiserver), compiled in from
// k8s.io/kubernetes/cmd/kube-apiserver.
package kubeapiserver

import (
	"net"
	"net/url"
	"strings"
	"time"
	_ "time/tzdata" // CronJob time zones, as upstream

	"k8s.io/kubernetes/cmd/kube-apiserver/app"

	"github.com/kubeforge/kubeforge/components/internal/k8srun"
)

// Main runs kube-apiserver with its upstream flags (args excludes the program
// name) and returns its exit code.
func Main(args []string) int {
	waitForEtcd(etcdServers(args), etcdWait)
	return k8srun.Run(app.NewAPIServerCommand(), args)
}

// etcdWait bounds how long the API server's start waits for etcd.
const etcdWait = 20 * time.Second

// waitForEtcd waits until one of the etcd endpoints accepts a TCP
// connection, or until max has passed. The kubelet starts etcd and the API
// server together; an API server that dials etcd before it listens backs
// off for a second (gRPC's reconnect delay) and so serves up to a second
// after etcd could have answered. Waiting here costs nothing: the API
// server can do nothing without etcd. After max it starts anyway and
// reports etcd's absence itself.
func waitForEtcd(endpoints []string, max time.Duration) {
	if len(endpoints) == 0 {
		return
	}
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		for _, ep := range endpoints {
			c, err := net.DialTimeout("tcp", ep, 200*time.Millisecond)
			if err == nil {
				c.Close()
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// etcdServers returns the host:port of each --etcd-servers URL.
func etcdServers(args []string) []string {
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
