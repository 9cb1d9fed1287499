package etcdmember

import (
	"errors"
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

func TestTransientRemoveError(t *testing.T) {
	for _, err := range []error{
		rpctypes.ErrUnhealthy,
		fmt.Errorf("wrapped: %w", rpctypes.ErrLeaderChanged),
		errors.New("etcdserver: unhealthy cluster"),
		rpctypes.ErrGRPCNoLeader,
	} {
		if !transientRemoveError(err) {
			t.Errorf("%v: not retried", err)
		}
	}
	for _, err := range []error{rpctypes.ErrMemberNotFound, errors.New("permission denied")} {
		if transientRemoveError(err) {
			t.Errorf("%v: retried", err)
		}
	}
}
