package tokens

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	"k8s.io/cluster-bootstrap/token/jws"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"
	bootstraptokenv1 "k8s.io/kubernetes/cmd/kubeadm/app/apis/bootstraptoken/v1"
)

// FuzzBootstrapToken feeds arbitrary strings to the token parsers: `token
// create TOKEN` and the config's bootstrapTokens[].token (kubeadm's
// BootstrapTokenString, also through its JSON form), `token delete
// ID|TOKEN`, and discovery's format check. They agree on what a token is,
// a token re-formats to the same string, and survives its Secret.
func FuzzBootstrapToken(f *testing.F) {
	for _, s := range []string{
		"abcdef.0123456789abcdef", "07401b.f395accd246ae52d", "abcdef", "ABCDEF.0123456789ABCDEF",
		"abcdef.0123456789abcdef\n", " abcdef.0123456789abcdef", "abcdef.0123456789abcdefg",
		"abcdef:0123456789abcdef", "abcde.0123456789abcdef", "", ".", `abc"def.0123456789abcdef`,
		"abcdef.0123456789abcde\u00e9",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ts, err := bootstraptokenv1.NewBootstrapTokenString(s)
		valid := bootstraputil.IsValidBootstrapToken(s)
		if (err == nil) != valid {
			t.Fatalf("NewBootstrapTokenString err=%v but IsValidBootstrapToken=%v", err, valid)
		}
		var fromJSON bootstraptokenv1.BootstrapTokenString
		jerr := json.Unmarshal([]byte(strconv.Quote(s)), &fromJSON)
		if jerr == nil && fromJSON.String() != s {
			t.Fatalf("config token %q decodes to %q", s, fromJSON.String())
		}
		id, _, _ := strings.Cut(s, ".")
		derr := Delete(context.Background(), fake.NewClientset(), s)
		switch {
		case derr == nil:
			t.Fatal("deleted a token that does not exist")
		case bootstraputil.IsValidBootstrapTokenID(id) != strings.Contains(derr.Error(), "no token with ID"):
			t.Fatalf("delete %q: %v", s, derr)
		}
		if !valid {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if jerr != nil {
			t.Fatalf("a valid token does not decode from a config: %v", jerr)
		}
		if ts.String() != s || ts.ID+"."+ts.Secret != s || ts.ID != id {
			t.Fatalf("%q re-formats to %q (id %q, secret %q)", s, ts.String(), ts.ID, ts.Secret)
		}
		if !bootstraputil.IsValidBootstrapTokenID(ts.ID) {
			t.Fatalf("token %q has an invalid ID %q", s, ts.ID)
		}
		in := &bootstraptokenv1.BootstrapToken{Token: ts, Usages: DefaultUsages, Groups: DefaultGroups, TTL: &metav1.Duration{Duration: time.Hour}}
		sec := Secret(in)
		if sec.Name != bootstraputil.BootstrapTokenSecretName(ts.ID) {
			t.Fatalf("secret name %q for ID %q", sec.Name, ts.ID)
		}
		out, err := bootstraptokenv1.BootstrapTokenFromSecret(sec)
		if err != nil {
			t.Fatalf("the Secret of %q does not parse back: %v", s, err)
		}
		if out.Token.String() != s || strings.Join(out.Usages, ",") != "authentication,signing" || out.Expires == nil {
			t.Fatalf("the Secret of %q parses back as %+v", s, out)
		}
	})
}

// FuzzSignClusterInfo feeds arbitrary bootstrap token Secrets (as List reads
// them from kube-system) and cluster-info contents to SignClusterInfo:
// afterwards cluster-info carries a signature exactly for each valid,
// unexpired signing token, and each verifies with that token.
func FuzzSignClusterInfo(f *testing.F) {
	kc := "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: https://10.201.0.2:6443\n  name: \"\"\n"
	future := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
	f.Add("abcdef", "0123456789abcdef", "true", future, "", kc)
	f.Add("abcdef", "0123456789abcdef", "true", "", "abcdef", kc)
	f.Add("abcdef", "0123456789abcdef", "false", "", "", kc)
	f.Add("abcdef", "0123456789abcdef", "true", "2000-01-01T00:00:00Z", "", "")
	f.Add("abcdef", "0123456789abcdef", "true", "tomorrow", "", kc)
	f.Add("ABCDEF", "0123456789abcdef", "true", "", "", kc)
	f.Add("abcdef", "short", "true", "", "", kc)
	f.Add("", "", "", "", "zzzzzz", "{")
	f.Fuzz(func(t *testing.T, id, secret, signing, expiration, staleID, content string) {
		ctx := context.Background()
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: bootstrapapi.ConfigMapClusterInfo, Namespace: metav1.NamespacePublic},
			Data: map[string]string{bootstrapapi.KubeConfigKey: content, bootstrapapi.JWSSignatureKeyPrefix + staleID: "stale"}}
		data := map[string][]byte{
			bootstrapapi.BootstrapTokenIDKey:                   []byte(id),
			bootstrapapi.BootstrapTokenSecretKey:               []byte(secret),
			bootstrapapi.BootstrapTokenUsagePrefix + "signing": []byte(signing),
			bootstrapapi.BootstrapTokenUsageAuthentication:     []byte("true"),
			bootstrapapi.BootstrapTokenExtraGroupsKey:          []byte(DefaultGroups[0]),
			bootstrapapi.BootstrapTokenDescriptionKey:          []byte("fuzz"),
		}
		if expiration != "" {
			data[bootstrapapi.BootstrapTokenExpirationKey] = []byte(expiration)
		}
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: bootstraputil.BootstrapTokenSecretName(id), Namespace: metav1.NamespaceSystem},
			Type: bootstrapapi.SecretTypeBootstrapToken, Data: data}
		c := fake.NewClientset(cm, sec)
		if err := SignClusterInfo(ctx, c); err != nil {
			t.Fatalf("sign: %v", err)
		}
		got, err := c.CoreV1().ConfigMaps(metav1.NamespacePublic).Get(ctx, bootstrapapi.ConfigMapClusterInfo, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Data[bootstrapapi.KubeConfigKey] != content {
			t.Fatal("signing changed the kubeconfig")
		}
		tok, perr := bootstraptokenv1.BootstrapTokenFromSecret(sec)
		want := perr == nil && signing == "true" && (tok.Expires == nil || time.Now().Before(tok.Expires.Time))
		for k, sig := range got.Data {
			sid, ok := strings.CutPrefix(k, bootstrapapi.JWSSignatureKeyPrefix)
			if !ok {
				continue
			}
			if !want || sid != id {
				t.Fatalf("cluster-info signed for %q (token parse error %v, signing %q, expiration %q)", sid, perr, signing, expiration)
			}
			if !jws.DetachedTokenIsValid(sig, content, id, secret) {
				t.Fatalf("signature for %q does not verify", sid)
			}
		}
		if _, ok := got.Data[bootstrapapi.JWSSignatureKeyPrefix+id]; want && !ok {
			t.Fatalf("no signature for the valid signing token %q", id)
		}
	})
}
