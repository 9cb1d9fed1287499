package phases

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/encryption"
	"github.com/kubeforge/kubeforge/join/uploadcerts"
	"github.com/kubeforge/kubeforge/manifests"
	"github.com/kubeforge/kubeforge/pki"
)

// A control-plane node joins with the cluster's shared certificates and
// keys (uploadcerts.Files) either downloaded with --certificate-key from the
// kubeadm-certs Secret, or, without a key, copied to the node by hand
// beforehand (kubeadm's manual certificate distribution). In the second
// case the join checks them before it writes anything: first on their own
// (checkSharedFiles: every file there, parsed, keys matching, ca.crt the CA
// that discovery verified), then against the running cluster
// (compareSharedWithCluster: what the cluster's API servers and etcd use).

// sharedByHand reports whether this control-plane join takes the shared
// files from the node itself: no certificate key was given.
func (d *JoinData) sharedByHand() bool {
	return d.Cfg.IsControlPlaneJoin() && d.Cfg.Join.ControlPlane.CertificateKey == ""
}

// sharedFilesFix is what every refusal of hand-copied shared files says to do.
func sharedFilesFix(p config.Paths) string {
	return fmt.Sprintf("copy each named file from %s on a control-plane node of this cluster to the same path here (keys and encryption-config.yaml with mode 0600), or join with --certificate-key instead (`kubeforge init phase upload-certs --upload-certs` on a control-plane node prints one)", p.CertDir)
}

// sharedFilesError lists problems with the hand-copied shared files.
func sharedFilesError(p config.Paths, what string, problems []string) error {
	return fmt.Errorf("this node joins as a control plane without --certificate-key, so the cluster's shared certificates and keys must already be in %s (copied from a control-plane node, as kubeadm's manual certificate distribution), and %s; nothing was written:\n  - %s\nTo fix it: %s",
		p.CertDir, what, strings.Join(problems, "\n  - "), sharedFilesFix(p))
}

// sharedCAs are the CAs among the shared files: base name, and whether the
// cluster's external CA may keep its key off the nodes.
var sharedCAs = []struct {
	base     string
	external bool
}{{"ca", true}, {"front-proxy-ca", true}, {"etcd/ca", true}, {"kubelet-serving-ca", false}}

// checkSharedFiles verifies the shared files on the node (under p) on their
// own: each of uploadcerts.Files is there; a CA key may be absent only under
// the cluster's external CA (ca.crt without ca.key, and the node's own
// certificates in place; each of front-proxy-ca.key and etcd/ca.key then
// present or not on its own, as `init` allows; kubeforge's kubelet serving
// CA always has its key); every certificate parses, is a CA
// and is within its validity, and its key belongs to it; sa.pub is sa.key's
// public key; encryption-config.yaml is an encryption configuration
// kubeforge can use; and ca.crt is clusterCA, the CA that discovery
// verified (cluster-info with the token's signature and the CA hash, or the
// discovery file). It reads only, and names every file that does not fit.
func checkSharedFiles(p config.Paths, clusterCA *x509.Certificate, server string, now time.Time) error {
	has := func(f string) bool { return fileExists(p.Host(p.Cert(f))) }
	// ca.crt without ca.key is the cluster's external CA only when the
	// node's own certificates are in place too (checkProvidedFiles then
	// checks every one); otherwise ca.key was forgotten.
	external := has("ca.crt") && !has("ca.key") && has("apiserver.crt")
	var problems []string
	for _, f := range uploadcerts.Files {
		if has(f) {
			continue
		}
		if external && slices.Contains(uploadcerts.ExternalCAKeys, f) {
			continue // the external CA keeps it
		}
		problem := fmt.Sprintf("%s is missing", p.Cert(f))
		if f == "ca.key" {
			problem += " (if the cluster's CA is external and keeps its key, this node's own certificates and kubeconfig files must be in place first, made with `kubeforge certs generate-csr` and signed by your CA: README \"Control-plane nodes joining under an external CA\")"
		}
		problems = append(problems, problem)
	}
	for _, ca := range sharedCAs {
		if !has(ca.base + ".crt") {
			continue
		}
		cert, _, err := pki.TryLoadCA(p, ca.base)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if now.After(cert.NotAfter) || now.Before(cert.NotBefore) {
			problems = append(problems, fmt.Sprintf("%s is not valid now (valid %s to %s)", p.Cert(ca.base+".crt"),
				cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339)))
		}
		if ca.base == "ca" && !cert.Equal(clusterCA) {
			problems = append(problems, fmt.Sprintf("%s is not the CA of the cluster at %s: discovery verified the cluster's CA, %s (public key %s), and this file holds %s (public key %s): copy ca.crt and ca.key from a control-plane node of the cluster this node joins",
				p.Cert("ca.crt"), server, clusterCA.Subject.CommonName, pki.CAHash(clusterCA), cert.Subject.CommonName, pki.CAHash(cert)))
		}
	}
	if has("sa.key") && has("sa.pub") {
		if _, _, err := pki.LoadServiceAccountKeys(p); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if has("encryption-config.yaml") {
		path := p.Cert("encryption-config.yaml")
		b, err := os.ReadFile(p.Host(path))
		if err == nil {
			_, err = encryption.Parse(b, path)
		}
		if err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return sharedFilesError(p, "some are missing or do not fit", problems)
}

// clusterProbe is what compareSharedWithCluster asks the running cluster;
// tests replace its parts.
type clusterProbe struct {
	// client has cluster-admin rights.
	client kubernetes.Interface
	// jwks returns the API server's service-account public keys
	// (/openid/v1/jwks).
	jwks func(ctx context.Context) ([]byte, error)
	// hashes asks one API server for the hash of its encryption
	// configuration file.
	hashes encryption.LoadedHashes
	// etcdTLS is the TLS configuration to reach the cluster's etcd with:
	// etcd/ca.crt as its root, and a client certificate of the etcd CA.
	etcdTLS *tls.Config
}

// comparison is the outcome of compareSharedWithCluster.
type comparison struct {
	same      []string // files found to be the cluster's
	unchecked []string // files that could not be compared, each with why
	different []string // files that are not the cluster's, each with why and what it means
}

// compare checks the shared files under p against what the cluster runs
// with: front-proxy-ca.crt against the API servers' request-header CA
// (kube-system/extension-apiserver-authentication), kubelet-serving-ca.crt
// against kube-system/kubelet-serving-ca (published with metrics-server),
// sa.pub against the API server's service-account keys (/openid/v1/jwks),
// etcd/ca.crt (and key) by a TLS request to the cluster's etcd members,
// which must present a certificate of that CA and accept a client
// certificate of it, and encryption-config.yaml against the SHA-256 of the
// file each API server reports having loaded. self (this node's name, at
// selfIP) is left out of the etcd members and API servers: a node that
// joins again after a reset may still be listed.
func (c clusterProbe) compare(ctx context.Context, p config.Paths, self, selfIP string) comparison {
	var out comparison
	same := func(f string) { out.same = append(out.same, f) }
	unchecked := func(f, format string, a ...any) {
		out.unchecked = append(out.unchecked, p.Cert(f)+": "+fmt.Sprintf(format, a...))
	}
	different := func(f, format string, a ...any) {
		out.different = append(out.different, p.Cert(f)+" "+fmt.Sprintf(format, a...))
	}

	// The CAs the cluster publishes in ConfigMaps.
	for _, pub := range []struct{ file, cm, key, meaning string }{
		{"front-proxy-ca.crt", "extension-apiserver-authentication", "requestheader-client-ca-file",
			"the CA the cluster's API servers verify the front proxy with (requestheader-client-ca-file): extension API servers would refuse this node's API server"},
		{"kubelet-serving-ca.crt", manifests.KubeletServingCAConfigMap, "ca.crt",
			"the kubelet serving CA the cluster publishes: this node's API server could not verify the kubelets, nor the others its kubelet's certificate"},
	} {
		cert, err := pki.LoadCert(p, strings.TrimSuffix(pub.file, ".crt"))
		if err != nil {
			unchecked(pub.file, "%v", err)
			continue
		}
		cm, err := c.client.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, pub.cm, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			unchecked(pub.file, "the cluster has no ConfigMap kube-system/%s to compare it with", pub.cm)
			continue
		}
		if err != nil {
			unchecked(pub.file, "read kube-system/%s: %v", pub.cm, err)
			continue
		}
		certs, err := pki.ParseCerts([]byte(cm.Data[pub.key]))
		if err != nil {
			unchecked(pub.file, "kube-system/%s %s: %v", pub.cm, pub.key, err)
			continue
		}
		if !slices.ContainsFunc(certs, cert.Equal) {
			different(pub.file, "is not %s (kube-system/%s, %s)", pub.meaning, pub.cm, pub.key)
			continue
		}
		same(pub.file)
	}

	// The service-account keys.
	if _, pub, err := pki.LoadServiceAccountKeys(p); err != nil {
		unchecked("sa.pub", "%v", err)
	} else if set, err := c.jwks(ctx); err != nil {
		unchecked("sa.pub", "read the API server's service-account keys (/openid/v1/jwks): %v", err)
	} else {
		var keys jose.JSONWebKeySet
		if err := json.Unmarshal(set, &keys); err != nil {
			unchecked("sa.pub", "the API server's /openid/v1/jwks: %v", err)
		} else if !slices.ContainsFunc(keys.Keys, func(k jose.JSONWebKey) bool {
			e, ok := k.Key.(interface{ Equal(crypto.PublicKey) bool })
			return ok && e.Equal(pub)
		}) {
			different("sa.pub", "(and sa.key) is not among the service-account keys the cluster's API server publishes (/openid/v1/jwks, %d keys): the other API servers would refuse the tokens this node's API server signs", len(keys.Keys))
		} else {
			same("sa.key")
			same("sa.pub")
		}
	}

	// The etcd CA, asked of etcd itself.
	if c.etcdTLS == nil {
		unchecked("etcd/ca.crt", "no etcd client certificate to ask the cluster's etcd with")
	} else if endpoints, err := etcdEndpoints(ctx, c.client, self, selfIP); err != nil {
		unchecked("etcd/ca.crt", "%v", err)
	} else {
		var unreachable []string
		verdict := ""
		for _, ep := range endpoints {
			err := probeEtcd(ctx, ep, c.etcdTLS)
			var unknown x509.UnknownAuthorityError
			var verify *tls.CertificateVerificationError
			switch {
			case err == nil:
				verdict = "same"
			case errors.As(err, &unknown) || errors.As(err, &verify):
				verdict = fmt.Sprintf("is not the CA of the cluster's etcd: the certificate of the etcd member at %s is not signed by it (%v); this node's etcd member and API server could not talk to the others", ep, err)
			case peerTLSAlert(err):
				verdict = fmt.Sprintf("(with etcd/ca.key) is not the CA the cluster's etcd trusts: the etcd member at %s refused a client certificate signed by it (%v)", ep, err)
			default:
				unreachable = append(unreachable, fmt.Sprintf("%s: %v", ep, err))
				continue
			}
			break
		}
		switch {
		case verdict == "same":
			same("etcd/ca.crt")
		case verdict != "":
			different("etcd/ca.crt", "%s", verdict)
		default:
			unchecked("etcd/ca.crt", "no etcd member answered (%s)", strings.Join(unreachable, "; "))
		}
	}

	// The encryption configuration each API server runs with.
	file := "encryption-config.yaml"
	data, err := os.ReadFile(p.Host(p.Cert(file)))
	if err != nil {
		unchecked(file, "%v", err)
		return out
	}
	servers, err := encryption.APIServers(ctx, c.client)
	if err != nil {
		unchecked(file, "find the cluster's API servers: %v", err)
		return out
	}
	want := encryption.Hash(data)
	var runs, failed []string
	matched := false
	for _, s := range servers {
		if s.Node == self {
			continue
		}
		got, err := c.hashes(ctx, s)
		if err != nil {
			failed = append(failed, err.Error())
			continue
		}
		runs = append(runs, fmt.Sprintf("node %s's API server runs with %s", s.Node, got))
		matched = matched || got == want
	}
	switch {
	case len(runs) == 0:
		unchecked(file, "no API server said which encryption configuration it runs with (%s)", strings.Join(failed, "; "))
	case !matched:
		different(file, "(SHA-256 %s) is not the encryption configuration the cluster's API servers run with (%s): with other keys, the Secrets this node's API server writes would be unreadable by the others, and theirs by it (if a key rotation, `kubeforge secrets rotate-key`, is under way, let it finish first)",
			want, strings.Join(runs, "; "))
	default:
		same(file)
		if slices.ContainsFunc(runs, func(r string) bool { return !strings.HasSuffix(r, want) }) {
			unchecked(file, "it is the file of at least one API server, but not of every one (%s): a key rotation may be under way; the secrets-encryption-config duty brings this node's file up to date once it runs",
				strings.Join(runs, "; "))
		}
		if len(failed) > 0 {
			unchecked(file, "it is the file of the API servers that answered, but not every one did (%s)", strings.Join(failed, "; "))
		}
	}
	return out
}

// peerTLSAlert reports whether err is a TLS alert the peer sent (it
// refused the handshake, e.g. the client certificate): crypto/tls returns
// a received alert as a *net.OpError whose Op is "remote error" (the alert
// type itself is unexported).
func peerTLSAlert(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error"
}

// probeEtcd sends one request (GET /version) to an etcd client URL with
// tlsConfig: it fails when the member's certificate does not verify with
// tlsConfig's roots or the member refuses its client certificate. No proxy
// is used.
func probeEtcd(ctx context.Context, endpoint string, tlsConfig *tls.Config) error {
	tr := &http.Transport{TLSClientConfig: tlsConfig.Clone(), Proxy: nil, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(endpoint, "/")+"/version", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s/version: %s", endpoint, resp.Status)
	}
	return nil
}

// sharedProbe builds the clusterProbe of a join whose shared files are on
// the node: with the cluster CA's key, it asks the cluster as a short-lived
// cluster administrator whose certificate it signs in memory (the kubeconfig
// phase makes admin.conf the same way); under an external CA, with the
// node's admin.conf (checkProvidedFiles has verified it). The etcd client
// certificate is signed in memory by etcd/ca.key, or, under an external etcd
// CA, is the node's apiserver-etcd-client. Nothing is written.
func (d *JoinData) sharedProbe() (clusterProbe, error) {
	p := d.Cfg.Paths
	spec := d.PKISpec()
	spec.Paths = p
	const user = "kubeforge-join-preflight"
	var cfg *rest.Config
	if fileExists(p.Host(p.Cert("ca.key"))) {
		crt, key, err := pki.ClientCertificate(spec, pki.CAName, user, []string{pki.ClusterAdmins}, 10*time.Minute)
		if err != nil {
			return clusterProbe{}, err
		}
		cfg = &rest.Config{Host: d.found.Server, TLSClientConfig: rest.TLSClientConfig{CAData: d.found.CAData, CertData: crt, KeyData: key}}
	} else {
		var err error
		if cfg, err = restConfig(p, p.Kubeconfig("admin.conf")); err != nil {
			return clusterProbe{}, err
		}
	}
	cfg.Timeout = 15 * time.Second
	cfg.UserAgent = "kubeforge-join"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return clusterProbe{}, err
	}
	probe := clusterProbe{
		client: client,
		jwks: func(ctx context.Context) ([]byte, error) {
			return client.CoreV1().RESTClient().Get().AbsPath("/openid/v1/jwks").DoRaw(ctx)
		},
		hashes: encryption.MetricsHashes(cfg),
	}
	var etcdCert tls.Certificate
	if fileExists(p.Host(p.Cert("etcd/ca.key"))) {
		crt, key, err := pki.ClientCertificate(spec, pki.EtcdCA, user, nil, 10*time.Minute)
		if err == nil {
			etcdCert, err = tls.X509KeyPair(crt, key)
		}
		if err != nil {
			return clusterProbe{}, err
		}
	} else if etcdCert, err = tls.LoadX509KeyPair(p.Host(p.Cert("apiserver-etcd-client.crt")), p.Host(p.Cert("apiserver-etcd-client.key"))); err != nil {
		d.Out.Warnf("preflight", "cannot ask the cluster's etcd about %s: %v", p.Cert("etcd/ca.crt"), err)
		return probe, nil
	}
	caPEM, err := os.ReadFile(p.Host(p.Cert("etcd/ca.crt")))
	if err != nil {
		return clusterProbe{}, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	probe.etcdTLS = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{etcdCert}, MinVersion: tls.VersionTLS12}
	return probe, nil
}

// compareSharedWithCluster refuses, before anything is written, shared files
// on the node that are not the ones the running cluster uses, and warns
// about those it could not compare (see clusterProbe.compare).
func (d *JoinData) compareSharedWithCluster(ctx context.Context) error {
	const phase = "preflight"
	start := time.Now()
	probe, err := d.sharedProbe()
	if err != nil {
		d.Out.Warnf(phase, "cannot ask the cluster whether the shared files in %s are its own (%v): make sure they were copied from one of its control-plane nodes", d.Cfg.Paths.CertDir, err)
		return nil
	}
	res := probe.compare(ctx, d.Cfg.Paths, d.Cfg.NodeName(), d.Cfg.AdvertiseAddress())
	if len(res.different) > 0 {
		return sharedFilesError(d.Cfg.Paths, "some are not the ones the running cluster uses", res.different)
	}
	for _, u := range res.unchecked {
		d.Out.Warnf(phase, "could not compare a shared file with the cluster: %s; make sure it was copied from a control-plane node of this cluster", u)
	}
	d.Out.Done(phase, "shared-files", "", start, "The shared certificates and keys on this node are the cluster's: %s (ca.crt as discovery verified it)", strings.Join(res.same, ", "))
	return nil
}

// useSharedFilesOnNode is download-certs without a certificate key: the
// shared files are already on the node (discover checked them). A dry run
// copies them into its scratch root, so that its later phases sign with
// them as the real join will.
func useSharedFilesOnNode(d *JoinData) error {
	const phase = "download-certs"
	p := d.Cfg.Paths
	if !d.DryRun {
		d.Out.Printf(phase, "Using the shared certificates and keys already in %q (no --certificate-key: copied by hand, checked in preflight)", p.CertDir)
		return nil
	}
	files := map[string][]byte{}
	for _, f := range uploadcerts.Files {
		b, err := os.ReadFile(p.Host(p.Cert(f)))
		if errors.Is(err, os.ErrNotExist) {
			continue // an external CA's key
		}
		if err != nil {
			return err
		}
		files[f] = b
		d.Out.Printf(phase, "Would use %q, already on this node", p.Cert(f))
	}
	return uploadcerts.Write(d.Paths, files)
}
