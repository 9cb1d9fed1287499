package phases

import (
	"bytes"
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubeforge/kubeforge/internal/progress"
)

// A dry run prints a Secret's keys, never its values, and leaves the
// object it was given as it was.
func TestPrintingApplierRedactsSecrets(t *testing.T) {
	secret := &corev1.Secret{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "kube-system"},
		Data:       map[string][]byte{"tls.key": []byte("KEYBYTES")},
		StringData: map[string]string{"token": "TOKENTEXT"}}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(secret)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	cm := &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "kube-system"}, Data: map[string]string{"k": "VISIBLE"}}
	var buf bytes.Buffer
	a := &PrintingApplier{Out: progress.New(&buf, false)}
	if err := a.Apply(context.Background(), "test", secret, u, cm); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Contains(out, "KEYBYTES") || strings.Contains(out, "S0VZQllURVM=") || strings.Contains(out, "TOKENTEXT") {
		t.Errorf("the dry run printed a secret value:\n%s", out)
	}
	if strings.Count(out, "tls.key: <redacted>") != 2 || strings.Count(out, "token: <redacted>") != 2 {
		t.Errorf("the dry run did not list the secret's keys as redacted:\n%s", out)
	}
	if !strings.Contains(out, "k: VISIBLE") {
		t.Errorf("a ConfigMap's data was hidden:\n%s", out)
	}
	if got, _, _ := unstructured.NestedString(u.Object, "stringData", "token"); got != "TOKENTEXT" {
		t.Errorf("redacting changed the caller's object: stringData.token = %q", got)
	}
}
