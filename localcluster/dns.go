package localcluster

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// dnsAnswers asks the DNS server at ip (port 53) for name, from inside the
// node's network namespace (the cluster's Service network is only routed
// there), and reports an error unless an address comes back.
func dnsAnswers(ctx context.Context, n *Node, ip, name string) error {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return dialInNetNS("/run/netns/"+n.NetNS, network, net.JoinHostPort(ip, "53"))
	}}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	addrs, err := r.LookupHost(ctx, name)
	if err != nil {
		return err
	}
	if len(addrs) == 0 {
		return fmt.Errorf("no address for %s", name)
	}
	return nil
}

// dialInNetNS opens a connection from inside the network namespace nsPath:
// the socket is made on a thread that has entered it for the moment (a
// socket belongs to the namespace it was made in).
func dialInNetNS(nsPath, network, addr string) (net.Conn, error) {
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer unix.Close(orig)
	target, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("enter %s: %w", nsPath, err)
	}
	d := net.Dialer{Timeout: 2 * time.Second}
	conn, dialErr := d.Dial(network, addr)
	if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
		// The thread stays in the node's namespace: let it end with this
		// goroutine rather than serve others (no UnlockOSThread).
		if conn != nil {
			conn.Close()
		}
		return nil, fmt.Errorf("leave %s: %w", nsPath, err)
	}
	runtime.UnlockOSThread()
	return conn, dialErr
}
