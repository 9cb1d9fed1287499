package phases

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubeforge/kubeforge/encryption"
	"github.com/kubeforge/kubeforge/internal/progress"
	"github.com/kubeforge/kubeforge/join/uploadcerts"
)

// fakeRotation is a cluster of two control-plane nodes for the rotation
// phases: each API server runs with the configuration its node's duty
// copied from the published Secret (or init's file), a Secret's stored
// prefix follows the write key its writer ran with, and the API servers can
// be made unreachable after the n-th recorded step.
type fakeRotation struct {
	t      *testing.T
	client *fake.Clientset
	local  string // this node's file

	mu     sync.Mutex
	stored map[string]string // ns/name → prefix in etcd
	saves  int
	rv     int
	downAt int // API servers unreachable from this save on (0: never)
}

func newFakeRotation(t *testing.T, initial []byte) *fakeRotation {
	f := &fakeRotation{t: t, stored: map[string]string{}}
	f.local = filepath.Join(t.TempDir(), "encryption-config.yaml")
	if err := os.WriteFile(f.local, initial, 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ := encryption.Parse(initial, "initial")
	var objs []runtime.Object
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		objs = append(objs, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: n}})
		f.stored["default/"+n] = encryption.StoragePrefix(c.Write().Type, c.Write().Name)
	}
	objs = append(objs, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: uploadcerts.SecretName}})
	f.stored["kube-system/"+uploadcerts.SecretName] = encryption.StoragePrefix(c.Write().Type, c.Write().Name)
	f.client = fake.NewClientset(objs...)
	write := func(a k8stesting.Action) (bool, runtime.Object, error) {
		var s *corev1.Secret
		switch a := a.(type) {
		case k8stesting.UpdateAction:
			s = a.GetObject().(*corev1.Secret)
		case k8stesting.CreateAction:
			s = a.GetObject().(*corev1.Secret)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		// Resource versions as the API server keeps them: every write
		// makes a new one; an update of the state from an older one is
		// a conflict.
		if s.Name == encryption.StateSecret {
			if _, ok := a.(k8stesting.UpdateAction); ok {
				cur, err := f.client.Tracker().Get(corev1.SchemeGroupVersion.WithResource("secrets"), s.Namespace, s.Name)
				if err == nil && cur.(*corev1.Secret).ResourceVersion != s.ResourceVersion {
					return true, nil, apierrors.NewConflict(corev1.Resource("secrets"), s.Name, errors.New("the object has been modified"))
				}
			}
			f.saves++
		}
		f.rv++
		s.ResourceVersion = strconv.Itoa(f.rv)
		w := f.writeKey()
		f.stored[s.Namespace+"/"+s.Name] = encryption.StoragePrefix(w.Type, w.Name)
		return false, nil, nil
	}
	f.client.PrependReactor("update", "secrets", write)
	f.client.PrependReactor("create", "secrets", write)
	f.client.PrependReactor("delete", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		d := a.(k8stesting.DeleteAction)
		delete(f.stored, d.GetNamespace()+"/"+d.GetName())
		return false, nil, nil
	})
	return f
}

// published is what the nodes' duties write: the Secret's configuration,
// or this node's file while none was published. Called with f.mu held by
// the write reactor, so it reads the tracker directly.
func (f *fakeRotation) published() []byte {
	o, err := f.client.Tracker().Get(corev1.SchemeGroupVersion.WithResource("secrets"), "kube-system", encryption.StateSecret)
	if err == nil {
		return o.(*corev1.Secret).Data[encryption.ConfigDataKey]
	}
	b, _ := os.ReadFile(f.local)
	return b
}

func (f *fakeRotation) writeKey() encryption.Provider {
	c, err := encryption.Parse(f.published(), "published")
	if err != nil {
		f.t.Fatal(err)
	}
	return c.Write()
}

func (f *fakeRotation) data(out *bytes.Buffer) *RotateData {
	return &RotateData{
		Client: f.client,
		Servers: func(context.Context) ([]encryption.APIServer, error) {
			return []encryption.APIServer{{Node: "cp1", Endpoint: "10.0.0.1:6443"}, {Node: "cp2", Endpoint: "10.0.0.2:6443"}}, nil
		},
		Hashes: func(_ context.Context, s encryption.APIServer) (string, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.downAt > 0 && f.saves >= f.downAt && s.Node == "cp2" {
				return "", errors.New("connection refused")
			}
			return encryption.Hash(f.published()), nil
		},
		Raw: func(context.Context) (map[string][]byte, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			out := map[string][]byte{}
			for k, v := range f.stored {
				out[k] = []byte(v + "ciphertext")
			}
			return out, nil
		},
		LocalFile: f.local,
		Out:       progress.New(out, false),
		Now:       time.Now,
		Poll:      time.Millisecond,
		Timeout:   100 * time.Millisecond,
		PageSize:  2,
	}
}

func (f *fakeRotation) check(t *testing.T, wantKey string, retired ...string) {
	t.Helper()
	st, found, err := encryption.LoadState(context.Background(), f.client)
	if err != nil || !found || st.Step != encryption.StepDone || (wantKey != "" && st.Key != wantKey) {
		t.Fatalf("state %q key %q (want %q) found %v err %v", st.Step, st.Key, wantKey, found, err)
	}
	local, _ := os.ReadFile(f.local)
	if !bytes.Equal(local, st.Config) {
		t.Errorf("this node's file differs from the published one")
	}
	c, _ := encryption.Parse(local, "local")
	if names := c.KeyNames(); !slices.Equal(names, []string{st.Key}) || c.Write().Type != encryption.Secretbox {
		t.Errorf("keys left: %v (write %s)", names, c.Write().Type)
	}
	for _, r := range retired {
		if strings.Contains(string(local), r) {
			t.Errorf("retired key %s still in the file", r)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	want := encryption.StoragePrefix(encryption.Secretbox, st.Key)
	for k, v := range f.stored {
		if v != want {
			t.Errorf("%s stored under %s, want %s", k, v, want)
		}
	}
	if _, ok := f.stored["kube-system/"+uploadcerts.SecretName]; ok {
		t.Error("the uploaded certificates with the retired key were kept")
	}
}

// TestRotateKey runs whole rotations from an aesgcm cluster of the old
// kind, twice in a row.
func TestRotateKey(t *testing.T) {
	f := newFakeRotation(t, oldInitFile())
	var out bytes.Buffer
	if err := RotateKeyWorkflow().Run(context.Background(), f.data(&out), nil); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	f.check(t, "", "key1")
	first, _, _ := encryption.LoadState(context.Background(), f.client)
	time.Sleep(1100 * time.Millisecond) // key names carry the second
	out.Reset()
	if err := RotateKeyWorkflow().Run(context.Background(), f.data(&out), nil); err != nil {
		t.Fatalf("second rotation: %v\n%s", err, out.String())
	}
	f.check(t, "", first.Key)
}

// TestRotateKeyResumes interrupts a rotation after each recorded step (the
// second API server stops answering) and runs it again: it continues with
// the same key, and ends where an uninterrupted one does.
func TestRotateKeyResumes(t *testing.T) {
	for stop := 1; stop <= 4; stop++ {
		t.Run(string(rune('0'+stop)), func(t *testing.T) {
			f := newFakeRotation(t, oldInitFile())
			f.downAt = stop
			var out bytes.Buffer
			err := RotateKeyWorkflow().Run(context.Background(), f.data(&out), nil)
			if err == nil || !strings.Contains(err.Error(), "cp2: connection refused") {
				t.Fatalf("interrupted run: %v\n%s", err, out.String())
			}
			st, _, _ := encryption.LoadState(context.Background(), f.client)
			f.mu.Lock()
			f.downAt = 0
			f.mu.Unlock()
			out.Reset()
			if err := RotateKeyWorkflow().Run(context.Background(), f.data(&out), nil); err != nil {
				t.Fatalf("resumed run: %v\n%s", err, out.String())
			}
			if !strings.Contains(out.String(), "Recorded rotation: step "+string(st.Step)) {
				t.Errorf("the resumed run did not say where it resumed:\n%s", out.String())
			}
			f.check(t, st.Key, "key1")
		})
	}
}

// TestRotateKeyRefuses: a Secret the API servers keep storing under the
// old key fails the rewrite with its name, and the rotation stops before
// retiring the old key.
func TestRotateKeyRefuses(t *testing.T) {
	f := newFakeRotation(t, oldInitFile())
	f.client.PrependReactor("update", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		s := a.(k8stesting.UpdateAction).GetObject().(*corev1.Secret)
		if s.Name == "c" {
			f.mu.Lock()
			f.stored["default/c"] = encryption.StoragePrefix(encryption.AESGCM, "key1")
			f.mu.Unlock()
			return true, s, nil
		}
		return false, nil, nil
	})
	var out bytes.Buffer
	err := RotateKeyWorkflow().Run(context.Background(), f.data(&out), nil)
	if err == nil || !strings.Contains(err.Error(), "default/c") || !strings.Contains(err.Error(), "rewrite-secrets") {
		t.Fatalf("err = %v", err)
	}
	st, _, _ := encryption.LoadState(context.Background(), f.client)
	if st.Step != encryption.StepWriteKeySwitched || !strings.Contains(string(st.Config), "key1") {
		t.Errorf("stopped at %s; the old key must stay", st.Step)
	}
}

func oldInitFile() []byte {
	return []byte(`apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources:
  - secrets
  providers:
  - aesgcm:
      keys:
      - name: key1
        secret: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
  - identity: {}
`)
}
