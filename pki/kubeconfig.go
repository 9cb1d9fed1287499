package pki

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/fsutil"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// NewKubeconfig returns a kubeconfig as kubeadm lays it out: cluster
// "kubernetes" at server with the CA data embedded, one user, context
// "<user>@kubernetes" selected. The user's AuthInfo is empty: set its
// client certificate/key data or token.
func NewKubeconfig(server, user string, caPEM []byte) *clientcmdapi.Config {
	cfg := clientcmdapi.NewConfig()
	ctx := user + "@" + DefaultClusterName
	cfg.Clusters[DefaultClusterName] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.Contexts[ctx] = &clientcmdapi.Context{Cluster: DefaultClusterName, AuthInfo: user}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{}
	cfg.CurrentContext = ctx
	return cfg
}

// KubeconfigPath is the logical path of a kubeconfig file ("admin.conf").
func KubeconfigPath(p config.Paths, fileName string) string { return p.Kubeconfig(fileName) }

func (k Kubeconfig) server(spec Spec) (string, error) {
	if k.Local {
		return spec.LocalURL()
	}
	return spec.ControlPlaneURL()
}

// acceptedServers lists the server URLs an existing file may point at.
func (k Kubeconfig) acceptedServers(spec Spec) ([]string, error) {
	s, err := k.server(spec)
	if err != nil {
		return nil, err
	}
	out := []string{s}
	if k.AlsoControlPlane {
		cp, err := spec.ControlPlaneURL()
		if err != nil {
			return nil, err
		}
		if cp != s {
			out = append(out, cp)
		}
	}
	return out, nil
}

// EnsureKubeconfig makes sure one kubeconfig ("admin" or "admin.conf", …)
// exists and fits: an existing file whose CA is ca.crt, whose server is the
// expected one and whose client certificate is valid, signed by the CA and
// has the right CN/O is reused untouched; a missing one is written (unless
// the CA is external: then it must be provided, as in kubeadm); anything else
// is refused naming the file.
func EnsureKubeconfig(spec Spec, name string) (Result, error) {
	return EnsureKubeconfigAt(spec, name, "")
}

// EnsureKubeconfigAt is EnsureKubeconfig for a new file that points at
// server (empty: the table's server for the file), one of those the table
// accepts for it: a joining control-plane node's kubelet.conf points at the
// control-plane endpoint, as the kubelet's TLS bootstrap would write it,
// since this node's own API server does not serve before its etcd member
// has joined.
func EnsureKubeconfigAt(spec Spec, name, server string) (Result, error) {
	spec, err := prepare(spec)
	if err != nil {
		return Result{Name: name}, err
	}
	k, ok := LookupKubeconfig(name)
	if !ok {
		return Result{Name: name}, fmt.Errorf("unknown kubeconfig %q: known names are %s", name, strings.Join(kubeconfigNames(), ", "))
	}
	if server == "" {
		return ensureKubeconfig(spec, k, spec.Keys, "")
	}
	accepted, err := k.acceptedServers(spec)
	if err != nil {
		return Result{Name: name}, err
	}
	if !slices.Contains(accepted, server) {
		return Result{Name: name}, fmt.Errorf("kubeconfig %s: server %s is none of %s", k.FileName, server, strings.Join(accepted, ", "))
	}
	return ensureKubeconfig(spec, k, spec.Keys, server)
}

// EnsureAllKubeconfigs runs EnsureKubeconfig over the table in order,
// generating the missing client keys concurrently up front. Like EnsureAll
// it goes on past a failing file and returns every error, joined.
func EnsureAllKubeconfigs(spec Spec) ([]Result, error) {
	spec, err := prepare(spec)
	if err != nil {
		return nil, err
	}
	if _, _, err := TryLoadCA(spec.Paths, CAName); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("kubeconfig files: the CA %s does not exist: run `kubeforge init phase certs ca` first", CertPath(spec.Paths, "ca"))
	} else if err != nil {
		return nil, fmt.Errorf("kubeconfig files: %w", err)
	}
	pool := spec.Keys
	if pool == nil {
		n := 0
		if exists(spec.Paths, KeyPath(spec.Paths, "ca")) {
			for _, k := range Kubeconfigs {
				if !exists(spec.Paths, KubeconfigPath(spec.Paths, k.FileName)) {
					n++
				}
			}
		}
		if pool, err = NewKeyPool(spec.Algorithm, n); err != nil {
			return nil, err
		}
		defer pool.Close()
	}
	var results []Result
	var errs []error
	for _, k := range Kubeconfigs {
		r, err := ensureKubeconfig(spec, k, pool, "")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		results = append(results, r)
	}
	return results, errors.Join(errs...)
}

func kubeconfigNames() []string {
	var n []string
	for _, k := range Kubeconfigs {
		n = append(n, k.Name)
	}
	return n
}

// ensureKubeconfig writes a missing file pointing at server (empty: the
// table's server for it) and verifies an existing one.
func ensureKubeconfig(spec Spec, k Kubeconfig, pool *KeyPool, server string) (Result, error) {
	start := time.Now()
	p := spec.Paths
	res := Result{Name: k.FileName, CertPath: KubeconfigPath(p, k.FileName)}
	caPath := CertPath(p, "ca")
	caCert, caKey, err := TryLoadCA(p, CAName)
	if errors.Is(err, fs.ErrNotExist) {
		return res, fmt.Errorf("kubeconfig %s: the CA %s does not exist: run `kubeforge init phase certs ca` first", k.FileName, caPath)
	}
	if err != nil {
		return res, fmt.Errorf("kubeconfig %s: %w", k.FileName, err)
	}
	want, err := k.Client(spec)
	if err != nil {
		return res, fmt.Errorf("kubeconfig %s: %w", k.FileName, err)
	}
	if server == "" {
		if server, err = k.server(spec); err != nil {
			return res, fmt.Errorf("kubeconfig %s: %w", k.FileName, err)
		}
	}
	now := spec.Now()
	external := caKey == nil

	if exists(p, res.CertPath) {
		servers, err := k.acceptedServers(spec)
		if err != nil {
			return res, fmt.Errorf("kubeconfig %s: %w", k.FileName, err)
		}
		cert, err := verifyKubeconfig(p, k, res.CertPath, caCert, caPath, servers, want, now, external)
		if err != nil {
			return res, err
		}
		res.Cert = cert
		res.Action = ActionReused
		if external {
			res.Action = ActionExternal
			res.Note = "provided for the external CA"
		}
		res.Duration = time.Since(start)
		return res, nil
	}
	if external {
		return res, fmt.Errorf("%s is missing and must be provided: the CA is external (%s present, %s absent), so kubeforge cannot sign its client certificate; create it with server %s, the CA %s and a client certificate from your CA with %s",
			res.CertPath, caPath, KeyPath(p, "ca"), server, caPath, describeWant(want))
	}
	key, err := pool.Get(spec.Algorithm)
	if err != nil {
		return res, fmt.Errorf("kubeconfig %s: %w", k.FileName, err)
	}
	cert, err := issue(want, false, key, caCert, caKey, now, spec.Validity)
	if err != nil {
		return res, fmt.Errorf("kubeconfig %s: %w", k.FileName, err)
	}
	cfg, err := kubeconfigWithCert(server, want.CommonName, caCert, cert, key)
	if err != nil {
		return res, fmt.Errorf("kubeconfig %s: %w", k.FileName, err)
	}
	if err := writeKubeconfig(p, res.CertPath, cfg); err != nil {
		return res, err
	}
	res.Cert = cert
	res.Action = ActionGenerated
	res.Duration = time.Since(start)
	return res, nil
}

func kubeconfigWithCert(server, user string, caCert, cert *x509.Certificate, key crypto.Signer) (*clientcmdapi.Config, error) {
	keyPEM, err := EncodeKeyPEM(key)
	if err != nil {
		return nil, err
	}
	cfg := NewKubeconfig(server, user, EncodeCertPEM(caCert))
	cfg.AuthInfos[user].ClientCertificateData = EncodeCertPEM(cert)
	cfg.AuthInfos[user].ClientKeyData = keyPEM
	return cfg, nil
}

func writeKubeconfig(p config.Paths, logical string, cfg *clientcmdapi.Config) error {
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		return fmt.Errorf("encode %s: %w", logical, err)
	}
	if _, err := fsutil.WriteFile(p.Host(logical), b, KubeconfigFileMode); err != nil {
		return err
	}
	return nil
}

// kubeconfigView is a loaded kubeconfig's current context, resolved.
type kubeconfigView struct {
	cfg      *clientcmdapi.Config
	cluster  *clientcmdapi.Cluster
	authName string
	auth     *clientcmdapi.AuthInfo
}

// LoadKubeconfig reads and parses a kubeconfig through p (logical path).
func LoadKubeconfig(p config.Paths, logical string) (*clientcmdapi.Config, error) {
	b, err := readFile(p, logical)
	if err != nil {
		return nil, err
	}
	cfg, err := clientcmd.Load(b)
	if err != nil {
		return nil, fmt.Errorf("%s is not a valid kubeconfig: %w", logical, err)
	}
	return cfg, nil
}

func loadKubeconfigView(p config.Paths, logical string) (kubeconfigView, error) {
	cfg, err := LoadKubeconfig(p, logical)
	if err != nil {
		return kubeconfigView{}, err
	}
	ctx, ok := cfg.Contexts[cfg.CurrentContext]
	if !ok {
		return kubeconfigView{}, fmt.Errorf("%s has no current context %q", logical, cfg.CurrentContext)
	}
	cluster, ok := cfg.Clusters[ctx.Cluster]
	if !ok {
		return kubeconfigView{}, fmt.Errorf("%s: context %q names cluster %q, which is not defined", logical, cfg.CurrentContext, ctx.Cluster)
	}
	auth, ok := cfg.AuthInfos[ctx.AuthInfo]
	if !ok {
		return kubeconfigView{}, fmt.Errorf("%s: context %q names user %q, which is not defined", logical, cfg.CurrentContext, ctx.AuthInfo)
	}
	return kubeconfigView{cfg: cfg, cluster: cluster, authName: ctx.AuthInfo, auth: auth}, nil
}

// refPath resolves a file reference inside a kubeconfig (relative to the
// kubeconfig's directory) to a logical path.
func refPath(kubeconfig, ref string) string {
	if path.IsAbs(ref) {
		return ref
	}
	return path.Join(path.Dir(kubeconfig), ref)
}

// caCerts returns the CA certificates the current cluster trusts.
func (v kubeconfigView) caCerts(p config.Paths, logical string) ([]*x509.Certificate, error) {
	data := v.cluster.CertificateAuthorityData
	src := logical
	if len(data) == 0 && v.cluster.CertificateAuthority != "" {
		src = refPath(logical, v.cluster.CertificateAuthority)
		b, err := readFile(p, src)
		if err != nil {
			return nil, fmt.Errorf("certificate-authority of cluster in %s: %w", logical, err)
		}
		data = b
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("%s has no certificate authority for its cluster", logical)
	}
	certs, err := ParseCerts(data)
	if err != nil {
		return nil, fmt.Errorf("certificate authority in %s: %w", src, err)
	}
	return certs, nil
}

// clientCert returns the client certificate (and key) of the current user:
// embedded data, or files it references (kubelet.conf after the kubelet
// rotated its certificate). embedded reports which.
func (v kubeconfigView) clientCert(p config.Paths, logical string) (cert *x509.Certificate, key crypto.Signer, source string, embedded bool, err error) {
	certData, keyData := v.auth.ClientCertificateData, v.auth.ClientKeyData
	source = logical
	embedded = len(certData) > 0
	if !embedded {
		if v.auth.ClientCertificate == "" {
			return nil, nil, logical, false, fmt.Errorf("%s has no client certificate for user %q", logical, v.authName)
		}
		source = refPath(logical, v.auth.ClientCertificate)
		if certData, err = readFile(p, source); err != nil {
			return nil, nil, source, false, fmt.Errorf("client-certificate of user %q in %s: %w", v.authName, logical, err)
		}
	}
	certs, err := ParseCerts(certData)
	if err != nil {
		return nil, nil, source, embedded, fmt.Errorf("client certificate in %s: %w", source, err)
	}
	if len(keyData) == 0 && v.auth.ClientKey != "" {
		kp := refPath(logical, v.auth.ClientKey)
		if keyData, err = readFile(p, kp); err != nil {
			return certs[0], nil, source, embedded, fmt.Errorf("client-key of user %q in %s: %w", v.authName, logical, err)
		}
	}
	if len(keyData) == 0 {
		return certs[0], nil, source, embedded, fmt.Errorf("%s has no client key for user %q", logical, v.authName)
	}
	key, err = ParseKey(keyData)
	if err != nil {
		return certs[0], nil, source, embedded, fmt.Errorf("client key in %s: %w", source, err)
	}
	return certs[0], key, source, embedded, nil
}

func verifyKubeconfig(p config.Paths, k Kubeconfig, logical string, caCert *x509.Certificate, caPath string, servers []string, want CertConfig, now time.Time, external bool) (*x509.Certificate, error) {
	regen := fmt.Sprintf("remove %s to regenerate it", logical)
	if external {
		regen = "replace it with one made for this cluster"
	}
	v, err := loadKubeconfigView(p, logical)
	if err != nil {
		return nil, fmt.Errorf("%s exists but cannot be used (%v): %s", logical, err, regen)
	}
	if external {
		// A kubeconfig from `certs generate-csr` that is not complete yet.
		var todo []string
		if len(v.cluster.CertificateAuthorityData) == 0 && v.cluster.CertificateAuthority == "" {
			todo = append(todo, fmt.Sprintf("the CA certificate %s as certificate-authority-data of cluster %q", caPath, v.cfg.Contexts[v.cfg.CurrentContext].Cluster))
		}
		if len(v.auth.ClientCertificateData) == 0 && v.auth.ClientCertificate == "" {
			todo = append(todo, fmt.Sprintf("the client certificate your CA issued for %s.csr as client-certificate-data of user %q", logical, v.authName))
		}
		if len(todo) > 0 {
			return nil, fmt.Errorf("%s is not complete: the CA is external, so add %s (base64 of the PEM, as kubeadm's external CA mode)", logical, strings.Join(todo, " and "))
		}
	}
	cas, err := v.caCerts(p, logical)
	if err != nil {
		return nil, fmt.Errorf("%s exists but cannot be used (%v): %s", logical, err, regen)
	}
	if !slices.ContainsFunc(cas, caCert.Equal) {
		return nil, fmt.Errorf("%s exists but trusts another CA (CN=%s, %s) than %s (%s): it belongs to another cluster; %s",
			logical, cas[0].Subject.CommonName, CAHash(cas[0]), caPath, CAHash(caCert), regen)
	}
	if !slices.Contains(servers, strings.TrimSuffix(v.cluster.Server, "/")) {
		return nil, fmt.Errorf("%s exists but points at server %s instead of %s: %s, or fix the control-plane endpoint / advertise address",
			logical, v.cluster.Server, strings.Join(servers, " or "), regen)
	}
	cert, key, source, embedded, err := v.clientCert(p, logical)
	if err != nil {
		return nil, fmt.Errorf("%s exists but cannot be used (%v): %s", logical, err, regen)
	}
	if !keyMatches(cert, key) {
		return nil, fmt.Errorf("%s exists but its client key does not belong to its client certificate (in %s): %s", logical, source, regen)
	}
	if err := verifyChain(cert, nil, caCert, now); err != nil {
		return nil, fmt.Errorf("%s exists but its client certificate (in %s) is not signed by %s (%v): %s", logical, source, caPath, err, regen)
	}
	if problems := mismatches(cert, want); len(problems) > 0 {
		return nil, fmt.Errorf("%s exists but its client certificate (in %s) %s: %s", logical, source, strings.Join(problems, ", "), regen)
	}
	if err := checkPeriod(cert, now); err != nil {
		fix := fmt.Sprintf("run `kubeforge certs renew %s`", k.FileName)
		switch {
		case external:
			fix = "renew its client certificate with your CA"
		case !embedded:
			fix = fmt.Sprintf("the kubelet renews %s itself; check that it runs, or remove %s and re-join the node", source, logical)
		}
		return nil, fmt.Errorf("%s exists but its client certificate (in %s) %v: %s", logical, source, err, fix)
	}
	return cert, nil
}
