package testbed

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// The test registry (on loopback here) serves pushed images to the users
// who may read them, refuses the others, and logs what it served.
func TestRegistryAuth(t *testing.T) {
	if !isStatic(StaticBusybox) {
		t.Skip("no static busybox at " + StaticBusybox + " (Debian's busybox-static)")
	}
	lo := netip.MustParseAddr("127.0.0.1")
	r := StartRegistry(t, lo)
	img := RandomImage(t, "unit", 2, 100_000)
	r.Push(t, "e2e/random:1", img)
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Layers) != 3 {
		t.Fatalf("RandomImage has %d layers, want busybox and 2 random", len(m.Layers))
	}
	for _, l := range m.Layers[1:] {
		if l.Size < 100_000 {
			t.Errorf("random layer of %d bytes compressed: not random", l.Size)
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: r.Pool, MinVersion: tls.VersionTLS12}
	tr.Proxy = nil
	ref, err := name.NewTag(r.Host + "/e2e/random:1")
	if err != nil {
		t.Fatal(err)
	}
	get := func(user, pass string) error {
		opts := []remote.Option{remote.WithTransport(tr)}
		if user != "" {
			opts = append(opts, remote.WithAuth(&authn.Basic{Username: user, Password: pass}))
		}
		img, err := remote.Image(ref, opts...)
		if err != nil {
			return err
		}
		ls, err := img.Layers()
		if err != nil {
			return err
		}
		rc, err := ls[1].Compressed()
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		return err
	}
	mark := r.Mark()
	if err := get(RegistryNodeUser, r.Passwords[RegistryNodeUser]); err != nil {
		t.Errorf("the node user cannot pull e2e/: %v", err)
	}
	served := false
	for _, q := range r.Requests(mark) {
		if q.Method == "GET" && q.User == RegistryNodeUser && q.Path == "/v2/e2e/random/blobs/"+m.Layers[1].Digest.String() && q.From == lo {
			served = true
		}
	}
	if !served {
		t.Errorf("the log lacks the layer's GET:\n%s", r.Log(mark))
	}
	for _, c := range []struct{ user, pass string }{
		{"", ""},
		{RegistryNodeUser, "wrong"},
		{RegistryPodUser, r.Passwords[RegistryPodUser]}, // private/ only
	} {
		err := get(c.user, c.pass)
		if err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") && !strings.Contains(err.Error(), "401") {
			t.Errorf("user %q password %q: %v, want a refusal", c.user, c.pass, err)
		}
	}
	// TLS: a client without the test CA refuses the registry.
	plain := http.DefaultTransport.(*http.Transport).Clone()
	plain.Proxy = nil
	if _, err := remote.Image(ref, remote.WithTransport(plain)); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a client without the test CA: %v, want a certificate error", err)
	}
}
