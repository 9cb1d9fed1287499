// Package tokens manages bootstrap tokens the way kubeadm stores them
// (bootstrap-token-<id> Secrets in kube-system) and keeps the
// kube-public/cluster-info ConfigMap signed for each of them, so a node can
// join with a token the moment it exists instead of waiting for the
// controller-manager's bootstrap signer.
package tokens

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	"k8s.io/cluster-bootstrap/token/jws"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"
	bootstraptokenv1 "k8s.io/kubernetes/cmd/kubeadm/app/apis/bootstraptoken/v1"
)

// DefaultGroups is the extra group of kubeadm's node-joining tokens.
var DefaultGroups = []string{"system:bootstrappers:kubeadm:default-node-token"}

// DefaultUsages lets a token sign cluster-info and authenticate a kubelet.
var DefaultUsages = []string{"signing", "authentication"}

// Generate returns a new random token string.
func Generate() (string, error) { return bootstraputil.GenerateBootstrapToken() }

// Secret renders a token as its Secret, with TypeMeta set (for apply).
func Secret(t *bootstraptokenv1.BootstrapToken) *corev1.Secret {
	s := bootstraptokenv1.BootstrapTokenToSecret(t)
	s.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}
	return s
}

// Create stores the token (failing if its ID exists) and signs cluster-info for it.
func Create(ctx context.Context, c kubernetes.Interface, t *bootstraptokenv1.BootstrapToken) error {
	if _, err := c.CoreV1().Secrets(metav1.NamespaceSystem).Create(ctx, Secret(t), metav1.CreateOptions{}); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("a token with ID %q already exists", t.Token.ID)
		}
		return fmt.Errorf("create token secret: %w", err)
	}
	return SignClusterInfo(ctx, c)
}

// List returns the bootstrap tokens, sorted by ID.
func List(ctx context.Context, c kubernetes.Interface) ([]*bootstraptokenv1.BootstrapToken, error) {
	secrets, err := c.CoreV1().Secrets(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{
		FieldSelector: "type=" + string(bootstrapapi.SecretTypeBootstrapToken)})
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	var out []*bootstraptokenv1.BootstrapToken
	for i := range secrets.Items {
		t, err := bootstraptokenv1.BootstrapTokenFromSecret(&secrets.Items[i])
		if err != nil {
			continue
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Token.ID < out[j].Token.ID })
	return out, nil
}

// Delete removes a token by ID or full token, and its cluster-info signature.
func Delete(ctx context.Context, c kubernetes.Interface, idOrToken string) error {
	id, _, _ := strings.Cut(idOrToken, ".")
	if !bootstraputil.IsValidBootstrapTokenID(id) {
		return fmt.Errorf("%q is not a token ID ([a-z0-9]{6}) or token", idOrToken)
	}
	err := c.CoreV1().Secrets(metav1.NamespaceSystem).Delete(ctx, bootstraputil.BootstrapTokenSecretName(id), metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("no token with ID %q", id)
	} else if err != nil {
		return fmt.Errorf("delete token %s: %w", id, err)
	}
	return SignClusterInfo(ctx, c)
}

// SignClusterInfo makes cluster-info carry exactly one JWS signature per
// valid signing token, as the controller-manager's bootstrap signer does
// (it computes the same signatures, so the two never fight).
//
// The controller-manager's bootstrap signer updates cluster-info too when
// a token appears or goes, so a conflicting update is retried on the
// latest version.
func SignClusterInfo(ctx context.Context, c kubernetes.Interface) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error { return signClusterInfo(ctx, c) })
}

func signClusterInfo(ctx context.Context, c kubernetes.Interface) error {
	cms := c.CoreV1().ConfigMaps(metav1.NamespacePublic)
	cm, err := cms.Get(ctx, bootstrapapi.ConfigMapClusterInfo, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read cluster-info: %w", err)
	}
	content, ok := cm.Data[bootstrapapi.KubeConfigKey]
	if !ok {
		return fmt.Errorf("cluster-info has no %q key", bootstrapapi.KubeConfigKey)
	}
	tokens, err := List(ctx, c)
	if err != nil {
		return err
	}
	want := map[string]string{}
	now := time.Now()
	for _, t := range tokens {
		if !contains(t.Usages, "signing") || (t.Expires != nil && now.After(t.Expires.Time)) {
			continue
		}
		sig, err := jws.ComputeDetachedSignature(content, t.Token.ID, t.Token.Secret)
		if err != nil {
			return err
		}
		want[bootstrapapi.JWSSignatureKeyPrefix+t.Token.ID] = sig
	}
	changed := false
	for k := range cm.Data {
		if strings.HasPrefix(k, bootstrapapi.JWSSignatureKeyPrefix) && want[k] == "" {
			delete(cm.Data, k)
			changed = true
		}
	}
	for k, v := range want {
		if cm.Data[k] != v {
			cm.Data[k] = v
			changed = true
		}
	}
	if !changed {
		return nil
	}
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsConflict(err) {
			return err // retried
		}
		return fmt.Errorf("sign cluster-info: %w", err)
	}
	return nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
