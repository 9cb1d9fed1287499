// Package etcdmember grows and shrinks the cluster's etcd as control-plane
// nodes join and leave: a joining member is added as a learner, and
// promoted to a voting member once it has caught up with the leader, so a
// slow new member never costs the cluster its quorum.
package etcdmember

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/kubeforge/kubeforge/config"
)

// Client connects to etcd at endpoints with the API server's etcd client
// certificate (etcd has no RBAC: any client certificate of its CA works).
func Client(p config.Paths, endpoints []string) (*clientv3.Client, error) {
	cfg, err := ClientConfig(p, endpoints)
	if err != nil {
		return nil, err
	}
	return clientv3.New(cfg)
}

// ClientConfig is Client's configuration, for the etcd libraries that take
// one (snapshot.SaveWithVersion).
func ClientConfig(p config.Paths, endpoints []string) (clientv3.Config, error) {
	cert, err := tls.LoadX509KeyPair(p.Host(p.Cert("apiserver-etcd-client.crt")), p.Host(p.Cert("apiserver-etcd-client.key")))
	if err != nil {
		return clientv3.Config{}, fmt.Errorf("etcd client certificate: %w", err)
	}
	caPEM, err := os.ReadFile(p.Host(p.Cert("etcd/ca.crt")))
	if err != nil {
		return clientv3.Config{}, fmt.Errorf("etcd CA: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		TLS:         &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12},
		Logger:      zap.NewNop(),
	}, nil
}

// Member is one etcd member.
type Member struct {
	ID         uint64
	Name       string
	PeerURLs   []string
	ClientURLs []string
	Learner    bool
}

func convert(ms []*etcdserverpb.Member) []Member {
	out := make([]Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, Member{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, Learner: m.IsLearner})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// List returns the members.
func List(ctx context.Context, c *clientv3.Client) ([]Member, error) {
	resp, err := c.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("list etcd members: %w", err)
	}
	return convert(resp.Members), nil
}

// AddLearner adds a learner with peerURL (or finds it, on a rerun) and
// returns its ID and the --initial-cluster value for it to start with.
//
// etcd refuses a member add while the leader has not been connected to
// every voting member for 5 s ("unhealthy cluster"): right after another
// node joined, that passes within seconds. Such refusals, and a leader
// change or timeout, are retried every 500 ms until ctx ends; each attempt
// first looks for the member, which an attempt that timed out may have
// added after all (etcd then says its peer URL exists).
func AddLearner(ctx context.Context, c *clientv3.Client, name, peerURL string) (uint64, string, error) {
	var id uint64
	var members []Member
	for id == 0 {
		var err error
		if members, err = List(ctx, c); err != nil {
			return 0, "", err
		}
		for _, m := range members {
			if slices.Contains(m.PeerURLs, peerURL) {
				id = m.ID
			}
		}
		if id != 0 {
			break
		}
		resp, err := c.MemberAddAsLearner(ctx, []string{peerURL})
		if err == nil {
			id, members = resp.Member.ID, convert(resp.Members)
			break
		}
		// A peer URL that exists: an attempt that seemed to fail added it
		// (the next round finds it).
		if !(etcdErrorIs(err, rpctypes.ErrPeerURLExist) || transientReconfigError(err)) || ctx.Err() != nil {
			return 0, "", fmt.Errorf("add etcd member %s (%s): %w", name, peerURL, err)
		}
		select {
		case <-ctx.Done():
			return 0, "", fmt.Errorf("add etcd member %s (%s): %w", name, peerURL, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
	var initial []string
	for _, m := range members {
		mname := m.Name
		if m.ID == id {
			mname = name
		}
		if mname == "" {
			continue // another member that has not started yet
		}
		for _, u := range m.PeerURLs {
			initial = append(initial, mname+"="+u)
		}
	}
	return id, strings.Join(initial, ","), nil
}

// Promote makes learner id a voting member, retrying while it catches up,
// until ctx ends. promoted is false when the member already voted (a
// rerun): that says nothing of whether it runs now.
func Promote(ctx context.Context, c *clientv3.Client, id uint64) (promoted bool, err error) {
	var last error
	for {
		_, err := c.MemberPromote(ctx, id)
		if err == nil {
			return true, nil
		}
		if errors.Is(err, rpctypes.ErrMemberNotLearner) {
			return false, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("promote etcd member %x: %w", id, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// transientReconfigError reports whether a member add or removal may
// succeed when retried: etcd's strict reconfiguration check, or a leader change. An
// error the client left as a gRPC status (or its text) is turned into
// etcd's own first (rpctypes.Error).
func transientReconfigError(err error) bool {
	return etcdErrorIs(err, rpctypes.ErrUnhealthy, rpctypes.ErrLeaderChanged, rpctypes.ErrNoLeader, rpctypes.ErrTimeout)
}

// etcdErrorIs reports whether err is one of targets, as it is or once
// turned into etcd's own error (rpctypes.Error: the client may leave a
// gRPC status or its text).
func etcdErrorIs(err error, targets ...error) bool {
	for _, e := range []error{err, rpctypes.Error(err)} {
		for _, t := range targets {
			if errors.Is(e, t) {
				return true
			}
		}
	}
	return false
}

// ErrOnlyMember is Remove's refusal to remove a cluster's last member.
var ErrOnlyMember = errors.New("it is the only member: removing it would destroy the cluster's data (reset removes the data directory instead)")

// Remove removes the member called name, unless it is the only one
// (ErrOnlyMember).
// It reports whether it removed anything.
func Remove(ctx context.Context, c *clientv3.Client, name string) (bool, error) {
	members, err := List(ctx, c)
	if err != nil {
		return false, err
	}
	for _, m := range members {
		if m.Name != name {
			continue
		}
		if len(members) == 1 {
			return false, ErrOnlyMember
		}
		// etcd refuses to remove a voter while the remaining members have
		// not all been connected for 5 s ("unhealthy cluster"): after a
		// member came back, that passes within seconds. Retry until ctx ends.
		for {
			_, err := c.MemberRemove(ctx, m.ID)
			if err == nil {
				return true, nil
			}
			if stoppedError(err) {
				// Asked through the member itself: etcd stops a member once
				// it applied its own removal, and the answer is lost with
				// it. Whether it is gone, the other members say.
				return removedPerOthers(ctx, c, members, m)
			}
			if !transientReconfigError(err) || ctx.Err() != nil {
				return false, fmt.Errorf("remove etcd member %s: %w", name, err)
			}
			select {
			case <-ctx.Done():
				return false, fmt.Errorf("remove etcd member %s: %w", name, err)
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	return false, nil
}

// stoppedError reports etcd's "server stopped": the member that was asked
// stopped while answering.
func stoppedError(err error) bool {
	return etcdErrorIs(err, rpctypes.ErrStopped)
}

// removedPerOthers asks the other members (their client URLs) whether m
// is still a member, after m stopped while answering its own removal.
func removedPerOthers(ctx context.Context, c *clientv3.Client, members []Member, m Member) (bool, error) {
	var urls []string
	for _, o := range members {
		if o.ID != m.ID {
			urls = append(urls, o.ClientURLs...)
		}
	}
	if len(urls) == 0 {
		return false, fmt.Errorf("remove etcd member %s: it stopped while answering, and no other member has a client URL to ask", m.Name)
	}
	c.SetEndpoints(urls...)
	var last error
	for {
		resp, err := c.MemberList(ctx)
		if err == nil {
			for _, o := range resp.Members {
				if o.ID == m.ID {
					return false, fmt.Errorf("remove etcd member %s: it stopped while answering, and the other members still list it", m.Name)
				}
			}
			return true, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("remove etcd member %s: it stopped while answering, and the other members (%s) did not answer: %w", m.Name, strings.Join(urls, ", "), last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
