// Package uploadcerts shares the control plane's CAs and keys with joining
// control-plane nodes as kubeadm does: each file AES-GCM-encrypted with a
// 32-byte certificate key into the kube-system/kubeadm-certs Secret, owned
// by a bootstrap token with a 2-hour TTL so it is garbage-collected, and
// readable by joining nodes' bootstrap tokens. kubeforge adds the secrets
// encryption configuration, which every API server of a cluster must share.
package uploadcerts

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	bootstraptokenv1 "k8s.io/kubernetes/cmd/kubeadm/app/apis/bootstraptoken/v1"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/fsutil"
	"github.com/kubeforge/kubeforge/join/tokens"
)

// SecretName is the Secret holding the encrypted files.
const SecretName = "kubeadm-certs"

// TTL is how long uploaded certificates live.
const TTL = 2 * time.Hour

// Files are the shared files, relative to the certificate dir.
var Files = []string{
	"ca.crt", "ca.key", "sa.key", "sa.pub", "front-proxy-ca.crt", "front-proxy-ca.key",
	"etcd/ca.crt", "etcd/ca.key", "kubelet-serving-ca.crt", "kubelet-serving-ca.key", "encryption-config.yaml",
}

// ExternalCAKeys are the CA keys that an external CA keeps off the nodes
// (kubeadm's external CA mode: ca.crt without ca.key): an upload without
// them is complete, as kubeadm's, which skips the files it does not find;
// a node joining with it gets the CA certificates only, and its own
// certificates and kubeconfig files must already be in place.
var ExternalCAKeys = []string{"ca.key", "front-proxy-ca.key", "etcd/ca.key"}

func externalCAKey(f string) bool { return slices.Contains(ExternalCAKeys, f) }

// secretKey is kubeadm's Secret data key for a file: "etcd/ca.crt" → "etcd-ca.crt".
func secretKey(file string) string { return strings.ReplaceAll(file, "/", "-") }

// NewKey returns a new random certificate key (hex).
func NewKey() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// ParseKey decodes a hex certificate key.
func ParseKey(k string) ([]byte, error) {
	b, err := hex.DecodeString(k)
	if err != nil || len(b) != 32 {
		return nil, errors.New("the certificate key must be 64 hexadecimal characters (32 bytes), as `kubeforge init --upload-certs` printed")
	}
	return b, nil
}

func encrypt(data, key []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return gcm.Seal(nonce, nonce, data, nil), nil
}

func decrypt(data, key []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	if len(data) < gcm.NonceSize() {
		return nil, errors.New("ciphertext too short")
	}
	return gcm.Open(nil, data[:gcm.NonceSize()], data[gcm.NonceSize():], nil)
}

// Upload encrypts the shared files under p.CertDir with key into the
// kubeadm-certs Secret (replacing an older upload) owned by a new 2-hour token.
func Upload(ctx context.Context, c kubernetes.Interface, p config.Paths, key []byte) error {
	data := map[string][]byte{}
	for _, f := range Files {
		b, err := os.ReadFile(p.Host(filepath.Join(p.CertDir, f)))
		if errors.Is(err, os.ErrNotExist) && externalCAKey(f) {
			continue // external CA mode
		}
		if err != nil {
			return fmt.Errorf("upload-certs: %w", err)
		}
		enc, err := encrypt(b, key)
		if err != nil {
			return err
		}
		data[secretKey(f)] = enc
	}
	s, err := tokens.Generate()
	if err != nil {
		return err
	}
	ts, err := bootstraptokenv1.NewBootstrapTokenString(s)
	if err != nil {
		return err
	}
	owner := tokens.Secret(&bootstraptokenv1.BootstrapToken{Token: ts, TTL: &metav1.Duration{Duration: TTL},
		Description: "Proxy for managing TTL for the kubeadm-certs secret"})
	owner, err = c.CoreV1().Secrets(metav1.NamespaceSystem).Create(ctx, owner, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("upload-certs: create the owning token: %w", err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: SecretName, Namespace: metav1.NamespaceSystem,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Secret", Name: owner.Name, UID: owner.UID,
				BlockOwnerDeletion: ptr(true), Controller: ptr(true)}}},
		Type: corev1.SecretTypeOpaque,
		Data: data,
	}
	secrets := c.CoreV1().Secrets(metav1.NamespaceSystem)
	if _, err := secrets.Create(ctx, secret, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		cur, gerr := secrets.Get(ctx, SecretName, metav1.GetOptions{})
		if gerr != nil {
			return gerr
		}
		secret.ResourceVersion = cur.ResourceVersion
		_, err = secrets.Update(ctx, secret, metav1.UpdateOptions{})
		if err != nil {
			return fmt.Errorf("upload-certs: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("upload-certs: %w", err)
	}
	return ensureRBAC(ctx, c)
}

// ensureRBAC lets joining nodes' bootstrap tokens read the Secret.
func ensureRBAC(ctx context.Context, c kubernetes.Interface) error {
	ns := metav1.NamespaceSystem
	name := "kubeadm:kubeadm-certs"
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{SecretName}, Verbs: []string{"get"}}}}
	if _, err := c.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.GroupKind, Name: tokens.DefaultGroups[0]}}}
	if _, err := c.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// Fetch reads and decrypts the uploaded files; nothing is written. The
// errors tell an expired upload from a wrong key.
func Fetch(ctx context.Context, c kubernetes.Interface, key []byte) (map[string][]byte, error) {
	s, err := c.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, SecretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, errors.New("the kube-system/kubeadm-certs Secret does not exist: the uploaded certificates expired (they live 2 hours) or were never uploaded; run `kubeforge init phase upload-certs --upload-certs` on a control-plane node and use the key it prints")
	}
	if err != nil {
		return nil, fmt.Errorf("read the uploaded certificates: %w", err)
	}
	out := map[string][]byte{}
	for _, f := range Files {
		enc, ok := s.Data[secretKey(f)]
		if !ok {
			if externalCAKey(f) {
				continue // the cluster's external CA keeps this key
			}
			if f == "encryption-config.yaml" {
				// With a key of its own, the joining API server could read
				// no Secret the others wrote, nor they its.
				return nil, errors.New("the kubeadm-certs Secret lacks encryption-config.yaml, the key the API servers encrypt Secrets with: upload the certificates again from a control-plane node made by kubeforge (`kubeforge init phase upload-certs --upload-certs`) and join with the key it prints")
			}
			if strings.HasPrefix(f, "kubelet-serving-ca.") {
				// A joining control plane must not make a CA of its own.
				return nil, fmt.Errorf("the kubeadm-certs Secret lacks %s: the cluster was made by a kubeforge without a kubelet serving CA; on the first control-plane node run `kubeforge init phase certs kubelet-serving-ca`, then `kubeforge init phase control-plane all` and `kubeforge init phase upload-certs --upload-certs` (README: \"Kubelet serving certificates\"), and join with the key it prints", f)
			}
			return nil, fmt.Errorf("the kubeadm-certs Secret lacks %s", f)
		}
		b, err := decrypt(enc, key)
		if err != nil {
			return nil, errors.New("the certificate key does not decrypt the uploaded certificates: it is wrong (check --certificate-key), or the certificates were uploaded again with another key")
		}
		out[f] = b
	}
	return out, nil
}

// Write stores fetched files under p.CertDir (keys 0600, the rest 0644).
func Write(p config.Paths, files map[string][]byte) error {
	for f, b := range files {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(f, ".key") || f == "encryption-config.yaml" {
			mode = 0o600
		}
		if _, err := fsutil.WriteFile(p.Host(filepath.Join(p.CertDir, f)), b, mode); err != nil {
			return err
		}
	}
	return nil
}

func ptr[T any](v T) *T { return &v }
