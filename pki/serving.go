package pki

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ServingPair is a certificate and its private key, PEM-encoded, as a
// Kubernetes TLS Secret holds them (tls.crt, tls.key).
type ServingPair struct {
	Cert, Key []byte
}

// EnsureServingPair returns a certificate for want signed by caCert/caKey,
// for a cluster addon whose serving pair lives in the API (a Secret)
// rather than in the certificate directory. It reuses have when have is
// signed by the CA, its key matches, it says what want says, and more than
// a third of validity is left; otherwise it issues a new pair (with a new
// key of algorithm), valid for validity. why says why have was not reused
// ("" when it was, or when there was none).
func EnsureServingPair(have ServingPair, caCert *x509.Certificate, caKey crypto.Signer, want CertConfig, algorithm string, validity time.Duration, now time.Time) (pair ServingPair, reused bool, why string, err error) {
	if caCert == nil || caKey == nil {
		return ServingPair{}, false, "", errors.New("no CA certificate and key to sign the serving certificate with")
	}
	if len(have.Cert) > 0 || len(have.Key) > 0 {
		if why = servingPairProblem(have, caCert, want, validity, now); why == "" {
			return have, true, "", nil
		}
	}
	key, err := NewPrivateKey(algorithm)
	if err != nil {
		return ServingPair{}, false, why, err
	}
	cert, err := issue(want, false, key, caCert, caKey, now, validity)
	if err != nil {
		return ServingPair{}, false, why, err
	}
	keyPEM, err := EncodeKeyPEM(key)
	if err != nil {
		return ServingPair{}, false, why, err
	}
	return ServingPair{Cert: EncodeCertPEM(cert), Key: keyPEM}, false, why, nil
}

// servingPairProblem says why have cannot be reused, or "".
func servingPairProblem(have ServingPair, caCert *x509.Certificate, want CertConfig, validity time.Duration, now time.Time) string {
	certs, err := ParseCerts(have.Cert)
	if err != nil || len(certs) == 0 {
		return fmt.Sprintf("its certificate does not parse (%v)", err)
	}
	key, err := ParseKey(have.Key)
	if err != nil {
		return fmt.Sprintf("its key does not parse (%v)", err)
	}
	cert := certs[0]
	if !keyMatches(cert, key) {
		return "its key is not the certificate's"
	}
	if err := verifyChain(cert, certs[1:], caCert, now); err != nil {
		return fmt.Sprintf("it is not signed by the CA %q (%v)", caCert.Subject.CommonName, err)
	}
	if p := mismatches(cert, want); len(p) > 0 {
		return "it " + strings.Join(p, ", ")
	}
	if err := checkPeriod(cert, now); err != nil {
		return "it " + err.Error()
	}
	if left := cert.NotAfter.Sub(now); left < validity/3 {
		return fmt.Sprintf("it expires in %v, less than a third of its validity", left.Round(time.Hour))
	}
	return ""
}
