package containerd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// WaitReady returns once the containerd at socket answers, CRI included
// (its RuntimeReady condition is true), or with an error when ctx ends
// first. It polls every 50 ms.
func WaitReady(ctx context.Context, socket string) error {
	var conn *grpc.ClientConn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	lastErr := errors.New("no answer yet")
	for {
		if conn == nil {
			if _, err := os.Stat(socket); err != nil {
				lastErr = fmt.Errorf("socket not there yet: %w", err)
			} else if conn, err = dial(socket); err != nil {
				lastErr = err
			}
		}
		if conn != nil {
			if lastErr = criReady(ctx, conn); lastErr == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("containerd at %s is not ready: %w (last error: %v)", socket, ctx.Err(), lastErr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// dial connects to a containerd socket with a short reconnect backoff, so
// a daemon that is still starting is found quickly.
func dial(socket string) (*grpc.ClientConn, error) {
	bo := backoff.DefaultConfig
	bo.BaseDelay = 50 * time.Millisecond
	bo.MaxDelay = 500 * time.Millisecond
	return grpc.NewClient("unix://"+socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: time.Second}),
	)
}

// criReady asks the CRI runtime service for its status.
func criReady(ctx context.Context, conn *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := runtimeapi.NewRuntimeServiceClient(conn).Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		return err
	}
	for _, c := range resp.GetStatus().GetConditions() {
		if c.Type == runtimeapi.RuntimeReady {
			if c.Status {
				return nil
			}
			return fmt.Errorf("CRI runtime not ready: %s %s", c.Reason, c.Message)
		}
	}
	return errors.New("CRI status has no RuntimeReady condition")
}
