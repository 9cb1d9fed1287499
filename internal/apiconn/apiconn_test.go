package apiconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestUnreachable(t *testing.T) {
	// A real refused connection: a port that was just closed.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, refused := http.Get("http://" + addr)
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	secret := schema.GroupResource{Resource: "secrets"}
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"connection refused", refused, true},
		{"wrapped refused", fmt.Errorf("read kube-system/x: %w", refused), true},
		{"deadline", context.DeadlineExceeded, true},
		{"503", apierrors.NewServiceUnavailable("starting"), true},
		{"429", apierrors.NewTooManyRequests("slow down", 1), true},
		{"unexpected EOF", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{"TLS handshake timeout", &url.Error{Op: "Get", URL: "https://10.0.0.1:6443", Err: timeoutError{}}, true},
		{"504", apierrors.NewTimeoutError("slow", 1), true},
		{"403", apierrors.NewForbidden(secret, "x", errors.New("no")), false},
		{"404", apierrors.NewNotFound(secret, "x"), false},
		{"500", apierrors.NewInternalError(errors.New("boom")), false},
		{"other", errors.New("the configuration does not parse"), false},
	} {
		if got := Unreachable(c.err); got != c.want {
			t.Errorf("%s: Unreachable(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}

// timeoutError is what net/http returns for a TLS handshake timeout.
type timeoutError struct{}

func (timeoutError) Error() string   { return "net/http: TLS handshake timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestNotAuthorizedYet(t *testing.T) {
	secret := schema.GroupResource{Resource: "secrets"}
	if !NotAuthorizedYet(apierrors.NewForbidden(secret, "x", errors.New("no"))) {
		t.Error("403 is not 'not authorized yet'")
	}
	if NotAuthorizedYet(apierrors.NewUnauthorized("who")) || NotAuthorizedYet(apierrors.NewNotFound(secret, "x")) || NotAuthorizedYet(nil) {
		t.Error("401, 404 or nil counted as 'not authorized yet'")
	}
}
