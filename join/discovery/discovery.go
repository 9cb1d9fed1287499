// Package discovery finds and authenticates the cluster a node joins, the
// way kubeadm does: token discovery reads the kube-public/cluster-info
// ConfigMap anonymously, checks its JWS signature with the bootstrap token
// (proving the server knows the token) and pins the cluster CA by the
// SHA-256 of its public key (kubeadm's --discovery-token-ca-cert-hash), then
// reads it again over the now-verified TLS connection; file discovery takes
// a kubeconfig instead. Every refusal says which check failed. Nothing here
// writes to the host.
package discovery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/cluster-bootstrap/token/jws"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/pki"
)

// Options say how to find and trust the cluster.
type Options struct {
	// Endpoint is the API server's host:port (token discovery).
	Endpoint string
	// Token is the bootstrap token "abcdef.0123456789abcdef".
	Token string
	// CACertHashes are the accepted CA pins ("sha256:<hex>").
	CACertHashes []string
	// UnsafeSkipCAVerification trusts whatever CA cluster-info names.
	UnsafeSkipCAVerification bool
	// File is a kubeconfig to use instead of token discovery (path), read by the caller.
	File []byte
	// FileName names File in messages.
	FileName string
	// Timeout bounds the whole discovery (default 5 minutes, kubeadm's).
	Timeout time.Duration
	// Warn receives warnings (unsafe mode).
	Warn func(string)
	// UnsignedGrace is how long a token without a cluster-info signature
	// is waited for (default 10 s).
	UnsignedGrace time.Duration
}

// Result is the trusted cluster.
type Result struct {
	// Server is the API server URL from cluster-info (or the file).
	Server string
	// CAData is the cluster CA bundle (PEM).
	CAData []byte
	// CA is the first CA certificate.
	CA *x509.Certificate
	// Kubeconfig is the verified kubeconfig (cluster-info's, or the file's).
	Kubeconfig *clientcmdapi.Config
}

// Refusal is a discovery failure that retrying will not fix.
type Refusal struct{ Reason string }

func (r *Refusal) Error() string { return r.Reason }

func refuse(format string, a ...any) error { return &Refusal{Reason: fmt.Sprintf(format, a...)} }

// Discover runs file or token discovery.
func Discover(ctx context.Context, o Options) (*Result, error) {
	if len(o.File) > 0 {
		return fromFile(o)
	}
	return fromToken(ctx, o)
}

func fromFile(o Options) (*Result, error) {
	kc, err := clientcmd.Load(o.File)
	if err != nil {
		return nil, refuse("--discovery-file %s: not a kubeconfig: %v", o.FileName, err)
	}
	cluster := currentCluster(kc)
	if cluster == nil || cluster.Server == "" {
		return nil, refuse("--discovery-file %s: no cluster with a server in its current context", o.FileName)
	}
	if len(cluster.CertificateAuthorityData) == 0 {
		return nil, refuse("--discovery-file %s: the cluster has no certificate-authority-data", o.FileName)
	}
	certs, err := pki.ParseCerts(cluster.CertificateAuthorityData)
	if err != nil {
		return nil, refuse("--discovery-file %s: certificate-authority-data: %v", o.FileName, err)
	}
	return &Result{Server: cluster.Server, CAData: cluster.CertificateAuthorityData, CA: certs[0], Kubeconfig: kc}, nil
}

func currentCluster(kc *clientcmdapi.Config) *clientcmdapi.Cluster {
	if c, ok := kc.Contexts[kc.CurrentContext]; ok {
		return kc.Clusters[c.Cluster]
	}
	for _, c := range kc.Clusters { // cluster-info has one cluster and no context
		return c
	}
	return nil
}

func fromToken(ctx context.Context, o Options) (*Result, error) {
	if !bootstraputil.IsValidBootstrapToken(o.Token) {
		return nil, refuse("--token %q is not a bootstrap token: the format is [a-z0-9]{6}.[a-z0-9]{16}", o.Token)
	}
	id, secret, _ := strings.Cut(o.Token, ".")
	if o.Endpoint == "" {
		return nil, refuse("no API server endpoint: give it as the first argument (kubeforge join HOST:PORT …)")
	}
	if ep, err := config.ParseEndpoint(o.Endpoint); err != nil {
		return nil, refuse("API server endpoint %v (give host:port)", err)
	} else if ep.Port == 0 {
		return nil, refuse("API server endpoint %q has no port (give host:port)", o.Endpoint)
	}
	if len(o.CACertHashes) == 0 && !o.UnsafeSkipCAVerification {
		return nil, refuse("no --discovery-token-ca-cert-hash: pass the CA pin that `kubeforge init` printed (or `kubeforge token create --print-join-command` prints), or --discovery-token-unsafe-skip-ca-verification")
	}
	for _, h := range o.CACertHashes {
		if !validHash(h) {
			return nil, refuse("--discovery-token-ca-cert-hash %q: the format is sha256:<64 hex digits>", h)
		}
	}
	if o.UnsafeSkipCAVerification && o.Warn != nil {
		o.Warn("--discovery-token-unsafe-skip-ca-verification: the cluster CA is not pinned; a server that knows the token could impersonate the cluster")
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	url := "https://" + o.Endpoint + "/api/v1/namespaces/kube-public/configmaps/cluster-info"
	// First read: the CA is not known yet; the signature and the pin
	// authenticate what comes back.
	var cm *corev1.ConfigMap
	var lastErr error
	// A token created a moment ago with kubeadm may not be signed yet (the
	// controller-manager signs within seconds; kubeforge signs at once), so
	// a missing signature is retried for a short grace period.
	unsignedSince := time.Time{}
	unsignedGrace := o.UnsignedGrace
	if unsignedGrace == 0 {
		unsignedGrace = 10 * time.Second
	}
	for {
		cm, lastErr = fetch(ctx, url, &tls.Config{InsecureSkipVerify: true})
		if lastErr == nil {
			if _, signed := cm.Data["jws-kubeconfig-"+id]; signed {
				break
			}
			if unsignedSince.IsZero() {
				unsignedSince = time.Now()
			}
			lastErr = refuse("cluster-info has no signature for token ID %q: the token does not exist, has expired or was deleted (list tokens with `kubeforge token list` on a control-plane node, create one with `kubeforge token create --print-join-command`)", id)
			if time.Since(unsignedSince) > unsignedGrace {
				return nil, lastErr
			}
		} else {
			var r *Refusal
			if errors.As(lastErr, &r) {
				return nil, lastErr
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("discovery through %s gave up after %s: %w", o.Endpoint, timeout, lastErr)
		case <-time.After(500 * time.Millisecond):
		}
	}
	data, ok := cm.Data["kubeconfig"]
	if !ok {
		return nil, refuse("cluster-info at %s has no kubeconfig", o.Endpoint)
	}
	if !jws.DetachedTokenIsValid(cm.Data["jws-kubeconfig-"+id], data, id, secret) {
		return nil, refuse("cluster-info's signature for token ID %q does not verify: the token's secret is wrong (check --token)", id)
	}
	kc, err := clientcmd.Load([]byte(data))
	if err != nil {
		return nil, refuse("cluster-info's kubeconfig does not parse: %v", err)
	}
	cluster := currentCluster(kc)
	if cluster == nil || len(cluster.CertificateAuthorityData) == 0 {
		return nil, refuse("cluster-info's kubeconfig has no cluster CA")
	}
	if cluster.Server == "" {
		return nil, refuse("cluster-info's kubeconfig has no server for its cluster")
	}
	certs, err := pki.ParseCerts(cluster.CertificateAuthorityData)
	if err != nil {
		return nil, refuse("cluster-info's CA: %v", err)
	}
	if !o.UnsafeSkipCAVerification {
		var pins []string
		for _, c := range certs {
			pins = append(pins, pki.CAHash(c))
		}
		if !slices.ContainsFunc(pins, func(p string) bool { return slices.Contains(normalize(o.CACertHashes), p) }) {
			return nil, refuse("the cluster CA's public key hash is %s, which matches no --discovery-token-ca-cert-hash (%s): this is not the cluster you meant, or the hash is wrong",
				strings.Join(pins, ", "), strings.Join(o.CACertHashes, ", "))
		}
	}
	// Second read over TLS verified against the pinned CA: the endpoint
	// really is that cluster's API server.
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	cm2, err := fetch(ctx, url, &tls.Config{RootCAs: pool})
	if err != nil {
		return nil, refuse("the API server at %s does not present a certificate of the pinned CA: %v", o.Endpoint, err)
	}
	if cm2.Data["kubeconfig"] != data {
		return nil, refuse("cluster-info changed between the unverified and the verified read; try again")
	}
	return &Result{Server: cluster.Server, CAData: cluster.CertificateAuthorityData, CA: certs[0], Kubeconfig: kc}, nil
}

func validHash(h string) bool {
	hex, ok := strings.CutPrefix(strings.ToLower(h), "sha256:")
	if !ok || len(hex) != 64 {
		return false
	}
	return strings.Trim(hex, "0123456789abcdef") == ""
}

func normalize(hs []string) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = strings.ToLower(h)
	}
	return out
}

// fetch GETs a ConfigMap anonymously.
func fetch(ctx context.Context, url string, tlsCfg *tls.Config) (*corev1.ConfigMap, error) {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg, Proxy: nil}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		var uerr x509.UnknownAuthorityError
		if errors.As(err, &uerr) {
			return nil, refuse("%v", err)
		}
		return nil, fmt.Errorf("cannot reach the API server: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, fmt.Errorf("the API server has no kube-public/cluster-info ConfigMap yet (is it a kubeforge or kubeadm cluster that finished init?)")
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, refuse("the API server refuses anonymous reads of kube-public/cluster-info (%s): the cluster does not allow token discovery; use --discovery-file", resp.Status)
	default:
		return nil, fmt.Errorf("reading cluster-info: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	var cm corev1.ConfigMap
	if err := json.Unmarshal(body, &cm); err != nil {
		return nil, fmt.Errorf("cluster-info is not a ConfigMap: %w", err)
	}
	return &cm, nil
}
