package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"
)

// UserKubeconfig returns a kubeconfig for user (the client certificate's
// CN) in groups (its O), signed by the cluster CA for validity (spec.Validity
// when 0, never past the CA's expiry), for the server of this node's
// admin.conf; as `kubeadm kubeconfig user`. It writes nothing.
func UserKubeconfig(spec Spec, user string, groups []string, validity time.Duration) ([]byte, error) {
	spec, err := prepare(spec)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(user) == "" {
		return nil, errors.New("--client-name is empty: give the user name the certificate is for")
	}
	if validity < 0 {
		return nil, fmt.Errorf("--validity-period %s must be positive", validity)
	}
	if validity == 0 {
		validity = spec.Validity
	}
	p := spec.Paths
	caCert, caKey, err := TryLoadCA(p, CAName)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s is missing: run this on a control-plane node", CertPath(p, CAName))
	}
	if err != nil {
		return nil, err
	}
	if caKey == nil {
		return nil, fmt.Errorf("the CA is external (%s present, %s absent): sign the user's certificate with your CA", CertPath(p, CAName), KeyPath(p, CAName))
	}
	if err := checkPeriod(caCert, spec.Now()); err != nil {
		return nil, fmt.Errorf("the CA %s %v", CertPath(p, CAName), err)
	}
	admin := KubeconfigPath(p, "admin.conf")
	v, err := loadKubeconfigView(p, admin)
	if err != nil {
		return nil, fmt.Errorf("read the API server's address from %s: %w", admin, err)
	}
	key, err := NewPrivateKey(spec.Algorithm)
	if err != nil {
		return nil, err
	}
	cert, err := issue(CertConfig{CommonName: user, Organizations: groups, Usages: clientAuth}, false, key, caCert, caKey, spec.Now(), capToCA(validity, caCert, spec.Now()))
	if err != nil {
		return nil, err
	}
	cfg, err := kubeconfigWithCert(v.cluster.Server, user, caCert, cert, key)
	if err != nil {
		return nil, err
	}
	return clientcmd.Write(*cfg)
}

// ClientCertificate issues in memory a short-lived client certificate for
// user in groups, signed by the CA caName ("ca", "etcd-ca": its certificate
// and key in spec.Paths), valid for validity (never past the CA's expiry),
// as a TLS key pair (PEM). It writes nothing: a joining control-plane node
// uses one to ask the cluster, with the CA key it was given, whether the
// files it was given are the cluster's.
func ClientCertificate(spec Spec, caName, user string, groups []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	spec, err = prepare(spec)
	if err != nil {
		return nil, nil, err
	}
	caCert, caKey, err := TryLoadCA(spec.Paths, caName)
	if err != nil {
		return nil, nil, err
	}
	if caKey == nil {
		return nil, nil, fmt.Errorf("%s has no key: it is an external CA", caName)
	}
	key, err := NewPrivateKey(spec.Algorithm)
	if err != nil {
		return nil, nil, err
	}
	cert, err := issue(CertConfig{CommonName: user, Organizations: groups, Usages: clientAuth}, false, key, caCert, caKey, spec.Now(), capToCA(validity, caCert, spec.Now()))
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = EncodeKeyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return EncodeCertPEM(cert), keyPEM, nil
}
