package etcdmember

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestTransientReconfigError(t *testing.T) {
	for _, err := range []error{
		rpctypes.ErrUnhealthy,
		fmt.Errorf("wrapped: %w", rpctypes.ErrLeaderChanged),
		errors.New("etcdserver: unhealthy cluster"),
		rpctypes.ErrGRPCNoLeader,
	} {
		if !transientReconfigError(err) {
			t.Errorf("%v: not retried", err)
		}
	}
	for _, err := range []error{rpctypes.ErrMemberNotFound, errors.New("permission denied")} {
		if transientReconfigError(err) {
			t.Errorf("%v: retried", err)
		}
	}
}

// A member asked to remove itself stops while answering: that answer is
// told apart from the others, so that the remaining members are asked.
func TestStoppedError(t *testing.T) {
	for _, err := range []error{rpctypes.ErrStopped, rpctypes.ErrGRPCStopped} {
		if !stoppedError(err) {
			t.Errorf("%v: not seen as stopped", err)
		}
	}
	for _, err := range []error{rpctypes.ErrUnhealthy, rpctypes.ErrMemberNotFound, errors.New("context deadline exceeded")} {
		if stoppedError(err) {
			t.Errorf("%v: seen as stopped", err)
		}
	}
}

// fakeCluster is etcd's cluster API: its adds fail with errs in turn (a
// failure in added still adds the member, as a timed-out add can).
type fakeCluster struct {
	clientv3.Cluster
	members []*etcdserverpb.Member
	errs    []error
	added   map[int]bool
	adds    int
}

func (f *fakeCluster) MemberList(context.Context, ...clientv3.OpOption) (*clientv3.MemberListResponse, error) {
	return &clientv3.MemberListResponse{Members: f.members}, nil
}

func (f *fakeCluster) MemberAddAsLearner(_ context.Context, peers []string) (*clientv3.MemberAddResponse, error) {
	f.adds++
	for _, m := range f.members {
		if slices.Contains(m.PeerURLs, peers[0]) {
			return nil, rpctypes.ErrGRPCPeerURLExist
		}
	}
	var err error
	if len(f.errs) > 0 {
		err, f.errs = f.errs[0], f.errs[1:]
	}
	if err != nil && !f.added[f.adds] {
		return nil, err
	}
	m := &etcdserverpb.Member{ID: 7, PeerURLs: peers, IsLearner: true}
	f.members = append(f.members, m)
	if err != nil {
		return nil, err
	}
	return &clientv3.MemberAddResponse{Member: m, Members: f.members}, nil
}

// AddLearner retries etcd's "unhealthy cluster" (right after another
// member joined) and finds a member that an attempt reported as failed
// but added; any other refusal ends it at once.
func TestAddLearnerRetries(t *testing.T) {
	first := func() []*etcdserverpb.Member {
		return []*etcdserverpb.Member{{ID: 1, Name: "cp1", PeerURLs: []string{"https://10.0.0.1:2380"}}}
	}
	const peer = "https://10.0.0.2:2380"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	f := &fakeCluster{members: first(), errs: []error{rpctypes.ErrGRPCUnhealthy, rpctypes.ErrGRPCUnhealthy}}
	id, initial, err := AddLearner(ctx, &clientv3.Client{Cluster: f}, "cp2", peer)
	if err != nil || id != 7 || f.adds != 3 {
		t.Fatalf("after two unhealthy refusals: id %d, %d adds, %v", id, f.adds, err)
	}
	if got := strings.Split(initial, ","); len(got) != 2 || !slices.Contains(got, "cp1=https://10.0.0.1:2380") || !slices.Contains(got, "cp2="+peer) {
		t.Errorf("initial cluster %q, want cp1 and cp2", initial)
	}

	// The add timed out but took effect: the next round finds the member.
	f = &fakeCluster{members: first(), errs: []error{rpctypes.ErrGRPCTimeout}, added: map[int]bool{1: true}}
	if id, _, err := AddLearner(ctx, &clientv3.Client{Cluster: f}, "cp2", peer); err != nil || id != 7 || f.adds != 1 {
		t.Fatalf("a timed-out add that took effect: id %d, %d adds, %v", id, f.adds, err)
	}

	// Any other refusal is final.
	f = &fakeCluster{members: first(), errs: []error{rpctypes.ErrGRPCTooManyLearners}}
	if _, _, err := AddLearner(ctx, &clientv3.Client{Cluster: f}, "cp2", peer); err == nil || f.adds != 1 || !strings.Contains(err.Error(), "add etcd member cp2") {
		t.Fatalf("too many learners: %d adds, %v", f.adds, err)
	}
}
