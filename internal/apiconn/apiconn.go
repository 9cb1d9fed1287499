// Package apiconn tells errors that mean "the API server does not serve
// yet" from the others, for the loops that start with the node and so may
// run before its API server does (at init, after a reboot).
package apiconn

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Unreachable: the API server refused or dropped the connection, did not
// answer in time, or answered that it cannot serve yet (503, 429).
func Unreachable(err error) bool {
	if err == nil {
		return false
	}
	if apierrors.IsServiceUnavailable(err) || apierrors.IsTooManyRequests(err) {
		return true
	}
	var op *net.OpError
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) ||
		errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &op) && op.Op == "dial")
}
