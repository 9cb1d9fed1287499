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
