package testbed

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Users of a test Registry: RegistryNodeUser may pull e2e/* (the
// node-level credentials of registries.yaml), RegistryPodUser private/*
// (the credentials of an imagePullSecret), RegistryAdminUser everything
// (it pushes).
const (
	RegistryNodeUser  = "node"
	RegistryPodUser   = "pod"
	RegistryAdminUser = "admin"
)

// Registry is a real OCI registry (go-containerregistry's, in the test
// process, blobs in memory) behind TLS with a test CA and basic auth, on
// an address of the testbed's bridge, where the testbed's nodes reach it.
// It logs every request it answers.
type Registry struct {
	// Host is ip:port, as image names spell it.
	Host  string
	CAPEM []byte
	Pool  *x509.CertPool
	// Passwords are the users' (Registry*User) passwords.
	Passwords map[string]string

	mu       sync.Mutex
	requests []RegistryRequest
}

// RegistryRequest is one request the registry answered.
type RegistryRequest struct {
	N      int
	Method string
	User   string // "" when unauthenticated or refused
	Status int
	Path   string
	From   netip.Addr
}

// StartRegistry starts a Registry on ip (the testbed's Gateway, its
// bridge address); it stops when the test ends.
func StartRegistry(t testing.TB, ip netip.Addr) *Registry {
	t.Helper()
	r := &Registry{Passwords: map[string]string{}}
	for _, u := range []string{RegistryNodeUser, RegistryPodUser, RegistryAdminUser} {
		b := make([]byte, 12)
		_, _ = rand.Read(b)
		r.Passwords[u] = hex.EncodeToString(b)
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kftb registry CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kftb registry"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{ip.AsSlice()},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	r.CAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	r.Pool = x509.NewCertPool()
	r.Pool.AddCert(ca)

	ln, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	r.Host = ln.Addr().String()
	srv := &http.Server{
		Handler:           r.authenticate(registry.New(registry.Logger(log.New(io.Discard, "", 0)))),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	t.Logf("registry at https://%s (TLS with a test CA, basic auth)", r.Host)
	return r
}

// authenticate lets a request through when its basic credentials are a
// user's who may access the repository: admin everything, node e2e/*, pod
// private/*. Others get 401 with a Basic challenge.
func (r *Registry) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		user, pass, ok := req.BasicAuth()
		allowed := ok && pass == r.Passwords[user] && r.Passwords[user] != ""
		repo := strings.TrimPrefix(req.URL.Path, "/v2/")
		switch {
		case !allowed:
		case user == RegistryAdminUser, req.URL.Path == "/v2/" || req.URL.Path == "/v2":
		case user == RegistryNodeUser && strings.HasPrefix(repo, "e2e/"):
		case user == RegistryPodUser && strings.HasPrefix(repo, "private/"):
		default:
			allowed = false
		}
		from, _ := netip.ParseAddrPort(req.RemoteAddr)
		rec := RegistryRequest{Method: req.Method, Path: req.URL.Path, From: from.Addr().Unmap()}
		if allowed {
			rec.User, rec.Status = user, http.StatusOK
		} else {
			rec.Status = http.StatusUnauthorized
		}
		r.mu.Lock()
		rec.N = len(r.requests)
		r.requests = append(r.requests, rec)
		r.mu.Unlock()
		if !allowed {
			w.Header().Set("WWW-Authenticate", `Basic realm="kftb"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, req)
	})
}

// Mark is a position in the request log.
func (r *Registry) Mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.requests)
}

// Requests returns the requests since mark.
func (r *Registry) Requests(since int) []RegistryRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]RegistryRequest(nil), r.requests[since:]...)
}

// Served reports whether user was served path from addr since mark.
func (r *Registry) Served(since int, user, path string, from netip.Addr) bool {
	for _, q := range r.Requests(since) {
		if q.User == user && q.Path == path && q.From == from {
			return true
		}
	}
	return false
}

// Log lists the requests since mark.
func (r *Registry) Log(since int) string {
	return r.LogFrom(since, netip.Addr{})
}

// LogFrom lists the requests since mark (from addr only, when valid).
func (r *Registry) LogFrom(since int, from netip.Addr) string {
	var b strings.Builder
	for _, q := range r.Requests(since) {
		if !from.IsValid() || q.From == from {
			fmt.Fprintf(&b, "%d %s %s %s user=%q %d\n", q.N, q.From, q.Method, q.Path, q.User, q.Status)
		}
	}
	return b.String()
}

// Push uploads img as ref ("repo:tag") with the admin's credentials.
func (r *Registry) Push(t testing.TB, ref string, img v1.Image) {
	t.Helper()
	tag, err := name.NewTag(r.Host + "/" + ref)
	if err != nil {
		t.Fatal(err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: r.Pool, MinVersion: tls.VersionTLS12}
	tr.Proxy = nil
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// One blob at a time: the registry's in-memory store holds its lock
	// while it reads an upload's body, so concurrent uploads over one
	// HTTP/2 connection stall each other on its flow-control window.
	err = remote.Write(tag, img, remote.WithContext(ctx), remote.WithTransport(tr), remote.WithJobs(1),
		remote.WithAuth(&authn.Basic{Username: RegistryAdminUser, Password: r.Passwords[RegistryAdminUser]}))
	if err != nil {
		t.Fatalf("push %s: %v", tag, err)
	}
}

// NodeCAFile is where ConfigureNode puts the registry's CA on a node.
const NodeCAFile = "/etc/kubeforge/kftb-ca.crt"

// ConfigureNode makes node n trust the registry's CA and pull from it
// with the credentials of user (RegistryNodeUser: e2e/*), in
// /etc/kubeforge/registries.yaml, which the node service reads at start
// (write it before init, or restart the node service).
func (r *Registry) ConfigureNode(n *Node, user string) error {
	yaml := fmt.Sprintf(`configs:
  "%s":
    tls: {ca_file: %s}
    auth: {username: %s, password: %s}
`, r.Host, NodeCAFile, user, r.Passwords[user])
	for p, data := range map[string][]byte{NodeCAFile: r.CAPEM, "/etc/kubeforge/registries.yaml": []byte(yaml)} {
		if err := os.MkdirAll(n.Path(filepath.Dir(p)), 0o755); err != nil {
			return err
		}
		if err := n.WriteFile(p, data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// BusyboxRegistryImage is a one-layer image of the host's static busybox
// (/bin/busybox, /bin/sh), for this machine's platform, labelled with
// label (so that images of different labels have different digests).
func BusyboxRegistryImage(t testing.TB, label string) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, busyboxLayer(t))
	if err != nil {
		t.Fatal(err)
	}
	return withConfig(t, img, label)
}

// RandomImage is BusyboxRegistryImage with layers more layers of size
// bytes each of random content (gzip cannot shrink them), for measuring
// pulls: the image is about layers×size bytes on the wire.
func RandomImage(t testing.TB, label string, layers int, size int64) v1.Image {
	t.Helper()
	adds := []v1.Layer{busyboxLayer(t)}
	for i := 0; i < layers; i++ {
		var raw bytes.Buffer
		tw := tar.NewWriter(&raw)
		if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("random/%d", i), Typeflag: tar.TypeReg, Mode: 0o644,
			Size: size, ModTime: time.Unix(0, 0)}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.CopyN(tw, rand.Reader, size); err != nil {
			t.Fatal(err)
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		// Compressed once here (the fastest level: random bytes stay
		// stored), so that the push sends these bytes as they are.
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
		if _, err := zw.Write(raw.Bytes()); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		data := gz.Bytes()
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
		if err != nil {
			t.Fatal(err)
		}
		adds = append(adds, l)
	}
	img, err := mutate.AppendLayers(empty.Image, adds...)
	if err != nil {
		t.Fatal(err)
	}
	return withConfig(t, img, label)
}

func busyboxLayer(t testing.TB) v1.Layer {
	t.Helper()
	bin, err := os.ReadFile(StaticBusybox)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	for _, h := range []*tar.Header{
		{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch},
		{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin)), ModTime: epoch},
		{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777, ModTime: epoch},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			_, _ = tw.Write(bin)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	return layer
}

// withConfig sets img's platform (this machine's), command (/bin/sh) and
// the label kftb.e2e/image.
func withConfig(t testing.TB, img v1.Image, label string) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Cmd = []string{"/bin/sh"}
	cf.Config.Labels = map[string]string{"kftb.e2e/image": label}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}
