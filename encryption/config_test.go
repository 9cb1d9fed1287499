package encryption

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"sigs.k8s.io/yaml"

	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
)

func key(typ, name string, size int) Provider {
	return Provider{Type: typ, Name: name, Secret: base64.StdEncoding.EncodeToString(make([]byte, size))}
}

// oldCluster is the file kubeforge's init wrote before secretbox.
var oldCluster = []byte(`apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources:
  - secrets
  providers:
  - aesgcm:
      keys:
      - name: key1
        secret: ` + base64.StdEncoding.EncodeToString(make([]byte, 32)) + `
  - identity: {}
`)

func types(c Config) []string {
	var out []string
	for _, p := range c.Providers {
		out = append(out, p.Type+":"+p.Name)
	}
	return out
}

// TestRotationSteps walks a whole rotation from each starting file: each
// step's file is computed from the previous one's, parses back to the
// expected providers (the write key first) and is a valid
// EncryptionConfiguration for the API server's own types.
func TestRotationSteps(t *testing.T) {
	fresh := Render(Initial(key(Secretbox, "key-a", 32)))
	newKey := key(Secretbox, "key-b", 32)
	for _, tc := range []struct {
		name  string
		start []byte
		want  map[Step][]string
	}{
		{"old aesgcm cluster", oldCluster, map[Step][]string{
			StepReadKeyAdded:     {"aesgcm:key1", "secretbox:key-b", "identity:"},
			StepWriteKeySwitched: {"secretbox:key-b", "aesgcm:key1", "identity:"},
			StepSecretsRewritten: {"secretbox:key-b", "aesgcm:key1", "identity:"},
			StepDone:             {"secretbox:key-b", "identity:"},
		}},
		{"secretbox cluster", fresh, map[Step][]string{
			StepReadKeyAdded:     {"secretbox:key-a", "secretbox:key-b", "identity:"},
			StepWriteKeySwitched: {"secretbox:key-b", "secretbox:key-a", "identity:"},
			StepSecretsRewritten: {"secretbox:key-b", "secretbox:key-a", "identity:"},
			StepDone:             {"secretbox:key-b", "identity:"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := State{Step: StepNone, Config: tc.start}
			for _, step := range []Step{StepReadKeyAdded, StepWriteKeySwitched, StepSecretsRewritten, StepDone} {
				next, err := Next(st, newKey)
				if err != nil {
					t.Fatalf("after %q: %v", st.Step, err)
				}
				if next.Step != step || next.Key != "key-b" {
					t.Fatalf("after %q: step %q key %q, want %q key-b", st.Step, next.Step, next.Key, step)
				}
				c, err := Parse(next.Config, string(step))
				if err != nil {
					t.Fatal(err)
				}
				if got := types(c); !slices.Equal(got, tc.want[step]) {
					t.Errorf("%s: providers %v, want %v", step, got, tc.want[step])
				}
				var ec apiserverv1.EncryptionConfiguration
				if err := yaml.UnmarshalStrict(next.Config, &ec); err != nil || len(ec.Resources) != 1 {
					t.Errorf("%s: not an EncryptionConfiguration: %v", step, err)
				}
				if step == StepDone && strings.Contains(string(next.Config), "key1") {
					t.Errorf("the retired key is still in the file:\n%s", next.Config)
				}
				st = next
			}
			// A second rotation starts from the finished one.
			again, err := Next(st, key(Secretbox, "key-c", 32))
			if err != nil {
				t.Fatal(err)
			}
			c, _ := Parse(again.Config, "again")
			if got := types(c); !slices.Equal(got, []string{"secretbox:key-b", "secretbox:key-c", "identity:"}) {
				t.Errorf("second rotation: %v", got)
			}
		})
	}
}

func TestTransitionsRefuse(t *testing.T) {
	c, err := Parse(oldCluster, "old")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Retire(c, "key-b"); err == nil {
		t.Error("Retire kept a key that is not the write key")
	}
	if _, err := MakeWrite(c, "nope"); err == nil {
		t.Error("MakeWrite of a missing key")
	}
	if got := AddReadKey(c, key(Secretbox, "key1", 32)); !slices.Equal(types(got), types(c)) {
		t.Error("adding a key of an existing name changed the config")
	}
	if _, err := Next(State{Step: StepNone, Config: oldCluster}, key(Secretbox, "key1", 32)); err == nil {
		t.Error("Next accepted a new key whose name is taken")
	}
	if _, err := Next(State{Step: "bogus", Config: oldCluster}, Provider{}); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("unknown step: %v", err)
	}
}

func TestParseRefuses(t *testing.T) {
	good := string(Render(Initial(key(Secretbox, "k", 32))))
	for _, tc := range []struct{ name, data, want string }{
		{"not yaml", "{", "not an EncryptionConfiguration"},
		{"wrong kind", strings.Replace(good, "EncryptionConfiguration", "Foo", 1), "want EncryptionConfiguration"},
		{"other resources", strings.Replace(good, "  - secrets\n", "  - secrets\n  - configmaps\n", 1), "[secrets] alone"},
		{"unknown field", strings.Replace(good, "      keys:", "      keyz: 1\n      keys:", 1), "not an EncryptionConfiguration"},
		{"short secretbox key", string(Render(Initial(key(Secretbox, "k", 16)))), "32"},
		{"bad base64", strings.Replace(good, "secret: ", "secret: _", 1), "base64"},
		{"colon in name", string(Render(Initial(key(Secretbox, "a:b", 32)))), "without ':'"},
		{"duplicate", string(Render(Config{Providers: []Provider{key(Secretbox, "k", 32), key(AESGCM, "k", 32)}})), "twice"},
		{"kms", strings.Replace(good, "  - identity: {}\n", "  - kms:\n      apiVersion: v2\n      name: x\n      endpoint: unix:///k.sock\n", 1), "KMS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.data), "/etc/kubernetes/pki/encryption-config.yaml")
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "encryption-config.yaml") {
				t.Errorf("err = %v, want one naming the file and %q", err, tc.want)
			}
		})
	}
}

func TestRenderStableAndNewKey(t *testing.T) {
	k, err := NewKey(time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if k.Type != Secretbox || k.Name != "key-20261205T100000Z" {
		t.Errorf("key %s %s", k.Type, k.Name)
	}
	k2, _ := NewKey(time.Now())
	if k.Secret == k2.Secret {
		t.Error("two keys with one secret")
	}
	c := Initial(k)
	if string(Render(c)) != string(Render(c)) || Hash(Render(c)) != Hash(Render(c)) {
		t.Error("render is not stable")
	}
	back, err := Parse(Render(c), "x")
	if err != nil || !slices.Equal(types(back), types(c)) || back.Providers[0].Secret != k.Secret {
		t.Errorf("round trip: %v %v", back, err)
	}
	if got := StoragePrefix(Secretbox, k.Name); got != "k8s:enc:secretbox:v1:key-20261205T100000Z:" {
		t.Error(got)
	}
}

func TestParseConfigHash(t *testing.T) {
	m := `# HELP apiserver_encryption_config_controller_last_config_info [ALPHA] Information
# TYPE apiserver_encryption_config_controller_last_config_info gauge
apiserver_encryption_config_controller_automatic_reloads_total{apiserver_id_hash="sha256:1",status="success"} 2
apiserver_encryption_config_controller_last_config_info{apiserver_id_hash="sha256:aa",hash="sha256:bb"} 1
`
	if got := ParseConfigHash([]byte(m)); got != "sha256:bb" {
		t.Errorf("hash %q", got)
	}
	if got := ParseConfigHash([]byte("foo 1\n")); got != "" {
		t.Errorf("hash %q from nothing", got)
	}
}

// TestStateRoundTripAndConflict records steps in a fake cluster: a stale
// resource version (a second rotate-key) is refused, not overwritten.
func TestStateRoundTripAndConflict(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientset()
	if _, found, err := LoadState(ctx, c); found || err != nil {
		t.Fatalf("empty cluster: found %v err %v", found, err)
	}
	st, err := SaveState(ctx, c, State{Step: StepReadKeyAdded, Key: "k", Config: oldCluster})
	if err != nil {
		t.Fatal(err)
	}
	got, found, err := LoadState(ctx, c)
	if err != nil || !found || got.Step != StepReadKeyAdded || got.Key != "k" || string(got.Config) != string(oldCluster) {
		t.Fatalf("loaded %+v %v %v", got, found, err)
	}
	// A create where one exists (a concurrent first run) is refused.
	if _, err := SaveState(ctx, c, State{Step: StepReadKeyAdded, Key: "other", Config: oldCluster}); err == nil {
		t.Error("a second first run overwrote the state")
	}
	st.Step = StepWriteKeySwitched
	if _, err := SaveState(ctx, c, st); err != nil {
		t.Fatal(err)
	}
	s, _ := c.CoreV1().Secrets("kube-system").Get(ctx, StateSecret, metav1.GetOptions{})
	if s.Annotations[StepAnnotation] != string(StepWriteKeySwitched) {
		t.Errorf("annotations %v", s.Annotations)
	}
}

// TestRewriteSecrets updates every Secret across pages, retries a conflict
// on the fresh object and skips one deleted meanwhile.
func TestRewriteSecrets(t *testing.T) {
	ctx := context.Background()
	var objs []runtime.Object
	for i := range 7 {
		objs = append(objs, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s" + string(rune('a'+i)), ResourceVersion: "1"}})
	}
	c := fake.NewClientset(objs...)
	updates := map[string]int{}
	conflicted := false
	c.PrependReactor("update", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		s := a.(k8stesting.UpdateAction).GetObject().(*corev1.Secret)
		updates[s.Name]++
		if s.Name == "sb" && !conflicted {
			conflicted = true
			return true, nil, apiConflict(s.Name)
		}
		if s.Name == "sc" {
			return true, nil, apiNotFound(s.Name)
		}
		return false, nil, nil
	})
	n, err := RewriteSecrets(ctx, c, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n != 7 || updates["sb"] != 2 || updates["sa"] != 1 || updates["sg"] != 1 {
		t.Errorf("rewrote %d, updates %v", n, updates)
	}
	clear(updates)
	if _, err := RewriteSecrets(ctx, c, 3, map[string]bool{"ns/sd": true}); err != nil || len(updates) != 1 || updates["sd"] != 1 {
		t.Errorf("only ns/sd: updates %v err %v", updates, err)
	}
}

func TestNotUnderAndWaitLoaded(t *testing.T) {
	k := key(Secretbox, "key-b", 32)
	raw := map[string][]byte{
		"ns/new":   []byte("k8s:enc:secretbox:v1:key-b:xxxx"),
		"ns/old":   []byte("k8s:enc:aesgcm:v1:key1:xxxx"),
		"ns/plain": []byte("k8s\x00\x0a\x0cplain"),
		"ns/other": []byte("k8s:enc:secretbox:v1:key-bb:xxxx"),
	}
	if got := NotUnder(raw, k); !slices.Equal(got, []string{"ns/old", "ns/other", "ns/plain"}) {
		t.Errorf("NotUnder %v", got)
	}
	data := []byte("config")
	servers := []APIServer{{Node: "cp1", Endpoint: "10.0.0.1:6443"}, {Node: "cp2", Endpoint: "10.0.0.2:6443"}}
	calls := 0
	hashes := func(_ context.Context, s APIServer) (string, error) {
		calls++
		if s.Node == "cp2" && calls < 5 {
			return "sha256:old", nil
		}
		return Hash(data), nil
	}
	if err := WaitLoaded(context.Background(), servers, hashes, data, time.Millisecond, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	never := func(_ context.Context, s APIServer) (string, error) {
		if s.Node == "cp1" {
			return Hash(data), nil
		}
		return "", errors.New("connection refused")
	}
	err := WaitLoaded(context.Background(), servers, never, data, time.Millisecond, 50*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "cp2: connection refused") || strings.Contains(err.Error(), "cp1:") {
		t.Errorf("err = %v, want one naming cp2 alone", err)
	}
}

// TestSyncOnce is the node duty's round: nothing without a published
// configuration, the file written 0600 with one, unchanged the second time,
// and a published configuration that does not parse refused.
func TestSyncOnce(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientset()
	file := filepath.Join(t.TempDir(), "pki", "encryption-config.yaml")
	o := SyncOptions{Client: c, File: file}
	if _, found, _, err := SyncOnce(ctx, o); found || err != nil || exists(file) {
		t.Fatalf("no state: found %v err %v", found, err)
	}
	published := Render(Initial(key(Secretbox, "k", 32)))
	if _, err := SaveState(ctx, c, State{Step: StepDone, Key: "k", Config: published}); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"created", "unchanged"} {
		_, _, res, err := SyncOnce(ctx, o)
		if err != nil || res.String() != want {
			t.Fatalf("round %d: %v %v, want %s", i, res, err, want)
		}
	}
	b, _ := os.ReadFile(file)
	st, _ := os.Stat(file)
	if string(b) != string(published) || st.Mode().Perm() != 0o600 {
		t.Errorf("file %q mode %v", b, st.Mode())
	}
	s, _ := c.CoreV1().Secrets("kube-system").Get(ctx, StateSecret, metav1.GetOptions{})
	s.Data[ConfigDataKey] = []byte("garbage")
	if _, err := c.CoreV1().Secrets("kube-system").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := SyncOnce(ctx, o); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Errorf("garbage accepted: %v", err)
	}
	s.Data[ConfigDataKey] = Render(Config{Providers: []Provider{{Type: Identity}, key(Secretbox, "k", 32)}})
	if _, err := c.CoreV1().Secrets("kube-system").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := SyncOnce(ctx, o); err == nil || !strings.Contains(err.Error(), "unencrypted") {
		t.Errorf("identity first accepted: %v", err)
	}
	if b2, _ := os.ReadFile(file); string(b2) != string(published) {
		t.Error("the file changed after a refused configuration")
	}
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func apiConflict(name string) error {
	return apierrors.NewConflict(schema.GroupResource{Resource: "secrets"}, name, errors.New("changed"))
}

func apiNotFound(name string) error {
	return apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, name)
}
