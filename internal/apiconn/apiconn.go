// Package apiconn tells errors that mean "the API server does not serve
// yet" from the others, for the code that may run before the API server
// does: the node service's loops (at init, after a reboot) and the
// components that start beside it (the scheduler).
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
// answer in time, or answered that it cannot serve yet (503, 429, a
// server-side timeout).
func Unreachable(err error) bool {
	if err == nil {
		return false
	}
	if apierrors.IsServiceUnavailable(err) || apierrors.IsTooManyRequests(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) {
		return true
	}
	var op *net.OpError
	var ne net.Error
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &op) && op.Op == "dial") || (errors.As(err, &ne) && ne.Timeout())
}

// NotAuthorizedYet: the API server knows the caller but refused the
// request (403). Right after it starts, that may pass: its RBAC caches
// fill, init binds admin.conf's group kubeadm:cluster-admins only after
// /readyz, the default roles come from a post-start hook. A 401 (the
// credentials themselves refused) does not pass by waiting.
func NotAuthorizedYet(err error) bool {
	return apierrors.IsForbidden(err)
}
