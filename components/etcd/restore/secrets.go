package restore

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/encryption"
	"github.com/kubeforge/kubeforge/manifests"
)

// snapshotSecretKeys counts, per encryption key ("TYPE NAME"), the Secrets
// of snapshot file under the API server's etcd prefix whose latest version
// is encrypted with it (etcd's "key" bucket holds every revision in order;
// a tombstone ends a key).
func snapshotSecretKeys(file, prefix string) (map[string]int, error) {
	db, err := bolt.Open(file, 0o400, &bolt.Options{ReadOnly: true, Timeout: 10 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", file, err)
	}
	defer db.Close()
	secrets := strings.TrimSuffix(prefix, "/") + "/secrets/"
	latest := map[string]string{}
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("key"))
		if b == nil {
			return errors.New("no key bucket: not an etcd v3 snapshot")
		}
		return b.ForEach(func(rev, v []byte) error {
			var kv mvccpb.KeyValue
			if err := proto.Unmarshal(v, &kv); err != nil {
				return fmt.Errorf("a value at revision %x: %w", rev, err)
			}
			k := string(kv.Key)
			if !strings.HasPrefix(k, secrets) {
				return nil
			}
			if len(rev) == 18 && rev[17] == 't' { // a tombstone
				delete(latest, k)
				return nil
			}
			key := ""
			if typ, name, ok := encryption.KeyOfValue(kv.Value); ok {
				key = typ + " " + name
			}
			latest[k] = key
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	out := map[string]int{}
	for _, key := range latest {
		if key != "" {
			out[key]++
		}
	}
	return out, nil
}

// checkSecretKeys refuses a snapshot whose Secrets are encrypted with a
// key that this node's encryption configuration does not have (a snapshot
// taken before `kubeforge secrets rotate-key` retired that key): the
// restored API server could not read them, nor the rotation's own state.
// It says where the key is kept, if this node has it.
func checkSecretKeys(p config.Paths, file string) error {
	prefix := "/registry"
	if data, err := os.ReadFile(p.Host(p.Manifest(manifests.KubeAPIServer))); err == nil {
		if v := manifestFlags(data)["etcd-prefix"]; v != "" {
			prefix = v
		}
	}
	need, err := snapshotSecretKeys(file, prefix)
	if err != nil || len(need) == 0 {
		return err
	}
	cfgFile := p.EncryptionConfigFile()
	var have encryption.Config
	data, err := os.ReadFile(p.Host(cfgFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	default:
		if have, err = encryption.Parse(data, cfgFile); err != nil {
			return err
		}
	}
	var kept encryption.Config
	archive := encryption.RetiredKeysFile(cfgFile)
	if b, err := os.ReadFile(p.Host(archive)); err == nil {
		kept, _ = encryption.Parse(b, archive)
	}
	var missing, inArchive []string
	for _, key := range slices.Sorted(maps.Keys(need)) {
		name := key[strings.IndexByte(key, ' ')+1:]
		if have.Has(name) {
			continue
		}
		missing = append(missing, fmt.Sprintf("%s (%d Secrets)", key, need[key]))
		if kept.Has(name) {
			inArchive = append(inArchive, name)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	msg := fmt.Sprintf("the snapshot's Secrets are encrypted with %s, which this node's encryption configuration %s does not have (a snapshot from before a key rotation): the restored API server could not read them, nor kube-system/%s",
		strings.Join(missing, ", "), cfgFile, encryption.StateSecret)
	if len(inArchive) == len(missing) {
		return fmt.Errorf("%s. This node kept the retired key(s) %s in %s: add them to %s as further keys after the first one, wait until the API server reloaded it, and run the restore again",
			msg, strings.Join(inArchive, ", "), archive, cfgFile)
	}
	return fmt.Errorf("%s. This node has no copy of them (%s): restore a snapshot taken after the rotation, add the key(s) to %s from where you keep them, or pass --ignore-missing-encryption-keys to restore it anyway and lose those Secrets", msg, archive, cfgFile)
}
