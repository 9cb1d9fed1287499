package discovery

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	clientcmdlatest "k8s.io/client-go/tools/clientcmd/api/latest"
	"k8s.io/cluster-bootstrap/token/jws"

	"github.com/kubeforge/kubeforge/pki"
)

const (
	tokenID     = "abcdef"
	tokenSecret = "0123456789abcdef"
	token       = tokenID + "." + tokenSecret
)

// server is an API server stand-in serving kube-public/cluster-info over
// TLS with its own CA (httptest's), signed for token unless sign is false.
type server struct {
	*httptest.Server
	ca   *x509.Certificate
	sign bool
	kc   string
}

func newServer(t *testing.T, sign bool) *server {
	s := &server{sign: sign}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/namespaces/kube-public/configmaps/cluster-info" {
			http.NotFound(w, r)
			return
		}
		cm := corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{Name: "cluster-info", Namespace: "kube-public"},
			Data:       map[string]string{"kubeconfig": s.kc}}
		if s.sign {
			sig, _ := jws.ComputeDetachedSignature(s.kc, tokenID, tokenSecret)
			cm.Data["jws-kubeconfig-"+tokenID] = sig
		}
		json.NewEncoder(w).Encode(cm)
	}))
	s.StartTLS()
	t.Cleanup(s.Close)
	s.ca = s.Certificate()
	kc := &clientcmdapi.Config{Clusters: map[string]*clientcmdapi.Cluster{"": {Server: s.URL, CertificateAuthorityData: pki.EncodeCertPEM(s.ca)}}}
	b, err := runtime.Encode(clientcmdlatest.Codec, kc)
	if err != nil {
		t.Fatal(err)
	}
	s.kc = string(b)
	return s
}

func (s *server) endpoint() string { return strings.TrimPrefix(s.URL, "https://") }

func TestTokenDiscovery(t *testing.T) {
	good := newServer(t, true)
	unsigned := newServer(t, false)
	for _, tc := range []struct {
		name    string
		o       Options
		want    string // "" = success
		refusal bool
	}{
		{"pinned", Options{Endpoint: good.endpoint(), Token: token, CACertHashes: []string{pki.CAHash(good.ca)}}, "", false},
		{"unsafe skip", Options{Endpoint: good.endpoint(), Token: token, UnsafeSkipCAVerification: true}, "", false},
		{"wrong hash", Options{Endpoint: good.endpoint(), Token: token, CACertHashes: []string{"sha256:" + strings.Repeat("0", 64)}},
			"matches no --discovery-token-ca-cert-hash", true},
		{"bad signature", Options{Endpoint: good.endpoint(), Token: tokenID + ".ffffffffffffffff", CACertHashes: []string{pki.CAHash(good.ca)}},
			"does not verify", true},
		{"unknown token", Options{Endpoint: unsigned.endpoint(), Token: token, CACertHashes: []string{pki.CAHash(unsigned.ca)}},
			"no signature for token ID", true},
		{"malformed token", Options{Endpoint: good.endpoint(), Token: "nope", CACertHashes: []string{pki.CAHash(good.ca)}}, "is not a bootstrap token", true},
		{"malformed hash", Options{Endpoint: good.endpoint(), Token: token, CACertHashes: []string{"md5:abc"}}, "sha256:<64 hex digits>", true},
		{"no pin", Options{Endpoint: good.endpoint(), Token: token}, "no --discovery-token-ca-cert-hash", true},
		{"endpoint without port", Options{Endpoint: "10.0.0.1", Token: token, UnsafeSkipCAVerification: true}, `"10.0.0.1" has no port`, true},
		{"bare IPv6 endpoint", Options{Endpoint: "fd00::1", Token: token, UnsafeSkipCAVerification: true}, `"fd00::1" has no port`, true},
		{"endpoint with a bad port", Options{Endpoint: "10.0.0.1:0", Token: token, UnsafeSkipCAVerification: true}, "must be a number between 1 and 65535", true},
		{"endpoint with a bad host", Options{Endpoint: "not_a_host:6443", Token: token, UnsafeSkipCAVerification: true}, "must be an IP address or a DNS name", true},
		{"unreachable", Options{Endpoint: unreachable(t), Token: token, CACertHashes: []string{pki.CAHash(good.ca)}, Timeout: time.Second},
			"cannot reach the API server", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var warned []string
			tc.o.Warn = func(s string) { warned = append(warned, s) }
			tc.o.UnsignedGrace = time.Second
			res, err := Discover(context.Background(), tc.o)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !res.CA.Equal(good.ca) || res.Server != good.URL {
					t.Fatalf("wrong result: %s", res.Server)
				}
				if tc.o.UnsafeSkipCAVerification && len(warned) == 0 {
					t.Error("unsafe mode did not warn")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
			var r *Refusal
			if tc.refusal != errors.As(err, &r) {
				t.Errorf("refusal=%v for %v", errors.As(err, &r), err)
			}
		})
	}
}

func unreachable(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestFileDiscovery(t *testing.T) {
	s := newServer(t, true)
	res, err := Discover(context.Background(), Options{File: []byte(s.kc), FileName: "x.conf"})
	if err != nil || !res.CA.Equal(s.ca) {
		t.Fatalf("%v", err)
	}
	if _, err := Discover(context.Background(), Options{File: []byte("nope: ["), FileName: "x.conf"}); err == nil || !strings.Contains(err.Error(), "x.conf") {
		t.Fatalf("want an error naming the file, got %v", err)
	}
}
