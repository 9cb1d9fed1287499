package restore

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/encryption"
)

// boltSnapshot writes an etcd-shaped bolt file: bucket "key", one entry per
// revision (a tombstone when value is nil).
func boltSnapshot(t *testing.T, entries []struct{ key, value string }) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "snap.db")
	db, err := bolt.Open(file, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("key"))
		if err != nil {
			return err
		}
		for i, e := range entries {
			rev := make([]byte, 17, 18)
			binary.BigEndian.PutUint64(rev, uint64(i+2))
			rev[8] = '_'
			kv := &mvccpb.KeyValue{Key: []byte(e.key), Value: []byte(e.value), ModRevision: int64(i + 2)}
			if e.value == "" {
				rev = append(rev, 't')
				kv = &mvccpb.KeyValue{Key: []byte(e.key)}
			}
			v, err := proto.Marshal(kv)
			if err != nil {
				return err
			}
			if err := b.Put(rev, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return file
}

// TestCheckSecretKeys: a snapshot whose Secrets need a key the node's
// encryption configuration lacks (one from before a rotation) is refused,
// naming the key and where the node kept it; only the latest version of a
// live Secret counts.
func TestCheckSecretKeys(t *testing.T) {
	snap := boltSnapshot(t, []struct{ key, value string }{
		{"/registry/secrets/ns/a", "k8s:enc:secretbox:v1:old:xxxx"},
		{"/registry/secrets/ns/b", "k8s:enc:secretbox:v1:old:xxxx"},
		{"/registry/secrets/ns/b", "k8s:enc:secretbox:v1:new:yyyy"},
		{"/registry/secrets/ns/c", "k8s:enc:secretbox:v1:gone:zzzz"},
		{"/registry/secrets/ns/c", ""},
		{"/registry/configmaps/ns/d", "k8s:enc:secretbox:v1:other:zzzz"},
		{"/registry/secrets/ns/e", "k8s\x00plain"},
	})
	got, err := snapshotSecretKeys(snap, "/registry")
	if err != nil || len(got) != 2 || got["secretbox old"] != 1 || got["secretbox new"] != 1 {
		t.Fatalf("keys %v, %v; want old and new, one Secret each", got, err)
	}

	p := config.DefaultPaths().WithRoot(t.TempDir())
	cfgFile := p.Host(p.EncryptionConfigFile())
	if err := os.MkdirAll(filepath.Dir(cfgFile), 0o700); err != nil {
		t.Fatal(err)
	}
	key := func(name string) encryption.Provider {
		return encryption.Provider{Type: encryption.Secretbox, Name: name, Secret: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}
	}
	// A rotation from old to new, through the node's writer: it keeps old.
	for _, c := range []encryption.Config{{Providers: []encryption.Provider{key("old")}},
		{Providers: []encryption.Provider{key("new"), key("old")}}, {Providers: []encryption.Provider{key("new")}}} {
		if _, err := encryption.WriteConfigFile(cfgFile, encryption.Render(c)); err != nil {
			t.Fatal(err)
		}
	}
	// The node kept the retired key: the restore puts it back (after the
	// key that encrypts), and asks for nothing.
	kc, err := checkSecretKeys(p, snap)
	if err != nil || kc.names() != "old" || kc.Warning != "" {
		t.Fatalf("a snapshot from before the rotation, the old key kept: %+v, %v", kc, err)
	}
	if err := kc.addKeys(p); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(cfgFile)
	if cfg, err := encryption.Parse(b, cfgFile); err != nil || strings.Join(cfg.KeyNames(), ",") != "new,old" {
		t.Errorf("after putting the key back: %v %v, want new (encrypts), old", cfg.KeyNames(), err)
	}
	if kc, err := checkSecretKeys(p, snap); err != nil || len(kc.Add) != 0 {
		t.Errorf("with both keys: %+v, %v", kc, err)
	}
	// Without the kept copy (and the key gone again): refused, the way out named.
	if err := os.WriteFile(cfgFile, encryption.Render(encryption.Config{Providers: []encryption.Provider{key("new")}}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(encryption.RetiredKeysFile(cfgFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := checkSecretKeys(p, snap); err == nil || !strings.Contains(err.Error(), "secretbox old (1 Secrets)") || strings.Contains(err.Error(), "new (") ||
		!strings.Contains(err.Error(), "--ignore-missing-encryption-keys") {
		t.Errorf("no kept copy: %v", err)
	}
	// A configuration kubeforge does not manage (KMS): a warning, no refusal.
	if err := os.WriteFile(cfgFile, []byte("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - kms: {apiVersion: v2, name: ext, endpoint: unix:///k.sock}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if kc, err := checkSecretKeys(p, snap); err != nil || kc.Warning == "" {
		t.Errorf("a KMS configuration: %+v, %v; want a warning only", kc, err)
	}
}
