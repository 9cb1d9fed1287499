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

// keyCheck is what checkSecretKeys found.
type keyCheck struct {
	// ConfigFile is the API server's encryption configuration (logical).
	ConfigFile string
	// Add are keys the snapshot's Secrets need that the configuration no
	// longer has but the node kept (encryption.RetiredKeysFile): the
	// restore puts them back, once the API server has stopped (before
	// that, the node service's sync would write over them).
	Add []encryption.Provider
	// Warning: the check could not be made (a configuration kubeforge does
	// not manage, such as KMS); the restore goes on.
	Warning string
}

// checkSecretKeys refuses a snapshot whose Secrets are encrypted with a
// key that this node's encryption configuration does not have and did not
// keep (a snapshot taken before `kubeforge secrets rotate-key` retired
// that key, on a node that never had it or lost it): the restored API
// server could not read them, nor the rotation's own state.
func checkSecretKeys(p config.Paths, file string) (keyCheck, error) {
	prefix := "/registry"
	kc := keyCheck{ConfigFile: p.EncryptionConfigFile()}
	if data, err := os.ReadFile(p.Host(p.Manifest(manifests.KubeAPIServer))); err == nil {
		flags := manifestFlags(data)
		if v := flags["etcd-prefix"]; v != "" {
			prefix = v
		}
		if v := flags["encryption-provider-config"]; v != "" {
			kc.ConfigFile = v
		}
	}
	need, err := snapshotSecretKeys(file, prefix)
	if err != nil || len(need) == 0 {
		return kc, err
	}
	var have encryption.Config
	data, err := os.ReadFile(p.Host(kc.ConfigFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return kc, err
	default:
		if have, err = encryption.Parse(data, kc.ConfigFile); err != nil {
			kc.Warning = fmt.Sprintf("not checking which encryption keys the snapshot's Secrets need: %v", err)
			return kc, nil
		}
	}
	var kept encryption.Config
	archive := encryption.RetiredKeysFile(kc.ConfigFile)
	if b, err := os.ReadFile(p.Host(archive)); err == nil {
		kept, _ = encryption.Parse(b, archive)
	}
	var missing []string
	for _, key := range slices.Sorted(maps.Keys(need)) {
		name := key[strings.IndexByte(key, ' ')+1:]
		if have.Has(name) {
			continue
		}
		if k, ok := kept.Key(name); ok {
			kc.Add = append(kc.Add, k)
			continue
		}
		missing = append(missing, fmt.Sprintf("%s (%d Secrets)", key, need[key]))
	}
	if len(missing) == 0 {
		return kc, nil
	}
	return kc, fmt.Errorf("the snapshot's Secrets are encrypted with %s, which neither this node's encryption configuration %s nor its retired keys (%s) have (a snapshot from before a key rotation): the restored API server could not read them, nor kube-system/%s. Restore a snapshot taken after the rotation, add the key(s) to %s from where you keep them, or pass --ignore-missing-encryption-keys to restore it anyway and lose those Secrets",
		strings.Join(missing, ", "), kc.ConfigFile, archive, encryption.StateSecret, archive)
}

// addKeys appends kc.Add to the encryption configuration, as keys that
// only decrypt (after the one that encrypts).
func (kc keyCheck) addKeys(p config.Paths) error {
	if len(kc.Add) == 0 {
		return nil
	}
	host := p.Host(kc.ConfigFile)
	data, err := os.ReadFile(host)
	var cfg encryption.Config
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	default:
		if cfg, err = encryption.Parse(data, kc.ConfigFile); err != nil {
			return err
		}
	}
	for _, k := range kc.Add {
		if !cfg.Has(k.Name) {
			cfg.Providers = append(cfg.Providers, k)
		}
	}
	_, err = encryption.WriteConfigFile(host, encryption.Render(cfg))
	return err
}

// names lists kc.Add's key names.
func (kc keyCheck) names() string {
	var out []string
	for _, k := range kc.Add {
		out = append(out, k.Name)
	}
	return strings.Join(out, ", ")
}
