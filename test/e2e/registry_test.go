package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
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

	"github.com/kubeforge/kubeforge/test/testbed"
)

// Users of the test registry: "node" may pull e2e/*, the node-level
// credentials of registries.yaml; "pod" may pull private/*, the
// credentials of an imagePullSecret; "admin" pushes.
const (
	regNodeUser  = "node"
	regPodUser   = "pod"
	regAdminUser = "admin"
	// regUpstream is a made-up registry name that exists only as a mirror
	// key: nothing may ever resolve it.
	regUpstream = "upstream.kftb.invalid"
)

// TestRegistry pulls workload images from a real OCI registry
// (go-containerregistry's, in this test binary) on the testbed's bridge,
// serving TLS with a test CA and basic auth: through a mirror of a made-up
// upstream name and directly, with node-level credentials from
// /etc/kubeforge/registries.yaml and with an imagePullSecret; a wrong
// password is an ErrImagePull naming the registry; a broken registries.yaml
// is refused by `node restart` while the node keeps running; and a worker
// joined with --air-gapped pulls nothing, yet runs an image it imported
// from /var/lib/kubeforge/agent/images.
func TestRegistry(t *testing.T) {
	testbed.RequireHost(t)
	if err := testbed.RequireStaticBusybox(); err != nil {
		t.Fatal(err)
	}
	tb := testbed.New(t)
	holdOnFailure(t, tb)
	reg := startTestRegistry(t, tb.Gateway)
	cp := tb.AddNode("reg1")
	begin := time.Now()
	defer func() { t.Logf("%s took %v", t.Name(), time.Since(begin).Round(time.Second)) }()
	step := stepper(t)

	// Three images of different digests (a label tells them apart), so
	// that each pod's image is reported by its own name.
	for _, ref := range []string{"e2e/busybox:1", "e2e/busybox:2", "private/busybox:1"} {
		reg.push(t, ref, busyboxRegistryImage(t, ref))
	}
	direct := reg.host + "/e2e/busybox:1"
	viaMirror := regUpstream + "/e2e/busybox:2"
	private := reg.host + "/private/busybox:1"

	// The node trusts the test CA for the registry; no credentials yet.
	writeNodeFile(t, cp, "/etc/kubeforge/kftb-ca.crt", reg.caPEM)
	registriesV1 := fmt.Sprintf(`mirrors:
  %s:
    endpoint: ["https://%s"]
configs:
  "%s":
    tls: {ca_file: /etc/kubeforge/kftb-ca.crt}
`, regUpstream, reg.host, reg.host)
	writeNodeFile(t, cp, "/etc/kubeforge/registries.yaml", []byte(registriesV1))

	var initOut string
	step("init", func(t *testing.T) {
		initOut = kf(t, cp, 3*time.Minute, "init", "--config", cp.InitConfigFile(), "--advertise-address", cp.IP.String(), "--single-node")
		netWaitPods(t, cp, 90*time.Second, "kube-system", "k8s-app=kube-dns", 2)
		st := kf(t, cp, 30*time.Second, "node", "status")
		if !strings.Contains(st, "registries: pulls from registries: "+reg.host+" (tls); mirror "+regUpstream) {
			t.Errorf("node status does not show the registry configuration:\n%s", st)
		}
	})

	step("no-credentials-is-err-image-pull", func(t *testing.T) {
		applyPod(t, cp, regPod("nocreds", cp.Name, direct, ""))
		msg := waitPullError(t, cp, "nocreds")
		if !strings.Contains(msg, reg.host) || !authFailure(msg) {
			t.Errorf("the pull error does not name the registry and the authorization failure:\n%s", msg)
		}
	})

	step("broken-file-refused", func(t *testing.T) {
		pid := nodeServicePID(t, cp)
		writeNodeFile(t, cp, "/etc/kubeforge/registries.yaml", []byte(registriesV1+"    auth: {username: "+regNodeUser+"}\n"))
		out, err := cp.Kubeforge(context.Background(), "node", "restart")
		if err == nil {
			t.Fatalf("node restart accepted a broken registries.yaml:\n%s", out)
		}
		for _, want := range []string{"/etc/kubeforge/registries.yaml", `configs["` + reg.host + `"].auth`, "username and password go together", "fix:"} {
			if !strings.Contains(out, want) {
				t.Errorf("the refusal does not say %q:\n%s", want, out)
			}
		}
		if now := nodeServicePID(t, cp); now != pid {
			t.Errorf("the node service was restarted anyway (pid %d, was %d)", now, pid)
		}
	})

	step("node-credentials-mirror-and-direct", func(t *testing.T) {
		registriesV2 := registriesV1 + fmt.Sprintf("    auth: {username: %s, password: %s}\n", regNodeUser, reg.passwords[regNodeUser])
		writeNodeFile(t, cp, "/etc/kubeforge/registries.yaml", []byte(registriesV2))
		kf(t, cp, 2*time.Minute, "node", "restart")
		poll(t, 60*time.Second, "the node Ready after the restart", func() string {
			out, err := cp.Kubectl("get", "node", cp.Name, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
			if err != nil {
				return err.Error()
			}
			if out != "True" {
				return "Ready=" + out
			}
			return ""
		})
		since := reg.mark()
		kubectlOn(t, cp, "", "delete", "pod", "nocreds", "--wait=false")
		applyPod(t, cp, regPod("direct", cp.Name, direct, ""))
		applyPod(t, cp, regPod("mirror", cp.Name, viaMirror, ""))
		netWaitPods(t, cp, 90*time.Second, "default", "kftb-registry in (direct,mirror)", 2)
		// Both came from the registry, with the node's credentials; the
		// mirror's pull asked for the upstream's repository.
		for _, path := range []string{"/v2/e2e/busybox/manifests/1", "/v2/e2e/busybox/manifests/2"} {
			if !reg.served(since, regNodeUser, path, cp.IP) {
				t.Errorf("the registry did not serve %s to %s from %s; it saw:\n%s", path, regNodeUser, cp.IP, reg.log(since))
			}
		}
		if st := podImage(t, cp, "mirror"); !strings.HasPrefix(st, regUpstream+"/e2e/busybox:2") {
			t.Errorf("the mirror pod runs image %q, want the upstream's name", st)
		}
	})

	step("image-pull-secret", func(t *testing.T) {
		since := reg.mark()
		kubectlOn(t, cp, "", "create", "secret", "docker-registry", "podcreds", "--docker-server="+reg.host,
			"--docker-username="+regPodUser, "--docker-password="+reg.passwords[regPodUser])
		applyPod(t, cp, regPod("secret", cp.Name, private, "podcreds"))
		// Without the secret, the node's own credentials do not reach private/.
		applyPod(t, cp, regPod("nosecret", cp.Name, private, ""))
		netWaitPods(t, cp, 90*time.Second, "default", "kftb-registry=secret", 1)
		if !reg.served(since, regPodUser, "/v2/private/busybox/manifests/1", cp.IP) {
			t.Errorf("the registry did not serve private/busybox to %s; it saw:\n%s", regPodUser, reg.log(since))
		}
		msg := waitPullError(t, cp, "nosecret")
		if !strings.Contains(msg, reg.host) {
			t.Errorf("the pull error does not name the registry:\n%s", msg)
		}
	})

	step("wrong-password", func(t *testing.T) {
		kubectlOn(t, cp, "", "create", "secret", "docker-registry", "wrongcreds", "--docker-server="+reg.host,
			"--docker-username="+regPodUser, "--docker-password=not-the-password")
		applyPod(t, cp, regPod("wrongpw", cp.Name, private, "wrongcreds"))
		msg := waitPullError(t, cp, "wrongpw")
		if !strings.Contains(msg, reg.host) || !authFailure(msg) {
			t.Errorf("the pull error does not name the registry and the authorization failure:\n%s", msg)
		}
		// The kubelet's usual events, as `kubectl describe` shows them.
		poll(t, 30*time.Second, "the Failed pull event in kubectl describe", func() string {
			out, err := cp.Kubectl("describe", "pod", "wrongpw")
			if err != nil {
				return err.Error()
			}
			for _, want := range []string{"Failed to pull image \"" + private + "\"", "ErrImagePull", reg.host} {
				if !strings.Contains(out, want) {
					return fmt.Sprintf("no %q in:\n%s", want, out)
				}
			}
			return ""
		})
	})

	step("air-gapped-worker", func(t *testing.T) {
		w := tb.AddNode("reg2")
		// The same registry configuration, credentials included: an
		// air-gapped node still pulls nothing. An image archive dropped
		// into the import directory is what it runs.
		writeNodeFile(t, w, "/etc/kubeforge/kftb-ca.crt", reg.caPEM)
		writeNodeFile(t, w, "/etc/kubeforge/registries.yaml", []byte(registriesV1+fmt.Sprintf("    auth: {username: %s, password: %s}\n", regNodeUser, reg.passwords[regNodeUser])))
		archive := filepath.Join(tb.Dir, "import.tar")
		if _, err := testbed.WriteBusyboxImage(archive, "kftb.local/busybox:import"); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(archive)
		if err != nil {
			t.Fatal(err)
		}
		writeNodeFile(t, w, "/var/lib/kubeforge/agent/images/busybox.tar", b)
		since := reg.mark()
		kf(t, w, 3*time.Minute, "join", "--config", netJoinConfig(t, w, initOut), "--air-gapped")
		poll(t, 60*time.Second, "the air-gapped worker's node status", func() string {
			st, err := w.Kubeforge(context.Background(), "node", "status")
			if err != nil {
				return err.Error()
			}
			if !strings.Contains(st, "registries: air-gapped") || !strings.Contains(st, "image archives: 1 imported") {
				return st
			}
			return ""
		})
		imported := regPod("imported", w.Name, "kftb.local/busybox:import", "")
		imported = strings.Replace(imported, "imagePullPolicy: Always", "imagePullPolicy: Never", 1)
		applyPod(t, cp, imported)
		for _, p := range []struct{ name, image, secret string }{
			{"gapped-direct", direct, ""}, {"gapped-mirror", viaMirror, ""}, {"gapped-secret", private, "podcreds"},
		} {
			applyPod(t, cp, regPod(p.name, w.Name, p.image, p.secret))
		}
		netWaitPods(t, cp, 90*time.Second, "default", "kftb-registry=imported", 1)
		for _, p := range []string{"gapped-direct", "gapped-mirror", "gapped-secret"} {
			msg := waitPullError(t, cp, p)
			if !strings.Contains(msg, "127.0.0.1:1") {
				t.Errorf("%s: the pull did not go to the dead loopback port:\n%s", p, msg)
			}
		}
		if l := reg.logFrom(since, w.IP); l != "" {
			t.Errorf("the air-gapped worker reached the registry:\n%s", l)
		}
	})
}

// regPod is a pod of image on node that pulls every time, with an
// imagePullSecret when secret is set.
func regPod(name, node, image, secret string) string {
	s := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: default, labels: {kftb-registry: %s}}
spec:
  nodeName: %s
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: %s
    imagePullPolicy: Always
    command: ["/bin/busybox", "sleep", "3600"]
`, name, name, node, image)
	if secret != "" {
		s += "  imagePullSecrets: [{name: " + secret + "}]\n"
	}
	return s
}

func applyPod(t *testing.T, n *testbed.Node, yaml string) {
	t.Helper()
	f := n.WriteConfigFile(fmt.Sprintf("pod-%d.yaml", time.Now().UnixNano()), yaml)
	kubectlOn(t, n, "", "apply", "-f", f)
}

// waitPullError waits until the pod's container waits with ErrImagePull
// (or the back-off after it) and returns the kubelet's Failed events'
// messages for it.
func waitPullError(t *testing.T, n *testbed.Node, pod string) string {
	t.Helper()
	var msg string
	poll(t, 90*time.Second, pod+" failing to pull", func() string {
		out, err := n.Kubectl("get", "pod", pod, "-o", `jsonpath={.status.containerStatuses[0].state.waiting.reason}`)
		if err != nil {
			return err.Error()
		}
		if out != "ErrImagePull" && out != "ImagePullBackOff" {
			return "waiting reason " + out
		}
		ev, err := n.Kubectl("get", "events", "--field-selector", "involvedObject.name="+pod+",reason=Failed",
			"-o", `jsonpath={range .items[*]}{.message}{"\n"}{end}`)
		if err != nil {
			return err.Error()
		}
		if !strings.Contains(ev, "ErrImagePull") && !strings.Contains(ev, "Failed to pull image") {
			return "no Failed pull event yet: " + ev
		}
		msg = ev
		return ""
	})
	t.Logf("%s: %s", pod, strings.TrimSpace(msg))
	return msg
}

// authFailure reports whether a pull error is the registry refusing the
// credentials (or their absence).
func authFailure(msg string) bool {
	return strings.Contains(msg, "401") || strings.Contains(msg, "authoriz") || strings.Contains(msg, "access denied")
}

func podImage(t *testing.T, n *testbed.Node, pod string) string {
	t.Helper()
	return kubectlOn(t, n, "", "get", "pod", pod, "-o", "jsonpath={.status.containerStatuses[0].image}")
}

// nodeServicePID is the pid `node status -o json` reports.
func nodeServicePID(t *testing.T, n *testbed.Node) int {
	t.Helper()
	var st struct {
		PID int `json:"pid"`
	}
	out := kf(t, n, 30*time.Second, "node", "status", "-o", "json")
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.PID == 0 {
		t.Fatalf("node status -o json: %v\n%s", err, out)
	}
	return st.PID
}

// writeNodeFile writes a file into the node's own filesystem.
func writeNodeFile(t *testing.T, n *testbed.Node, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(n.Path(filepath.Dir(path)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := n.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// testRegistry is go-containerregistry's registry behind TLS (a test CA)
// and basic auth, on the testbed's bridge address.
type testRegistry struct {
	host      string // ip:port, as image names spell it
	caPEM     []byte
	pool      *x509.CertPool
	passwords map[string]string

	mu       sync.Mutex
	requests []regRequest
}

type regRequest struct {
	n      int
	user   string // "" when unauthenticated or refused
	status int
	path   string
	from   netip.Addr
}

func startTestRegistry(t *testing.T, ip netip.Addr) *testRegistry {
	t.Helper()
	r := &testRegistry{passwords: map[string]string{}}
	for _, u := range []string{regNodeUser, regPodUser, regAdminUser} {
		b := make([]byte, 12)
		_, _ = rand.Read(b)
		r.passwords[u] = hex.EncodeToString(b)
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
	r.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	r.pool = x509.NewCertPool()
	r.pool.AddCert(ca)

	ln, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	r.host = ln.Addr().String()
	srv := &http.Server{
		Handler:           r.authenticate(registry.New(registry.Logger(log.New(io.Discard, "", 0)))),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	t.Logf("registry at https://%s (TLS with a test CA, basic auth)", r.host)
	return r
}

// authenticate lets a request through when its basic credentials are a
// user's who may access the repository: admin everything, node e2e/*, pod
// private/*. Others get 401 with a Basic challenge.
func (r *testRegistry) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		user, pass, ok := req.BasicAuth()
		allowed := ok && pass == r.passwords[user] && r.passwords[user] != ""
		repo := strings.TrimPrefix(req.URL.Path, "/v2/")
		switch {
		case !allowed:
		case user == regAdminUser, req.URL.Path == "/v2/" || req.URL.Path == "/v2":
		case user == regNodeUser && strings.HasPrefix(repo, "e2e/"):
		case user == regPodUser && strings.HasPrefix(repo, "private/"):
		default:
			allowed = false
		}
		from, _ := netip.ParseAddrPort(req.RemoteAddr)
		rec := regRequest{path: req.URL.Path, from: from.Addr().Unmap()}
		if allowed {
			rec.user, rec.status = user, http.StatusOK
		} else {
			rec.status = http.StatusUnauthorized
		}
		r.mu.Lock()
		rec.n = len(r.requests)
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

// mark is a position in the request log.
func (r *testRegistry) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.requests)
}

// served reports whether user was served path from addr since mark.
func (r *testRegistry) served(since int, user, path string, from netip.Addr) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, q := range r.requests[since:] {
		if q.user == user && q.path == path && q.from == from {
			return true
		}
	}
	return false
}

func (r *testRegistry) log(since int) string {
	return r.logFrom(since, netip.Addr{})
}

// logFrom lists the requests since mark (from addr only, when valid).
func (r *testRegistry) logFrom(since int, from netip.Addr) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, q := range r.requests[since:] {
		if !from.IsValid() || q.from == from {
			fmt.Fprintf(&b, "%d %s %s user=%q %d\n", q.n, q.from, q.path, q.user, q.status)
		}
	}
	return b.String()
}

// push uploads img as ref ("repo:tag") with the admin's credentials.
func (r *testRegistry) push(t *testing.T, ref string, img v1.Image) {
	t.Helper()
	tag, err := name.NewTag(r.host + "/" + ref)
	if err != nil {
		t.Fatal(err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: r.pool, MinVersion: tls.VersionTLS12}
	tr.Proxy = nil
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = remote.Write(tag, img, remote.WithContext(ctx), remote.WithTransport(tr),
		remote.WithAuth(&authn.Basic{Username: regAdminUser, Password: r.passwords[regAdminUser]}))
	if err != nil {
		t.Fatalf("push %s: %v", tag, err)
	}
}

// busyboxRegistryImage is a one-layer image of the host's static busybox,
// for this machine's platform, labelled with label.
func busyboxRegistryImage(t *testing.T, label string) v1.Image {
	t.Helper()
	bin, err := os.ReadFile(testbed.StaticBusybox)
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
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
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
